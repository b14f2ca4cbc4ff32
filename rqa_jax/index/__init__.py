"""Corpus encoding and retrieval indexes."""

"""Tokenization, file formats and input pipelines."""

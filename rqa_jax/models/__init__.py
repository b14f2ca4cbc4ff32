"""Flax encoders, retriever/re-ranker towers and HF checkpoint conversion."""

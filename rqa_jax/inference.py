"""The encoders and re-rankers at run time: what ``index/``, ``train/``, ``pipelines/`` and
the user-facing :mod:`rqa_jax.api` build on (nothing here imports the face).

:class:`DualEncoder` / :class:`CrossEncoder` hold a model, its tokenizer and its input
settings; ``load_*`` read them from model dirs; :class:`BatchRunner` runs batched,
length-bucketed forward passes over every local device:

Rows are sorted by length and cut into batches padded to a few fixed bucket shapes, so a
corpus compiles a handful of programs, not one per length. Each batch is split over the
mesh's 'data' axis with parameters replicated; batches are dispatched ahead of the
results being read back, so the host prepares the next batch while the devices compute.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rqa_jax import parallel
from rqa_jax.data import tokenize
from rqa_jax.data.tokenize import Encoded, bucketed_batches, length_buckets
from rqa_jax.errors import ModelKindError, UserInputError
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig
from rqa_jax.models.settings import EncoderSettings, resolve_settings
from rqa_jax.models.towers import CrossEncoderNet, DualEncoderNet

# (params, batch dict of [B, L] int32 arrays) -> [B, ...] float32
ApplyFn = Callable[[Any, dict[str, jax.Array]], jax.Array]


class BatchRunner:
    """Holds parameters on the devices once and runs named per-batch functions over
    :class:`Encoded` rows; results come back in input order."""

    def __init__(
        self,
        params: Any,
        fns: Mapping[str, ApplyFn],
        batch_size: int = 64,
        mesh: jax.sharding.Mesh | None = None,
        in_flight: int = 2,
    ) -> None:
        if batch_size < 1:
            raise UserInputError(f"batch_size must be positive, got {batch_size}")
        self.mesh = mesh or parallel.make_mesh(devices=jax.local_devices())
        n_data = parallel.data_size(self.mesh)
        # Every batch has the same row count, a multiple of the data-parallel size.
        self.batch_size = -(-batch_size // n_data) * n_data
        self.params = jax.device_put(params, parallel.replicated(self.mesh))
        self._batch_sharding = parallel.data_sharded(self.mesh)
        out = parallel.replicated(self.mesh)
        self._fns = {name: jax.jit(fn, out_shardings=out) for name, fn in fns.items()}
        self.in_flight = in_flight

    def _device_batch(self, enc: Encoded, rows: np.ndarray, length: int) -> dict[str, jax.Array]:
        part = enc.take(rows, length).as_dict()
        pad = self.batch_size - len(rows)
        if pad:
            part = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in part.items()}
        return jax.device_put(part, self._batch_sharding)

    def run(self, fn: str, enc: Encoded) -> np.ndarray:
        """All rows of ``enc`` through ``fns[fn]``; output row i belongs to input row i."""
        if len(enc) == 0:
            raise UserInputError("nothing to encode: the input has no rows")
        out: np.ndarray | None = None
        for rows, result in self._pipelined(self._fns[fn], enc):
            if out is None:
                out = np.empty((len(enc), *result.shape[1:]), result.dtype)
            out[rows] = result[: len(rows)]
        assert out is not None
        return out

    def _pipelined(self, fn, enc: Encoded) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        buckets = length_buckets(enc.input_ids.shape[1])
        pending: deque[tuple[np.ndarray, jax.Array]] = deque()
        for rows, length in bucketed_batches(enc.lengths, self.batch_size, buckets):
            pending.append((rows, fn(self.params, self._device_batch(enc, rows, length))))
            if len(pending) > self.in_flight:
                rows_done, result = pending.popleft()
                yield rows_done, np.asarray(result)
        while pending:
            rows_done, result = pending.popleft()
            yield rows_done, np.asarray(result)


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
        raise UserInputError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
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
            raise UserInputError(f"{len(queries)} queries but {len(paras)} paras: pairs must align")
        return np.sum(self.encode_query(queries) * self.encode_para(paras, titles), axis=-1)


class CrossEncoder:
    """A re-ranker: scores (query, title + para) pairs jointly. ``pair_form`` and
    ``title_form`` choose how pairs are encoded (see :mod:`rqa_jax.data.tokenize`)."""

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
        pair_form: str = "v1",
        title_form: str = "hf",
    ) -> None:
        if pair_form not in tokenize.PAIR_FORMS:
            raise UserInputError(
                f"pair_form must be one of {tokenize.PAIR_FORMS}, got {pair_form!r}"
            )
        if title_form not in tokenize.TITLE_FORMS:
            raise UserInputError(
                f"title_form must be one of {tokenize.TITLE_FORMS}, got {title_form!r}"
            )
        self.config, self.head, self.tokenizer = config, head, tokenizer
        self.max_len, self.q_max_len = max_len, q_max_len
        self.pair_form, self.title_form = pair_form, title_form
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
            self.tokenizer, queries, paras, titles, self.max_len, self.q_max_len,
            self.pair_form, self.title_form,
        )  # fmt: skip
        return self.runner.run("score", enc)


def _architectures(path: Path) -> list[str]:
    """config.json's ``architectures`` ([] when it has none or cannot be read)."""
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    archs = raw.get("architectures") if isinstance(raw, dict) else None
    return [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []


def _is_cross_encoder_dir(path: Path) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in _architectures(path))


def _refuse_cross_encoder_dir(path: Path) -> None:
    """A re-ranker given where a dual encoder is needed: its pooler/classifier would be
    ignored and its [CLS] vectors were never trained for retrieval."""
    if _is_cross_encoder_dir(path):
        raise ModelKindError(
            f"model dir {str(path)!r} is a re-ranker ({', '.join(_architectures(path))}), not a "
            "dual encoder: encoding needs an encoder dir (HF / sentence-transformers, or "
            "query_encoder/ + passage_encoder/); a re-ranker scores pairs (rqa rerank)"
        )


def _refuse_dual_encoder_dir(path: Path) -> None:
    """A dual encoder (or a plain pre-trained encoder) given where a re-ranker is needed."""
    if not (path / "config.json").is_file() and all(
        (path / d).is_dir() for d in SEPARATE_TOWER_DIRS
    ):
        raise ModelKindError(
            f"model dir {str(path)!r} is a dual encoder (query_encoder/ + passage_encoder/), "
            "not a re-ranker: re-ranking needs a *ForSequenceClassification dir (e.g. rqa export "
            "of a cross-encoder run)"
        )
    archs = _architectures(path)
    if archs and not _is_cross_encoder_dir(path):
        raise ModelKindError(
            f"model dir {str(path)!r} is not a re-ranker: its config.json's architectures are "
            f"{', '.join(archs)} (a dual encoder or a pre-trained encoder); re-ranking needs a "
            "*ForSequenceClassification dir (e.g. rqa export of a cross-encoder run)"
        )


def check_model_dir_kind(model_dir: str | Path, kind: str) -> None:
    """Refuses, before anything is loaded, a model dir that does not exist or is of the other
    ``kind`` ("dual" | "cross"): :class:`hf.ModelDirError` / :class:`ModelKindError`."""
    path = Path(model_dir)
    if not path.is_dir():
        raise hf.ModelDirError(f"model dir {str(path)!r} does not exist or is not a directory")
    if kind == "dual":
        separate = all((path / d).is_dir() for d in SEPARATE_TOWER_DIRS)
        for d in [path / d for d in SEPARATE_TOWER_DIRS] if separate else [path]:
            _refuse_cross_encoder_dir(d)
    elif kind == "cross":
        _refuse_dual_encoder_dir(path)
    else:
        raise UserInputError(f"kind must be 'dual' or 'cross', got {kind!r}")


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
    for d in tower_dirs:
        _refuse_cross_encoder_dir(d)
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


def cross_encoder_settings(model_dir: str | Path) -> dict[str, Any]:
    """How a cross-encoder dir's pairs are encoded, from its ``rqa_jax.json``: ``max_length``,
    ``q_max_len`` (null: no query cut), ``pair_form``, ``title_form``; {} without one."""
    own = Path(model_dir) / "rqa_jax.json"
    if not own.is_file():
        return {}
    try:
        saved = json.loads(own.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{own}: not valid JSON ({e})") from None
    keys = ("max_length", "q_max_len", "pair_form", "title_form")
    return {k: saved[k] for k in keys if k in saved}


def _tokenizer_max_length(model_dir: str | Path, limit: int) -> int | None:
    """``model_max_length`` of the dir's ``tokenizer_config.json`` when it is a real length
    (what sentence-transformers' CrossEncoder cuts pairs at): at most ``limit`` (the position
    embeddings); tokenizers without one say 1e30."""
    try:
        raw = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = raw.get("model_max_length") if isinstance(raw, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 8 <= value <= limit:
        return value
    return None


def load_cross_encoder(
    model_dir: str | Path,
    head: str | None = None,
    max_len: int | None = None,
    q_max_len: int | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
    pair_form: str | None = None,
    title_form: str | None = None,
) -> CrossEncoder:
    """A cross encoder from an HF sequence-classification dir (see :func:`hf.load_cross_encoder`).
    Arguments left None come from the dir: its ``rqa_jax.json`` (see
    :func:`cross_encoder_settings`); for the max length, else its tokenizer's
    ``model_max_length`` (as sentence-transformers' CrossEncoder reads it); else max 160
    tokens, pair form v1, title form hf, the query cut to 32 tokens for the v2 head only.
    ``q_max_len=0``: no separate query cut. A dir of another kind (a dual encoder, a plain
    encoder) is refused with :class:`ModelKindError`."""
    _refuse_dual_encoder_dir(Path(model_dir))
    config, head, params = hf.load_cross_encoder(model_dir, head)
    saved = cross_encoder_settings(model_dir)
    if q_max_len is None:
        if "q_max_len" in saved:
            q_max_len = saved["q_max_len"]
        elif head == "v2":
            q_max_len = 32  # RocketQAv2 cuts the query to 32 tokens before pairing
    elif q_max_len == 0:
        q_max_len = None
    if max_len is None:
        max_len = saved.get("max_length") or _tokenizer_max_length(
            model_dir, config.max_position_embeddings
        )
    return CrossEncoder(
        config,
        head,
        params,
        load_tokenizer(model_dir),
        max_len or 160,
        q_max_len,
        dtype,
        batch_size,
        pair_form=pair_form or saved.get("pair_form", "v1"),
        title_form=title_form or saved.get("title_form", "hf"),
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
    raise UserInputError(f"kind must be 'dual' or 'cross', got {kind!r}")

"""grain input pipelines: examples → tokenized, fixed-shape batches for the three step kinds.

Examples are the plain dicts of :mod:`rqa_jax.data.examples`, from any random-access
source: a list (small data), a lazy store-backed source (:class:`rqa_jax.data.examples.Source`
over :mod:`rqa_jax.data.store`) or a TFDS split (:func:`rqa_jax.data.tfds_builders.data_source`);
a batch's rows are read in one batched read, and a source with ``read(rows, epoch)`` draws
epoch-dependent parts (sampled negatives) for the epoch. Cross groups use the joint form.

Batches (numpy, int32; one process's rows of the global batch):

* dual:  ``query`` [B, Lq], ``passages`` [B, 1+k, Lp] (positive at index 0)
* cross: ``pairs`` [B, Lc] + ``labels`` [B], or with ``list_size`` m: ``pairs`` [B, m, Lc]
* joint: ``query`` [B, Lq], ``passages`` [B, m, Lp], ``pairs`` [B, m, Lc], ``labels`` [B, m]

each token group a dict of ``input_ids`` / ``token_type_ids`` / ``attention_mask``.

Multi-host: process p of n reads records p, p+n, p+2n, … (``process_index`` /
``process_count``, default JAX's), shuffled per epoch with the same seed everywhere.
Epochs: every process takes ``steps_per_epoch`` batches of its epoch's permutation and drops
the remainder of each epoch on its own, so a batch never mixes two epochs (an example twice
in one global batch would be its own false negative under cross-batch negatives).
Tokenization runs in reader threads ahead of the consumer (``prefetch``). The iterator's
state (:meth:`Loader.get_state`) is a small dict saved with the checkpoint: restoring it
continues with the next unseen batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np

from rqa_jax.data import tokenize
from rqa_jax.errors import ConfigError

STEP_KINDS = ("dual", "cross", "joint")


# ----------------------------------------------------------------------------- batching


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """What one step consumes. ``batch_size`` is global (all processes)."""

    kind: str
    batch_size: int
    q_max_len: int = 32
    p_max_len: int = 128
    cross_max_len: int = 160
    num_negatives: int = 1  # dual: hard negatives per query
    list_size: int = 0  # joint (required) / cross (0 = pointwise pairs)
    cross_q_max_len: int | None = None  # RocketQAv2 cuts the query to 32 in pairs
    pair_form: str = "v1"  # "v2": RocketQAv2's pair truncation (see rqa_jax.data.tokenize)
    title_form: str = "hf"

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ConfigError(f"kind must be one of {STEP_KINDS}, got {self.kind!r}")
        if self.pair_form not in tokenize.PAIR_FORMS:
            raise ConfigError(
                f"pair_form must be one of {tokenize.PAIR_FORMS}, got {self.pair_form!r}"
            )
        if self.title_form not in tokenize.TITLE_FORMS:
            raise ConfigError(
                f"title_form must be one of {tokenize.TITLE_FORMS}, got {self.title_form!r}"
            )
        if self.kind == "joint" and self.list_size < 2:
            raise ConfigError("joint batches need list_size >= 2")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")


def _group(enc: tokenize.Encoded, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {k: v.reshape(*shape, v.shape[-1]) for k, v in enc.as_dict().items()}


def _flat(enc: tokenize.Encoded) -> dict[str, np.ndarray]:
    return enc.as_dict()


def _titles(spec: BatchSpec, titles: list[str | None]) -> list[str | None]:
    """Examples write a missing title as '' (:mod:`rqa_jax.data.examples`); in the
    ``rocketqa_literal`` form a missing title is RocketQA's ``-``, so '' becomes None."""
    if spec.title_form == "rocketqa_literal":
        return [t or None for t in titles]
    return titles


def _pairs(spec: BatchSpec, tokenizer: Any, queries, paras, titles) -> tokenize.Encoded:
    return tokenize.encode_pairs(
        tokenizer, queries, paras, _titles(spec, titles), spec.cross_max_len,
        spec.cross_q_max_len, spec.pair_form, spec.title_form,
    )  # fmt: skip


def _lists(
    spec: BatchSpec, examples: Sequence[dict[str, Any]]
) -> tuple[list[str], list[str], list[str]]:
    """Queries repeated per list item, and the flattened titles / paras, validated."""
    m = spec.list_size
    for ex in examples:
        if len(ex["paras"]) != m or len(ex["titles"]) != m:
            raise ConfigError(
                f"list of {len(ex['paras'])} passages for query {ex['query']!r}, expected {m}"
            )
        if ex["labels"][0] != 1:
            raise ConfigError(f"the positive must come first in the list for query {ex['query']!r}")
    queries = [ex["query"] for ex in examples for _ in range(m)]
    titles = [t for ex in examples for t in ex["titles"]]
    paras = [p for ex in examples for p in ex["paras"]]
    return queries, titles, paras


def tokenize_batch(
    spec: BatchSpec, tokenizer: Any, examples: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """A list of examples → the batch dict for ``spec.kind`` (see the module docstring)."""
    b = len(examples)
    if spec.kind == "dual":
        k = spec.num_negatives
        texts, titles = [], []
        for ex in examples:
            if len(ex["negatives"]) < k:
                raise ConfigError(
                    f"{len(ex['negatives'])} negatives for query {ex['query']!r}, need {k}"
                )
            for p in [ex["positive"], *ex["negatives"][:k]]:
                texts.append(p["text"])
                titles.append(p["title"])
        q = tokenize.encode_queries(tokenizer, [ex["query"] for ex in examples], spec.q_max_len)
        p = tokenize.encode_passages(
            tokenizer, texts, _titles(spec, titles), spec.p_max_len, spec.title_form
        )
        return {"query": _flat(q), "passages": _group(p, (b, 1 + k))}
    if spec.kind == "cross" and spec.list_size == 0:
        pairs = _pairs(spec, tokenizer, [ex["query"] for ex in examples],
                       [ex["para"] for ex in examples], [ex["title"] for ex in examples])  # fmt: skip
        return {
            "pairs": _flat(pairs),
            "labels": np.array([ex["label"] for ex in examples], np.int32),
        }
    m = spec.list_size
    queries, titles, paras = _lists(spec, examples)
    pairs = _pairs(spec, tokenizer, queries, paras, titles)
    batch: dict[str, Any] = {
        "pairs": _group(pairs, (b, m)),
        "labels": np.array([ex["labels"] for ex in examples], np.int32),
    }
    if spec.kind == "joint":
        q = tokenize.encode_queries(tokenizer, [ex["query"] for ex in examples], spec.q_max_len)
        p = tokenize.encode_passages(
            tokenizer, paras, _titles(spec, titles), spec.p_max_len, spec.title_form
        )
        batch.update(query=_flat(q), passages=_group(p, (b, m)))
    return batch


# ----------------------------------------------------------------------------- the loader


def _reader(source: Any) -> Callable[[list[int], int], list[dict[str, Any]]]:
    """``read(rows, epoch)``: the source's own (epoch-dependent sources, e.g. sampled
    negatives), else one batched ``__getitems__`` read, else one row at a time."""
    if callable(getattr(source, "read", None)):
        return source.read
    batched = getattr(source, "__getitems__", None)
    if batched is not None:
        return lambda rows, epoch: list(batched(rows))
    return lambda rows, epoch: [source[r] for r in rows]


class Loader:
    """An endless (or ``num_epochs``-long) iterator of process-local batches with
    checkpointable state. ``collate`` replaces tokenization (e.g. to inspect raw examples)."""

    def __init__(
        self,
        source: Sequence[dict[str, Any]],
        tokenizer: Any,
        spec: BatchSpec,
        seed: int = 0,
        shuffle: bool = True,
        num_epochs: int | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
        prefetch: int = 4,
        threads: int = 2,
        collate: Callable[[Sequence[dict[str, Any]]], Any] | None = None,
    ) -> None:
        self.spec = spec
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if spec.batch_size % self.process_count:
            raise ConfigError(
                f"global batch {spec.batch_size} does not split over {self.process_count} processes"
            )
        self.local_batch_size = bs = spec.batch_size // self.process_count
        n = len(source)
        if n < spec.batch_size:
            raise ConfigError(f"{n} examples cannot fill one global batch of {spec.batch_size}")
        # One global order, the same in every process: global batch g is rows
        # order[g·B : (g+1)·B] and process p reads its slice p·b … (p+1)·b − 1 of it. So the
        # global batches do not depend on how many processes there are (2 hosts train as 1).
        # Each epoch drops its own remainder, so no batch holds two epochs' examples (an
        # example twice in a global batch would be a false negative for itself).
        self.steps_per_epoch = steps = n // spec.batch_size
        order = grain.MapDataset.range(n)
        if shuffle:  # a lazy permutation (O(1) memory), reseeded every epoch (seed + epoch)
            order = order.shuffle(seed=seed)
        if collate is None:  # tokenization, in grain's reader threads
            collate = functools.partial(tokenize_batch, spec, tokenizer)
        read = _reader(source)
        pi, pc = self.process_index, self.process_count

        def make_batch(step: int, _: Any) -> Any:
            epoch, j = divmod(step, steps)
            start = epoch * n + (j * pc + pi) * bs  # order[epoch * n + i]: epoch's permutation
            rows = [order[start + t] for t in range(bs)]
            return collate(read(rows, epoch))

        ds = grain.MapDataset.range(steps).repeat(num_epochs).map_with_index(make_batch)
        options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch)
        self._iter = iter(ds.to_iter_dataset(options))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._iter)

    def get_state(self) -> dict[str, Any]:
        """Where the iterator is: save it with the checkpoint."""
        return self._iter.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue after the last batch that was taken when ``state`` was saved."""
        self._iter.set_state(state)

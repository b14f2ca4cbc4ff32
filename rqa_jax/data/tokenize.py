"""RocketQA input encodings, vectorised with the fast (Rust) tokenizer, to fixed int32 arrays.

* query:   ``[CLS] q [SEP]``, segment 0, truncated to ``q_max_len``.
* passage: ``[CLS] title [SEP] para [SEP]`` (segment 0 up to the first [SEP], 1 after), title
  and para truncated together, tokens removed from the longer one. Without a title (``-``,
  empty or None) a passage encodes as a single text ``[CLS] para [SEP]`` as HF tokenizers do,
  or, with ``title_form="rocketqa"``, as RocketQA's empty-title pair ``[CLS] [SEP] para [SEP]``.
* pair (cross encoder): ``[CLS] q [SEP] title para [SEP]`` (title and para joined by a space),
  segment 0 for the query part, 1 for the rest; with ``q_max_len`` the query is first cut to
  that many tokens (RocketQAv2).

Padding is on the right with the tokenizer's pad id, attention mask 1/0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

NO_TITLE = ("", "-")


class EmptyTextError(ValueError):
    """A query or passage text is empty: it would encode to [CLS] [SEP] and match anything."""


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Fixed-shape token arrays [N, L] (int32) for a batch of texts."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """Number of real (non-pad) tokens per row."""
        return self.attention_mask.sum(axis=1)

    def take(self, rows: np.ndarray, length: int | None = None) -> Encoded:
        """Rows ``rows``, cut to the first ``length`` columns (right padding makes this exact)."""
        cols = slice(None) if length is None else slice(0, length)
        return Encoded(
            self.input_ids[rows, cols],
            self.token_type_ids[rows, cols],
            self.attention_mask[rows, cols],
        )

    def as_dict(self) -> dict[str, np.ndarray]:
        return dataclasses.asdict(self)


def is_no_title(title: str | None) -> bool:
    return title is None or title.strip() in NO_TITLE


def check_texts(texts: Sequence[str], what: str) -> None:
    """Rejects a bare string (a common slip for a one-element list) and empty texts."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string: wrap it as [text]")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")
        if not t.strip():
            raise EmptyTextError(f"{what}[{i}] is empty")


def _call(tokenizer: Any, first: list[str], second: list[str] | None, max_len: int) -> Encoded:
    enc = tokenizer(
        first,
        second,
        truncation="longest_first",
        max_length=max_len,
        padding="max_length",
        return_token_type_ids=True,
        return_attention_mask=True,
        return_tensors="np",
    )
    return Encoded(
        enc["input_ids"].astype(np.int32),
        enc["token_type_ids"].astype(np.int32),
        enc["attention_mask"].astype(np.int32),
    )


def _merge(n: int, max_len: int, parts: list[tuple[np.ndarray, Encoded]]) -> Encoded:
    """Scatters encodings of index subsets back into one [n, max_len] batch."""
    arrays = {
        f: np.zeros((n, max_len), np.int32)
        for f in ("input_ids", "token_type_ids", "attention_mask")
    }
    for rows, enc in parts:
        for f, arr in arrays.items():
            arr[rows] = getattr(enc, f)
    return Encoded(**arrays)


def encode_queries(tokenizer: Any, queries: Sequence[str], max_len: int = 32) -> Encoded:
    """``[CLS] q [SEP]`` for each query."""
    check_texts(queries, "queries")
    return _call(tokenizer, list(queries), None, max_len)


def encode_passages(
    tokenizer: Any,
    paras: Sequence[str],
    titles: Sequence[str | None] | None = None,
    max_len: int = 128,
    title_form: str = "hf",
) -> Encoded:
    """Passages with optional titles; see the module docstring for the two no-title forms."""
    check_texts(paras, "paras")
    if titles is None:
        titles = [None] * len(paras)
    if isinstance(titles, str) or len(titles) != len(paras):
        raise ValueError(f"titles must be a list as long as paras ({len(paras)})")
    no_title = np.array([is_no_title(t) for t in titles], dtype=bool)
    parts = []
    with_rows = np.flatnonzero(~no_title)
    if with_rows.size:
        parts.append((with_rows, _call(tokenizer, [titles[i] for i in with_rows], [paras[i] for i in with_rows], max_len)))  # fmt: skip
    bare_rows = np.flatnonzero(no_title)
    if bare_rows.size:
        bare = [paras[i] for i in bare_rows]
        if title_form == "rocketqa":
            parts.append((bare_rows, _call(tokenizer, [""] * len(bare), bare, max_len)))
        elif title_form == "hf":
            parts.append((bare_rows, _call(tokenizer, bare, None, max_len)))
        else:
            raise ValueError(f"title_form must be 'hf' or 'rocketqa', got {title_form!r}")
    return _merge(len(paras), max_len, parts)


def cut_to_tokens(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[str]:
    """Each text cut after its first ``max_tokens`` word pieces (no special tokens)."""
    enc = tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=True,
        max_length=max_tokens,
        return_offsets_mapping=True,
    )
    return [
        t[: offs[-1][1]] if offs else t
        for t, offs in zip(texts, enc["offset_mapping"], strict=True)
    ]


def encode_pairs(
    tokenizer: Any,
    queries: Sequence[str],
    paras: Sequence[str],
    titles: Sequence[str | None] | None = None,
    max_len: int = 160,
    q_max_len: int | None = None,
) -> Encoded:
    """Cross-encoder pairs ``[CLS] q [SEP] title para [SEP]``."""
    check_texts(queries, "queries")
    check_texts(paras, "paras")
    if len(queries) != len(paras):
        raise ValueError(f"{len(queries)} queries but {len(paras)} paras: pairs must align")
    if titles is None:
        titles = [None] * len(paras)
    second = [p if is_no_title(t) else f"{t} {p}" for t, p in zip(titles, paras, strict=True)]
    first = list(queries) if q_max_len is None else cut_to_tokens(tokenizer, queries, q_max_len)
    return _call(tokenizer, first, second, max_len)


def length_buckets(max_len: int, smallest: int = 16) -> list[int]:
    """Bucket lengths 16, 32, 64, … capped by ``max_len`` (always included): few shapes to compile."""
    buckets, b = [], smallest
    while b < max_len:
        buckets.append(b)
        b *= 2
    return [*buckets, max_len]


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, buckets: Sequence[int]
) -> Iterator[tuple[np.ndarray, int]]:
    """Yields (row indices, padded length): rows sorted by length, each batch padded only to
    the smallest bucket that fits its longest row."""
    order = np.argsort(lengths, kind="stable")
    bucket_arr = np.asarray(buckets)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        longest = int(lengths[rows].max())
        yield rows, int(bucket_arr[np.searchsorted(bucket_arr, longest)])

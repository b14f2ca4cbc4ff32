"""RocketQA input encodings, vectorised with the fast (Rust) tokenizer, to fixed int32 arrays.

* query:   ``[CLS] q [SEP]``, segment 0, truncated to ``q_max_len``.
* passage: ``[CLS] title [SEP] para [SEP]`` (segment 0 up to the first [SEP], 1 after), title
  and para truncated together, tokens removed from the longer one.
* pair (cross encoder): ``[CLS] q [SEP] title para [SEP]`` (no [SEP] between title and para),
  segment 0 up to and including the first [SEP], 1 after. Two truncations (``pair_form``):

  - ``"v1"`` (RocketQA's cross-encoder readers, and the ``rocketqa`` package's ``matching`` for
    v1 *and* v2 models): the query and title+para are cut jointly to ``max_len - 3`` wordpieces,
    from the longer side; with ``q_max_len`` the query is first cut to that many wordpieces.
  - ``"v2"`` (RocketQAv2's joint-training / re-ranking reader, ``task_reader_shuffle.py``): the
    query is cut to ``q_max_len - 2`` wordpieces (``q_max_len`` default 32, so 30), title and
    para jointly to ``max_len - q_max_len - 3`` (125 for 160), then joined: at most
    ``max_len - 2`` tokens.

Titles (``title_form``):

* ``"hf"``: a title ``-``, empty or None means none; an untitled passage is the single text
  ``[CLS] para [SEP]`` as HF tokenizers encode it; an untitled pair is ``[CLS] q [SEP] para [SEP]``.
* ``"rocketqa"``: same "no title" rule, but an untitled passage is RocketQA's empty-title pair
  ``[CLS] [SEP] para [SEP]``.
* ``"rocketqa_literal"``: titles exactly as the original's readers see them: the title text is
  tokenized verbatim, so ``-`` (what RocketQA's files write for a missing title) is the
  one-token title ``-`` and ``""`` gives ``[CLS] [SEP] para [SEP]``; a title that is not given
  at all (None: no title column, or a reader that mapped ``-`` to None) is written ``-``, as
  RocketQA's files do. Use it for models converted from the original (``rqa convert rocketqa``).

Padding is on the right with the tokenizer's pad id, attention mask 1/0.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from rqa_jax.errors import UserInputError

NO_TITLE = ("", "-")
TITLE_FORMS = ("hf", "rocketqa", "rocketqa_literal")
PAIR_FORMS = ("v1", "v2")
MISSING_TITLE = "-"  # how RocketQA's files write a passage without title


class EmptyTextError(UserInputError):
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


def _check_title_form(title_form: str) -> None:
    if title_form not in TITLE_FORMS:
        raise UserInputError(f"title_form must be one of {TITLE_FORMS}, got {title_form!r}")


def _titles(titles: Sequence[str | None] | None, n: int) -> Sequence[str | None]:
    if titles is None:
        return [None] * n
    if isinstance(titles, str) or len(titles) != n:
        raise UserInputError(f"titles must be a list as long as paras ({n})")
    return titles


def title_texts(titles: Sequence[str | None], title_form: str) -> list[str]:
    """The text each title is tokenized as: '' for "no title" (hf / rocketqa), the verbatim
    title with a missing one written ``-`` (rocketqa_literal)."""
    if title_form == "rocketqa_literal":
        return [MISSING_TITLE if t is None else t for t in titles]
    return ["" if is_no_title(t) else t for t in titles]


def check_texts(texts: Sequence[str], what: str) -> None:
    """Rejects a bare string (a common slip for a one-element list) and empty texts."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a single string: wrap it as [text]")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")
        if not t.strip():
            raise EmptyTextError(f"{what}[{i}] is empty")


# HF tokenizers re-configure truncation on their one Rust object at every call: two threads
# (grain's readers) calling at once can encode with each other's max_length, or fail with
# "Already borrowed". One call at a time; the batch itself is still encoded in parallel.
_TOKENIZER_LOCK = threading.Lock()


def _token_ids(tokenizer: Any, texts: list[str], max_len: int) -> list[list[int]]:
    """Word-piece ids without special tokens, batched in the Rust tokenizer. Cut at
    ``max_len``: no side of an encoding can keep more."""
    if not texts:
        return []
    with _TOKENIZER_LOCK:
        enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len)
    return enc["input_ids"]


def truncated_pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths BERT's ``_truncate_seq_pair`` (RocketQA's reader) keeps: pop from the longer
    side, from the second on a tie. Closed form of that loop."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if budget - short >= short:  # only the longer side is cut
        return (budget - short, len_b) if len_a > len_b else (len_a, budget - short)
    return (budget + 1) // 2, budget // 2


def _assemble(
    tokenizer: Any, first: list[list[int]], second: list[list[int]] | None, max_len: int
) -> Encoded:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` rows, truncated and right-padded."""
    n = len(first)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ids = np.full((n, max_len), tokenizer.pad_token_id, np.int32)
    segments = np.zeros((n, max_len), np.int32)
    mask = np.zeros((n, max_len), np.int32)
    for i in range(n):
        a = first[i]
        if second is None:
            row = [cls, *a[: max_len - 2], sep]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
            continue
        b = second[i]
        la, lb = truncated_pair_lengths(len(a), len(b), max_len - 3)
        row = [cls, *a[:la], sep, *b[:lb], sep]
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        segments[i, la + 2 : len(row)] = 1
    return Encoded(ids, segments, mask)


def _merge(n: int, max_len: int, parts: list[tuple[np.ndarray, Encoded]]) -> Encoded:
    """Scatters encodings of index subsets back into one [n, max_len] batch."""
    fields = ("input_ids", "token_type_ids", "attention_mask")
    arrays = {f: np.zeros((n, max_len), np.int32) for f in fields}
    for rows, enc in parts:
        for f, arr in arrays.items():
            arr[rows] = getattr(enc, f)
    return Encoded(**arrays)


def encode_queries(tokenizer: Any, queries: Sequence[str], max_len: int = 32) -> Encoded:
    """``[CLS] q [SEP]`` for each query."""
    check_texts(queries, "queries")
    return _assemble(tokenizer, _token_ids(tokenizer, list(queries), max_len), None, max_len)


def encode_passages(
    tokenizer: Any,
    paras: Sequence[str],
    titles: Sequence[str | None] | None = None,
    max_len: int = 128,
    title_form: str = "hf",
) -> Encoded:
    """Passages with optional titles; see the module docstring for the title forms."""
    check_texts(paras, "paras")
    _check_title_form(title_form)
    titles = _titles(titles, len(paras))
    para_ids = _token_ids(tokenizer, list(paras), max_len)
    title_ids = _token_ids(tokenizer, title_texts(titles, title_form), max_len)
    no_title = [is_no_title(t) for t in titles]
    if title_form in ("rocketqa", "rocketqa_literal") or not any(no_title):
        return _assemble(tokenizer, title_ids, para_ids, max_len)
    pair_rows = [i for i, nt in enumerate(no_title) if not nt]
    single_rows = [i for i, nt in enumerate(no_title) if nt]
    parts = [
        (
            np.array(single_rows),
            _assemble(tokenizer, [para_ids[i] for i in single_rows], None, max_len),
        )
    ]
    if pair_rows:
        pairs = _assemble(
            tokenizer, [title_ids[i] for i in pair_rows], [para_ids[i] for i in pair_rows], max_len
        )
        parts.append((np.array(pair_rows), pairs))
    return _merge(len(paras), max_len, parts)


def encode_pairs(
    tokenizer: Any,
    queries: Sequence[str],
    paras: Sequence[str],
    titles: Sequence[str | None] | None = None,
    max_len: int = 160,
    q_max_len: int | None = None,
    pair_form: str = "v1",
    title_form: str = "hf",
) -> Encoded:
    """Cross-encoder pairs ``[CLS] q [SEP] title para [SEP]``; see the module docstring for
    ``pair_form`` ("v1" | "v2") and ``title_form``."""
    check_texts(queries, "queries")
    check_texts(paras, "paras")
    _check_title_form(title_form)
    if pair_form not in PAIR_FORMS:
        raise UserInputError(f"pair_form must be one of {PAIR_FORMS}, got {pair_form!r}")
    if len(queries) != len(paras):
        raise UserInputError(f"{len(queries)} queries but {len(paras)} paras: pairs must align")
    title_text = title_texts(_titles(titles, len(paras)), title_form)
    if pair_form == "v2":
        return _assemble_v2(tokenizer, queries, title_text, paras, max_len, q_max_len)
    second = [f"{t} {p}" if t.strip() else p for t, p in zip(title_text, paras, strict=True)]
    q_ids = _token_ids(tokenizer, list(queries), max_len)
    if q_max_len is not None:
        q_ids = [q[:q_max_len] for q in q_ids]
    return _assemble(tokenizer, q_ids, _token_ids(tokenizer, second, max_len), max_len)


def _assemble_v2(
    tokenizer: Any,
    queries: Sequence[str],
    titles: list[str],
    paras: Sequence[str],
    max_len: int,
    q_max_len: int | None,
) -> Encoded:
    """RocketQAv2's pairs: query cut to ``q_max_len - 2``, title + para jointly to
    ``max_len - q_max_len - 3`` (pop from the longer, the para on ties), then joined."""
    q_max_len = 32 if q_max_len is None else q_max_len
    p_budget = max_len - q_max_len - 3
    if q_max_len < 3 or p_budget < 1:
        raise UserInputError(
            f"pair_form 'v2' needs 3 <= q_max_len and q_max_len + 4 <= max_len, got "
            f"q_max_len {q_max_len}, max_len {max_len}"
        )
    q_ids = [q[: q_max_len - 2] for q in _token_ids(tokenizer, list(queries), q_max_len)]
    t_ids = _token_ids(tokenizer, titles, p_budget)
    p_ids = _token_ids(tokenizer, list(paras), p_budget)
    second = []
    for t, p in zip(t_ids, p_ids, strict=True):
        lt, lp = truncated_pair_lengths(len(t), len(p), p_budget)
        second.append([*t[:lt], *p[:lp]])
    # Both sides already fit: the joint budget of _assemble (max_len - 3) cuts nothing more.
    return _assemble(tokenizer, q_ids, second, max_len)


def length_buckets(max_len: int, smallest: int = 16) -> list[int]:
    """Padded lengths to compile for: steps of 16 up to 256, then eight per doubling (288,
    320, …), capped by ``max_len`` (always included). A sorted batch wastes about 8 tokens a
    row (under 13% beyond 256), and a corpus compiles at most ~20 shapes whatever its size."""
    buckets, b = [], smallest
    while b < max_len:
        buckets.append(b)
        b += max(smallest, (1 << (b.bit_length() - 1)) // 8)
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

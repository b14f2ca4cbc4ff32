"""Binary top-k runs: what a search writes when a text run would not fit in memory.

RocketQA mines the top 1000 of 8.8M passages for 502,939 queries: 502M (query, passage,
score) rows, about 226 GB as Python objects and 75 minutes just to parse as text. A binary
run holds the same as two memory-mapped ``[Q, K]`` arrays, so any consumer reads one query
(or a chunk of queries) at a time at the cost of a slice:

==================  ============================================================
``meta.json``       format, version, Q, K, chunk size, corpus size and fingerprint
``qids.txt``        the query ids, one per line, in row order
``rows.npy``        int32 ``[Q, K]``: corpus row numbers, best first; -1 pads a
                    query with fewer than K candidates
``scores.npy``      float32 ``[Q, K]``: their scores (NaN where the row is -1)
``chunks.u8``       one byte per chunk of queries: 1 once the chunk is on disk
``done.json``       written last, when every chunk is: marks the run complete
==================  ============================================================

Row numbers refer to the corpus the run was searched over (its rows in file order, the
order of :class:`rqa_jax.data.store.CorpusStore` and of an index built from ``rqa encode``
of that file); ``meta.json`` records the corpus size and id fingerprint so a reader can
refuse another corpus.

Writing is resumable and multi-process: the files are laid out once, each chunk of queries
is written into its own rows by whichever process owns it (chunk ``c`` belongs to process
``c mod P``), flushed, then marked in ``chunks.u8``. A killed writer, run again (with any
number of processes), writes only the chunks not marked. Nothing is ever appended, so a
chunk cut off mid-write is simply written again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.errors import MissingIdError, UserFileNotFoundError, UserInputError

FORMAT = "rqa_binary_run"
VERSION = 1
META, QIDS, ROWS, SCORES, CHUNKS, DONE = (
    "meta.json", "qids.txt", "rows.npy", "scores.npy", "chunks.u8", "done.json",
)  # fmt: skip
PAD = -1


class BinaryRunError(UserInputError):
    """A binary run dir that is not one, is incomplete, truncated or for another corpus."""


def is_binary_run(path: str | Path) -> bool:
    """A directory holding a binary run's ``meta.json`` (complete or not)."""
    p = Path(path)
    return p.is_dir() and (p / META).is_file()


def qids_digest(qids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for q in qids:
        h.update(q.encode("utf-8") + b"\n")
    return h.hexdigest()


def _owned(n_chunks: int, process_index: int, process_count: int) -> list[int]:
    return [c for c in range(n_chunks) if c % process_count == process_index]


class BinaryRunWriter:
    """Lays out (or reopens, to resume) a binary run of ``qids`` × ``k`` and writes chunks.

    Only one process creates the files (``create=True``, process 0); the others open what it
    laid out. Reopening with other ``qids``, ``k`` or chunk size is an error naming the
    difference, never a silent overwrite."""

    def __init__(
        self,
        path: str | Path,
        qids: Sequence[str],
        k: int,
        chunk_queries: int = 1024,
        corpus_size: int | None = None,
        corpus_fingerprint: str | None = None,
        create: bool = True,
    ) -> None:
        if k < 1:
            raise UserInputError(f"k must be at least 1, got {k}")
        if chunk_queries < 1:
            raise UserInputError(f"chunk_queries must be at least 1, got {chunk_queries}")
        self.path, self.k, self.chunk = Path(path), int(k), int(chunk_queries)
        self.n = len(qids)
        self.n_chunks = math.ceil(self.n / self.chunk)
        meta = {
            "format": FORMAT, "version": VERSION, "queries": self.n, "k": self.k,
            "chunk_queries": self.chunk, "corpus_size": corpus_size,
            "corpus_fingerprint": corpus_fingerprint, "qids_sha256": qids_digest(qids),
        }  # fmt: skip
        if is_binary_run(self.path):
            old = json.loads((self.path / META).read_text())
            diff = [key for key in meta if old.get(key) != meta[key]]
            if diff:
                raise BinaryRunError(
                    f"{self.path} holds a binary run of other {', '.join(diff)} than this one "
                    "asks for: give another output path, or remove it to start again"
                )
        elif create:
            self._lay_out(meta, qids)
        else:
            raise BinaryRunError(
                f"{self.path}: no {META} (the creating process has not laid it out)"
            )
        self.meta = meta
        self._chunks = np.memmap(self.path / CHUNKS, np.uint8, "r+", shape=(max(1, self.n_chunks),))
        self._rows = np.load(self.path / ROWS, mmap_mode="r+")
        self._scores = np.load(self.path / SCORES, mmap_mode="r+")

    def _lay_out(self, meta: dict[str, Any], qids: Sequence[str]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (DONE, META):
            (self.path / name).unlink(missing_ok=True)
        bad = next((q for q in qids if not q or any(c.isspace() for c in q)), None)
        if bad is not None:
            raise UserInputError(f"query id {bad!r}: ids must be non-empty, without whitespace")
        (self.path / QIDS).write_text("".join(q + "\n" for q in qids), encoding="utf-8")
        shape = (self.n, self.k)
        # open_memmap makes sparse files: nothing is written until a chunk is
        np.lib.format.open_memmap(self.path / ROWS, "w+", np.int32, shape).flush()
        np.lib.format.open_memmap(self.path / SCORES, "w+", np.float32, shape).flush()
        (self.path / CHUNKS).write_bytes(bytes(max(1, self.n_chunks)))
        tmp = self.path / f"{META}.partial"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(self.path / META)  # last: the layout is complete

    def chunk_rows(self, c: int) -> range:
        """The query rows of chunk ``c``."""
        return range(c * self.chunk, min(self.n, (c + 1) * self.chunk))

    def pending(self, process_index: int = 0, process_count: int = 1) -> list[int]:
        """The chunks of this process's share not yet written."""
        return [
            c for c in _owned(self.n_chunks, process_index, process_count) if not self._chunks[c]
        ]

    def done_queries(self) -> int:
        return sum(len(self.chunk_rows(c)) for c in range(self.n_chunks) if self._chunks[c])

    def write_chunk(self, c: int, rows: np.ndarray, scores: np.ndarray) -> None:
        """Writes chunk ``c``: ``rows`` [n_c, ≤ K] (int, -1 pads) and ``scores`` alike; the
        chunk counts as written only once its rows are flushed to disk."""
        span = self.chunk_rows(c)
        rows, scores = np.asarray(rows), np.asarray(scores, np.float32)
        if rows.shape != scores.shape or rows.ndim != 2 or rows.shape[0] != len(span):
            raise ValueError(f"chunk {c}: rows {rows.shape} and scores {scores.shape} must be "
                             f"[{len(span)}, <= {self.k}]")  # fmt: skip
        if rows.shape[1] > self.k:
            raise ValueError(
                f"chunk {c}: {rows.shape[1]} candidates per query, more than k={self.k}"
            )
        sl = slice(span.start, span.stop)
        self._rows[sl] = PAD
        self._scores[sl] = np.nan
        self._rows[sl, : rows.shape[1]] = rows
        self._scores[sl, : rows.shape[1]] = np.where(rows == PAD, np.nan, scores)
        self._rows.flush()
        self._scores.flush()
        self._chunks[c] = 1
        self._chunks.flush()

    def finish(self) -> bool:
        """Marks the run complete when every chunk is written (call on one process after all
        have written); False while some are missing."""
        if self.done_queries() < self.n:
            return False
        (self.path / DONE).write_text(json.dumps({"queries": self.n}) + "\n")
        return True


def _check_size(f: Path, n: int, k: int, dtype: np.dtype) -> None:
    """``f`` holds its .npy header and all n × k values (a copy cut short is named)."""
    if not f.is_file():
        raise BinaryRunError(f"{f}: missing")
    with f.open("rb") as fh:
        try:
            np.lib.format.read_magic(fh)
            np.lib.format.read_array_header_1_0(fh)
        except ValueError as e:
            raise BinaryRunError(f"{f}: not a .npy array ({e})") from None
        expected = fh.tell() + n * k * dtype.itemsize
    size = f.stat().st_size
    if size < expected:
        raise BinaryRunError(f"{f}: truncated ({size} bytes; its {n} x {k} {dtype.name} array "
                             f"with header needs {expected})")  # fmt: skip


class BinaryRun:
    """A complete binary run, read lazily (memory maps; nothing per row is held)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserFileNotFoundError(f"{self.path}: no such binary run")
        if not is_binary_run(self.path):
            raise BinaryRunError(f"{self.path}: not a binary run (no {META})")
        self.meta = json.loads((self.path / META).read_text())
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise BinaryRunError(f"{self.path}: {META} is not a version-{VERSION} {FORMAT}")
        self.n, self.k = int(self.meta["queries"]), int(self.meta["k"])
        if not (self.path / DONE).is_file():
            chunks = (
                np.fromfile(self.path / CHUNKS, np.uint8) if (self.path / CHUNKS).is_file() else []
            )
            raise BinaryRunError(
                f"{self.path}: incomplete binary run ({int(np.sum(chunks))} of "
                f"{math.ceil(self.n / int(self.meta['chunk_queries']))} chunks written); run "
                "the command that writes it again to finish it"
            )
        for name, dtype in ((ROWS, np.int32), (SCORES, np.float32)):
            _check_size(self.path / name, self.n, self.k, np.dtype(dtype))
        try:
            self.rows = np.load(self.path / ROWS, mmap_mode="r")
            self.scores = np.load(self.path / SCORES, mmap_mode="r")
        except ValueError as e:
            raise BinaryRunError(f"{self.path}: unreadable array ({e})") from None
        if self.rows.shape != (self.n, self.k) or self.scores.shape != (self.n, self.k):
            raise BinaryRunError(f"{self.path}: arrays {self.rows.shape} / {self.scores.shape} "
                                 f"do not match {META}'s {self.n} x {self.k}")  # fmt: skip
        self.qids = (self.path / QIDS).read_text(encoding="utf-8").splitlines()
        if len(self.qids) != self.n:
            raise BinaryRunError(f"{self.path / QIDS}: {len(self.qids)} ids, {META} says {self.n}")

    def __len__(self) -> int:
        return self.n

    def check_corpus(
        self, size: int, fingerprint: str | None = None, name: str = "the corpus"
    ) -> None:
        """Refuses a corpus other than the one searched (by size, and fingerprint if both
        know it), and any row number outside it."""
        m = self.meta
        if m.get("corpus_size") is not None and m["corpus_size"] != size:
            raise BinaryRunError(f"{self.path}: searched a corpus of {m['corpus_size']} passages, "
                                 f"{name} has {size}")  # fmt: skip
        if fingerprint and m.get("corpus_fingerprint") and m["corpus_fingerprint"] != fingerprint:
            raise BinaryRunError(f"{self.path}: searched another corpus than {name} (ids differ)")
        for start, rows, _ in self.chunks(65536):
            bad = np.flatnonzero(((rows < PAD) | (rows >= size)).any(1))
            if len(bad):
                q = start + int(bad[0])
                row = int(rows[bad[0]][(rows[bad[0]] < PAD) | (rows[bad[0]] >= size)][0])
                raise BinaryRunError(f"{self.path}: query {self.qids[q]!r} lists row {row}, "
                                     f"outside {name} ({size} passages)")  # fmt: skip

    def row(self, i: int, depth: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Query ``i``'s (corpus rows, scores), best first, padding dropped."""
        rows = np.asarray(self.rows[i, :depth])
        keep = rows != PAD
        return rows[keep], np.asarray(self.scores[i, :depth])[keep]

    def chunks(self, size: int = 4096, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:  # fmt: skip
        """(first query, rows [n, K], scores [n, K]) a block of queries at a time."""
        stop = self.n if stop is None else min(stop, self.n)
        for a in range(start, stop, size):
            b = min(stop, a + size)
            yield a, np.asarray(self.rows[a:b]), np.asarray(self.scores[a:b])

    def groups(self, depth: int | None = None) -> Iterator[tuple[str, list[int], list[float]]]:
        """(qid, rows, scores) per query in run order, as Python lists (one query at a time)."""
        for start, rows, scores in self.chunks():
            for j in range(len(rows)):
                r, s = rows[j, :depth], scores[j, :depth]
                keep = r != PAD
                yield self.qids[start + j], r[keep].tolist(), s[keep].tolist()


# ----------------------------------------------------------------------------- any run


def iter_run(
    path: str | Path | BinaryRun, pid_of_row: Callable[[np.ndarray], Sequence[str]] | None = None,
    depth: int | None = None,
) -> Iterator[tuple[str, list[tuple[str, float]]]]:  # fmt: skip
    """(qid, [(pid, score)] best first) per query of a text run (streamed) or a binary run
    (an opened one, or its dir; ``pid_of_row`` maps its row numbers to passage ids): what
    consumers of either read."""
    if isinstance(path, BinaryRun) or is_binary_run(path):
        if pid_of_row is None:
            raise UserInputError(f"{path} is a binary run: reading it needs its corpus")
        run = path if isinstance(path, BinaryRun) else BinaryRun(path)
        for qid, rows, scores in run.groups(depth):
            yield qid, list(zip(pid_of_row(np.asarray(rows, np.int64)), scores, strict=True))
        return
    from rqa_jax.data.formats import iter_run_groups

    yield from iter_run_groups(path, depth)


def pid_reader(path: str | Path, corpus: Any) -> Callable[[np.ndarray], Sequence[str]] | None:
    """For a binary run: checked against ``corpus`` (a :class:`~rqa_jax.data.store.CorpusStore`:
    size, id fingerprint, every row inside it), its row → pid map; None for a text run."""
    if not is_binary_run(path):
        return None
    BinaryRun(path).check_corpus(
        len(corpus), corpus.fingerprint(), f"the corpus store {corpus.dir}"
    )
    return corpus.pid_of_rows


def key_file(path: str | Path) -> Path:
    """The file whose size and mtime identify a run's content (a cache key): a text run
    itself, a binary run's ``done.json``."""
    return Path(path) / DONE if is_binary_run(path) else Path(path)


def read_run_top(
    path: str | Path | BinaryRun,
    depth: int,
    pid_of_row: Callable[[np.ndarray], Sequence[str]] | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """Every query's first ``depth`` candidates (a dev run's top for re-ranking or
    evaluation: memory is queries × depth, not the whole run)."""
    return dict(iter_run(path, pid_of_row, depth))


# ----------------------------------------------------------------------------- conversion


def text_to_binary(
    text_run: str | Path, out: str | Path, rows_of: Callable[[list[str]], np.ndarray],
    corpus_size: int, corpus_fingerprint: str | None = None, k: int | None = None,
    chunk_queries: int = 1024,
) -> int:  # fmt: skip
    """A TREC / RocketQA text run → a binary run over the corpus whose ``rows_of(pids)`` gives
    row numbers (a pid outside the corpus is an error naming it and the run). Two streamed
    passes: one for the query ids and the largest list, one to write. Returns Q."""
    from rqa_jax.data.formats import iter_run_groups

    qids, longest = [], 0
    for qid, ranked in iter_run_groups(text_run):
        qids.append(qid)
        longest = max(longest, len(ranked))
    if not qids:
        raise UserInputError(f"{text_run}: empty run")
    writer = BinaryRunWriter(
        out, qids, k or longest, chunk_queries, corpus_size, corpus_fingerprint
    )
    todo = set(writer.pending())
    groups = iter_run_groups(text_run, writer.k)
    for c in range(writer.n_chunks):
        span = writer.chunk_rows(c)
        block = [next(groups) for _ in span]
        if c not in todo:
            continue
        rows = np.full((len(span), writer.k), PAD, np.int64)
        scores = np.full((len(span), writer.k), np.nan, np.float32)
        for j, (qid, ranked) in enumerate(block):
            try:
                rows[j, : len(ranked)] = rows_of([p for p, _ in ranked])
            except MissingIdError as e:
                raise MissingIdError(f"{text_run}: query {qid!r}: {e}") from None
            scores[j, : len(ranked)] = [s for _, s in ranked]
        writer.write_chunk(c, rows, scores)
    writer.finish()
    return len(qids)


def binary_to_text(
    run: str | Path, out: str | Path, pid_of_row: Callable[[np.ndarray], Sequence[str]],
    fmt: str = "trec", tag: str = "rqa_jax",
) -> int:  # fmt: skip
    """A binary run → a TREC / RocketQA text run (streamed; written to ``out.partial`` then
    renamed, so a cut-off conversion never looks finished). Returns the lines written."""
    if fmt not in ("trec", "rocketqa"):
        raise UserInputError(f"run format must be 'trec' or 'rocketqa', got {fmt!r}")
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for qid, ranked in iter_run(run, pid_of_row):
            if fmt == "trec":
                f.writelines(
                    f"{qid} Q0 {p} {r} {s:.6f} {tag}\n" for r, (p, s) in enumerate(ranked, 1)
                )
            else:
                f.writelines(f"{qid}\t{p}\t{r}\t{s:.6f}\n" for r, (p, s) in enumerate(ranked, 1))
            n += len(ranked)
    os.replace(tmp, out)
    return n

"""Lazy random-access record stores: a large text file is converted once into a flat file
of msgpack records plus an offsets index, then read by index (``os.pread``: thread-safe, no
memory map) without ever holding the data set in memory.

Why not array_record (which TFDS builds): on this machine its random reads manage ~15k
records/s on a 2M-record store (each read pulls a whole riegeli block), where two ``pread``
calls per record manage ~300k/s; an input pipeline that draws negatives reads several
records per example.

A store lives in ``<cache_root>/<kind>-<key>/`` where ``key`` hashes the store kind, a
format version, the conversion parameters and each input file's absolute path, size and
mtime: converting the same file again reuses the store; a changed file gets a new one.
``meta.json`` is written last, into a ``.partial`` directory that is renamed into place,
so an interrupted conversion never looks complete.

* :class:`RecordStore`: ``len(store)``, ``store[i]``, ``store.__getitems__(rows)`` and
  iteration; memory use does not grow with the store.
* :class:`CorpusStore`: passages ``[pid, title, text]`` by row, plus a sorted pid index
  (``ids.npy``, memory-mapped) for :meth:`CorpusStore.rows_of`.

Records are whatever msgpack encodes (lists, dicts, str, int); the sources in
:mod:`rqa_jax.data.examples` turn them into example dicts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgpack  # a flax dependency
import numpy as np

from rqa_jax.errors import MissingIdError, UserInputError

FORMAT_VERSION = 2
RECORDS = "records.msgpack"  # the records, back to back
OFFSETS = "offsets.u64"  # n + 1 little-endian uint64: record i is bytes [off[i], off[i + 1])
META = "meta.json"


def file_key(path: str | Path) -> dict[str, Any]:
    """What identifies an input file's content cheaply: absolute path, size, mtime."""
    p = Path(path).absolute()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def store_dir(
    cache_root: str | Path, kind: str, files: Sequence[str | Path], params: dict[str, Any]
) -> Path:
    """The directory of the store of ``kind`` made from ``files`` with ``params``."""
    ident = {"kind": kind, "version": FORMAT_VERSION, "files": [file_key(f) for f in files],
             "params": params}  # fmt: skip
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_root) / f"{kind}-{key}"


def is_complete(directory: str | Path) -> bool:
    return (Path(directory) / META).is_file()


def write_records(directory: str | Path, records: Iterable[Any]) -> int:
    """Writes msgpack-encoded ``records`` and their offsets into ``directory``; returns
    their count. Streams: memory does not grow with the number of records."""
    directory = Path(directory)
    n, pos, offsets = 0, 0, [0]
    with (directory / RECORDS).open("wb", buffering=1 << 20) as data, \
            (directory / OFFSETS).open("wb", buffering=1 << 20) as index:  # fmt: skip
        for record in records:
            raw = msgpack.packb(record, use_bin_type=True)
            data.write(raw)
            pos += len(raw)
            offsets.append(pos)
            n += 1
            if len(offsets) >= 1 << 16:
                index.write(np.asarray(offsets, "<u8").tobytes())
                offsets = []
        index.write(np.asarray(offsets, "<u8").tobytes())
    return n


def ensure(
    cache_root: str | Path,
    kind: str,
    files: Sequence[str | Path],
    params: dict[str, Any],
    records: Callable[[], Iterable[Any]],
    finish: Callable[[Path], None] | None = None,
    progress: bool = True,
) -> Path:
    """The store's directory, converting ``records()`` into it first unless it is there.

    ``finish(tmp_dir)`` may add files (indexes) before the store is marked complete.
    Safe against a concurrent conversion of the same store: the first rename wins.
    """
    directory = store_dir(cache_root, kind, files, params)
    if is_complete(directory):
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        stream: Iterable[Any] = records()
        if progress:
            from tqdm import tqdm

            stream = tqdm(stream, desc=f"convert {kind}", unit="rec", mininterval=5)
        count = write_records(tmp, stream)
        if finish is not None:
            finish(tmp)
        meta = {"kind": kind, "version": FORMAT_VERSION, "count": count,
                "files": [file_key(f) for f in files], "params": params}  # fmt: skip
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if is_complete(directory):  # another process finished first
            shutil.rmtree(tmp)
        else:
            shutil.rmtree(directory, ignore_errors=True)  # an incomplete leftover
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


class RecordStore:
    """A converted store, read lazily: nothing but two file descriptors is held."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        if not is_complete(self.dir):
            raise FileNotFoundError(f"{self.dir} is not a complete record store (no {META})")
        self.meta = json.loads((self.dir / META).read_text())
        self._len = int(self.meta["count"])
        self._fds: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def _open(self) -> tuple[int, int]:
        if self._fds is None:
            with self._lock:
                if self._fds is None:
                    self._fds = (os.open(self.dir / RECORDS, os.O_RDONLY),
                                 os.open(self.dir / OFFSETS, os.O_RDONLY))  # fmt: skip
        return self._fds

    def __del__(self) -> None:
        fds, self._fds = getattr(self, "_fds", None), None
        for fd in fds or ():
            os.close(fd)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, row: int) -> Any:
        row = int(row)
        if not 0 <= row < self._len:
            raise IndexError(f"row {row} out of range for {self._len} records in {self.dir}")
        data, index = self._open()
        start, end = struct.unpack("<QQ", os.pread(index, 16, 8 * row))
        return msgpack.unpackb(os.pread(data, end - start, start), raw=False)

    def __getitems__(self, rows: Sequence[int]) -> list[Any]:
        return [self[r] for r in rows]

    def __iter__(self) -> Iterator[Any]:
        """In order, a block of records per read."""
        data, index = self._open()
        for first in range(0, self._len, 4096):
            n = min(4096, self._len - first)
            offsets = np.frombuffer(os.pread(index, 8 * (n + 1), 8 * first), "<u8").tolist()
            block = os.pread(data, offsets[-1] - offsets[0], offsets[0])
            base = offsets[0]
            for a, b in itertools.pairwise(offsets):
                yield msgpack.unpackb(block[a - base : b - base], raw=False)

    def __getstate__(self) -> dict[str, Any]:  # picklable for worker processes
        return {k: v for k, v in self.__dict__.items() if k not in ("_fds", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _fds=None, _lock=threading.Lock())


IDS = "ids.npy"  # pids (utf-8 bytes), sorted
ORDER = "order.npy"  # order[i]: the row of ids[i]


def corpus_finish(pids: list[np.ndarray]) -> Callable[[Path], None]:
    """A ``finish`` hook writing the sorted pid index from the pid chunks collected while
    the corpus records streamed by (see :func:`corpus_records`)."""

    def finish(tmp: Path) -> None:
        ids = np.concatenate(pids) if pids else np.array([], dtype="S1")
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if len(ids) > 1:
            dup = np.flatnonzero(ids[1:] == ids[:-1])
            if len(dup):
                raise UserInputError(f"duplicate passage id {ids[dup[0]].decode()!r} in the corpus")
        np.save(tmp / IDS, ids)
        np.save(tmp / ORDER, order.astype(np.int64))

    return finish


def corpus_records(
    passages: Iterable[tuple[str, str | None, str]], pids: list[np.ndarray], chunk: int = 1 << 20
) -> Iterator[list[str]]:
    """``[pid, title or '', text]`` records; their pids are appended to ``pids`` in numpy
    chunks (bytes), far smaller than a list of Python strings."""
    buf: list[bytes] = []
    for pid, title, text in passages:
        buf.append(pid.encode("utf-8"))
        if len(buf) == chunk:
            pids.append(np.array(buf))
            buf = []
        yield [pid, title or "", text]
    if buf:
        pids.append(np.array(buf))


def ensure_corpus(
    cache_root: str | Path,
    files: Sequence[str | Path],
    passages: Callable[[], Iterable[tuple[str, str | None, str]]],
    params: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """:func:`ensure` for a corpus store of ``(pid, title, text)`` passages."""
    pids: list[np.ndarray] = []

    def records() -> Iterator[list[str]]:
        pids.clear()
        return corpus_records(passages(), pids)

    return ensure(cache_root, "corpus", files, params or {}, records, corpus_finish(pids), progress)


class CorpusStore(RecordStore):
    """Passages by row (``[pid, title, text]``) and rows by pid."""

    def __init__(self, directory: str | Path) -> None:
        super().__init__(directory)
        self._ids = np.load(self.dir / IDS, mmap_mode="r")
        self._order = np.load(self.dir / ORDER, mmap_mode="r")

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_ids": None, "_order": None, "_by_row": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._ids = np.load(self.dir / IDS, mmap_mode="r")
        self._order = np.load(self.dir / ORDER, mmap_mode="r")

    def _lookup(self, pids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the sorted pid index, found) of ``pids``."""
        want = np.array([p.encode("utf-8") for p in pids])
        pos = np.searchsorted(self._ids, want)
        found = pos < len(self._ids)
        found[found] = self._ids[pos[found]] == want[found]
        return pos, found

    def rows_of(self, pids: Sequence[str]) -> np.ndarray:
        """The rows of ``pids``; a pid not in the corpus is a KeyError naming it."""
        if not len(pids):
            return np.zeros(0, np.int64)
        pos, found = self._lookup(pids)
        if not found.all():
            missing = [p for p, f in zip(pids, found, strict=True) if not f]
            raise MissingIdError(
                f"passage id {missing[0]!r} is not in the corpus ({len(missing)} missing)"
            )
        return np.asarray(self._order[pos], np.int64)

    def __contains__(self, pid: object) -> bool:
        return isinstance(pid, str) and len(self) > 0 and bool(self._lookup([pid])[1][0])

    def passages(self, rows: Sequence[int]) -> list[dict[str, str]]:
        """``{"id", "title", "text"}`` of ``rows``."""
        return [{"id": p, "title": t, "text": x} for p, t, x in self.__getitems__(rows)]

    def pids_by_row(self) -> np.ndarray:
        """Every pid in row order (utf-8 bytes): one numpy array, built once on first use."""
        if getattr(self, "_by_row", None) is None:
            by_row = np.empty_like(self._ids)
            by_row[np.asarray(self._order)] = self._ids
            self._by_row = by_row
        return self._by_row

    def pid_of_rows(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The pids of corpus rows (a row outside the corpus is an IndexError naming it)."""
        rows = np.asarray(rows, np.int64)
        bad = rows[(rows < 0) | (rows >= len(self))]
        if len(bad):
            raise IndexError(f"row {int(bad[0])} is outside the corpus of {len(self)} passages")
        return [p.decode("utf-8") for p in self.pids_by_row()[rows]]

    def fingerprint(self) -> str:
        """sha256 of the pids in row order: equal to the fingerprint an index built over this
        corpus records (:func:`rqa_jax.index.search.corpus_fingerprint`)."""
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256()
            by_row = self.pids_by_row()
            for start in range(0, len(by_row), 1 << 20):
                h.update(b"".join(p + b"\n" for p in by_row[start : start + (1 << 20)].tolist()))
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def texts(self, rows: Sequence[int]) -> list[tuple[str | None, str]]:
        """(title or None, text) of each row."""
        return [(t or None, x) for _, t, x in self.__getitems__(rows)]


class CorpusMap(Mapping[str, tuple[str | None, str]]):
    """A corpus store seen as ``pid -> (title or None, text)``, what the id-based steps of
    :mod:`rqa_jax.data.lists` take, without a Python object per passage: each lookup reads
    one record; iteration goes in row order."""

    def __init__(self, corpus: CorpusStore) -> None:
        self.store = corpus

    def __getitem__(self, pid: str) -> tuple[str | None, str]:
        try:
            row = int(self.store.rows_of([pid])[0])
        except MissingIdError:
            raise KeyError(pid) from None
        return self.store.texts([row])[0]

    def __contains__(self, pid: object) -> bool:
        return pid in self.store

    def __iter__(self) -> Iterator[str]:
        by_row = self.store.pids_by_row()
        for start in range(0, len(by_row), 65536):
            yield from (p.decode("utf-8") for p in by_row[start : start + 65536].tolist())

    def __len__(self) -> int:
        return len(self.store)

"""Encode a TSV of queries or passages to embeddings + ids, streaming, resumable, sharded.

The input is read as a stream: once to validate every line and count rows (a bad line
fails before any compute, naming file:line), then to encode in chunks. Embeddings go into a
memory-mapped ``.npy`` sized from the count, so memory holds one chunk, never the corpus.

One output dir holds ``embeddings.npy`` (row i = line i), ``ids.txt`` and ``meta.json``.
With ``shard_size`` the corpus is cut into shards of that many lines, each such a dir
(``shard-00000/``, …) plus ``shards.json`` listing them: processes of a multi-host job take
shards round-robin, and a re-run skips finished shards.

Files are written under ``*.partial`` names and renamed only when complete: an interrupted
or failed run never leaves files that look finished. After every chunk the rows done are
recorded (``progress.json``); running the same job again (same input, model, settings)
continues after the last recorded chunk.
"""

from __future__ import annotations

import array
import dataclasses
import itertools
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rqa_jax.data.formats import (
    FormatError,
    TextRecord,
    iter_id_text,
    iter_id_text_lines,
    line_offsets,
    read_titles,
    title_or_none,
)
from rqa_jax.errors import UserInputError
from rqa_jax.inference import DualEncoder

KINDS = ("query", "passage")
STORAGE_DTYPES = ("float32", "float16")
EMBEDDINGS, IDS, META = "embeddings.npy", "ids.txt", "meta.json"
PROGRESS = "progress.json"  # rows done by an unfinished run, for resuming
SHARDS = "shards.json"


def count_valid_lines(path: str | Path, kind: str, fmt: str) -> int:
    """Validates the whole file and counts rows: a FormatError names the first bad line, or
    an id that occurs twice with both its lines (``rqa index`` and runs need unique ids).

    Ids are checked by 64-bit hash (8 bytes a row, not a dict of every id: a 21M-passage
    corpus stays in memory); only on a repeated hash is the file read again for the ids."""
    allow_title = kind == "passage"
    hashes = array.array("q")
    for _, rec in iter_id_text_lines(path, allow_title=allow_title, fmt=fmt):
        hashes.append(hash(rec.id))
    if len(hashes) > 1:
        ordered = np.sort(np.frombuffer(hashes, dtype=np.int64))
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if len(repeated):
            _raise_duplicate_id(path, allow_title, fmt, set(repeated.tolist()))
    return len(hashes)


def _raise_duplicate_id(path: str | Path, allow_title: bool, fmt: str, hashes: set[int]) -> None:
    """Finds the first id whose line repeats an earlier id (among ids with these hashes)."""
    first: dict[str, int] = {}
    for line_no, rec in iter_id_text_lines(path, allow_title=allow_title, fmt=fmt):
        if hash(rec.id) not in hashes:
            continue
        if rec.id in first:
            raise FormatError(
                path, line_no, f"duplicate id {rec.id!r} (first on line {first[rec.id]}): "
                "ids must be unique"
            )  # fmt: skip
        first[rec.id] = line_no


def _chunks(records: Iterator[TextRecord], size: int) -> Iterator[list[TextRecord]]:
    while chunk := list(itertools.islice(records, size)):
        yield chunk


def encode_file(
    model: DualEncoder,
    kind: str,
    input_path: str | Path,
    output_dir: str | Path,
    fmt: str = "id_text_title",
    chunk_size: int = 8192,
    progress: bool = True,
    model_name: str = "",
    n_rows: int | None = None,
    model_fingerprint: str = "",
    storage_dtype: str = "float32",
    start: tuple[int, int] = (0, 1),
    titles: str | Path | None = None,
    _title_map: Mapping[str, str] | None = None,
) -> int:
    """Encodes the rows of ``input_path`` (``n_rows`` of them from ``start`` = (byte offset,
    line), default: all, validated here); returns the row count. Row i of the embeddings is
    row i read; ``ids.txt`` holds the ids in the same order. A finished identical job is
    skipped; an interrupted one is continued.

    ``titles``: a ``pid \\t title`` file (passages only) whose titles replace the input's
    third column where both give one, as training reads titles; they are encoded in the
    model's title form (``-`` / empty: no title, except verbatim in ``rocketqa_literal``)."""
    if kind not in KINDS:
        raise UserInputError(f"kind must be one of {KINDS}, got {kind!r}")
    if titles is not None and kind != "passage":
        raise UserInputError("titles apply to passages, not to queries")
    if storage_dtype not in STORAGE_DTYPES:
        raise UserInputError(
            f"storage dtype must be one of {STORAGE_DTYPES}, got {storage_dtype!r}"
        )
    n = count_valid_lines(input_path, kind, fmt) if n_rows is None else n_rows
    if n == 0:
        raise UserInputError(f"{input_path}: no rows to encode (the file is empty)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = [out / EMBEDDINGS, out / IDS, out / META]
    partial = [p.with_name(p.name + ".partial") for p in final]
    job = _job(
        input_path, kind, fmt, n, start, storage_dtype, model.dim, model_fingerprint, model.settings
    )
    if titles is not None:  # only then: jobs without titles keep their identity
        st = Path(titles).stat()
        job["titles"] = {"path": str(Path(titles).absolute()), "size": st.st_size,
                         "mtime_ns": st.st_mtime_ns}  # fmt: skip
    if all(p.is_file() for p in final) and json.loads(final[2].read_text()).get("job") == job:
        return n  # this exact job finished before
    done = _resumable_rows(out, partial, job)
    if done:
        emb = np.lib.format.open_memmap(partial[0], mode="r+")
        _keep_first_lines(partial[1], done)
    else:
        emb = np.lib.format.open_memmap(
            partial[0], mode="w+", dtype=np.dtype(storage_dtype), shape=(n, model.dim)
        )
        partial[1].write_text("")
    # The original's literal titles: '-' and '' differ there, so the file's titles go verbatim.
    raw_titles = model.settings.title_form == "rocketqa_literal"
    records = iter_id_text(input_path, allow_title=kind == "passage", fmt=fmt, start=start,
                           raw_titles=raw_titles)  # fmt: skip
    records = itertools.islice(records, done, n)
    if titles is not None:
        title_map = read_titles(titles, raw=True) if _title_map is None else _title_map
        records = (_with_title(r, title_map, raw_titles) for r in records)
    row = done
    with (
        partial[1].open("a", encoding="utf-8") as ids_file,
        tqdm(
            total=n, initial=done, unit=kind[0], desc=f"encode {kind}", disable=not progress
        ) as bar,
    ):
        for chunk in _chunks(records, chunk_size):
            texts = [r.text for r in chunk]
            if kind == "query":
                vecs = model.encode_query(texts)
            else:
                vecs = model.encode_para(texts, [r.title for r in chunk])
            emb[row : row + len(chunk)] = vecs
            ids_file.write("".join(r.id + "\n" for r in chunk))
            row += len(chunk)
            # Rows and ids on disk first, then the count that vouches for them.
            emb.flush()
            ids_file.flush()
            os.fsync(ids_file.fileno())
            _write_json(out / PROGRESS, job | {"done": row})
            bar.update(len(chunk))
    del emb
    if row != n:
        raise UserInputError(
            f"{input_path}: {row} rows encoded but {n} were counted; the file changed while encoding?"
        )
    s = model.settings
    meta = {
        "model": model_name,
        "model_fingerprint": model_fingerprint,
        "kind": kind,
        "count": n,
        "dim": model.dim,
        "dtype": storage_dtype,
        "pooling": s.pooling,
        "normalize": s.normalize,
        "max_length": s.q_max_len if kind == "query" else s.p_max_len,
        "input": str(input_path),
        "job": job,
    }
    partial[2].write_text(json.dumps(meta, indent=2) + "\n")
    for src, dst in zip(partial, final, strict=True):
        os.replace(src, dst)
    (out / PROGRESS).unlink(missing_ok=True)
    return n


def _with_title(rec: TextRecord, title_map: Mapping[str, str], raw: bool) -> TextRecord:
    """``rec`` with its title from ``title_map`` (verbatim titles) when that has one."""
    if rec.id not in title_map:
        return rec
    title = title_map[rec.id]
    return dataclasses.replace(rec, title=title if raw else title_or_none(title))


def encode_sharded(
    model: DualEncoder,
    kind: str,
    input_path: str | Path,
    output_dir: str | Path,
    shard_size: int,
    process_index: int = 0,
    process_count: int = 1,
    **kwargs,
) -> list[Path]:
    """Encodes shards ``process_index``, ``process_index + process_count``, … of
    ``shard_size`` lines each into ``output_dir/shard-NNNNN``; returns the shard dirs this
    process wrote. Process 0 writes ``shards.json`` once every shard is complete (run it
    again, or call :func:`finalize_shards`, after the other processes finish)."""
    if shard_size < 1:
        raise UserInputError(f"shard_size must be positive, got {shard_size}")
    if kwargs.get("titles") is not None:  # read once, for every shard
        kwargs["_title_map"] = read_titles(kwargs["titles"], raw=True)
    n = count_valid_lines(input_path, kind, kwargs.get("fmt", "id_text_title"))
    if n == 0:
        raise UserInputError(f"{input_path}: no rows to encode (the file is empty)")
    starts = line_offsets(input_path, shard_size)
    out = Path(output_dir)
    mine = []
    for s in range(process_index, -(-n // shard_size), process_count):
        rows = min(shard_size, n - s * shard_size)
        shard = out / f"shard-{s:05d}"
        encode_file(model, kind, input_path, shard, n_rows=rows, start=starts[s], **kwargs)
        mine.append(shard)
    if process_index == 0:
        finalize_shards(out, n, shard_size)
    return mine


def finalize_shards(output_dir: str | Path, n: int, shard_size: int) -> bool:
    """Writes ``shards.json`` if every shard is complete; returns whether it did."""
    out = Path(output_dir)
    names = [f"shard-{s:05d}" for s in range(-(-n // shard_size))]
    if not all((out / name / META).is_file() for name in names):
        return False
    _write_json(out / SHARDS, {"count": n, "shard_size": shard_size, "shards": names})
    return True


def _job(input_path, kind, fmt, n, start, storage_dtype, dim, model_fingerprint, settings) -> dict:
    """What must be unchanged for a half-done (or finished) encoding to be reused."""
    st = Path(input_path).stat()
    return {"input": str(Path(input_path).absolute()), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns,
            "kind": kind, "format": fmt, "rows": n, "start": list(start), "storage_dtype": storage_dtype,
            "dim": dim, "model_fingerprint": model_fingerprint, "settings": dataclasses.asdict(settings)}  # fmt: skip


def _resumable_rows(out: Path, partial: list[Path], job: dict) -> int:
    """Rows already encoded by an interrupted run of the same job (0: start afresh)."""
    progress = out / PROGRESS
    if not (progress.is_file() and partial[0].is_file() and partial[1].is_file()):
        return 0
    try:
        state = json.loads(progress.read_text())
    except json.JSONDecodeError:
        return 0
    done = state.pop("done", 0)
    if state != job:
        return 0
    print(f"encode: resuming {out} after {done} of {job['rows']} rows")
    return int(done)


def _keep_first_lines(path: Path, n: int) -> None:
    """Truncates ``path`` after its first ``n`` lines (ids beyond the last vouched chunk)."""
    with path.open("rb+") as f:
        for _ in range(n):
            if not f.readline():
                raise UserInputError(
                    f"{path}: fewer than {n} ids; delete the .partial files to start again"
                )
        f.truncate()


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)

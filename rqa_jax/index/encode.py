"""Encode a TSV of queries or passages to ``embeddings.npy`` + ``ids.txt``, streaming.

The input is read twice as a stream: once to validate every line and count rows (so a bad
line fails before any compute, naming file:line), once to encode in chunks. Embeddings go
into a memory-mapped ``.npy`` sized from the count, so memory holds one chunk, never the
corpus. Outputs are written under ``*.partial`` names and renamed only when complete:
an interrupted or failed run never leaves files that look finished. After every chunk the
rows done are recorded (``progress.json``); running the same job again (same input file,
model and settings) continues after the last recorded chunk.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rqa_jax.api import DualEncoder
from rqa_jax.data.formats import TextRecord, iter_id_text

KINDS = ("query", "passage")
EMBEDDINGS, IDS, META = "embeddings.npy", "ids.txt", "meta.json"
PROGRESS = "progress.json"  # rows done by an unfinished run, for resuming


def count_valid_lines(path: str | Path, kind: str, fmt: str) -> int:
    """Validates the whole file (raising FormatError on the first bad line) and counts rows."""
    return sum(1 for _ in iter_id_text(path, allow_title=kind == "passage", fmt=fmt))


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
) -> int:
    """Encodes every row of ``input_path``; returns the row count. Row i of the embeddings is
    line i of the input; ``ids.txt`` holds the ids in the same order. ``n_rows``: the count
    from an earlier :func:`count_valid_lines` of the same file (skips a second validation)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    n = count_valid_lines(input_path, kind, fmt) if n_rows is None else n_rows
    if n == 0:
        raise ValueError(f"{input_path}: no rows to encode (the file is empty)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = [out / EMBEDDINGS, out / IDS, out / META]
    partial = [p.with_name(p.name + ".partial") for p in final]
    job = _job(input_path, kind, fmt, n, model.dim, model_fingerprint, model.settings)
    done = _resumable_rows(out, partial, job)
    if done:
        emb = np.lib.format.open_memmap(partial[0], mode="r+")
        _keep_first_lines(partial[1], done)
    else:
        emb = np.lib.format.open_memmap(
            partial[0], mode="w+", dtype=np.float32, shape=(n, model.dim)
        )
        partial[1].write_text("")
    records = itertools.islice(
        iter_id_text(input_path, allow_title=kind == "passage", fmt=fmt), done, None
    )
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
        raise ValueError(
            f"{input_path}: {row} rows encoded but {n} were counted; the file changed while encoding?"
        )
    s = model.settings
    meta = {
        "model": model_name,
        "model_fingerprint": model_fingerprint,
        "kind": kind,
        "count": n,
        "dim": model.dim,
        "dtype": "float32",
        "pooling": s.pooling,
        "normalize": s.normalize,
        "max_length": s.q_max_len if kind == "query" else s.p_max_len,
        "input": str(input_path),
    }
    partial[2].write_text(json.dumps(meta, indent=2) + "\n")
    for src, dst in zip(partial, final, strict=True):
        os.replace(src, dst)
    (out / PROGRESS).unlink(missing_ok=True)
    return n


def _job(input_path, kind, fmt, n, dim, model_fingerprint, settings) -> dict:
    """What must be unchanged for a half-done encoding to be continued."""
    st = Path(input_path).stat()
    return {"input": str(Path(input_path).absolute()), "input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns,
            "kind": kind, "format": fmt, "rows": n, "dim": dim, "model_fingerprint": model_fingerprint,
            "settings": dataclasses.asdict(settings)}  # fmt: skip


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
                raise ValueError(
                    f"{path}: fewer than {n} ids; delete the .partial files to start again"
                )
        f.truncate()


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)

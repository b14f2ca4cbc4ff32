"""Encode a TSV of queries or passages to ``embeddings.npy`` + ``ids.txt``, streaming.

The input is read twice as a stream: once to validate every line and count rows (so a bad
line fails before any compute, naming file:line), once to encode in chunks. Embeddings go
into a memory-mapped ``.npy`` sized from the count, so memory holds one chunk, never the
corpus. Outputs are written under ``*.partial`` names and renamed only when complete:
an interrupted or failed run never leaves files that look finished.
"""

from __future__ import annotations

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
    try:
        emb = np.lib.format.open_memmap(
            partial[0], mode="w+", dtype=np.float32, shape=(n, model.dim)
        )
        records = iter_id_text(input_path, allow_title=kind == "passage", fmt=fmt)
        row = 0
        with (
            partial[1].open("w", encoding="utf-8") as ids_file,
            tqdm(total=n, unit=kind[0], desc=f"encode {kind}", disable=not progress) as bar,
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
                bar.update(len(chunk))
        emb.flush()
        del emb
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
    except BaseException:
        for p in partial:
            p.unlink(missing_ok=True)
        raise
    return n

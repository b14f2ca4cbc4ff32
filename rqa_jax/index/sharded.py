"""A sharded index: the corpus split into contiguous blocks of rows, one index each, searched
in turn and their top-k merged. For a corpus whose vectors do not fit one host at once
(8.8M × 768 float32 is 27 GB): each shard is built from a memory-mapped slice of the
embeddings, and a search holds one shard's index at a time when ``in_memory`` is off.

``shards.json`` lists the shards (dir, first row, rows); each shard dir is an ordinary
index (:class:`rqa_jax.index.search.Index`) over its rows. Search returns the same
(scores, corpus rows) as one index over the whole corpus: every shard gives its own exact
top k (the best k of the corpus are among the union), then the union is cut to k by score,
ties going to the lower row as in :class:`~rqa_jax.index.search.ExactIndex`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.errors import UserInputError
from rqa_jax.index import search as S

SHARDS = "shards.json"


def is_sharded(index_dir: str | Path) -> bool:
    return (Path(index_dir) / SHARDS).is_file()


def _embeddings_mmap(embeddings_dir: Path) -> tuple[np.ndarray, Path, dict[str, Any]]:
    """One ``rqa encode`` output dir's embeddings, memory-mapped (never copied whole)."""
    if (embeddings_dir / "shards.json").is_file():
        raise UserInputError(f"{embeddings_dir}: a sharded encoding; index each of its shard dirs, or "
                             "encode into one dir for --shard-rows")  # fmt: skip
    emb_file, ids_file = embeddings_dir / "embeddings.npy", embeddings_dir / "ids.txt"
    for f in (emb_file, ids_file):
        if not f.is_file():
            raise FileNotFoundError(
                f"{embeddings_dir}: no {f.name} (expected the output dir of `rqa encode`)"
            )
    meta_file = embeddings_dir / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return np.load(emb_file, mmap_mode="r"), ids_file, meta


def build_sharded(embeddings_dir: str | Path, out_dir: str | Path, shard_rows: int, backend: str = "scann",
                  progress: bool = True, **params: Any) -> dict[str, Any]:  # fmt: skip
    """Builds and saves one index per ``shard_rows`` rows of the embeddings (resumable: a
    shard whose index is saved is kept); returns the sharded index's metadata."""
    from tqdm import tqdm

    if shard_rows < 1:
        raise UserInputError(f"shard rows must be at least 1, got {shard_rows}")
    src, out = Path(embeddings_dir), Path(out_dir)
    emb, ids_file, enc_meta = _embeddings_mmap(src)
    n = emb.shape[0]
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    with ids_file.open(encoding="utf-8") as ids_in:
        for start in tqdm(
            range(0, n, shard_rows), unit="shard", desc="index shards", disable=not progress
        ):
            rows = min(shard_rows, n - start)
            ids = [next(ids_in).rstrip("\n") for _ in range(rows)]
            name = f"shard-{len(shards):05d}"
            done = out / name / S.META
            fingerprint = S.corpus_fingerprint(ids)
            if (
                not done.is_file()
                or json.loads(done.read_text()).get("corpus_fingerprint") != fingerprint
            ):
                meta = {"backend": backend, "count": rows, "dim": int(emb.shape[1]),
                        "corpus_fingerprint": fingerprint,
                        **{k: enc_meta.get(k) for k in ("model", "model_fingerprint", "pooling", "normalize",
                                                         "max_length")}}  # fmt: skip
                block = np.asarray(emb[start : start + rows], np.float32)
                if backend == "exact":
                    part = S.Index(S.ExactIndex(block), ids, meta)
                else:
                    meta["params"] = S.default_scann_params(rows) | params
                    part = S.Index(S.ScannIndex.build(block, meta["params"]), ids, meta)
                part.save(out / name)
            shards.append({"dir": name, "start": start, "rows": rows})
    with ids_file.open(encoding="utf-8") as f:
        fingerprint = S.corpus_fingerprint(line.rstrip("\n") for line in f)
    meta = {"backend": backend, "count": n, "dim": int(emb.shape[1]), "corpus_fingerprint": fingerprint,
            "shards": shards, **{k: enc_meta.get(k) for k in ("model", "model_fingerprint", "pooling",
                                                              "normalize", "max_length")}}  # fmt: skip
    (out / SHARDS).write_text(json.dumps(meta, indent=2) + "\n")  # last: marks it complete
    return meta


class ShardedIndex:
    """The shards of a sharded index dir, searched in turn; ``backend_index`` is itself, so
    it stands wherever an :class:`~rqa_jax.index.search.Index`'s backend search is used."""

    def __init__(self, index_dir: str | Path, in_memory: bool = True) -> None:
        self.dir = Path(index_dir)
        if not is_sharded(self.dir):
            raise FileNotFoundError(
                f"{self.dir}: no {SHARDS} (not a sharded index, or its build did not finish)"
            )
        self.meta = json.loads((self.dir / SHARDS).read_text())
        self.in_memory = in_memory
        self._loaded: dict[str, Any] = {}
        self._ids: dict[str, list[str]] = {}
        self.backend_index = self

    def __len__(self) -> int:
        return int(self.meta["count"])

    def _shard(self, name: str) -> Any:
        if name in self._loaded:
            return self._loaded[name]
        d = self.dir / name
        meta = json.loads((d / S.META).read_text())
        loader = S.ExactIndex if meta["backend"] == "exact" else S.ScannIndex
        shard = loader.load(d, meta.get("params", {}) | {"count": meta["count"]})
        if self.in_memory:
            self._loaded[name] = shard
        return shard

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, H] → (scores [Q, k], corpus rows [Q, k]), best first, as one index over
        every shard's rows would return them."""
        k = S._check_k(k, len(self))
        best_s = np.full((len(queries), 0), -np.inf, np.float32)
        best_i = np.zeros((len(queries), 0), np.int64)
        for shard in self.meta["shards"]:
            scores, rows = self._shard(shard["dir"]).search(queries, min(k, shard["rows"]))
            cand_s = np.concatenate([best_s, scores], axis=1)
            cand_i = np.concatenate([best_i, rows + shard["start"]], axis=1)
            # best score first, the lower row first among equal scores (lexsort: last key first)
            order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
            best_s = np.take_along_axis(cand_s, order, 1)
            best_i = np.take_along_axis(cand_i, order, 1)
        return best_s, best_i

    def ids_of(self, rows: np.ndarray) -> list[str]:
        """Passage ids of corpus rows (each shard's ids.txt read on first use)."""
        starts = np.array([s["start"] for s in self.meta["shards"]])
        out = []
        for r in np.asarray(rows).ravel().tolist():
            shard = self.meta["shards"][int(np.searchsorted(starts, r, side="right")) - 1]
            if shard["dir"] not in self._ids:
                path = self.dir / shard["dir"] / "ids.txt"
                self._ids[shard["dir"]] = path.read_text(encoding="utf-8").splitlines()
            out.append(self._ids[shard["dir"]][r - shard["start"]])
        return out

    def search_ids(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """[Q, H] → per query [(pid, score)] best first (what Index.search returns)."""
        scores, rows = self.search(queries, k)
        return [
            list(zip(self.ids_of(r), s.tolist(), strict=True))
            for r, s in zip(rows, scores, strict=True)
        ]


def load_index(index_dir: str | Path, dim: int | None = None, model_fingerprint: str | None = None,
               corpus_ids: list[str] | None = None) -> Any:  # fmt: skip
    """An index dir as `rqa index` wrote it: one index, or a sharded one (same checks:
    dimension, model, corpus)."""
    if not is_sharded(index_dir):
        return S.Index.load(index_dir, dim, model_fingerprint, corpus_ids)
    index = ShardedIndex(index_dir)
    m, d = index.meta, Path(index_dir)
    if dim is not None and m["dim"] != dim:
        raise S.IndexMismatchError(
            f"{d}: index vectors have dimension {m['dim']}, the model gives {dim}"
        )
    if (
        model_fingerprint
        and m.get("model_fingerprint")
        and m["model_fingerprint"] != model_fingerprint
    ):
        raise S.IndexMismatchError(f"{d}: index was built with embeddings of another model ({m.get('model')}); "
                                   "re-encode the corpus with this model and rebuild the index")  # fmt: skip
    if corpus_ids is not None and S.corpus_fingerprint(corpus_ids) != m["corpus_fingerprint"]:
        raise S.IndexMismatchError(
            f"{d}: index covers another corpus (ids differ from the given corpus file)"
        )
    return index

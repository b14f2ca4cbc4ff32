"""Retrieval indexes behind one interface: build, save, load, search(queries, k).

* ``exact``: blocked inner products in numpy with a running top-k merge (memory bounded by
  one block of scores), the reference.
* ``scann``: ScaNN's tree (about √N leaves) + anisotropic hashing + exact reordering,
  near-exact recall at a fraction of the cost.

An index dir holds ``index.json`` (backend, parameters, the model and its fingerprint,
pooling, dimension, corpus size and a fingerprint of the corpus ids) beside the backend's
files and ``ids.txt``. Loading checks what the caller expects (model, dimension, corpus) and
refuses a mismatch with a message that says which.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.errors import UserInputError

BACKENDS = ("exact", "scann")
META = "index.json"


class IndexMismatchError(UserInputError):
    """An index was built for another model, dimension or corpus than the caller's."""


def corpus_fingerprint(ids: Iterable[str]) -> str:
    """sha256 of the ordered corpus ids: same ids in the same order, same fingerprint."""
    h = hashlib.sha256()
    for pid in ids:
        h.update(pid.encode("utf-8") + b"\n")
    return h.hexdigest()


def read_embeddings(embeddings_dir: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Embeddings (as float32), ids and metadata written by ``rqa encode``: one dir, or a
    sharded dir (``shards.json`` + ``shard-NNNNN/``) concatenated in shard order."""
    d = Path(embeddings_dir)
    if (d / "shards.json").is_file():
        parts = [
            read_embeddings(d / name)
            for name in json.loads((d / "shards.json").read_text())["shards"]
        ]
        ids = [i for _, part_ids, _ in parts for i in part_ids]
        _check_unique(d, ids)
        return np.concatenate([e for e, _, _ in parts]), ids, parts[0][2]
    for name in ("embeddings.npy", "ids.txt"):
        if not (d / name).is_file():
            hint = (
                " (a sharded encoding is not finished: no shards.json)"
                if list(d.glob("shard-*"))
                else ""
            )
            raise FileNotFoundError(
                f"{d}: no {name} (expected the output dir of `rqa encode`){hint}"
            )
    emb = np.load(d / "embeddings.npy", mmap_mode="r")
    ids = (d / "ids.txt").read_text(encoding="utf-8").splitlines()
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise UserInputError(
            f"{d}: embeddings.npy has {emb.shape[0]} rows but ids.txt has {len(ids)} ids"
        )
    _check_unique(d, ids)
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").is_file() else {}
    return np.asarray(emb, np.float32), ids, meta


def _check_unique(d: Path, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise UserInputError(f"{d}: id {dup!r} occurs more than once; passage ids must be unique")


def _check_k(k: int, n: int) -> int:
    if k < 1:
        raise UserInputError(f"k must be at least 1, got {k}")
    return min(k, n)  # documented: k larger than the corpus returns the whole corpus, ranked


def _valid_row(scores: np.ndarray, rows: np.ndarray, k: int, n: int) -> bool:
    """k finite scores on k distinct rows in [0, n): what every search must return."""
    return (
        len(rows) == k
        and bool(np.all(np.isfinite(scores)))
        and bool(np.all((rows >= 0) & (rows < n)))
        and len(np.unique(rows)) == k
    )


class ExactIndex:
    """Exact maximum inner product search."""

    backend = "exact"

    def __init__(self, embeddings: np.ndarray, block_rows: int = 65536) -> None:
        self.embeddings = np.ascontiguousarray(embeddings, np.float32)
        self.block_rows = block_rows

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, H] → (scores [Q, k], row indices [Q, k]), best first."""
        k = _check_k(k, len(self))
        best_s = np.full((queries.shape[0], 0), -np.inf, np.float32)
        best_i = np.zeros((queries.shape[0], 0), np.int64)
        for start in range(0, len(self), self.block_rows):
            block = queries @ self.embeddings[start : start + self.block_rows].T
            cand_s = np.concatenate([best_s, block], axis=1)
            cand_i = np.concatenate(
                [best_i, np.arange(start, start + block.shape[1])[None].repeat(len(queries), 0)],
                axis=1,
            )
            top = (
                np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
                if cand_s.shape[1] > k
                else np.argsort(-cand_s, axis=1)
            )
            best_s = np.take_along_axis(cand_s, top, axis=1)
            best_i = np.take_along_axis(cand_i, top, axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)

    def save(self, out: Path) -> None:
        np.save(out / "embeddings.npy", self.embeddings)

    @classmethod
    def load(cls, d: Path, params: dict[str, Any]) -> ExactIndex:
        return cls(np.load(d / "embeddings.npy"))


def default_scann_params(n: int) -> dict[str, Any]:
    """About √N leaves; search enough of them to visit max(10% of N, 20,000) points (all of a
    small corpus: partitioning only pays on large ones); 2-d AH blocks; the best
    max(reorder, reorder_per_k · k) hashing candidates re-scored exactly (see
    :meth:`ScannIndex.search`)."""
    leaves = max(1, round(math.sqrt(n)))
    fraction = max(0.1, min(1.0, 20_000 / max(n, 1)))
    return {
        "num_leaves": leaves,
        "num_leaves_to_search": min(leaves, max(1, math.ceil(leaves * fraction))),
        "training_sample_size": min(n, 250_000),
        "dims_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
        "reorder": 100,
        "reorder_per_k": 4,
    }


def _uses_tree(n: int, params: dict[str, Any]) -> bool:
    """Partitioning only for a corpus with at least 2 points per leaf (and > 1 leaf)."""
    return n >= 2 * params["num_leaves"] and params["num_leaves"] > 1


class ScannIndex:
    """ScaNN tree + asymmetric hashing + exact reordering (dot product).

    A search at any k returns k distinct real rows ranked by their exact inner product:
    max(reorder, reorder_per_k · k) hashing candidates are re-scored exactly, the leaves
    searched grow with k so they hold enough points, and a query for which ScaNN still comes
    back short (padding rows with NaN scores, repeated ids) is searched again over every leaf.
    """

    backend = "scann"

    def __init__(
        self, searcher: Any, n: int, reorder: int = 100, reorder_per_k: int = 4,
        num_leaves: int = 1, num_leaves_to_search: int = 1,
    ) -> None:  # fmt: skip
        self.searcher, self.n, self.reorder = searcher, n, reorder
        self.reorder_per_k = reorder_per_k
        self.num_leaves, self.num_leaves_to_search = num_leaves, num_leaves_to_search

    def __len__(self) -> int:
        return self.n

    @classmethod
    def build(cls, embeddings: np.ndarray, params: dict[str, Any]) -> ScannIndex:
        import scann

        n = embeddings.shape[0]
        builder = scann.scann_ops_pybind.builder(
            np.ascontiguousarray(embeddings, np.float32), 10, "dot_product"
        )
        tree = _uses_tree(n, params)
        if tree:
            builder = builder.tree(num_leaves=params["num_leaves"], num_leaves_to_search=params["num_leaves_to_search"],
                                   training_sample_size=params["training_sample_size"])  # fmt: skip
        builder = builder.score_ah(params["dims_per_block"],
                                   anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"])  # fmt: skip
        return cls(builder.reorder(params["reorder"]).build(), n, params["reorder"], params.get("reorder_per_k", 4),
                   params["num_leaves"] if tree else 1, params["num_leaves_to_search"] if tree else 1)  # fmt: skip

    def _search(self, queries: np.ndarray, k: int, leaves: int) -> tuple[np.ndarray, np.ndarray]:
        pre = min(self.n, max(self.reorder, self.reorder_per_k * k))
        kwargs: dict[str, Any] = {"final_num_neighbors": k, "pre_reorder_num_neighbors": pre}
        if self.num_leaves > 1:
            kwargs["leaves_to_search"] = leaves
        idx, scores = self.searcher.search_batched(
            np.ascontiguousarray(queries, np.float32), **kwargs
        )
        return np.asarray(scores, np.float32), np.asarray(idx, np.int64)

    def _leaves_for(self, k: int) -> int:
        """The configured leaves, or more when k is large: visit at least 500 points per
        neighbour asked for (and 8x the re-scored candidates). A top 1000 spreads over many
        leaves: on 1M clustered vectors, 10% of the leaves find 0.86 of the exact top 1000,
        50% find 0.98 (``benchmarks/index.py``)."""
        pre = max(self.reorder, self.reorder_per_k * k)
        points = max(8 * pre, 500 * k)
        wanted = math.ceil(self.num_leaves * min(1.0, points / max(self.n, 1)))
        return min(self.num_leaves, max(self.num_leaves_to_search, wanted))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, H] → (exact scores [Q, k], row indices [Q, k]), best first; k distinct
        real rows per query for every k ≤ N."""
        k = _check_k(k, len(self))
        if len(queries) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        scores, rows = self._search(queries, k, self._leaves_for(k))
        bad = np.flatnonzero(
            [not _valid_row(s, r, k, self.n) for s, r in zip(scores, rows, strict=True)]
        )
        if len(bad) and self.num_leaves > 1:  # too few points in the searched leaves: all of them
            scores[bad], rows[bad] = self._search(queries[bad], k, self.num_leaves)
            bad = bad[[not _valid_row(scores[b], rows[b], k, self.n) for b in bad]]
        if len(bad):
            raise RuntimeError(
                f"ScaNN returned fewer than {k} distinct neighbours for {len(bad)} queries "
                f"(reorder={self.reorder}, N={self.n}); rebuild the index with a larger reorder "
                "or use --backend exact"
            )
        order = np.argsort(-scores, axis=1, kind="stable")  # exact scores, best first
        return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)

    def save(self, out: Path) -> None:
        d = out / "scann"
        d.mkdir(exist_ok=True)
        self.searcher.serialize(str(d))
        # ScaNN records asset paths as given; bare file names resolve against the dir it is
        # loaded from, so the index dir can be moved or copied.
        assets = d / "scann_assets.pbtxt"
        assets.write_text(
            re.sub(r'asset_path: "[^"]*/([^"/]+)"', r'asset_path: "\1"', assets.read_text())
        )

    @classmethod
    def load(cls, d: Path, params: dict[str, Any]) -> ScannIndex:
        import scann

        n = params["count"]
        tree = _uses_tree(n, params)
        return cls(scann.scann_ops_pybind.load_searcher(str(d / "scann")), n, params["reorder"],
                   params.get("reorder_per_k", 2), params["num_leaves"] if tree else 1,
                   params["num_leaves_to_search"] if tree else 1)  # fmt: skip


class Index:
    """An index with its corpus ids and metadata: what `rqa index` writes and `rqa search` reads."""

    def __init__(
        self, backend_index: ExactIndex | ScannIndex, ids: list[str], meta: dict[str, Any]
    ) -> None:
        self.backend_index, self.ids, self.meta = backend_index, ids, meta

    @classmethod
    def build(cls, embeddings_dir: str | Path, backend: str = "scann", **params: Any) -> Index:
        if backend not in BACKENDS:
            raise UserInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        emb, ids, enc_meta = read_embeddings(embeddings_dir)
        if enc_meta.get("kind", "passage") != "passage":
            raise UserInputError(
                f"{embeddings_dir}: these are {enc_meta['kind']} embeddings, not passages"
            )
        meta = {
            "backend": backend,
            "count": len(ids),
            "dim": int(emb.shape[1]),
            "corpus_fingerprint": corpus_fingerprint(ids),
            **{
                k: enc_meta.get(k)
                for k in ("model", "model_fingerprint", "pooling", "normalize", "max_length")
            },
        }
        if backend == "exact":
            return cls(ExactIndex(emb), ids, meta)
        scann_params = default_scann_params(len(ids)) | params
        meta["params"] = scann_params
        return cls(ScannIndex.build(emb, scann_params), ids, meta)

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.backend_index.save(out)
        (out / "ids.txt").write_text("".join(i + "\n" for i in self.ids), encoding="utf-8")
        (out / META).write_text(json.dumps(self.meta, indent=2) + "\n")  # last: marks it complete
        return out

    @classmethod
    def load(
        cls,
        index_dir: str | Path,
        dim: int | None = None,
        model_fingerprint: str | None = None,
        corpus_ids: Sequence[str] | None = None,
    ) -> Index:
        """Loads an index, refusing one built for another dimension, model or corpus."""
        d = Path(index_dir)
        if not (d / META).is_file():
            raise FileNotFoundError(
                f"{d}: no {META} (not an index dir, or its build did not finish)"
            )
        meta = json.loads((d / META).read_text())
        if dim is not None and meta["dim"] != dim:
            raise IndexMismatchError(
                f"{d}: index vectors have dimension {meta['dim']}, the model gives {dim}"
            )
        if (
            model_fingerprint
            and meta.get("model_fingerprint")
            and meta["model_fingerprint"] != model_fingerprint
        ):
            raise IndexMismatchError(
                f"{d}: index was built with embeddings of another model ({meta.get('model')}); "
                "re-encode the corpus with this model and rebuild the index"
            )
        ids = (d / "ids.txt").read_text(encoding="utf-8").splitlines()
        if corpus_ids is not None and corpus_fingerprint(corpus_ids) != meta["corpus_fingerprint"]:
            raise IndexMismatchError(
                f"{d}: index covers another corpus (ids differ from the given corpus file)"
            )
        loader = ExactIndex if meta["backend"] == "exact" else ScannIndex
        return cls(loader.load(d, meta.get("params", {}) | {"count": meta["count"]}), ids, meta)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """[Q, H] → per query [(pid, score)] best first."""
        scores, rows = self.backend_index.search(queries, k)
        return [
            [(self.ids[r], float(s)) for r, s in zip(rr, ss, strict=True) if r >= 0]
            for rr, ss in zip(rows, scores, strict=True)
        ]

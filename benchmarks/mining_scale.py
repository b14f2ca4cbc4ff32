"""Mining and denoising at 5M run rows, old path against new (issue: MS MARCO scale).

Data of MS MARCO's shape at a fifth of its corpus: 1M passages (~40 words each), 5,000
judged train queries, a top-1000 run (5M lines of TREC text, best first) and the re-ranker's
scores of each query's top 50. Each step runs in its own process, so its peak RSS is its
own (VmHWM of the child):

* ``old_mine`` / ``old_denoise``: what ``rqa mine`` / ``rqa denoise`` did before the binary
  runs: the whole text run read into Python objects (``formats.read_run``), scores and the
  corpus as dicts, then ``lists.mine`` / ``lists.denoise`` + ``write_dual``;
* ``stream_mine``: ``rqa mine`` on the text run now (streamed, one query at a time);
* ``binary_mine`` / ``binary_denoise``: the binary run and scores, the corpus store, the
  chunked steps of :mod:`rqa_jax.data.mining` (what the pipelines run);
* one-off costs of the new path: the corpus store and the text → binary conversion.

The denoised TSVs of the old and new paths are compared byte for byte.

    python benchmarks/mining_scale.py                  # 1M passages x 5,000 queries x 1000
    python benchmarks/mining_scale.py --passages 20000 --queries 200 --out /tmp  # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_bytes

STEPS = (
    "store",
    "convert",
    "old_mine",
    "stream_mine",
    "binary_mine",
    "old_denoise",
    "binary_denoise",
)


def make_data(work: Path, passages: int, queries: int, depth: int, top: int, seed: int = 0) -> None:
    """The synthetic files (written once; reused when ``work/done`` exists)."""
    if (work / "done").is_file():
        return
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(30000)])
    with (work / "collection.tsv").open("w") as f:
        for start in range(0, passages, 100_000):
            n = min(100_000, passages - start)
            toks = words[rng.integers(0, len(words), size=(n, 40))]
            f.writelines(f"{start + i}\t{' '.join(row)}\n" for i, row in enumerate(toks))
    qids = [str(1_000_000 + i) for i in range(queries)]
    (work / "queries.tsv").write_text("".join(f"{q}\tquestion {q} about w{q[-3:]}\n" for q in qids))
    run_rows = np.empty((queries, depth), np.int64)
    for i in range(queries):  # distinct candidates per query
        run_rows[i] = rng.choice(passages, depth, replace=False)
    positives = [int(run_rows[i, rng.integers(0, 30)]) if i % 3 else int(rng.integers(0, passages))
                 for i in range(queries)]  # fmt: skip
    (work / "qrels.tsv").write_text(
        "".join(f"{q}\t0\t{p}\t1\n" for q, p in zip(qids, positives, strict=True))
    )
    scores = np.sort(rng.normal(10, 3, size=(queries, depth)).astype(np.float32), axis=1)[:, ::-1]
    with (work / "train.trec").open("w") as f:
        for i, q in enumerate(qids):
            f.writelines(
                f"{q} Q0 {p} {r} {s:.6f} b\n"
                for r, (p, s) in enumerate(zip(run_rows[i], scores[i], strict=False), 1)
            )
    ce = rng.random((queries, top)).astype(np.float32) ** 3  # most below tau_neg, some above
    with (work / "ce.txt").open("w") as f:
        for i, q in enumerate(qids):
            f.writelines(
                f"{q}\t{p}\t{r}\t{s:.6f}\n"
                for r, (p, s) in enumerate(zip(run_rows[i, :top], ce[i], strict=False), 1)
            )
    (work / "done").write_text("")


def run_step(step: str, work: Path, a: argparse.Namespace) -> dict:
    """One step, in this process (called in a child by :func:`main`)."""
    from rqa_jax.data import binrun
    from rqa_jax.data import formats as F
    from rqa_jax.data import lists as L
    from rqa_jax.data import mining as M
    from rqa_jax.data.store import CorpusStore, ensure_corpus

    def store() -> CorpusStore:
        return CorpusStore(ensure_corpus(work / "cache", [work / "collection.tsv"], lambda: (
            (r.id, r.title, r.text) for r in F.iter_collection(work / "collection.tsv")), progress=False))  # fmt: skip

    out: dict = {}
    if step == "store":
        out["passages"] = len(store())
    elif step == "convert":
        s = store()
        for name, src in (("train.bin", "train.trec"), ("ce.bin", "ce.txt")):
            binrun.text_to_binary(work / src, work / name, s.rows_of, len(s), s.fingerprint())
    elif step == "old_mine":
        mined = L.mine(F.read_run(work / "train.trec"), F.read_qrels(work / "qrels.tsv"), a.depth)
        F.write_run(work / "mined.old.trec", mined)
        out["candidates"] = sum(map(len, mined.values()))
    elif step == "stream_mine":
        from rqa_jax.cli import main as rqa

        rqa(["mine", "--run", str(work / "train.trec"), "--qrels", str(work / "qrels.tsv"),
             "--depth", str(a.depth), "--output", str(work / "mined.stream.trec")])  # fmt: skip
    elif step == "binary_mine":
        s = store()
        M.mine_run(binrun.BinaryRun(work / "train.bin"), F.read_qrels(work / "qrels.tsv"), s,
                   work / "mined.bin", a.depth)  # fmt: skip
    elif step == "old_denoise":
        run, qrels = F.read_run(work / "train.trec"), F.read_qrels(work / "qrels.tsv")
        scores = L.read_scores(work / "ce.txt")
        corpus = {
            r.id: (r.title, r.text)
            for r in F.iter_collection(work / "collection.tsv", allow_title=True)
        }
        queries = {q.id: q.text for q in F.iter_queries(work / "queries.tsv")}
        pairs, _stats, _ = L.denoise(run, qrels, scores, 4, a.top, a.depth, 0.1, 0)
        out["lines"] = L.write_dual(work / "denoised.old.tsv", pairs, queries, corpus)
    elif step == "binary_denoise":
        s = store()
        run, qrels = binrun.BinaryRun(work / "train.bin"), F.read_qrels(work / "qrels.tsv")
        queries = {q.id: q.text for q in F.iter_queries(work / "queries.tsv")}
        M.denoise_run(run, qrels, binrun.BinaryRun(work / "ce.bin"), queries, s, work / "denoised.new.tsv",
                      4, a.top, a.depth, 0.1, 0, progress=False)  # fmt: skip
        out["lines"] = M.merge_parts(
            work / "denoised.new.tsv", len(M.judged_rows(run, qrels)), M.CHUNK
        )["lines"]
    return out


def _dir_bytes(path: Path) -> int:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--passages", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=5_000)
    p.add_argument("--depth", type=int, default=1000)
    p.add_argument("--top", type=int, default=50)
    p.add_argument("--work", default="/tmp/rqa_mining_scale")
    p.add_argument("--out", default=None, help="results dir (default benchmarks/results)")
    p.add_argument("--step", default=None, help=argparse.SUPPRESS)  # child mode
    a = p.parse_args()
    work = Path(a.work) / f"{a.passages}x{a.queries}x{a.depth}"
    if a.step:
        start = time.perf_counter()
        out = run_step(a.step, work, a)
        out["seconds"] = round(time.perf_counter() - start, 2)
        out["peak_rss_gb"] = round(peak_rss_bytes() / 2**30, 3)
        print(json.dumps(out))
        return
    t = time.perf_counter()
    make_data(work, a.passages, a.queries, a.depth, a.top)
    results: dict = {"passages": a.passages, "queries": a.queries, "depth": a.depth, "top": a.top,
                     "run_lines": a.queries * a.depth, "data_seconds": round(time.perf_counter() - t, 1),
                     "text_run_gb": round((work / "train.trec").stat().st_size / 1e9, 3), "steps": {}}  # fmt: skip
    for step in STEPS:
        cmd = [sys.executable, __file__, "--step", step, "--work", a.work, "--passages", str(a.passages),
               "--queries", str(a.queries), "--depth", str(a.depth), "--top", str(a.top)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results["steps"][step] = json.loads(done.stdout.strip().splitlines()[-1])
        print(step, results["steps"][step], flush=True)
    results["binary_run_gb"] = round(_dir_bytes(work / "train.bin") / 1e9, 3)
    same = (work / "denoised.old.tsv").read_bytes() == (work / "denoised.new.tsv").read_bytes()
    results["denoised_tsv_identical"] = same
    old_mined = (work / "mined.old.trec").read_bytes() == (work / "mined.stream.trec").read_bytes()
    results["streamed_mine_identical"] = old_mined
    print(f"denoised TSV identical: {same}; streamed mine identical: {old_mined}")
    from common import write_results

    write_results("mining_scale", results, a.out)


if __name__ == "__main__":
    main()

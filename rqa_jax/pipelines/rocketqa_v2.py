"""RocketQAv2 end to end, as resumable stages in one workdir (``rqa pipeline v2``):

====================  ===========================================================
(v1 stages)           only when no initial models are given: RocketQA's data,
                      de0 and ce stages in ``W/v1`` (``rqa pipeline v1`` until ce)
``init_retriever``    the initial retriever (v1's de0): its top n for the train,
                      dev and unlabeled questions; dev MRR@10, R@50, R@1000
``init_reranker``     the initial re-ranker (v1's ce) re-ranks that top 50
``lists``             hybrid lists: "rand" (the positive + m−1 negatives sampled
                      from the top n) and "aug" (denoised by the re-ranker, with
                      confident passages as positives, unlabeled questions too)
                      in RocketQAv2's joint TSV
``joint``             retriever and re-ranker trained together (listwise CE + KL);
                      both exported as HF dirs and evaluated
``static_distill``    ablation: the re-ranker frozen (plain distillation)
``joint_<variant>``   ablation: the other KL variant (paper ↔ released code)
====================  ===========================================================

``report.json`` / ``report.md`` gather the table: every retriever's dev MRR@10, R@50,
R@1000; every re-ranker's MRR@10 over its own retriever's top ``eval.rerank_top`` and over
the initial retriever's (the same candidates for every re-ranker).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data import lists as L
from rqa_jax.data import mining as M
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.errors import ConfigError
from rqa_jax.eval import reranker_check as RC
from rqa_jax.losses import DISTILLATION_VARIANTS
from rqa_jax.parallel import on_process_0
from rqa_jax.pipelines import retrieval as R
from rqa_jax.pipelines import rocketqa_v1 as V1
from rqa_jax.pipelines.stages import Pipeline

MIXES = ("rand+aug", "rand", "aug")


def _v1_done(v1: Path, stage: str) -> dict[str, Any]:
    path = v1 / stage / "done.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: init.v1_workdir must be a workdir where "
                                f"`rqa pipeline v1` finished its {stage!r} stage")  # fmt: skip
    return json.loads(path.read_text())


def initial_models(
    config: ml_collections.ConfigDict, work: Path, progress: bool
) -> tuple[V1.Dataset, str, str, Path | None]:
    """(dataset, retriever dir, re-ranker dir, a dir whose corpus embeddings of that retriever
    can be reused or None), from ``init.v1_workdir``, or ``init.retriever_dir`` +
    ``init.reranker_dir`` (data from ``v1.data``), or by running v1's first stages here."""
    i = config.init
    if i.v1_workdir:
        if i.retriever_dir or i.reranker_dir:
            raise ConfigError("set init.v1_workdir or init.retriever_dir/reranker_dir, not both")
        v1 = Path(i.v1_workdir)
        root = Path(_v1_done(v1, "data")["root"])
        ds = V1.Dataset(root, config.v1.data.unlabeled_queries, v1 / "data" / "stores")
        return ds, _v1_done(v1, "de0")["export"], _v1_done(v1, "ce")["export"], v1 / "de0"
    if bool(i.retriever_dir) != bool(i.reranker_dir):
        raise ConfigError("init.retriever_dir and init.reranker_dir go together (or set neither: "
                         "the pipeline then trains RocketQA's first retriever and re-ranker)")  # fmt: skip
    if i.retriever_dir:
        ds = V1.load_data(config.v1, Pipeline(work))
        return ds, i.retriever_dir, i.reranker_dir, None
    v1 = work / "v1"
    V1.run_pipeline(config.v1, v1, progress=progress, until="ce")
    ds = V1.Dataset(
        Path(_v1_done(v1, "data")["root"]), config.v1.data.unlabeled_queries, v1 / "data" / "stores"
    )
    return ds, _v1_done(v1, "de0")["export"], _v1_done(v1, "ce")["export"], v1 / "de0"


def run_pipeline(
    config: ml_collections.ConfigDict, workdir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Runs (or resumes) every stage; returns the report (also ``report.json`` / ``.md``)
    plus ``ran``, the stages that did work in this call."""
    work = Path(workdir).absolute()  # the paths it records stay valid from any directory
    lc, ev = config.lists, config.eval
    if lc.mix not in MIXES:
        raise ConfigError(f"lists.mix must be one of {MIXES}, got {lc.mix!r}")
    if config.joint.distillation not in DISTILLATION_VARIANTS:
        raise ConfigError(f"joint.distillation must be one of {DISTILLATION_VARIANTS}, "
                         f"got {config.joint.distillation!r}")  # fmt: skip
    ds, de_init, ce_init, reuse = initial_models(config, work, progress)
    pipe = Pipeline(work)
    init_dir = work / "init_retriever"

    def retrieve(export: str | Path, d: Path, embeddings: Path | None = None) -> R.Retriever:
        return R.Retriever(
            export,
            ds.corpus,
            embeddings or d,
            ev.index_backend,
            progress=progress,
            shard_rows=ev.index_shard_rows,
        )

    def init_retriever_stage(d: Path) -> dict[str, Any]:
        retriever = retrieve(de_init, d, reuse)
        dev_run = retriever.search(ds.queries["dev"], ev.depth, d / "dev.bin")
        V1._write_run(d / "dev.run", dev_run, ds.corpus)
        retriever.search(ds.queries["train"], lc.depth, d / "train.bin")
        if ds.unlabeled:
            retriever.search(ds.unlabeled, lc.depth, d / "unlabeled.bin")
        return {"export": str(de_init), **R.retrieval_metrics(ds.dev_judged, dev_run, ds.corpus)}

    init_retriever = pipe.run("init_retriever", init_retriever_stage)
    init_dev_run = BinaryRun(init_dir / "dev.bin")

    def rerank_mrr(export: str | Path, run: BinaryRun, out: Path | None = None) -> float:
        reranked = R.rerank_run(
            export, run, ds.queries["dev"], ds.corpus, ev.rerank_top, progress=progress
        )
        if out is not None:
            on_process_0(lambda: F.write_run(out, reranked), f"{out.name} written")
        return R.retrieval_metrics(ds.dev_judged, reranked)["mrr@10"]  # fmt: skip

    init_reranker = pipe.run(
        "init_reranker",
        lambda d: {
            "export": str(ce_init),
            "mrr@10": rerank_mrr(ce_init, init_dev_run, d / "dev.rerank.run"),
        },
    )

    # the lists' denoising and the distillation trust the teacher: does it beat the retriever?
    teacher_check = V1.reranker_check(ds, init_dir / "dev.bin", work / "init_reranker" / "dev.rerank.run",
                                      ev.rerank_top, lc.top, lc.tau_neg, lc.tau_pos)  # fmt: skip
    teacher_check["guard"] = RC.guard(teacher_check, config.guard.margin, config.guard.allow_weak_reranker,
                                      "guard.allow_weak_reranker", "initial re-ranker (the teacher)",
                                      "v1.reranker.")  # fmt: skip

    def lists_stage(d: Path) -> dict[str, Any]:
        m = config.joint.list_size
        train_run = BinaryRun(init_dir / "train.bin")
        judged = M.judged_rows(train_run, ds.qrels["train"])
        out: dict[str, Any] = {"list_size": m, "mix": lc.mix}
        files = []

        def lists(path: Path, run: BinaryRun, qrels: F.Qrels, scores: BinaryRun | None, queries: dict[str, str],
                  selected: np.ndarray) -> dict[str, Any]:  # fmt: skip
            # the train queries' extra literal-match positives are never negatives
            not_negatives = ds.not_negatives if run is train_run else None
            counts = R.chunked(path, len(selected), M.CHUNK, lambda pi, pc: M.lists_run(
                run, qrels, scores, queries, ds.corpus, path, m, lc.top, lc.depth, lc.tau_neg,
                lc.tau_pos, lc.seed, selected, M.CHUNK, pi, pc, progress, not_negatives,
                lc.denoised_positives))  # fmt: skip
            files.append(path)
            return {f.name: counts[f.name] for f in dataclasses.fields(L.ListStats)}

        if "rand" in lc.mix.split("+"):
            out["rand"] = lists(
                d / "rand.tsv", train_run, ds.qrels["train"], None, ds.queries["train"], judged
            )
        if "aug" in lc.mix.split("+"):
            unlabeled = (
                [("unlabeled", BinaryRun(init_dir / "unlabeled.bin"), ds.unlabeled, {})]
                if ds.unlabeled
                else []
            )
            for name, run, queries, qrels in (
                ("train", train_run, ds.queries["train"], ds.qrels["train"]), *unlabeled):  # fmt: skip
                selected = judged if name == "train" else np.arange(len(run))
                scores = V1._score(ce_init, run, queries, ds.corpus, d / f"ce_{name}.bin", lc.top, progress,
                                   selected)  # fmt: skip
                out[f"aug_{name}"] = lists(
                    d / f"aug_{name}.tsv", run, qrels, scores, queries, selected
                )
        on_process_0(lambda: L.concat_files(d / "train.tsv", files), "joint training lists")
        out["lists"] = sum(v.get("lists", 0) for v in out.values() if isinstance(v, dict))
        on_process_0(lambda: L.write_stats(d / "stats.json", out), "list stats")
        return {**out, "train_tsv": str(d / "train.tsv")}

    lists = pipe.run("lists", lists_stage)

    def joint_stage(evaluate_reranker: bool, **overrides: Any):
        def fn(d: Path) -> dict[str, Any]:
            export = V1._train(config.joint, d / "train", ds.corpus.dir.parent, **{
                "retriever.model_dir": str(de_init), "reranker.model_dir": str(ce_init),
                "data.source": "rocketqa_tsv", "data.path": lists["train_tsv"],
                "data.dir": str(ds.root), "data.dev_run": str(init_dir / "dev.bin"),
            }, **overrides)  # fmt: skip
            dev_run = retrieve(export / "retriever", d).search(
                ds.queries["dev"], ev.depth, d / "dev.bin"
            )
            V1._write_run(d / "dev.run", dev_run, ds.corpus)
            out = {"retriever": {"export": str(export / "retriever"),
                                 **R.retrieval_metrics(ds.dev_judged, dev_run, ds.corpus)}}  # fmt: skip
            if evaluate_reranker:
                out["reranker"] = {
                    "export": str(export / "reranker"),
                    "mrr@10": rerank_mrr(export / "reranker", dev_run, d / "dev.rerank.run"),
                    "mrr@10_init_candidates": rerank_mrr(export / "reranker", init_dev_run),
                }
            return out

        return fn

    joint = pipe.run("joint", joint_stage(True))
    stages: dict[str, dict[str, Any]] = {
        "init_retriever": init_retriever,
        "init_reranker": {**init_reranker, "mrr@10_init_candidates": init_reranker["mrr@10"]},
        "joint_retriever": joint["retriever"],
        "joint_reranker": joint["reranker"],
    }
    if config.ablation_static_distill:
        static = pipe.run("static_distill", joint_stage(False, train_reranker=False))
        stages["static_distill_retriever"] = static["retriever"]
    if config.ablation_other_variant:
        other = next(v for v in DISTILLATION_VARIANTS if v != config.joint.distillation)
        result = pipe.run(f"joint_{other}", joint_stage(True, distillation=other))
        stages[f"joint_{other}_retriever"] = result["retriever"]
        stages[f"joint_{other}_reranker"] = result["reranker"]
    keep = ("mrr@10", "recall@50", "recall@1000", "mrr@10_init_candidates")
    report = {
        "stages": {name: {k: v for k, v in r.items() if k in keep} for name, r in stages.items()},
        "exports": {"retriever": joint["retriever"]["export"], "reranker": joint["reranker"]["export"]},
        "start": {"init_retriever": "v1's de0" if not config.init.retriever_dir else "given retriever",
                  "init_reranker": "v1's ce" if not config.init.reranker_dir else "given re-ranker"},
        "distillation": config.joint.distillation,
        "teacher_check": teacher_check,
        "lists": {k: v for k, v in lists.items() if k not in ("train_tsv", "seconds")},
        "seconds": {name: pipe.done(name)["seconds"] for name in
                    ("init_retriever", "init_reranker", "lists", "joint", "static_distill",
                     *(f"joint_{v}" for v in DISTILLATION_VARIANTS)) if pipe.done(name)},
    }  # fmt: skip

    def report_files() -> None:  # process 0 alone looks at the files; all meet the barrier
        if pipe.ran or not (work / "report.json").is_file():
            _write_report(work, report, ev.rerank_top)

    on_process_0(report_files, "report")
    return {**report, "ran": pipe.ran}


PAPER = {  # RocketQAv2 Tables 2-3 and 6, MS MARCO dev MRR@10
    # the pipeline starts from v1's de0 and ce, as the paper describes its start (§3.4 and
    # footnote 2: RocketQA's step-1 dual encoder and step-2 cross encoder); the released
    # joint warm-up checkpoint's re-ranker is an ERNIE-base with the v2 head, which no
    # released script or issue says how to train (the released step-2 model is ERNIE-large)
    "init_retriever": "33.3 as RocketQA's de0 (the RocketQA retriever, de2: 37.0)",
    "init_reranker": "40.9 (RocketQA re-ranker)",
    "joint_retriever": "38.8 (lists of 128); 37.4 with lists of 8",
    "joint_reranker": "41.9 (on its retriever's top 50)",
    "static_distill_retriever": "36.0 (lists of 8)",
}


def _write_report(work: Path, report: dict[str, Any], rerank_top: int) -> None:
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# RocketQAv2 pipeline report",
        "",
        f"Distillation: `{report['distillation']}`. Re-rankers order the top {rerank_top} of "
        "their own retriever (MRR@10) and of the initial retriever (the same candidates for all).",
        "",
        "| model | MRR@10 | R@50 | R@1000 | MRR@10 on init's top | paper MS MARCO MRR@10 |",
        "|---|---|---|---|---|---|",
    ]
    start = report.get("start", {})
    for name, m in report["stages"].items():
        keys = ("mrr@10", "recall@50", "recall@1000", "mrr@10_init_candidates")
        cells = [f"{m[k]:.3f}" if k in m else "—" for k in keys]
        label = f"{name} ({start[name]})" if name in start else name
        lines.append(f"| {label} | {' | '.join(cells)} | {PAPER.get(name, '')} |")
    lines += V1.reranker_check_lines(report["teacher_check"], "initial re-ranker")
    lines += ["", "## Lists", "", "```json", json.dumps(report["lists"], indent=2), "```", ""]
    (work / "report.md").write_text("\n".join(lines))

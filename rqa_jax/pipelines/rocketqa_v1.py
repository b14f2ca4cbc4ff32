"""RocketQA (v1) end to end, as resumable stages in one workdir (``rqa pipeline v1``):

=================  ==============================================================
``data``           the dataset (the sample is generated with planted false negatives
                   and unlabeled questions; MS MARCO files are read where they are)
``de0``            step 1: dual encoder, cross-batch + random negatives; its top-n
                   (1000) for the train queries and the dev queries
``ce``             step 2: cross encoder on de0's top-n (negatives per query from it)
``denoise``        step 3a: the cross encoder scores de0's top 50; denoised hard
                   negatives → ``train.tsv`` (RocketQA's dual TSV) + ``stats.json``
``de1``            step 3b: dual encoder from the *initial* checkpoint on that data
``de1_undenoised`` ablation: de0's top 50 as negatives without the filter
``augment``        step 4a: de1 retrieves for unlabeled questions, the cross encoder
                   pseudo-labels them; merged with the denoised data
``de2``            step 4b: dual encoder from the initial checkpoint on the merged data
=================  ==============================================================

Each model is evaluated on the dev queries (MRR@10, R@50, R@1000; the cross encoder
re-ranks de0's top ``eval.rerank_top``); ``report.json`` / ``report.md`` gather the table.

Natural Questions (``data.source`` "nq": DPR's files; "nq_sample": the sample in that form)
runs the released NQ recipe instead (:mod:`rqa_jax.pipelines.nq`): de0 on DPR's training
file, the re-ranker's pairs and the denoised pairs chosen by answer strings, answer
recall@5/20/100 on the test questions.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rqa_jax.data import binrun, store
from rqa_jax.data import formats as F
from rqa_jax.data import lists as L
from rqa_jax.data import mining as M
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.errors import ConfigError
from rqa_jax.eval import reranker_check as RC
from rqa_jax.parallel import on_process_0
from rqa_jax.pipelines import retrieval as R
from rqa_jax.pipelines.stages import Pipeline

STAGES = ("data", "de0", "ce", "denoise", "de1", "de1_undenoised", "augment", "de2")


class Dataset:
    """The files a pipeline reads: the corpus (with titles) as a record store, read by row
    and never held whole; train/dev queries and qrels, unlabeled questions and (sample only)
    the planted false negatives, per query."""

    def __init__(self, root: Path, unlabeled: str = "", cache: Path | None = None,
                 progress: bool = False) -> None:  # fmt: skip
        self.root = root
        titles_file = F.marco_file(root, "titles", required=False)  # any name: F.MARCO_FILES
        collection = F.marco_file(root, "collection", "the pipeline's corpus")
        files = [collection, *([titles_file] if titles_file else [])]

        def passages() -> Iterator[tuple[str, str | None, str]]:
            titles = F.read_titles(titles_file) if titles_file else {}
            return ((r.id, titles.get(r.id), r.text) for r in F.iter_collection(collection))

        cache = cache or root / ".rqa_cache"
        stored: list[Path] = []
        on_process_0(lambda: stored.append(store.ensure_corpus(cache, files, passages, progress=progress)),
                     "corpus store")  # fmt: skip
        self.corpus = store.CorpusStore(
            stored[0] if stored else store.store_dir(cache, "corpus", files, {})
        )
        files = {"train": (F.marco_file(root, "queries.train"), F.marco_file(root, "qrels.train")),
                 "dev": F.marco_dev_files(root)}  # fmt: skip
        self.queries = {split: {q.id: q.text for q in F.iter_queries(queries)}
                        for split, (queries, _) in files.items()}  # fmt: skip
        in_corpus = store.CorpusMap(self.corpus)
        self.qrels = {split: F.read_qrels(qrels, corpus_ids=in_corpus, strict=True)
                      for split, (_, qrels) in files.items()}  # fmt: skip
        unlabeled_path = Path(unlabeled) if unlabeled else root / "queries.unlabeled.tsv"
        self.unlabeled = (
            {q.id: q.text for q in F.iter_queries(unlabeled_path)}
            if unlabeled_path.is_file()
            else {}
        )
        # RocketQA's extra train positives found by literal match: never negatives
        addition = F.marco_file(root, "qrels.train.addition", required=False)
        self.not_negatives = F.read_qrels(addition) if addition else {}
        planted = root / "false_negatives.train.tsv"
        self.planted = F.read_qrels(planted) if planted.is_file() else {}
        self.dev_judged = {
            q: self.qrels["dev"][q] for q in self.queries["dev"] if q in self.qrels["dev"]
        }


def data_root(config: ml_collections.ConfigDict, workdir: Path) -> Path:
    """The data dir: ``data.dir`` (MS MARCO-format files for "marco", DPR's NQ files for
    "nq"), or the sample generated into ``workdir/data`` ("sample": MS MARCO form;
    "nq_sample": DPR form, with answer strings)."""
    d = config.data
    if d.source in ("marco", "nq"):
        if not d.dir:
            kind = "the MS MARCO files" if d.source == "marco" else "DPR's NQ files"
            raise ConfigError(f"data.source {d.source!r} needs data.dir ({kind})")
        return Path(d.dir)
    if d.source not in ("sample", "nq_sample"):
        raise ConfigError(f"data.source must be sample|marco|nq|nq_sample, got {d.source!r}")
    return workdir / "data" / ("files" if d.source == "sample" else "nq")


def is_nq(config: ml_collections.ConfigDict) -> bool:
    """NQ's recipe (answers decide positives; answer recall is the metric)?"""
    return config.data.source in ("nq", "nq_sample")


def _generate_sample(config: ml_collections.ConfigDict, root: Path) -> None:
    from rqa_jax.data.sample import generate, write_dpr_form

    s, nq = config.data.sample, config.data.source == "nq_sample"
    files = root.parent / "files" if nq else root
    generate(files, s.entities_per_type, s.train_queries, s.dev_queries, s.seed,
             false_negative_share=s.false_negative_share, max_restatements=s.max_restatements,
             unlabeled_questions=s.unlabeled_questions, with_answers=nq)  # fmt: skip
    if nq:
        write_dpr_form(files, root)
        for name in ("queries.unlabeled.tsv", "qrels.unlabeled.hidden.tsv"):  # augmentation's
            if (files / name).is_file():
                (root / name).write_text((files / name).read_text())


def _train(
    base: ml_collections.ConfigDict, workdir: Path, stores: Path | None = None, **overrides: Any
) -> Path:
    """Trains (or resumes) a copy of ``base`` with ``overrides`` (dotted keys); returns the
    export dir. ``stores``: the data cache to use when the config names none."""
    from rqa_jax.train.loop import train

    cfg = copy.deepcopy(base)
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    if stores is not None and "cache_dir" in cfg.get("data", {}) and not cfg.data.cache_dir:
        # the pipeline's own stores: its corpus store is converted once, not once per stage
        cfg.data.cache_dir = str(stores)
    result = train(cfg, workdir)
    if result["status"] != "completed":
        raise SystemExit(f"training in {workdir} stopped ({result['status']}); run again to resume")
    return workdir / "export"


def _score(ce_export: str, run: BinaryRun, queries: dict[str, str], corpus: store.CorpusStore, out: Path,
           top: int, progress: bool, selected: np.ndarray | None = None) -> BinaryRun:  # fmt: skip
    return R.score_into(
        R.cross_scorer(ce_export), run, queries, corpus, out, top, selected, progress
    )


def _write_run(path: Path, run: BinaryRun, corpus: store.CorpusStore) -> None:
    """A text copy of a (dev-sized) binary run, for interchange (``rqa evaluate``)."""
    on_process_0(
        lambda: binrun.binary_to_text(run.path, path, corpus.pid_of_rows), f"{path.name} written"
    )


def reranker_check(ds: Any, retrieved: Path, reranked: Path, rerank_top: int, denoise_top: int,
                   tau_neg: float, tau_pos: float) -> dict[str, Any]:  # fmt: skip
    """:func:`rqa_jax.eval.reranker_check.compare` on the dev files a re-ranker stage left: the
    retriever's binary dev run and the re-ranked text run (both dev-sized, read whole). On NQ
    the passages holding an answer are the judged positives."""
    from rqa_jax.pipelines import nq

    retriever_run = binrun.read_run_top(retrieved, rerank_top, ds.corpus.pid_of_rows)
    judged = (nq.judged_by_answers(ds, retriever_run, rerank_top) if isinstance(ds, nq.NqDataset)
              else ds.dev_judged)  # fmt: skip
    return RC.compare(judged, retriever_run, F.read_run(reranked), rerank_top, denoise_top,
                      tau_neg, tau_pos)  # fmt: skip


def load_data(config: ml_collections.ConfigDict, pipe: Pipeline, progress: bool = False) -> Any:
    """The ``data`` stage (the sample generated once, counts recorded) and the dataset (a
    :class:`Dataset`, or an :class:`rqa_jax.pipelines.nq.NqDataset` for NQ)."""
    from rqa_jax.pipelines.nq import NqDataset

    root = data_root(config, pipe.workdir)
    kind = NqDataset if is_nq(config) else Dataset
    loaded: list[Any] = []

    def data_stage(d: Path) -> dict[str, Any]:
        if config.data.source in ("sample", "nq_sample"):
            on_process_0(lambda: _generate_sample(config, root), "sample data")
        loaded.append(
            kind(root, config.data.unlabeled_queries, pipe.workdir / "data" / "stores", progress)
        )
        ds = loaded[0]
        return {"root": str(root), "passages": len(ds.corpus), "train_queries": len(ds.queries["train"]),
                "dev_queries": len(ds.queries["dev"]), "unlabeled_questions": len(ds.unlabeled),
                "planted_false_negatives": sum(len(v) for v in ds.planted.values())}  # fmt: skip

    pipe.run("data", data_stage)
    return (
        loaded[0]
        if loaded
        else kind(root, config.data.unlabeled_queries, pipe.workdir / "data" / "stores")
    )


def _check_trainable(
    stage_dir: Path, lines: int, batch: int, scores: BinaryRun, tau_neg: float
) -> None:
    """Denoising that leaves less than one batch stops here, saying why, not in the loader:
    a re-ranker scoring every candidate above ``tau_neg`` (a weak or uncalibrated one) keeps
    no negative at all."""
    if lines >= batch:
        return
    lo, hi = np.inf, -np.inf
    for start in range(0, len(scores), 65_536):
        block = np.asarray(scores.scores[start : start + 65_536])
        block = block[np.isfinite(block)]
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    seen = f"its scores there range {lo:.4f} to {hi:.4f}" if lo <= hi else "it scored nothing"
    out = stage_dir / "train.tsv"

    def forget_lines() -> None:  # cheap to redo; the scores (ce_top.bin) are what cost
        shutil.rmtree(f"{out}.parts", ignore_errors=True)
        for path in (out, Path(f"{out}.counts.json")):
            path.unlink(missing_ok=True)

    on_process_0(forget_lines, "denoise lines removed")
    raise ConfigError(
        f"denoise: {lines} lines, fewer than one retriever batch ({batch}): few candidates "
        f"were scored below denoise.tau_neg={tau_neg} by the re-ranker ({seen}). Check the "
        "re-ranker (the 'ce' stage) or set denoise.tau_neg, and run the pipeline again: "
        f"finished stages and the re-ranker's scores ({scores.path}) are kept"
    )


def run_pipeline(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    progress: bool = True,
    until: str | None = None,
) -> dict[str, Any]:
    """Runs (or resumes) every stage; returns the report (also written to
    ``workdir/report.json`` and ``report.md``) plus ``ran``: the stages that did work in
    this call (none when the pipeline had finished before). ``until="ce"`` stops after the
    first retriever and the re-ranker (what RocketQAv2 starts from), without a report."""
    if until not in (None, "ce"):
        raise ConfigError(f"until must be None or 'ce', got {until!r}")
    work = Path(workdir).absolute()  # the paths it records stay valid from any directory
    pipe = Pipeline(work)
    ds = load_data(config, pipe, progress)
    root = ds.root
    ev = config.eval
    nq_recipe = is_nq(config)
    from rqa_jax.pipelines import nq

    def dev_metrics(run: BinaryRun, depth: int) -> dict[str, float]:
        """MS MARCO: MRR@10, R@50, R@1000 on the dev qrels; NQ: answer recall@5/20/100 on the
        test questions (none beyond the depth searched)."""
        if nq_recipe:
            return nq.answer_metrics(ds, run, depth)
        return R.retrieval_metrics(ds.dev_judged, run, ds.corpus)

    def evaluate_retriever(d: Path, export: Path, train_run: bool) -> dict[str, Any]:
        retriever = R.Retriever(
            export,
            ds.corpus,
            d,
            ev.index_backend,
            progress=progress,
            shard_rows=ev.index_shard_rows,
        )
        dev_run = retriever.search(ds.queries["dev"], ev.depth, d / "dev.bin")
        _write_run(d / "dev.run", dev_run, ds.corpus)
        if train_run:  # the pool RocketQA mines from: binary, read by row
            retriever.search(ds.queries["train"], config.mine.depth, d / "train.bin")
        return {"export": str(export), **dev_metrics(dev_run, ev.depth)}

    def de_stage(name: str, **overrides: Any):
        def fn(d: Path) -> dict[str, Any]:
            export = _train(config.retriever, d / "train", ds.corpus.dir.parent, **overrides)
            return evaluate_retriever(d, export, train_run=name == "de0")

        return fn

    marco_data = {"data.source": "marco", "data.dir": str(root)}
    # NQ's step 1 trains on DPR's training file with its hard negatives (run_nq.sh)
    step1_data = (
        {"data.source": "dpr", "data.path": str(ds.train_file), "eval_every": 0}
        if nq_recipe
        else marco_data
    )
    de0 = pipe.run("de0", de_stage("de0", **step1_data))
    de0_dir = work / "de0"
    dn = config.denoise

    def ce_stage(d: Path) -> dict[str, Any]:
        if nq_recipe:  # construct_nq_train_ce.py: answers pick the pair in de0's top n
            run = BinaryRun(de0_dir / "train.bin")
            out = d / "train.tsv"
            counts = R.chunked(out, len(M.answered_rows(run, ds.answers["train"])), M.CHUNK,
                               lambda pi, pc: M.nq_cross_run(run, ds.answers["train"], ds.queries["train"], ds.corpus,
                                                             out, config.mine.depth, dn.seed, M.CHUNK, pi, pc,
                                                             progress))  # fmt: skip
            data = {"data.source": "rocketqa_tsv", "data.path": str(out), "eval_every": 0}
        else:
            data = {**marco_data, "data.train_run": str(de0_dir / "train.bin"),
                    "data.dev_run": str(de0_dir / "dev.bin")}  # fmt: skip
        export = _train(config.reranker, d / "train", ds.corpus.dir.parent, **data)
        reranked = R.rerank_run(export, BinaryRun(de0_dir / "dev.bin"), ds.queries["dev"], ds.corpus,
                                ev.rerank_top, progress=progress)  # fmt: skip
        on_process_0(lambda: F.write_run(d / "dev.rerank.run", reranked), "dev.rerank.run written")
        out_data = {"export": str(export), "reranked": f"de0 top {ev.rerank_top}"}
        if nq_recipe:  # answer recall of the re-ordered candidates, at the depths it re-ranked
            return {**out_data, **nq.answer_metrics(ds, reranked, ev.rerank_top),
                    "data": {k: counts[k] for k in ("queries", "positives", "negatives", "lines")}}  # fmt: skip
        # the re-ranker orders de0's candidates: its recall is de0's, only MRR@10 is its own
        return {**out_data, "mrr@10": R.retrieval_metrics(ds.dev_judged, reranked)["mrr@10"]}

    ce = pipe.run("ce", ce_stage)
    if until == "ce":
        return {"stages": {"de0": de0, "ce": ce}, "ran": pipe.ran}
    # before anything trusts the re-ranker over the retriever: does it beat it on dev?
    check = reranker_check(ds, de0_dir / "dev.bin", work / "ce" / "dev.rerank.run", ev.rerank_top,
                           dn.top, dn.tau_neg, config.augment.tau_pos)  # fmt: skip
    check["guard"] = RC.guard(check, config.guard.margin, config.guard.allow_weak_reranker,
                              "guard.allow_weak_reranker")  # fmt: skip

    def nq_denoise_stage(d: Path) -> dict[str, Any]:
        """construct_nq_train_de.py: the re-ranker scores de0's top n; one line a question."""
        run, answers, queries = (
            BinaryRun(de0_dir / "train.bin"),
            ds.answers["train"],
            ds.queries["train"],
        )
        answered = M.answered_rows(run, answers)
        scores = _score(
            ce["export"], run, queries, ds.corpus, d / "ce_top.bin", dn.top, progress, answered
        )

        def denoise(out: Path, with_scores: BinaryRun | None) -> dict[str, Any]:
            return R.chunked(out, len(answered), M.CHUNK, lambda pi, pc: M.nq_denoise_run(
                run, answers, with_scores, queries, ds.corpus, out, dn.top, dn.tau_neg, M.CHUNK, pi, pc,
                progress))  # fmt: skip

        counts = denoise(d / "train.tsv", scores)
        _check_trainable(d, counts["lines"], config.retriever.train_batch_size, scores, dn.tau_neg)
        undenoised = denoise(d / "train.undenoised.tsv", None)
        out = {"stats": {k: counts[k] for k in ("queries", "no_positive_or_negative")},
               "lines": counts["lines"], "undenoised_lines": undenoised["lines"]}  # fmt: skip
        on_process_0(lambda: L.write_stats(d / "stats.json", out), "denoise stats")
        return {
            **out,
            "train_tsv": str(d / "train.tsv"),
            "undenoised_tsv": str(d / "train.undenoised.tsv"),
        }

    def denoise_stage(d: Path) -> dict[str, Any]:
        run = BinaryRun(de0_dir / "train.bin")
        qrels, queries = ds.qrels["train"], ds.queries["train"]
        judged = M.judged_rows(run, qrels)
        scores = _score(
            ce["export"], run, queries, ds.corpus, d / "ce_top.bin", dn.top, progress, judged
        )
        planted = M.Planted(ds.planted) if ds.planted else None

        def denoise(out: Path, with_scores: BinaryRun | None) -> dict[str, Any]:
            return R.chunked(out, len(judged), M.CHUNK, lambda pi, pc: M.denoise_run(
                run, qrels, with_scores, queries, ds.corpus, out, dn.per_positive, dn.top,
                config.mine.depth, dn.tau_neg, dn.seed, dn.pick, planted if with_scores else None,
                M.CHUNK, pi, pc, progress, ds.not_negatives))  # fmt: skip

        counts = denoise(d / "train.tsv", scores)
        _check_trainable(d, counts["lines"], config.retriever.train_batch_size, scores, dn.tau_neg)
        denoise(d / "train.undenoised.tsv", None)
        fields = [f.name for f in dataclasses.fields(L.DenoiseStats)]
        out: dict[str, Any] = {"stats": {k: counts[k] for k in fields}}
        if planted is not None:  # the denoiser against the sample's known false negatives
            out["against_planted_false_negatives"] = M.Planted.quality(counts)
        out["lines"] = counts["lines"]
        on_process_0(lambda: L.write_stats(d / "stats.json", out), "denoise stats")
        return {
            **out,
            "train_tsv": str(d / "train.tsv"),
            "undenoised_tsv": str(d / "train.undenoised.tsv"),
        }

    denoised = pipe.run("denoise", nq_denoise_stage if nq_recipe else denoise_stage)
    later = {"data.source": "rocketqa_tsv", "num_epochs": config.later_epochs,
             "num_train_steps": config.later_steps, "data.random_negative_lines": 1}  # fmt: skip
    de1 = pipe.run("de1", de_stage("de1", **later, **{"data.path": denoised["train_tsv"]}))
    stages = {"de0": de0, "ce": ce, "de1": de1}
    if config.ablation_undenoised:
        stages["de1_undenoised"] = pipe.run(
            "de1_undenoised",
            de_stage("de1_undenoised", **later, **{"data.path": denoised["undenoised_tsv"]}),
        )
    au = config.augment

    def augment_stage(d: Path) -> dict[str, Any]:
        if not ds.unlabeled:
            raise ConfigError("augment: no unlabeled questions (data.unlabeled_queries, or the "
                             "sample's queries.unlabeled.tsv)")  # fmt: skip
        # de1's stage dir holds its corpus embeddings: reused, not encoded again
        retriever = R.Retriever(
            de1["export"],
            ds.corpus,
            work / "de1",
            ev.index_backend,
            progress=progress,
            shard_rows=ev.index_shard_rows,
        )
        run = retriever.search(ds.unlabeled, au.top, d / "unlabeled.bin")
        scores = _score(
            ce["export"], run, ds.unlabeled, ds.corpus, d / "ce_top.bin", au.top, progress
        )
        hidden = ds.root / "qrels.unlabeled.hidden.tsv"
        truth = F.read_qrels(hidden) if hidden.is_file() else None
        counts = R.chunked(d / "augmented.tsv", len(run), M.CHUNK, lambda pi, pc: M.augment_run(
            run, scores, ds.unlabeled, ds.corpus, d / "augmented.tsv", au.negatives, au.top,
            au.tau_pos, au.tau_neg, au.seed, truth, M.CHUNK, pi, pc, progress, au.pick))  # fmt: skip
        fields = [f.name for f in dataclasses.fields(L.AugmentStats)]
        out: dict[str, Any] = {"stats": {k: counts[k] for k in fields}}
        if truth is not None:  # the sample knows the answers: how right are the pseudo labels?
            pairs = counts["pseudo_positives"]
            out["pseudo_positive_precision"] = counts["pseudo_right"] / pairs if pairs else 0.0
        out["lines"] = counts["lines"]

        def write() -> None:
            L.concat_files(d / "train.tsv", [denoised["train_tsv"], d / "augmented.tsv"])
            L.write_stats(d / "stats.json", out)

        on_process_0(write, "augmented data")
        return {**out, "train_tsv": str(d / "train.tsv")}

    augmented = pipe.run("augment", augment_stage)
    stages["de2"] = pipe.run(
        "de2", de_stage("de2", **later, **{"data.path": augmented["train_tsv"]})
    )
    report = {
        "stages": {
            name: {k: v for k, v in r.items() if k in REPORT_KEYS} for name, r in stages.items()
        },
        "reranker_check": check,
        "denoise": {k: v for k, v in denoised.items() if k not in ("train_tsv", "undenoised_tsv")},
        "augment": {k: v for k, v in augmented.items() if k != "train_tsv"},
        "seconds": {name: pipe.done(name)["seconds"] for name in STAGES if pipe.done(name)},
    }

    def report_files() -> None:  # process 0 alone looks at the files; all meet the barrier
        if pipe.ran or not (work / "report.json").is_file():
            _write_report(work, report, ev.rerank_top, nq_recipe)

    on_process_0(report_files, "report")
    return {**report, "ran": pipe.ran}


REPORT_KEYS = ("mrr@10", "recall@50", "recall@1000", "answer_recall@5", "answer_recall@20",
               "answer_recall@100")  # fmt: skip

PAPER = {  # RocketQA Table 3 / 2, MS MARCO dev
    "de0": "33.3 (cross-batch)",
    "ce": "40.9 (re-ranker, top 50)",
    "de1": "36.4 (+ denoised hard negatives)",
    "de1_undenoised": "26.0 (hard negatives w/o denoising)",
    "de2": "37.0 (+ data augmentation)",
}


PAPER_NQ = {"de2": "74.0 / 82.7 / 88.5 (the RocketQA retriever)"}  # RocketQA Table 2, NQ test


def _write_report(
    work: Path, report: dict[str, Any], rerank_top: int, nq_recipe: bool = False
) -> None:
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if nq_recipe:
        keys, paper = ("answer_recall@5", "answer_recall@20", "answer_recall@100"), PAPER_NQ
        head = "| model | R@5 | R@20 | R@100 | paper NQ test R@5 / R@20 / R@100 |"
    else:
        keys, paper = ("mrr@10", "recall@50", "recall@1000"), PAPER
        head = "| model | MRR@10 | R@50 | R@1000 | paper MS MARCO MRR@10 |"
    lines = ["# RocketQA v1 pipeline report", "", head, "|---|---|---|---|---|"]
    for name, m in report["stages"].items():
        label = f"{name} (re-ranks de0's top {rerank_top})" if name == "ce" else name
        cells = [f"{m[k]:.3f}" if k in m else "—" for k in keys]
        lines.append(f"| {label} | {' | '.join(cells)} | {paper.get(name, '')} |")
    lines += reranker_check_lines(report["reranker_check"], "re-ranker")
    lines += ["", "## Denoising", "", "```json", json.dumps(report["denoise"], indent=2), "```"]
    lines += [
        "",
        "## Augmentation",
        "",
        "```json",
        json.dumps(report["augment"], indent=2),
        "```",
        "",
    ]
    (work / "report.md").write_text("\n".join(lines))


def reranker_check_lines(check: dict[str, Any], what: str) -> list[str]:
    """The report's section on the re-ranker against its retriever (dev)."""
    d, cal, dn = check["difference"], check["calibration"], check["denoiser_on_dev"]
    g = check["guard"]
    verdict = "passed" if g["passed"] else "FAILED (went on: allow_weak_reranker)"
    pos, rest = cal["positives"], cal["others"]

    def dist(s: dict[str, Any]) -> str:
        return (f"{s['count']} scores, median {s['median']:.3f} (p10 {s['p10']:.3f}, p90 {s['p90']:.3f})"
                if s["count"] else "none")  # fmt: skip

    return [
        "",
        f"## The {what} against its retriever (dev, {check['candidates']})",
        "",
        f"- MRR@10: {what} {check['reranker_mrr@10']:.4f}, retriever {check['retriever_mrr@10']:.4f}; "
        f"paired difference {d['mean']:+.4f} ± {d['se']:.4f} (s.e., {d['queries']} queries; "
        f"better on {d['better']}, worse on {d['worse']}); guard (margin {g['margin']}): {verdict}",
        f"- calibration: judged positives {dist(pos)}; the rest {dist(rest)}; "
        f"{cal['positives_at_or_above_tau_pos']:.1%} of positives >= τ_pos {cal['tau_pos']}, "
        f"{cal['others_at_or_above_tau_neg']:.1%} of the rest >= τ_neg {cal['tau_neg']}",
        f"- as a denoiser on dev's top {dn['depth']} (τ_neg {dn['tau_neg']}): keeps "
        f"{dn['positives_kept_out']} of {dn['judged_positives']} judged positives out of the "
        f"negatives (recall {dn['recall']:.3f}); drops {dn['dropped']} of {dn['candidates']} "
        f"candidates ({dn['dropped_share']:.1%}), of which judged positives "
        f"{dn['precision_lower_bound']:.1%} (a lower bound on its precision)",
    ]

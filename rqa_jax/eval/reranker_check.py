"""Does the re-ranker earn its place? RocketQA's denoising, pseudo-labelling and distillation
all trust the cross encoder over the retriever; a re-ranker that orders the retriever's own
candidates worse than the retriever does makes every later step worse (found on real data:
re-ranking lowered each retriever's figures and denoising with it hurt). So after its
re-ranker stage a pipeline measures, on the dev queries where positives are judged:

* the re-ranker against the retriever on the *same* candidates (the retriever's top
  ``rerank_top``): MRR@10 of each, their paired difference and its standard error;
* the re-ranker's calibration: its scores of the judged positives against the rest;
* the denoiser it makes (candidates scoring >= τ_neg are kept out of the negatives), with
  the dev positives standing in for the train set's unlabelled positives: how many of them
  it would keep out (recall), what share of all candidates it drops, and what share of the
  dropped are known positives (a lower bound on precision: dev has unjudged positives too);

and :func:`guard` stops the pipeline when the re-ranker does not beat the retriever."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rqa_jax.data.formats import Qrels, Run
from rqa_jax.errors import UserInputError


class WeakRerankerError(UserInputError):
    """The re-ranker does not beat the retriever it is meant to correct."""


def _relevant(qrels: Qrels, qid: str) -> set[str]:
    return {pid for pid, rel in qrels[qid].items() if rel > 0}


def reciprocal_ranks(qrels: Qrels, run: Run, k: int = 10, depth: int | None = None) -> np.ndarray:
    """Per judged query (in ``qrels``' order): 1/rank of the first relevant passage within the
    top ``k`` of the run's first ``depth`` candidates, 0 when none (or the query is absent)."""
    out = np.zeros(len(qrels))
    for i, qid in enumerate(qrels):
        relevant = _relevant(qrels, qid)
        candidates = run.get(qid, [])[:depth]
        for rank, (pid, _) in enumerate(candidates[:k], start=1):
            if pid in relevant:
                out[i] = 1.0 / rank
                break
    return out


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` over paired queries, its standard error (sample std / √n), and how
    many queries each side wins."""
    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(d.mean()) if n else 0.0, "se": se, "queries": n,
            "better": int((d > 0).sum()), "worse": int((d < 0).sum())}  # fmt: skip


def _summary(scores: Sequence[float]) -> dict[str, float]:
    if not len(scores):
        return {"count": 0}
    s = np.asarray(scores, float)
    q10, q50, q90 = np.quantile(s, [0.1, 0.5, 0.9])
    return {"count": len(s), "mean": float(s.mean()), "p10": float(q10), "median": float(q50),
            "p90": float(q90)}  # fmt: skip


def calibration(qrels: Qrels, scored: Run, tau_neg: float, tau_pos: float) -> dict[str, Any]:
    """The re-ranker's scores of the judged positives among its candidates against the scores
    of the rest, and the share of each side above RocketQA's thresholds (a well calibrated
    re-ranker puts positives above τ_pos and few of the rest above τ_neg)."""
    positives: list[float] = []
    others: list[float] = []
    for qid in qrels:
        relevant = _relevant(qrels, qid)
        for pid, score in scored.get(qid, []):
            (positives if pid in relevant else others).append(score)

    def above(scores: list[float], tau: float) -> float:
        return float(np.mean(np.asarray(scores) >= tau)) if scores else 0.0

    return {
        "positives": _summary(positives),
        "others": _summary(others),
        "positives_at_or_above_tau_pos": above(positives, tau_pos),
        "others_at_or_above_tau_neg": above(others, tau_neg),
        "tau_pos": tau_pos,
        "tau_neg": tau_neg,
    }


def denoiser_on_dev(
    qrels: Qrels, retrieved: Run, scored: Run, top: int, tau_neg: float
) -> dict[str, Any]:
    """The denoiser this re-ranker makes, tried where the answers are known: of the dev
    positives in the retriever's top ``top``, the share scoring >= ``tau_neg`` (kept out of
    the negatives: its recall of false negatives); of all those candidates, the share it
    drops; of the dropped, the share that are judged positives (a lower bound on precision)."""
    positives = kept_out = candidates = dropped = 0
    for qid in qrels:
        relevant = _relevant(qrels, qid)
        score_of = dict(scored.get(qid, []))
        for pid, _ in retrieved.get(qid, [])[:top]:
            if pid not in score_of:  # outside what the re-ranker scored: not counted
                continue
            candidates += 1
            drop = score_of[pid] >= tau_neg
            dropped += drop
            if pid in relevant:
                positives += 1
                kept_out += drop
    return {
        "depth": top,
        "tau_neg": tau_neg,
        "candidates": candidates,
        "judged_positives": positives,
        "positives_kept_out": kept_out,
        "recall": kept_out / positives if positives else 0.0,
        "dropped": dropped,
        "dropped_share": dropped / candidates if candidates else 0.0,
        "precision_lower_bound": kept_out / dropped if dropped else 0.0,
    }


def compare(
    qrels: Qrels,
    retrieved: Run,
    reranked: Run,
    rerank_top: int,
    denoise_top: int,
    tau_neg: float,
    tau_pos: float,
) -> dict[str, Any]:
    """Every diagnostic above for one (retriever run, re-ranked run) pair on dev. The
    retriever's MRR@10 is taken over the same ``rerank_top`` candidates the re-ranker saw."""
    judged: Mapping[str, Any] = {q: v for q, v in qrels.items() if _relevant(qrels, q)}
    rr_retriever = reciprocal_ranks(judged, retrieved, depth=rerank_top)
    rr_reranker = reciprocal_ranks(judged, reranked)
    depth = min(denoise_top, rerank_top)
    return {
        "candidates": f"the retriever's top {rerank_top}",
        "retriever_mrr@10": float(rr_retriever.mean()) if len(judged) else 0.0,
        "reranker_mrr@10": float(rr_reranker.mean()) if len(judged) else 0.0,
        "difference": paired_difference(rr_reranker, rr_retriever),
        "calibration": calibration(judged, reranked, tau_neg, tau_pos),
        "denoiser_on_dev": denoiser_on_dev(judged, retrieved, reranked, depth, tau_neg),
    }


HINTS = (
    "train it longer or with more negatives per query "
    "(--config.{prefix}num_train_steps, --config.{prefix}data.cross_negatives_per_query), "
    "raise its learning rate (a fresh head on a bi-encoder start learns slowly), "
    "or start it from a cross-encoder checkpoint"
)


def guard(
    diagnostics: Mapping[str, Any],
    margin: float,
    allow_weak: bool,
    override: str,
    what: str = "re-ranker",
    prefix: str = "reranker.",
) -> dict[str, Any]:
    """Raises :class:`WeakRerankerError` (both figures, what to try, the override) when the
    re-ranker's MRR@10 does not exceed the retriever's by ``margin``; with ``allow_weak``
    it goes on and the verdict says so. Returns the verdict for the report."""
    ce, de = diagnostics["reranker_mrr@10"], diagnostics["retriever_mrr@10"]
    d = diagnostics["difference"]
    passed = ce - de >= margin
    verdict = {
        "margin": margin,
        "passed": bool(passed),
        "allowed_weak": bool(allow_weak and not passed),
    }
    if passed or allow_weak:
        return verdict
    raise WeakRerankerError(
        f"the {what} does not beat the retriever it corrects: on the dev queries it orders "
        f"{diagnostics['candidates']} to MRR@10 {ce:.4f} against the retriever's {de:.4f} "
        f"(difference {d['mean']:+.4f} ± {d['se']:.4f} over {d['queries']} queries; the margin "
        f"asked is {margin}). Denoising, augmentation and distillation would trust it over "
        f"the retriever. Try: {HINTS.format(prefix=prefix)}; or go on anyway with "
        f"--config.{override}=True"
    )

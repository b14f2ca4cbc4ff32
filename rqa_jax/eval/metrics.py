"""Ranking metrics with MS MARCO / RocketQA conventions.

Every metric is averaged over the queries in the qrels: a query missing from the run scores
0 (MS MARCO's official MRR@10 divides by all judged queries). Only relevance > 0 counts as
relevant.
"""

from __future__ import annotations

from collections.abc import Iterable

from rqa_jax.data.formats import Qrels, Run
from rqa_jax.errors import UserInputError


def _relevant(qrels: Qrels, qid: str) -> set[str]:
    return {pid for pid, rel in qrels[qid].items() if rel > 0}


def mrr_at_k(qrels: Qrels, run: Run, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant passage within the top ``k``."""
    total = 0.0
    for qid in qrels:
        relevant = _relevant(qrels, qid)
        for rank, (pid, _) in enumerate(run.get(qid, [])[:k], start=1):
            if pid in relevant:
                total += 1.0 / rank
                break
    return total / len(qrels) if qrels else 0.0


def recall_at_k(qrels: Qrels, run: Run, k: int) -> float:
    """Hit rate: the fraction of queries with at least one relevant passage in the top ``k``
    (what RocketQA's scripts call Recall@k)."""
    hits = sum(
        any(pid in _relevant(qrels, qid) for pid, _ in run.get(qid, [])[:k]) for qid in qrels
    )
    return hits / len(qrels) if qrels else 0.0


def recall_fraction_at_k(qrels: Qrels, run: Run, k: int) -> float:
    """Fraction of each query's relevant passages found in the top ``k``, averaged."""
    total = 0.0
    for qid in qrels:
        relevant = _relevant(qrels, qid)
        if relevant:
            found = sum(pid in relevant for pid, _ in run.get(qid, [])[:k])
            total += found / len(relevant)
    return total / len(qrels) if qrels else 0.0


def ndcg_at_k(qrels: Qrels, run: Run, k: int) -> float:
    """nDCG@k with graded relevance (gain = relevance, log2(rank + 1) discount), as trec_eval."""
    import math

    total = 0.0
    for qid, judged in qrels.items():
        gains = [judged.get(pid, 0) for pid, _ in run.get(qid, [])[:k]]
        dcg = sum(max(g, 0) / math.log2(r + 2) for r, g in enumerate(gains))
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        total += dcg / idcg if idcg > 0 else 0.0
    return total / len(qrels) if qrels else 0.0


METRICS = {
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "recall_frac": recall_fraction_at_k,
    "ndcg": ndcg_at_k,
}


def evaluate(qrels: Qrels, run: Run, metrics: list[str]) -> dict[str, float]:
    """Names like ``mrr@10``, ``recall@50``, ``recall_frac@100``, ``ndcg@10`` → values."""
    out = {}
    for name in metrics:
        base, _, k = name.partition("@")
        if base not in METRICS or not k.isdigit():
            raise UserInputError(
                f"unknown metric {name!r}; use {', '.join(m + '@K' for m in METRICS)}"
            )
        out[name] = METRICS[base](qrels, run, int(k))
    return out


def evaluate_stream(
    qrels: Qrels, run: Iterable[tuple[str, list[tuple[str, float]]]], metrics: list[str]
) -> dict[str, float]:
    """:func:`evaluate` over a run given one query at a time ((qid, ranked) pairs, e.g. a
    binary run read by row): only per-query values are kept, and they are summed in qrels
    order, so the figures equal :func:`evaluate`'s on the same run to the last bit."""
    per_query = {qid: evaluate({qid: qrels[qid]}, {qid: ranked}, metrics)
                 for qid, ranked in run if qid in qrels}  # fmt: skip
    evaluate({}, {}, metrics)  # unknown metric names fail even on an empty run
    zero = dict.fromkeys(metrics, 0.0)
    out = {}
    for name in metrics:
        total = 0.0
        for qid in qrels:
            total += per_query.get(qid, zero)[name]
        out[name] = total / len(qrels) if qrels else 0.0
    return out

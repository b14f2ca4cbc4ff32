"""Ranking metrics with MS MARCO / RocketQA conventions.

Every metric is averaged over the queries in the qrels: a query missing from the run scores
0 (MS MARCO's official MRR@10 divides by all judged queries). Only relevance > 0 counts as
relevant.
"""

from __future__ import annotations

from rqa_jax.data.formats import Qrels, Run


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

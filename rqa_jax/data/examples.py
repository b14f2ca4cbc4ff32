"""Training examples as plain dicts, from the raw files: the one definition that both the
TFDS builders (big data) and the loader (small data, straight from files) use.

* dual:  ``{"query", "positive": P, "negatives": [P, ...]}``
* cross: ``{"query", "title", "para", "label"}``
* joint: ``{"query", "titles": [...], "paras": [...], "labels": [...]}`` (positive first)
* DPR:   ``{"question", "answers", "positives": [P], "negatives": [P], "hard_negatives": [P]}``

with ``P = {"id", "title", "text"}``; a missing title or id is ''.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rqa_jax.data import formats as F

Example = dict[str, Any]


def passage(pid: str, title: str | None, text: str) -> dict[str, str]:
    return {"id": pid, "title": title or "", "text": text}


def dual_from_rocketqa_tsv(path: str | Path) -> Iterator[Example]:
    """RocketQA's 6-column dual-encoder TSV (one hard negative per line)."""
    for r in F.iter_dual_train(path):
        yield {"query": r.query, "positive": passage("", r.pos_title, r.pos_para),
               "negatives": [passage("", r.neg_title, r.neg_para)]}  # fmt: skip


def dual_from_triples(path: str | Path) -> Iterator[Example]:
    """MS MARCO ``triples.train.tsv``."""
    for t in F.iter_triples(path):
        yield {"query": t.query, "positive": passage("", None, t.positive),
               "negatives": [passage("", None, t.negative)]}  # fmt: skip


def dual_from_marco(
    collection: str | Path,
    queries: str | Path,
    qrels: str | Path,
    titles: str | Path | None = None,
    num_negatives: int = 1,
    seed: int = 0,
) -> Iterator[Example]:
    """One example per (query, relevant passage), with ``num_negatives`` negatives drawn
    at random from the corpus (RocketQA step 1 on MS MARCO), seeded."""
    corpus = {r.id: r.text for r in F.iter_collection(collection)}
    title_of = F.read_titles(titles) if titles else {}
    query_text = {q.id: q.text for q in F.iter_queries(queries)}
    judged = F.read_qrels(qrels, corpus_ids=corpus, strict=True)
    pids = sorted(corpus)
    rng = random.Random(seed)
    for qid, docs in judged.items():
        if qid not in query_text:
            raise ValueError(f"{qrels}: qid {qid!r} is not in {queries}")
        for pos in (pid for pid, rel in docs.items() if rel > 0):
            negs: list[dict[str, str]] = []
            while len(negs) < num_negatives:
                pid = pids[rng.randrange(len(pids))]
                if pid not in docs:
                    negs.append(passage(pid, title_of.get(pid), corpus[pid]))
            yield {"query": query_text[qid], "positive": passage(pos, title_of.get(pos), corpus[pos]),
                   "negatives": negs}  # fmt: skip


def dpr_examples(path: str | Path) -> Iterator[Example]:
    """DPR ``nq-{train,dev}.json`` examples as dicts."""

    def ctxs(cs: Sequence[F.Context]) -> list[dict[str, str]]:
        return [passage(c.passage_id, c.title, c.text) for c in cs]

    for ex in F.iter_dpr_examples(path):
        yield {"question": ex.question, "answers": list(ex.answers), "positives": ctxs(ex.positive_ctxs),
               "negatives": ctxs(ex.negative_ctxs), "hard_negatives": ctxs(ex.hard_negative_ctxs)}  # fmt: skip


def dual_from_dpr_example(example: Example) -> Example:
    """DPR form → dual form: the first positive; hard negatives first, then the others."""
    if not example["positives"]:
        raise ValueError(f"DPR example without a positive context: {example['question']!r}")
    return {"query": example["question"], "positive": example["positives"][0],
            "negatives": example["hard_negatives"] + example["negatives"]}  # fmt: skip


def dual_from_dpr(path: str | Path) -> Iterator[Example]:
    """DPR ``nq-train.json`` in dual form (examples without positives skipped, as DPR does)."""
    for ex in dpr_examples(path):
        if ex["positives"]:
            yield dual_from_dpr_example(ex)


def cross_from_tsv(path: str | Path) -> Iterator[Example]:
    """RocketQA's 4-column cross-encoder TSV (pointwise pairs)."""
    for r in F.iter_cross_train(path):
        yield {"query": r.query, "title": r.title or "", "para": r.para, "label": r.label}


def joint_from_tsv(path: str | Path, list_size: int) -> Iterator[Example]:
    """RocketQAv2 list TSV: one example per block of ``list_size`` lines."""
    for jl in F.iter_joint_lists(path, list_size):
        yield {"query": jl.query, "titles": [t or "" for t in jl.titles], "paras": list(jl.paras),
               "labels": list(jl.labels)}  # fmt: skip

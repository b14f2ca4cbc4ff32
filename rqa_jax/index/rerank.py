"""Re-rank a retrieval run with a cross encoder: each query's top-k candidates are scored as
(query, title + passage) pairs, in batches of queries (memory bounded by one batch of
pairs, whatever the run's size), and written as a new run, best first."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from tqdm import tqdm

from rqa_jax.data.formats import Run
from rqa_jax.errors import MissingIdError, UserInputError
from rqa_jax.inference import CrossEncoder


def rerank(
    model: CrossEncoder,
    run: Run,
    queries: Mapping[str, str],
    corpus: Mapping[str, tuple[str | None, str]],
    top_k: int,
    skip_missing: bool = False,
    queries_per_batch: int = 32,
    progress: bool = True,
) -> Run:
    """Scores each run query's first ``top_k`` candidates; returns the re-ordered run.

    A query id missing from ``queries`` or a passage id missing from ``corpus`` is an error
    naming it; with ``skip_missing`` such entries are dropped and counted in one warning.
    """
    if top_k < 1:
        raise UserInputError(f"top_k must be at least 1, got {top_k}")
    missing_q = [q for q in run if q not in queries]
    missing_p = sorted({p for q in run for p, _ in run[q][:top_k] if p not in corpus})
    if (missing_q or missing_p) and not skip_missing:
        if missing_q:
            raise MissingIdError(
                f"run query id {missing_q[0]!r} is not in the queries file ({len(missing_q)} missing)"
            )
        raise MissingIdError(
            f"run passage id {missing_p[0]!r} is not in the corpus ({len(missing_p)} missing)"
        )
    if missing_q or missing_p:
        warnings.warn(f"skipped {len(missing_q)} queries and {len(missing_p)} passages missing from the inputs",
                      stacklevel=2)  # fmt: skip
    qids = [q for q in run if q in queries]
    out: Run = {}
    bar = tqdm(total=len(qids), unit="q", desc="rerank", disable=not progress)
    for start in range(0, len(qids), queries_per_batch):
        batch = qids[start : start + queries_per_batch]
        pairs = [(q, p) for q in batch for p, _ in run[q][:top_k] if p in corpus]
        if not pairs:
            continue
        scores = model.matching(
            [queries[q] for q, _ in pairs],
            [corpus[p][1] for _, p in pairs],
            [corpus[p][0] for _, p in pairs],
        )
        for (q, p), s in zip(pairs, scores, strict=True):
            out.setdefault(q, []).append((p, float(s)))
        bar.update(len(batch))
    bar.close()
    return {q: sorted(docs, key=lambda d: -d[1]) for q, docs in out.items()}

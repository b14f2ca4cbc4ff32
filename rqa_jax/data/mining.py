"""RocketQA's data steps at MS MARCO scale: scoring, denoising, augmentation and RocketQAv2's
lists over binary runs (:mod:`rqa_jax.data.binrun`) and a corpus store, one chunk of
queries at a time.

The per-query rules are :mod:`rqa_jax.data.lists`' own (``denoise_query``, ...), applied to
corpus rows instead of pids: the random draws depend only on list order, so a step gives
the same lines as the id-based functions on the same run. What is held at once is one chunk
of queries (their candidate rows, a few passage texts), never the run or the corpus.

Every step is split in chunks of ``chunk_queries`` selected queries; chunk ``c`` belongs to
process ``c mod P`` of a multi-process run. A chunk's output is written to its own part
(a rows-and-scores chunk of a binary run, or ``<out>.parts/NNNNNN.tsv`` with its counts in
``NNNNNN.json``) and renamed into place when complete, so a killed step run again does only
the chunks it had not finished, and 2 processes write the same parts as 1. :func:`merge_parts`
(one process) concatenates the parts in chunk order into the output file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data import lists as L
from rqa_jax.data.binrun import PAD, BinaryRun, BinaryRunWriter
from rqa_jax.data.formats import Qrels
from rqa_jax.data.store import CorpusStore
from rqa_jax.errors import MissingIdError, UserInputError

PARTS = ".parts"
CHUNK = 4096  # queries per chunk of the TSV-writing steps (a chunk's part is resumed whole)


def owned_chunks(n: int, chunk: int, process_index: int = 0, process_count: int = 1) -> list[int]:
    """The chunks of ``n`` items (``chunk`` each) that process ``process_index`` handles."""
    return [c for c in range(math.ceil(n / chunk)) if c % process_count == process_index]


def check_queries(run: BinaryRun, queries: Mapping[str, str], queries_name: str) -> None:
    """Every query of ``run`` must have its text in ``queries``."""
    missing = next((q for q in run.qids if q not in queries), None)
    if missing is not None:
        raise MissingIdError(f"{run.path}: query {missing!r} is not in {queries_name}")


def select(run: BinaryRun, keep: Callable[[str], bool]) -> np.ndarray:
    """Run rows (query indices) whose qid ``keep`` accepts, in run order."""
    return np.array([i for i, q in enumerate(run.qids) if keep(q)], np.int64)


def positive_rows(qrels: Qrels, qid: str, corpus: CorpusStore) -> list[int]:
    """The corpus rows of ``qid``'s labelled positives, in qrels order."""
    pids = [p for p, rel in qrels.get(qid, {}).items() if rel > 0]
    return [int(r) for r in corpus.rows_of(pids)] if pids else []


# ----------------------------------------------------------------------------- mine


def mine_run(run: BinaryRun, qrels: Qrels, corpus: CorpusStore, out: str | Path, depth: int = 1000,
             chunk_queries: int = CHUNK) -> int:  # fmt: skip
    """:func:`rqa_jax.data.lists.mine` on a binary run: each judged query's top ``depth``,
    labelled positives removed, as a binary run at ``out`` (resumable). Returns its queries."""
    if depth < 1:
        raise UserInputError(f"depth must be at least 1, got {depth}")
    judged = judged_rows(run, qrels)
    writer = BinaryRunWriter(out, [run.qids[i] for i in judged], min(depth, run.k), chunk_queries,
                             run.meta.get("corpus_size"), run.meta.get("corpus_fingerprint"))  # fmt: skip
    for c in writer.pending():
        span = writer.chunk_rows(c)
        rows = np.full((len(span), writer.k), PAD, np.int32)
        scores = np.full((len(span), writer.k), np.nan, np.float32)
        for j, i in enumerate(judged[span.start : span.stop]):
            r, s = run.row(int(i), writer.k)
            keep = ~np.isin(r, positive_rows(qrels, run.qids[int(i)], corpus))
            rows[j, : keep.sum()], scores[j, : keep.sum()] = r[keep], s[keep]
        writer.write_chunk(c, rows, scores)
    writer.finish()
    return len(judged)


# ----------------------------------------------------------------------------- score


def scores_writer(run: BinaryRun, out: str | Path, top: int = 50, selected: np.ndarray | None = None,
                  chunk_queries: int = 256, create: bool = True) -> BinaryRunWriter:  # fmt: skip
    """The binary run that :func:`score_run` fills: the ``selected`` run queries (all by
    default), their first ``top`` candidates. ``create``: lay it out (one process)."""
    selected = np.arange(len(run)) if selected is None else np.asarray(selected, np.int64)
    return BinaryRunWriter(out, [run.qids[i] for i in selected], min(top, run.k), chunk_queries,
                           run.meta.get("corpus_size"), run.meta.get("corpus_fingerprint"), create)  # fmt: skip


def score_run(
    scorer: L.Scorer,
    run: BinaryRun,
    writer: BinaryRunWriter,
    queries: Mapping[str, str],
    corpus: CorpusStore,
    selected: np.ndarray | None = None,
    process_index: int = 0,
    process_count: int = 1,
    progress: bool = True,
) -> None:
    """The cross encoder's scores of the candidates ``writer`` (:func:`scores_writer`) holds:
    this process's chunks not written before, each written with the same rows as the run
    and the re-ranker's scores. Once every process has returned, one calls
    :meth:`BinaryRunWriter.finish`."""
    from tqdm import tqdm

    selected = np.arange(len(run)) if selected is None else np.asarray(selected, np.int64)
    qids = [run.qids[i] for i in selected]
    missing = next((q for q in qids if q not in queries), None)
    if missing is not None:
        raise MissingIdError(f"{run.path}: query {missing!r} is not in the queries")
    todo = writer.pending(process_index, process_count)
    for c in tqdm(todo, unit="chunk", desc="score", disable=not progress):
        span = writer.chunk_rows(c)
        rows = np.asarray(run.rows[selected[span.start : span.stop], : writer.k])
        keep = rows != PAD
        q_of, col_of = np.nonzero(keep)
        texts = corpus.texts(rows[keep].tolist())
        pair_queries = [queries[qids[span.start + int(j)]] for j in q_of]
        got = scorer(pair_queries, [x for _, x in texts], [t for t, _ in texts]) if texts else []
        scores = np.full(rows.shape, np.nan, np.float32)
        scores[q_of, col_of] = np.asarray(got, np.float32)
        writer.write_chunk(c, rows, scores)


def score_map(scores: BinaryRun, j: int) -> dict[int, float]:
    """Row ``j`` of a scores run as {corpus row: score}."""
    rows, vals = scores.row(j)
    return dict(zip(rows.tolist(), vals.tolist(), strict=True))


# ----------------------------------------------------------------------------- chunked TSV steps


def _part(out: Path, c: int) -> tuple[Path, Path]:
    d = Path(f"{out}{PARTS}")
    return d / f"{c:06d}.tsv", d / f"{c:06d}.json"


def run_chunks(
    out: str | Path,
    n: int,
    chunk_queries: int,
    write_chunk: Callable[[range, Path], dict[str, Any]],
    process_index: int = 0,
    process_count: int = 1,
    desc: str = "",
    progress: bool = True,
) -> None:
    """Calls ``write_chunk(items, part_path)`` for each of this process's chunks of ``n``
    items not done before; its returned counts are saved beside the part, which marks the
    chunk done."""
    from tqdm import tqdm

    out = Path(out)
    Path(f"{out}{PARTS}").mkdir(parents=True, exist_ok=True)
    todo = [c for c in owned_chunks(n, chunk_queries, process_index, process_count)
            if not _part(out, c)[1].is_file()]  # fmt: skip
    for c in tqdm(todo, unit="chunk", desc=desc, disable=not progress):
        tsv, stats = _part(out, c)
        counts = write_chunk(range(c * chunk_queries, min(n, (c + 1) * chunk_queries)), tsv)
        tmp = stats.with_name(stats.name + ".partial")
        tmp.write_text(json.dumps(counts) + "\n")
        tmp.replace(stats)  # last: the chunk is done


def merge_parts(out: str | Path, n: int, chunk_queries: int) -> dict[str, Any]:
    """Concatenates every chunk's part into ``out`` (in chunk order) and sums their counts;
    an unfinished chunk is an error naming it. Returns the summed counts."""
    out = Path(out)
    chunks = math.ceil(n / chunk_queries)
    totals: dict[str, Any] = {}
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("wb") as f:
        for c in range(chunks):
            tsv, stats = _part(out, c)
            if not stats.is_file():
                raise RuntimeError(
                    f"{out}: chunk {c} of {chunks} is not finished ({stats} missing)"
                )
            with tsv.open("rb") as part:
                shutil.copyfileobj(part, f, 1 << 20)
            for key, value in json.loads(stats.read_text()).items():
                totals[key] = totals.get(key, 0) + value
    tmp.replace(out)
    return totals


def _dual_lines(pairs: Sequence[tuple[str, list[tuple[int, int]]]], queries: Mapping[str, str],
                corpus: CorpusStore) -> Iterator[F.DualTrainRow]:  # fmt: skip
    rows = sorted({r for _, ps in pairs for pair in ps for r in pair})
    text = dict(zip(rows, corpus.texts(rows), strict=True))
    for qid, ps in pairs:
        for pos, neg in ps:
            yield F.DualTrainRow(
                queries[qid], text[pos][0], text[pos][1], text[neg][0], text[neg][1]
            )


def _joint_lines(lists: Sequence[tuple[str, list[int]]], queries: Mapping[str, str],
                 corpus: CorpusStore) -> Iterator[F.JointList]:  # fmt: skip
    rows = sorted({r for _, ls in lists for r in ls})
    text = dict(zip(rows, corpus.texts(rows), strict=True))
    for qid, ls in lists:
        yield F.JointList(queries[qid], tuple(text[r][0] for r in ls), tuple(text[r][1] for r in ls),
                          (1,) + (0,) * (len(ls) - 1))  # fmt: skip


@dataclasses.dataclass
class Planted:
    """Known false negatives (the sample's) to judge the denoiser by: counted per chunk."""

    qrels: Qrels

    def counts(self, qid: str, dropped: set[int], ranked: Sequence[int], top: int,
               corpus: CorpusStore) -> dict[str, int]:  # fmt: skip
        planted = set(positive_rows(self.qrels, qid, corpus))
        return {"planted_dropped": len(dropped), "planted_hit": len(dropped & planted),
                "planted_in_top": len(planted & set(ranked[:top]))}  # fmt: skip

    @staticmethod
    def quality(totals: Mapping[str, int]) -> dict[str, float]:
        """:func:`rqa_jax.data.lists.false_negative_quality` from summed chunk counts."""
        return L.planted_quality(
            totals["planted_dropped"], totals["planted_hit"], totals["planted_in_top"]
        )


def denoise_run(
    run: BinaryRun,
    qrels: Qrels,
    scores: BinaryRun | None,
    queries: Mapping[str, str],
    corpus: CorpusStore,
    out: str | Path,
    per_positive: int = 4,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    seed: int = 0,
    pick: str = "rank",
    planted: Planted | None = None,
    chunk_queries: int = CHUNK,
    process_index: int = 0,
    process_count: int = 1,
    progress: bool = True,
    not_negatives: Qrels | None = None,
) -> None:
    """:func:`rqa_jax.data.lists.denoise` over the judged queries of a binary run, writing
    RocketQA's dual TSV parts of ``out`` (merge with :func:`merge_parts` over
    ``len(judged_rows(run, qrels))`` queries). ``scores`` is :func:`score_run`'s output over
    those queries (row j = the j-th judged query); None gives the undenoised ablation (any
    top-``top`` candidate may be a negative, no top-up). ``not_negatives``: passages never
    taken as a query's negatives (RocketQA's ``qrels.train.addition.tsv``)."""
    if pick not in ("random", "rank"):
        raise UserInputError(f"pick must be 'random' or 'rank', got {pick!r}")
    judged = judged_rows(run, qrels)
    if scores is not None and scores.qids != [run.qids[i] for i in judged]:
        raise UserInputError(
            f"{scores.path} scores other queries than the judged ones of {run.path}"
        )
    if scores is None:  # lists.undenoised: the top's order is all there is
        depth, tau_neg, pick = top, float("inf"), "random"

    def write_chunk(items: range, part: Path) -> dict[str, Any]:
        st, pairs = L.DenoiseStats(), []
        extra = {"planted_dropped": 0, "planted_hit": 0, "planted_in_top": 0}
        for j in items:
            i = int(judged[j])
            qid, ranked = run.qids[i], run.row(i)[0].tolist()
            qs = (
                score_map(scores, j)
                if scores is not None
                else dict.fromkeys(ranked[:top], -math.inf)
            )
            got = L.denoise_query(qid, ranked, positive_rows(qrels, qid, corpus), qs, st, per_positive,
                                  top, depth, tau_neg, seed, pick,
                                  positive_rows(not_negatives or {}, qid, corpus))  # fmt: skip
            if got is None:
                continue
            pairs.append((qid, got[0]))
            if planted is not None:
                for key, v in planted.counts(qid, got[1], ranked, top, corpus).items():
                    extra[key] += v
        F.write_dual_train(part, _dual_lines(pairs, queries, corpus))
        lines = sum(len(p) for _, p in pairs)
        return {**st.as_dict(), "lines": lines, **(extra if planted else {})}

    run_chunks(out, len(judged), chunk_queries, write_chunk, process_index, process_count,
               "denoise", progress)  # fmt: skip


def judged_rows(run: BinaryRun, qrels: Qrels) -> np.ndarray:
    """The run's queries that have qrels, in run order (what denoising and lists work on)."""
    return select(run, lambda q: q in qrels)


def augment_run(
    run: BinaryRun,
    scores: BinaryRun,
    queries: Mapping[str, str],
    corpus: CorpusStore,
    out: str | Path,
    negatives: int = 4,
    top: int = 50,
    tau_pos: float = 0.9,
    tau_neg: float = 0.1,
    seed: int = 0,
    truth: Qrels | None = None,
    chunk_queries: int = CHUNK,
    process_index: int = 0,
    process_count: int = 1,
    progress: bool = True,
    pick: str = "rank",
) -> None:
    """:func:`rqa_jax.data.lists.augment` over a binary run of unlabeled questions and its
    scores (the same queries), writing dual TSV parts of ``out``. With ``truth`` (hidden
    labels), counts how many pseudo positives are right (``pseudo_right``)."""
    if scores.qids != run.qids:
        raise UserInputError(f"{scores.path} scores other queries than {run.path}")

    def write_chunk(items: range, part: Path) -> dict[str, Any]:
        st, pairs, right = L.AugmentStats(), [], 0
        for i in items:
            qid = run.qids[i]
            got = L.augment_query(qid, run.row(i)[0].tolist(), score_map(scores, i), st, negatives,
                                  top, tau_pos, tau_neg, seed, pick)  # fmt: skip
            if got is None:
                continue
            pairs.append((qid, got))
            if truth is not None:
                right += got[0][0] in positive_rows(truth, qid, corpus)
        F.write_dual_train(part, _dual_lines(pairs, queries, corpus))
        lines = sum(len(p) for _, p in pairs)
        return {**st.as_dict(), "lines": lines, **({"pseudo_right": right} if truth else {})}

    run_chunks(out, len(run), chunk_queries, write_chunk, process_index, process_count, "augment",
               progress)  # fmt: skip


def lists_run(
    run: BinaryRun,
    qrels: Qrels,
    scores: BinaryRun | None,
    queries: Mapping[str, str],
    corpus: CorpusStore,
    out: str | Path,
    list_size: int,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    tau_pos: float = 0.9,
    seed: int = 0,
    selected: np.ndarray | None = None,
    chunk_queries: int = CHUNK,
    process_index: int = 0,
    process_count: int = 1,
    progress: bool = True,
    not_negatives: Qrels | None = None,
    denoised_positives: int = 0,
) -> int:
    """RocketQAv2's lists over the ``selected`` run queries (all by default), as joint TSV
    parts of ``out``: "rand" (:func:`rqa_jax.data.lists.sampled_lists`) without ``scores``,
    "aug" (:func:`rqa_jax.data.lists.denoised_lists`) with them (row j = the j-th selected
    query); ``not_negatives`` (``qrels.train.addition.tsv``) are never negatives; with
    scores, each labelled query's list is followed by up to ``denoised_positives`` lists
    headed by its confident unlabelled passages
    (:func:`rqa_jax.data.lists.denoised_positive_lists`). Returns
    the number of selected queries (what :func:`merge_parts` takes)."""
    selected = np.arange(len(run)) if selected is None else np.asarray(selected, np.int64)
    if scores is not None and scores.qids != [run.qids[i] for i in selected]:
        raise UserInputError(
            f"{scores.path} scores other queries than those selected of {run.path}"
        )

    def write_chunk(items: range, part: Path) -> dict[str, Any]:
        st, lists = L.ListStats(), []
        for j in items:
            i = int(selected[j])
            qid, ranked = run.qids[i], run.row(i)[0].tolist()
            positives = positive_rows(qrels, qid, corpus)
            extra = positive_rows(not_negatives or {}, qid, corpus)
            more: list[list[int]] = []
            if scores is None:
                got = L.sampled_list(
                    qid, ranked, positives, qid in qrels, st, list_size, depth, seed, extra
                )
            else:
                qs = score_map(scores, j)
                got = L.denoised_list(qid, ranked, positives, qs, st, list_size, top, depth, tau_neg,
                                      tau_pos, seed, extra)  # fmt: skip
                if got is not None:  # then the lists of its denoised positives
                    more = L.denoised_positive_lists(qid, ranked, positives, qs, st, list_size, denoised_positives,
                                                     top, depth, tau_neg, tau_pos, seed, extra)  # fmt: skip
            if got is not None:
                lists += [(qid, got), *((qid, m) for m in more)]
        F.write_joint_lists(part, _joint_lines(lists, queries, corpus))
        return st.as_dict()

    run_chunks(out, len(selected), chunk_queries, write_chunk, process_index, process_count,
               "lists", progress)  # fmt: skip
    return len(selected)


# ----------------------------------------------------------------------------- NQ


def _answer_holds(
    items: range, run: BinaryRun, answers: Mapping[str, Sequence[str]], corpus: CorpusStore,
    depth: int, selected: np.ndarray,
) -> Iterator[tuple[str, list[int], list[bool], dict[int, tuple[str | None, str]]]]:  # fmt: skip
    """Per selected query of the chunk: (qid, its top-``depth`` rows, whether each holds an
    answer by RocketQA's training-data matcher on the text or else the title, the chunk's
    texts by row)."""
    from rqa_jax.eval.answers import contains_answer, released_answers

    tops = []
    for j in items:
        i = int(selected[j])
        rows = [r for r in run.row(i, depth)[0].tolist() if r != PAD]
        tops.append((run.qids[i], rows))
    wanted = sorted({r for _, rows in tops for r in rows})
    text = dict(zip(wanted, corpus.texts(wanted), strict=True))
    for qid, rows in tops:
        golds = released_answers(answers[qid])
        holds = [contains_answer(text[r][1], golds) or (text[r][0] is not None and contains_answer(text[r][0], golds))
                 for r in rows]  # fmt: skip
        yield qid, rows, holds, text


def answered_rows(run: BinaryRun, answers: Mapping[str, Sequence[str]]) -> np.ndarray:
    """The run's queries that have answers, in run order (NQ's data steps work on them)."""
    return select(run, lambda q: q in answers)


def nq_cross_run(
    run: BinaryRun, answers: Mapping[str, Sequence[str]], queries: Mapping[str, str], corpus: CorpusStore,
    out: str | Path, depth: int = 100, seed: int = 0, chunk_queries: int = CHUNK, process_index: int = 0,
    process_count: int = 1, progress: bool = True,
) -> int:  # fmt: skip
    """RocketQA's NQ re-ranker data (:func:`rqa_jax.data.lists.nq_cross_query`) over the run's
    answered queries as cross-encoder TSV parts of ``out`` (``query, title, para, label``:
    the positive's line, then the negative's). Returns the number of those queries."""
    selected = answered_rows(run, answers)

    def write_chunk(items: range, part: Path) -> dict[str, Any]:
        rows_out, counts = [], {"queries": 0, "positives": 0, "negatives": 0}
        for qid, rows, holds, text in _answer_holds(items, run, answers, corpus, depth, selected):
            pos, neg = L.nq_cross_query(qid, rows, holds, seed, depth)
            counts["queries"] += 1
            for row, label in ((pos, 1), (neg, 0)):
                if row is not None:
                    rows_out.append(
                        F.CrossTrainRow(queries[qid], text[row][0], text[row][1], label)
                    )
                    counts["positives" if label else "negatives"] += 1
        F.write_cross_train(part, rows_out)
        return {**counts, "lines": len(rows_out)}

    run_chunks(out, len(selected), chunk_queries, write_chunk, process_index, process_count, "nq ce data",
               progress)  # fmt: skip
    return len(selected)


def nq_denoise_run(
    run: BinaryRun, answers: Mapping[str, Sequence[str]], scores: BinaryRun | None, queries: Mapping[str, str],
    corpus: CorpusStore, out: str | Path, depth: int = 100, tau_neg: float = 0.1, chunk_queries: int = CHUNK,
    process_index: int = 0, process_count: int = 1, progress: bool = True,
) -> int:  # fmt: skip
    """RocketQA's denoised NQ data (:func:`rqa_jax.data.lists.nq_denoise_query`) over the
    run's answered queries as dual TSV parts of ``out``, one line per query at most.
    ``scores``: :func:`score_run` over those queries (row j = the j-th answered query); None
    gives the undenoised ablation. Returns the number of answered queries."""
    selected = answered_rows(run, answers)
    if scores is not None and scores.qids != [run.qids[i] for i in selected]:
        raise UserInputError(
            f"{scores.path} scores other queries than the answered ones of {run.path}"
        )

    def write_chunk(items: range, part: Path) -> dict[str, Any]:
        pairs: list[tuple[str, list[tuple[int, int]]]] = []
        counts = {"queries": 0, "no_positive_or_negative": 0}
        for j, (qid, rows, holds, _) in zip(items, _answer_holds(items, run, answers, corpus, depth, selected),
                                             strict=True):  # fmt: skip
            counts["queries"] += 1
            got = L.nq_denoise_query(rows, holds, score_map(scores, j) if scores is not None else None,
                                     depth, tau_neg)  # fmt: skip
            if got is None:
                counts["no_positive_or_negative"] += 1
            else:
                pairs.append((qid, [got]))
        F.write_dual_train(part, _dual_lines(pairs, queries, corpus))
        return {**counts, "lines": len(pairs)}

    run_chunks(out, len(selected), chunk_queries, write_chunk, process_index, process_count, "nq denoise",
               progress)  # fmt: skip
    return len(selected)

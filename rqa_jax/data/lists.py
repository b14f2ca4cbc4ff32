"""RocketQA's data operations on runs and scores: mining a retriever's candidates, scoring
them with a cross encoder (batched, resumable), denoising hard negatives, pseudo-labelling
unlabeled questions, and writing the results in RocketQA's own TSV formats.

Everything here works on plain ids: a run is ``qid -> [(pid, score)]`` best first (see
:mod:`rqa_jax.data.formats`), cross-encoder scores are ``qid -> {pid: score}``. The models
stay outside (a scorer is any callable), so the same functions serve the v1 and v2
pipelines and users' own files.

The recipe (RocketQA, §4.2; released ``data_process/construct_*_train_de.py``):

* *mine*: the retriever's top n (1000) per training query, labelled positives excluded;
* *denoise*: a top-50 candidate is a usable negative only if the cross encoder scores it
  below τ_neg (0.1); k negatives per positive (MS MARCO 4, NQ 1), topped up at random from
  ranks 51–n when too few; candidates at or above τ_neg are dropped as likely false
  negatives (counted);
* *augment*: for an unlabeled question, the top-50 passage with the highest cross-encoder
  score becomes a pseudo positive if that score is above τ_pos (0.9); passages below τ_neg
  are its negatives; questions without a confident positive are skipped (counted).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from rqa_jax.data import formats as F
from rqa_jax.data.formats import DualTrainRow, Qrels, Run
from rqa_jax.errors import MissingIdError, UserInputError

Scores = dict[str, dict[str, float]]
# A scorer: (queries, paras, titles) -> one relevance score per pair
Scorer = Callable[[list[str], list[str], list[str | None]], Sequence[float]]
Corpus = Mapping[str, tuple[str | None, str]]  # pid -> (title, text)
Id = TypeVar("Id", str, int)  # a passage id, or its corpus row (the binary-run steps)


def _positives(qrels: Qrels, qid: str) -> list[str]:
    return [pid for pid, rel in qrels.get(qid, {}).items() if rel > 0]


def _rng(seed: int, qid: str) -> random.Random:
    """One generator per query, so a query's draw does not depend on the others' (a re-run
    over a subset, or in another order, draws the same negatives)."""
    return random.Random(f"{seed}:{qid}")


# ----------------------------------------------------------------------------- mine


def mine(run: Run, qrels: Qrels, depth: int = 1000) -> Run:
    """Each judged query's top ``depth`` candidates with its labelled positives removed: the
    pool hard negatives are drawn from."""
    if depth < 1:
        raise UserInputError(f"depth must be at least 1, got {depth}")
    return {
        qid: [(pid, s) for pid, s in run[qid][:depth] if pid not in set(_positives(qrels, qid))]
        for qid in run
        if qid in qrels
    }


# ----------------------------------------------------------------------------- score


def read_scores(path: str | Path) -> Scores:
    """Cross-encoder scores saved by :func:`score_candidates` (a run file)."""
    return {q: dict(docs) for q, docs in F.read_run(path).items()}


def score_candidates(
    scorer: Scorer,
    run: Run,
    queries: Mapping[str, str],
    corpus: Corpus,
    out_path: str | Path,
    top: int = 50,
    queries_per_chunk: int = 64,
    progress: bool = True,
) -> Scores:
    """The cross encoder's score of each query's first ``top`` candidates, saved to
    ``out_path`` (RocketQA run form ``qid pid rank score``, rank = the retriever's).

    Resumable: scores are appended a chunk of queries at a time, and a chunk is committed
    by a line in ``out_path.progress``; a re-run keeps committed chunks and scores only the
    rest (a chunk cut off mid-write is scored again)."""
    out, done_file = Path(out_path), Path(f"{out_path}.progress")
    qids = list(run)
    missing = next((q for q in qids if q not in queries), None)
    if missing is not None:
        raise MissingIdError(f"run query id {missing!r} is not in the queries")
    done = int(done_file.read_text().split()[0]) if done_file.is_file() and out.is_file() else 0
    if done == 0:
        out.write_text("")
    else:  # drop what a chunk cut off mid-write left after the last committed one
        keep = sum(min(top, len(run[q])) for q in qids[:done])
        lines = out.read_text().splitlines(keepends=True)[:keep]
        out.write_text("".join(lines))
    bar = tqdm(total=len(qids), initial=done, unit="q", desc="score", disable=not progress)
    for start in range(done, len(qids), queries_per_chunk):
        chunk = qids[start : start + queries_per_chunk]
        pairs = [(q, rank, pid) for q in chunk for rank, (pid, _) in enumerate(run[q][:top], 1)]
        absent = next((pid for _, _, pid in pairs if pid not in corpus), None)
        if absent is not None:
            raise MissingIdError(f"run passage id {absent!r} is not in the corpus")
        scores = scorer([queries[q] for q, _, _ in pairs], [corpus[p][1] for _, _, p in pairs],
                        [corpus[p][0] for _, _, p in pairs]) if pairs else []  # fmt: skip
        with out.open("a", encoding="utf-8") as f:
            f.writelines(
                f"{q}\t{pid}\t{rank}\t{float(s):.6f}\n"
                for (q, rank, pid), s in zip(pairs, scores, strict=True)
            )
        done_file.write_text(f"{start + len(chunk)} of {len(qids)} queries scored\n")
        bar.update(len(chunk))
    bar.close()
    return read_scores(out)


# ----------------------------------------------------------------------------- denoise


class _Stats:
    """Counts a step reports (``stats.json``)."""

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DenoiseStats(_Stats):
    queries: int = 0
    positives: int = 0
    negatives: int = 0
    top_candidates: int = 0  # non-positive candidates in the top ``top``
    dropped_as_false_negatives: int = 0  # of those, scored >= tau_neg
    topped_up_queries: int = 0
    topped_up_negatives: int = 0
    queries_short_of_negatives: int = 0  # even ranks top+1..n did not have enough


def denoise(
    run: Run,
    qrels: Qrels,
    ce_scores: Scores,
    per_positive: int = 4,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    seed: int = 0,
    pick: str = "rank",
    not_negatives: Qrels | None = None,
) -> tuple[dict[str, list[tuple[str, str]]], DenoiseStats, dict[str, set[str]]]:
    """Denoised hard negatives per judged query → ({qid: [(positive, negative)]}, stats,
    {qid: candidates dropped as likely false negatives}).

    Each positive gets ``per_positive`` distinct negatives: top-``top`` candidates with a
    cross-encoder score below ``tau_neg`` (``pick`` "rank": the best-ranked first, as the
    released ``construct_marco_train_de.py``; "random": a seeded random choice among them),
    then random ones from ranks ``top``+1..``depth``. A labelled positive is never a
    negative, nor are ``not_negatives`` (RocketQA's ``qrels.train.addition.tsv``: passages
    found to answer by literal match); a top candidate without a score is an error (score the
    top first). As the released script, positive i (in qrels order) of a query's lines goes
    with its negatives taken from the last chosen backwards."""
    if pick not in ("random", "rank"):
        raise UserInputError(f"pick must be 'random' or 'rank', got {pick!r}")
    pairs: dict[str, list[tuple[str, str]]] = {}
    dropped: dict[str, set[str]] = {}
    st = DenoiseStats()
    for qid, docs in run.items():
        got = denoise_query(qid, [pid for pid, _ in docs], _positives(qrels, qid),
                            ce_scores.get(qid, {}), st, per_positive, top, depth, tau_neg, seed, pick,
                            _positives(not_negatives or {}, qid))  # fmt: skip
        if got is not None:
            pairs[qid], dropped[qid] = got
    return pairs, st, dropped


def denoise_query(
    qid: str,
    ranked: Sequence[Id],
    positives: Sequence[Id],
    scores: Mapping[Id, float],
    st: DenoiseStats,
    per_positive: int = 4,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    seed: int = 0,
    pick: str = "rank",
    not_negatives: Collection[Id] = (),
) -> tuple[list[tuple[Id, Id]], set[Id]] | None:
    """One query of :func:`denoise` → ([(positive, negative)], dropped) or None (no
    positive), counted into ``st``. Ids are passage ids or corpus rows alike: the draws
    depend only on the order of ``ranked``, so both give the same choices."""
    if not positives:
        return None
    rng, pos_set = _rng(seed, qid), set(positives) | set(not_negatives)
    need = per_positive * len(positives)
    head = [pid for pid in ranked[:top] if pid not in pos_set]
    unscored = next((pid for pid in head if pid not in scores), None)
    if unscored is not None:
        raise MissingIdError(f"query {qid!r}: candidate {unscored!r} has no cross-encoder score")
    usable = [pid for pid in head if scores[pid] < tau_neg]
    dropped = {pid for pid in head if scores[pid] >= tau_neg}
    chosen = rng.sample(usable, min(need, len(usable))) if pick == "random" else usable[:need]
    if len(chosen) < need:
        tail = [pid for pid in ranked[top:depth] if pid not in pos_set]
        extra = rng.sample(tail, min(need - len(chosen), len(tail)))
        st.topped_up_queries += 1
        st.topped_up_negatives += len(extra)
        chosen += extra
        st.queries_short_of_negatives += len(chosen) < need
    st.queries += 1
    st.positives += len(positives)
    st.negatives += len(chosen)
    st.top_candidates += len(head)
    st.dropped_as_false_negatives += len(dropped)
    # line i: positive i mod P with the i-th negative from the end (the released script pops
    # its chosen list), so every positive gets its share
    return [(positives[i % len(positives)], neg) for i, neg in enumerate(reversed(chosen))], dropped


def undenoised(
    run: Run, qrels: Qrels, per_positive: int = 4, top: int = 50, seed: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """The ablation: negatives drawn from the top ``top`` without the cross encoder's filter
    (RocketQA Table 3's "hard negatives w/o denoising")."""
    scores = {q: {pid: float("-inf") for pid, _ in docs[:top]} for q, docs in run.items()}
    return denoise(run, qrels, scores, per_positive, top, top, float("inf"), seed, "random")[0]


def false_negative_quality(
    dropped: dict[str, set[str]], planted: Qrels, run: Run, top: int = 50
) -> dict[str, float]:
    """The denoiser judged against known false negatives (the sample's planted unlabeled
    relevant passages): precision of what it dropped, recall over the planted ones that
    were among the top ``top`` candidates it looked at."""
    dropped_n = sum(len(d) for d in dropped.values())
    hit = sum(len(d & set(_positives(planted, q))) for q, d in dropped.items())
    reachable = sum(
        len(set(_positives(planted, q)) & {pid for pid, _ in run.get(q, [])[:top]}) for q in dropped
    )
    return planted_quality(dropped_n, hit, reachable)


def planted_quality(dropped_n: int, hit: int, reachable: int) -> dict[str, float]:
    """Precision and recall of the dropped candidates from their counts (summable per chunk)."""
    return {
        "dropped": dropped_n,
        "planted_in_top": reachable,
        "precision": hit / dropped_n if dropped_n else 0.0,
        "recall": hit / reachable if reachable else 0.0,
    }


# ----------------------------------------------------------------------------- augment


@dataclasses.dataclass
class AugmentStats(_Stats):
    questions: int = 0
    pseudo_positives: int = 0
    skipped_no_confident_positive: int = 0
    skipped_no_negative: int = 0
    negatives: int = 0


def augment(
    run: Run,
    ce_scores: Scores,
    negatives: int = 4,
    top: int = 50,
    tau_pos: float = 0.9,
    tau_neg: float = 0.1,
    seed: int = 0,
    pick: str = "rank",
) -> tuple[dict[str, list[tuple[str, str]]], AugmentStats]:
    """Pseudo-labelled training pairs for unlabeled questions → ({qid: [(pseudo positive,
    negative)]}, stats). The top-``top`` passage with the highest score becomes the positive
    when that score is above ``tau_pos``; up to ``negatives`` passages scored below
    ``tau_neg`` (``pick``: best-ranked first, or a seeded random choice) are its negatives.
    A question with no confident
    positive, or with no passage below ``tau_neg``, is skipped and counted."""
    out: dict[str, list[tuple[str, str]]] = {}
    st = AugmentStats()
    for qid, docs in run.items():
        got = augment_query(qid, [pid for pid, _ in docs], ce_scores.get(qid, {}), st, negatives,
                            top, tau_pos, tau_neg, seed, pick)  # fmt: skip
        if got is not None:
            out[qid] = got
    return out, st


def augment_query(
    qid: str,
    ranked: Sequence[Id],
    scores: Mapping[Id, float],
    st: AugmentStats,
    negatives: int = 4,
    top: int = 50,
    tau_pos: float = 0.9,
    tau_neg: float = 0.1,
    seed: int = 0,
    pick: str = "rank",
) -> list[tuple[Id, Id]] | None:
    """One question of :func:`augment` → [(pseudo positive, negative)] or None (skipped),
    counted into ``st``. ``pick`` "rank": the best-ranked usable negatives, as the released
    ``construct_unlabel_train_de.py``; "random": a seeded random choice among them."""
    st.questions += 1
    head = [pid for pid in ranked[:top] if pid in scores]
    if not head:
        st.skipped_no_confident_positive += 1
        return None
    best = max(head, key=lambda p: scores[p])
    if scores[best] <= tau_pos:
        st.skipped_no_confident_positive += 1
        return None
    usable = [pid for pid in head if scores[pid] < tau_neg and pid != best]
    if not usable:
        st.skipped_no_negative += 1
        return None
    if pick == "rank":
        chosen = usable[:negatives]
    elif pick == "random":
        chosen = _rng(seed, qid).sample(usable, min(negatives, len(usable)))
    else:
        raise UserInputError(f"pick must be 'random' or 'rank', got {pick!r}")
    st.pseudo_positives += 1
    st.negatives += len(chosen)
    return [(best, neg) for neg in chosen]


def denoised_positive_lists(
    qid: str,
    ranked: Sequence[Id],
    positives: Sequence[Id],
    scores: Mapping[Id, float],
    st: ListStats,
    list_size: int,
    most: int,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    tau_pos: float = 0.9,
    seed: int = 0,
    not_negatives: Collection[Id] = (),
) -> list[list[Id]]:
    """RocketQAv2's "denoised positives" of a labelled question (the maintainers: the aug
    lists' positives are the ground truth plus denoised positives): up to ``most`` of its
    unlabelled top-``top`` passages the re-ranker scores above ``tau_pos`` (best first) each
    head a list of their own, negatives drawn as :func:`denoised_list` draws them (never a
    labelled positive)."""
    if not positives or most < 1:
        return []
    labelled = set(positives)
    confident = sorted((pid for pid in ranked[:top] if pid in scores and scores[pid] > tau_pos
                        and pid not in labelled), key=lambda p: -scores[p])  # fmt: skip
    out = []
    for k, pid in enumerate(confident[:most]):
        got = denoised_list(f"{qid}#{k + 1}", ranked, [pid], scores, ListStats(), list_size, top, depth, tau_neg,
                            tau_pos, seed, [*labelled, *not_negatives])  # fmt: skip
        if got is not None:
            out.append(got)
    st.denoised_positive_lists += len(out)
    st.lists += len(out)
    return out


# ----------------------------------------------------------------------------- NQ


def nq_cross_query(
    qid: str, ranked: Sequence[Id], holds: Sequence[bool], seed: int = 0, depth: int = 100
) -> tuple[Id | None, Id | None]:
    """One question of RocketQA's NQ re-ranker data (released ``construct_nq_train_ce.py``):
    among the retriever's top ``depth``, the first passage holding an answer (``holds[i]``:
    rank i's text or title contains one) is the positive and one passage holding none,
    drawn at random (seeded by (seed, qid); the released draw is unseeded), the negative;
    either may be None."""
    top = list(zip(ranked[:depth], holds[:depth], strict=False))
    positive = next((pid for pid, hit in top if hit), None)
    others = [pid for pid, hit in top if not hit]
    return positive, (_rng(seed, qid).choice(others) if others else None)


def nq_denoise_query(
    ranked: Sequence[Id], holds: Sequence[bool], scores: Mapping[Id, float] | None,
    depth: int = 100, tau_neg: float = 0.1,
) -> tuple[Id, Id] | None:  # fmt: skip
    """One question of RocketQA's denoised NQ data (released ``construct_nq_train_de.py``):
    in rank order over the top ``depth``, the first passage holding an answer is the
    positive (whatever its score) and the first holding none with a re-ranker score below
    ``tau_neg`` the negative; None when either is missing. ``scores`` None: the undenoised
    ablation (the first passage holding no answer)."""
    positive = negative = None
    for pid, hit in zip(ranked[:depth], holds[:depth], strict=False):
        if hit:
            positive = pid if positive is None else positive
        elif negative is None and (scores is None or scores[pid] < tau_neg):
            negative = pid
        if positive is not None and negative is not None:
            return positive, negative
    return None


# ----------------------------------------------------------------------------- write


def dual_rows(
    pairs: Mapping[str, list[tuple[str, str]]], queries: Mapping[str, str], corpus: Corpus
) -> Iterator[DualTrainRow]:
    """(positive, negative) id pairs → RocketQA dual-encoder training rows."""
    for qid, qpairs in pairs.items():
        for pos, neg in qpairs:
            for pid in (pos, neg):
                if pid not in corpus:
                    raise MissingIdError(f"passage id {pid!r} (query {qid!r}) is not in the corpus")
            yield DualTrainRow(
                queries[qid], corpus[pos][0], corpus[pos][1], corpus[neg][0], corpus[neg][1]
            )


def write_dual(
    path: str | Path,
    pairs: Mapping[str, list[tuple[str, str]]],
    queries: Mapping[str, str],
    corpus: Corpus,
) -> int:
    """Writes RocketQA's 6-column dual TSV (``-`` for a missing title, as the original);
    returns the number of lines."""
    rows = list(dual_rows(pairs, queries, corpus))
    F.write_dual_train(path, rows)
    return len(rows)


def write_stats(path: str | Path, stats: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(dict(stats), indent=2) + "\n")


def concat_files(out: str | Path, parts: Iterable[str | Path]) -> None:
    """``cat a b > out`` (RocketQA merges denoised and augmented data this way)."""
    tmp = Path(f"{out}.partial")
    with tmp.open("w", encoding="utf-8") as f:
        for part in parts:
            f.write(Path(part).read_text(encoding="utf-8"))
    tmp.replace(out)


# ----------------------------------------------------------------------------- RocketQAv2 lists


@dataclasses.dataclass
class ListStats(_Stats):
    lists: int = 0
    skipped_no_positive: int = 0
    skipped_too_few_candidates: int = 0
    pseudo_positive_lists: int = 0  # lists of unlabeled questions, positive from the re-ranker
    excluded_confident: int = 0  # candidates kept out of the negatives as likely positives
    denoised_positive_lists: int = 0  # extra lists of labelled questions, a confident passage first


def sampled_lists(
    run: Run, qrels: Qrels, list_size: int, depth: int = 1000, seed: int = 0
) -> tuple[dict[str, list[str]], ListStats]:
    """RocketQAv2's undenoised lists ("rand"): per judged query, its first labelled positive
    then ``list_size`` − 1 distinct negatives drawn at random from the retriever's top
    ``depth``, labelled positives excluded → ({qid: [pid, ...]} positive first, stats)."""
    out: dict[str, list[str]] = {}
    st = ListStats()
    for qid, docs in run.items():
        got = sampled_list(qid, [pid for pid, _ in docs], _positives(qrels, qid), qid in qrels, st,
                           list_size, depth, seed)  # fmt: skip
        if got is not None:
            out[qid] = got
    return out, st


def sampled_list(
    qid: str, ranked: Sequence[Id], positives: Sequence[Id], judged: bool, st: ListStats,
    list_size: int, depth: int = 1000, seed: int = 0, not_negatives: Collection[Id] = (),
) -> list[Id] | None:  # fmt: skip
    """One query of :func:`sampled_lists` (``judged``: the query is in the qrels);
    ``not_negatives`` (RocketQA's ``qrels.train.addition.tsv``) are never negatives."""
    if not positives:
        st.skipped_no_positive += judged
        return None
    pos_set = set(positives) | set(not_negatives)
    pool = [pid for pid in ranked[:depth] if pid not in pos_set]
    if len(pool) < list_size - 1:
        st.skipped_too_few_candidates += 1
        return None
    st.lists += 1
    return [positives[0], *_rng(seed, qid).sample(pool, list_size - 1)]


def denoised_lists(
    run: Run,
    qrels: Qrels,
    ce_scores: Scores,
    list_size: int,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    tau_pos: float = 0.9,
    seed: int = 0,
) -> tuple[dict[str, list[str]], ListStats]:
    """RocketQAv2's denoised lists ("aug"): the re-ranker removes likely false negatives and
    adds confident passages as positives. Per run query: the positive is the first labelled
    one, or, for a question without labels, the top-``top`` candidate the re-ranker scores
    highest when above ``tau_pos``; negatives are drawn among top-``top`` candidates scored
    below ``tau_neg`` (never a labelled or confident positive), topped up at random from ranks
    ``top``+1..``depth`` (never a confident positive)."""
    out: dict[str, list[str]] = {}
    st = ListStats()
    for qid, docs in run.items():
        got = denoised_list(qid, [pid for pid, _ in docs], _positives(qrels, qid), ce_scores.get(qid, {}),
                            st, list_size, top, depth, tau_neg, tau_pos, seed)  # fmt: skip
        if got is not None:
            out[qid] = got
    return out, st


def denoised_list(
    qid: str,
    ranked: Sequence[Id],
    positives: Sequence[Id],
    scores: Mapping[Id, float],
    st: ListStats,
    list_size: int,
    top: int = 50,
    depth: int = 1000,
    tau_neg: float = 0.1,
    tau_pos: float = 0.9,
    seed: int = 0,
    not_negatives: Collection[Id] = (),
) -> list[Id] | None:
    """One query of :func:`denoised_lists`; ``not_negatives`` are never negatives."""
    head = [pid for pid in ranked[:top] if pid in scores]
    confident = {pid for pid in head if scores[pid] > tau_pos}
    if positives:
        first = positives[0]
    elif head and scores[max(head, key=lambda p: scores[p])] > tau_pos:
        first = max(head, key=lambda p: scores[p])
        st.pseudo_positive_lists += 1
    else:
        st.skipped_no_positive += 1
        return None
    keep_out = set(positives) | confident | {first} | set(not_negatives)
    st.excluded_confident += len(confident - set(positives) - {first})
    rng = _rng(seed, qid)
    usable = [pid for pid in head if scores[pid] < tau_neg and pid not in keep_out]
    chosen = rng.sample(usable, min(list_size - 1, len(usable)))
    if len(chosen) < list_size - 1:
        tail = [pid for pid in ranked[top:depth] if pid not in keep_out]
        chosen += rng.sample(tail, min(list_size - 1 - len(chosen), len(tail)))
    if len(chosen) < list_size - 1:
        st.skipped_too_few_candidates += 1
        st.pseudo_positive_lists -= not positives
        return None
    st.lists += 1
    return [first, *chosen]


def write_joint(
    path: str | Path, lists: Mapping[str, list[str]], queries: Mapping[str, str], corpus: Corpus
) -> int:
    """RocketQAv2's joint TSV: per list a block of lines ``query, title, para, label``, the
    positive first; returns the number of lists."""
    rows = []
    for qid, pids in lists.items():
        missing = next((p for p in pids if p not in corpus), None)
        if missing is not None:
            raise MissingIdError(f"passage id {missing!r} (query {qid!r}) is not in the corpus")
        rows.append(F.JointList(queries[qid], tuple(corpus[p][0] for p in pids),
                                tuple(corpus[p][1] for p in pids), (1,) + (0,) * (len(pids) - 1)))  # fmt: skip
    F.write_joint_lists(path, rows)
    return len(rows)

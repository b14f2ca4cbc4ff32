"""Training examples as plain dicts, from the raw files: the one definition that both the
TFDS builders (big data) and the loader (small data, straight from files) use.

* dual:  ``{"query", "positive": P, "negatives": [P, ...]}``
* cross: ``{"query", "title", "para", "label"}``
* joint: ``{"query", "titles": [...], "paras": [...], "labels": [...]}`` (positive first)
* DPR:   ``{"question", "answers", "positives": [P], "negatives": [P], "hard_negatives": [P]}``

with ``P = {"id", "title", "text"}``; a missing title or id is ''.

The generators here read small files eagerly; at paper scale the same examples come from
lazy sources (:class:`Source`) over stores of compact records (``*_record`` /
``*_from_record``, :mod:`rqa_jax.data.store`). Random choices (MS MARCO's random negatives,
DPR's sampled hard negatives) are drawn per (seed, epoch, example index), so every epoch
draws afresh and any example can be read in any order on any process.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data.binrun import iter_run, pid_reader
from rqa_jax.errors import MissingIdError, UserInputError

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


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one example's random choices: a function of (seed, epoch, index)
    alone, so any example of any epoch can be drawn in any order, on any process."""
    return np.random.default_rng((seed % 2**32, epoch, index))


def random_rows(rng: np.random.Generator, n: int, k: int, exclude: Collection[int]) -> list[int]:
    """``k`` distinct rows of ``range(n)`` outside ``exclude``, drawn with ``rng``."""
    if n - len(set(exclude)) < k:
        raise UserInputError(f"cannot draw {k} negatives from a corpus of {n} passages "
                         f"with {len(set(exclude))} excluded")  # fmt: skip
    out: list[int] = []
    while len(out) < k:
        row = int(rng.integers(n))
        if row not in exclude and row not in out:
            out.append(row)
    return out


def marco_pair_records(
    queries: str | Path, qrels: str | Path, rows_of: Callable[[list[str]], Sequence[int]]
) -> Iterator[list[Any]]:
    """``[query, positive row, judged rows]`` per (query, relevant passage) of MS MARCO
    qrels, in qrels order; ``rows_of`` maps pids to corpus rows (KeyError if unknown)."""
    query_text = {q.id: q.text for q in F.iter_queries(queries)}
    for qid, docs in F.read_qrels(qrels).items():
        if qid not in query_text:
            raise UserInputError(f"{qrels}: qid {qid!r} is not in {queries}")
        try:
            judged = [int(r) for r in rows_of(list(docs))]
        except KeyError as e:
            raise UserInputError(f"{qrels}: {e.args[0]}") from None
        for row, rel in zip(judged, docs.values(), strict=True):
            if rel > 0:
                yield [query_text[qid], row, judged]


def dual_from_marco(
    collection: str | Path,
    queries: str | Path,
    qrels: str | Path,
    titles: str | Path | None = None,
    num_negatives: int = 1,
    seed: int = 0,
) -> Iterator[Example]:
    """One example per (query, relevant passage), with ``num_negatives`` distinct negatives
    drawn at random from the corpus (RocketQA step 1 on MS MARCO), judged passages excluded;
    example ``i``'s draw is seeded by (``seed``, epoch 0, ``i``): exactly what
    :class:`MarcoRandomNegatives` gives at epoch 0. Holds the corpus in memory: for small
    data (the lazy source is for large)."""
    title_of = F.read_titles(titles) if titles else {}
    corpus = [passage(r.id, title_of.get(r.id), r.text) for r in F.iter_collection(collection)]
    row_of = {p["id"]: i for i, p in enumerate(corpus)}

    def rows_of(pids: list[str]) -> list[int]:
        missing = [p for p in pids if p not in row_of]
        if missing:
            raise MissingIdError(f"passage id {missing[0]!r} is not in the corpus")
        return [row_of[p] for p in pids]

    pairs = marco_pair_records(queries, qrels, rows_of)
    for i, (query, pos, judged) in enumerate(pairs):
        negs = random_rows(example_rng(seed, 0, i), len(corpus), num_negatives, judged)
        yield {"query": query, "positive": corpus[pos], "negatives": [corpus[r] for r in negs]}


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
        raise UserInputError(f"DPR example without a positive context: {example['question']!r}")
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


def joint_from_tsv(
    path: str | Path, list_size: int, extra_positives: str = "error"
) -> Iterator[Example]:
    """RocketQAv2 list TSV: one example per block of ``list_size`` lines (blocks with more
    than one positive: see :func:`rqa_jax.data.formats.iter_joint_lists`)."""
    for jl in F.iter_joint_lists(path, list_size, extra_positives):
        yield {"query": jl.query, "titles": [t or "" for t in jl.titles], "paras": list(jl.paras),
               "labels": list(jl.labels)}  # fmt: skip


def dual_from_dpr_sampled(example: Example, k: int, rng: np.random.Generator) -> Example:
    """DPR form → dual form with ``k`` negatives sampled at random with ``rng`` (one draw
    per epoch and example, as DPR reshuffles its hard negatives every epoch): hard negatives
    first, topped up from the other negatives when there are fewer than ``k``. With fewer
    than ``k`` in all the list is short (the batch then says so)."""
    if not example["positives"]:
        raise UserInputError(f"DPR example without a positive context: {example['question']!r}")
    hard, other = example["hard_negatives"], example["negatives"]
    negs = [hard[i] for i in rng.permutation(len(hard))[:k]]
    if len(negs) < k:
        negs += [other[i] for i in rng.permutation(len(other))[: k - len(negs)]]
    return {"query": example["question"], "positive": example["positives"][0], "negatives": negs}


# ----------------------------------------------------------------------------- store records
# Compact msgpack records for rqa_jax.data.store (lists, not dicts: no key per field).


def _pack(p: dict[str, str]) -> list[str]:
    return [p["id"], p["title"], p["text"]]


def _unpack(r: Sequence[str]) -> dict[str, str]:
    return {"id": r[0], "title": r[1], "text": r[2]}


def dual_record(ex: Example) -> list[Any]:
    return [ex["query"], _pack(ex["positive"]), [_pack(n) for n in ex["negatives"]]]


def dual_from_record(r: Sequence[Any]) -> Example:
    return {"query": r[0], "positive": _unpack(r[1]), "negatives": [_unpack(n) for n in r[2]]}


def dpr_record(ex: Example) -> list[Any]:
    return [ex["question"], ex["answers"], *([_pack(p) for p in ex[k]] for k in DPR_LISTS)]


def dpr_from_record(r: Sequence[Any]) -> Example:
    lists = {k: [_unpack(p) for p in r[2 + i]] for i, k in enumerate(DPR_LISTS)}
    return {"question": r[0], "answers": list(r[1]), **lists}


DPR_LISTS = ("positives", "negatives", "hard_negatives")


def dpr_records(path: str | Path) -> Iterator[list[Any]]:
    """DPR examples with a positive (DPR skips the others) as store records."""
    return (dpr_record(ex) for ex in dpr_examples(path) if ex["positives"])


def cross_record(ex: Example) -> list[Any]:
    return [ex["query"], ex["title"], ex["para"], ex["label"]]


def cross_from_record(r: Sequence[Any]) -> Example:
    return {"query": r[0], "title": r[1], "para": r[2], "label": r[3]}


def joint_record(ex: Example) -> list[Any]:
    return [ex["query"], ex["titles"], ex["paras"], ex["labels"]]


def joint_from_record(r: Sequence[Any]) -> Example:
    return {"query": r[0], "titles": list(r[1]), "paras": list(r[2]), "labels": list(r[3])}


# ----------------------------------------------------------------------------- lazy sources


def read_rows(records: Any, rows: Sequence[int]) -> list[Any]:
    """``records`` at ``rows``, in one batched read where the source has one."""
    batched = getattr(records, "__getitems__", None)
    return list(batched(list(rows))) if batched else [records[r] for r in rows]


class Source:
    """Random-access examples for :class:`rqa_jax.data.loader.Loader`: ``len``, ``[i]``,
    batched ``__getitems__`` and iteration, all through :meth:`read`. A source whose
    examples change with the epoch (``epoch_dependent``: sampled negatives) draws them
    from (seed, epoch, index) alone; indexing and iteration give epoch 0."""

    epoch_dependent = False

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        raise NotImplementedError

    def __getitems__(self, rows: Sequence[int]) -> list[Example]:
        return self.read(rows, 0)

    def __getitem__(self, index: int) -> Example:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"example {index} out of range for {n}")
        return self.read([index % n], 0)[0]

    def __iter__(self) -> Iterator[Example]:
        n = len(self)
        for start in range(0, n, 1024):
            yield from self.read(range(start, min(start + 1024, n)), 0)


class MappedSource(Source):
    """Stored records decoded to examples (``decode``)."""

    def __init__(self, records: Any, decode: Callable[[Any], Example]) -> None:
        self.records, self.decode = records, decode

    def __len__(self) -> int:
        return len(self.records)

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        return [self.decode(r) for r in read_rows(self.records, rows)]


class MarcoRandomNegatives(Source):
    """MS MARCO (query, positive) pairs (records of :func:`marco_pair_records`) with
    ``num_negatives`` random corpus negatives drawn per (seed, epoch, index): RocketQA step
    1. ``corpus`` is a :class:`rqa_jax.data.store.CorpusStore`; nothing is held in memory.

    ``lines`` > 1 lays each pair out ``lines`` times per epoch, each line with its own
    negatives, distinct across the pair's lines: the released step-1 data holds 4 random
    negatives per query, one per line, so an epoch there is 4 lines per (query, positive)."""

    epoch_dependent = True

    def __init__(
        self, pairs: Any, corpus: Any, num_negatives: int, seed: int = 0, lines: int = 1
    ) -> None:
        if lines < 1:
            raise UserInputError(f"lines per (query, positive) must be at least 1, got {lines}")
        self.pairs, self.corpus, self.k, self.seed, self.lines = (
            pairs,
            corpus,
            num_negatives,
            seed,
            lines,
        )

    def __len__(self) -> int:
        return len(self.pairs) * self.lines

    def _negatives(self, row: int, epoch: int, judged: Collection[int], n: int) -> list[int]:
        if self.lines == 1:  # one line per pair: the draw of the pair's own index
            return random_rows(example_rng(self.seed, epoch, row), n, self.k, judged)
        pair, line = divmod(row, self.lines)
        drawn = random_rows(example_rng(self.seed, epoch, pair), n, self.k * self.lines, judged)
        return drawn[line * self.k : (line + 1) * self.k]

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        rows = [int(r) for r in rows]
        records = read_rows(self.pairs, [r // self.lines for r in rows])
        n = len(self.corpus)
        negs = [
            self._negatives(r, epoch, judged, n)
            for r, (_, _, judged) in zip(rows, records, strict=True)
        ]
        found = self.corpus.passages([rec[1] for rec in records] + [x for ns in negs for x in ns])
        out, at = [], len(records)
        for (query, _, _), i in zip(records, range(len(records)), strict=True):
            out.append({"query": query, "positive": found[i], "negatives": found[at : at + self.k]})
            at += self.k
        return out


class DprSampledNegatives(Source):
    """DPR-form examples in dual form, ``num_negatives`` negatives sampled per (seed, epoch,
    index) (:func:`dual_from_dpr_sampled`). ``rows``: the examples to use (those with a
    positive) where ``examples`` holds others too."""

    epoch_dependent = True

    def __init__(self, examples: Any, num_negatives: int, seed: int = 0,
                 rows: Sequence[int] | None = None) -> None:  # fmt: skip
        self.examples, self.k, self.seed = examples, num_negatives, seed
        self.rows = None if rows is None else np.asarray(rows, np.int64)

    def __len__(self) -> int:
        return len(self.examples) if self.rows is None else len(self.rows)

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        rows = [int(r) for r in rows]
        where = rows if self.rows is None else [int(self.rows[r]) for r in rows]
        return [dual_from_dpr_sampled(ex, self.k, example_rng(self.seed, epoch, r))
                for r, ex in zip(rows, read_rows(self.examples, where), strict=True)]  # fmt: skip


class _CorpusRecords(Source):
    """Stored records that name corpus rows; texts are read from the corpus store."""

    def __init__(self, records: Any, corpus: Any) -> None:
        self.records, self.corpus = records, corpus

    def __len__(self) -> int:
        return len(self.records)


class CorpusPairs(_CorpusRecords):
    """Pointwise re-ranker examples stored as ``[query, corpus row, label]``."""

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        records = read_rows(self.records, rows)
        found = self.corpus.passages([r[1] for r in records])
        return [{"query": q, "title": p["title"], "para": p["text"], "label": label}
                for (q, _, label), p in zip(records, found, strict=True)]  # fmt: skip


class CorpusLists(_CorpusRecords):
    """Listwise re-ranker examples stored as ``[query, corpus rows, labels]``."""

    def read(self, rows: Sequence[int], epoch: int = 0) -> list[Example]:
        records = read_rows(self.records, rows)
        found = iter(self.corpus.passages([row for r in records for row in r[1]]))
        out = []
        for query, list_rows, labels in records:
            ps = [next(found) for _ in list_rows]
            out.append({"query": query, "titles": [p["title"] for p in ps],
                        "paras": [p["text"] for p in ps], "labels": list(labels)})  # fmt: skip
        return out


# ----------------------------------------------------------------------------- re-ranker data


def query_rng(seed: int, qid: str) -> np.random.Generator:
    """A query's generator, from (seed, qid): independent of the order queries come in."""
    key = int.from_bytes(hashlib.blake2b(qid.encode("utf-8"), digest_size=8).digest(), "little")
    return np.random.default_rng((seed % 2**32, key))


def sample_distinct(
    rng: np.random.Generator, pool: Sequence[str], exclude: Collection[str], k: int
) -> list[str]:
    """Up to ``k`` distinct pids of ``pool`` outside ``exclude``, drawn uniformly with ``rng``
    (all of them, in pool order, when there are no more than ``k``)."""
    candidates = list(dict.fromkeys(p for p in pool if p not in exclude))
    if len(candidates) <= k:
        return candidates
    return [candidates[i] for i in rng.choice(len(candidates), k, replace=False)]


def cross_marco_records(
    queries: str | Path,
    qrels: str | Path,
    corpus: Any,
    run: str | Path | None,
    objective: str,
    negatives_per_query: int,
    list_size: int,
    depth: int,
    seed: int,
    not_negatives: str | Path | None = None,
) -> Iterator[list[Any]]:
    """Re-ranker training records from MS MARCO qrels and a retriever's run over the train
    queries, as RocketQA's ``construct_marco_train_ce.py`` builds them:

    * pointwise: per query, every qrels positive labelled 1 and ``negatives_per_query``
      *distinct* passages sampled from the run's top ``depth`` (positives excluded)
      labelled 0 → ``[query, row, label]``;
    * listwise: per (query, positive), a list of the positive and ``list_size - 1``
      distinct sampled negatives → ``[query, rows, [1, 0, ...]]``.

    Without a run, negatives are random corpus passages (RocketQA always had a run).
    ``not_negatives``: qrels of further relevant pairs that are never drawn as negatives nor
    trained on as positives (RocketQA's ``qrels.train.addition.tsv``, found by literal match).
    Sampling is seeded per (``seed``, qid). ``corpus``: ``len()`` and ``rows_of(pids)``.
    Anomalies are counted and reported in one warning each: run queries without positives
    (skipped), train queries absent from the run (pointwise: positives only; listwise:
    random negatives), pools with too few negatives (pointwise: all of them; listwise:
    topped up at random)."""
    query_text = {q.id: q.text for q in F.iter_queries(queries)}
    positives: dict[str, list[str]] = {}
    for qid, docs in F.read_qrels(qrels).items():
        if qid not in query_text:
            raise UserInputError(f"{qrels}: qid {qid!r} is not in {queries}")
        if any(rel > 0 for rel in docs.values()):
            positives[qid] = [p for p, rel in docs.items() if rel > 0]
    also = F.read_qrels(not_negatives) if not_negatives is not None else {}
    n_corpus, listwise = len(corpus), objective == "listwise"
    k = list_size - 1 if listwise else negatives_per_query
    counts = {"no_positive": 0, "not_in_run": 0, "short": 0}

    def rows(pids: list[str]) -> list[int]:
        try:
            return [int(r) for r in corpus.rows_of(pids)]
        except KeyError as e:
            raise UserInputError(f"{run or qrels}: {e.args[0]}") from None

    def emit(qid: str, pool: Sequence[str] | None) -> Iterator[list[Any]]:
        rng, pos = query_rng(seed, qid), positives[qid]
        pos_rows, text = rows(pos), query_text[qid]
        extra = [p for p in also.get(qid, {}) if p not in pos]
        skip, skip_rows = [*pos, *extra], [*pos_rows, *(rows(extra) if extra else [])]
        if not listwise:
            negs = rows(sample_distinct(rng, pool, skip, k)) if pool is not None else []
            if pool is None and run is None:
                negs = random_rows(rng, n_corpus, k, skip_rows)
            counts["short"] += pool is not None and len(negs) < k
            yield from ([text, r, 1] for r in pos_rows)
            yield from ([text, r, 0] for r in negs)
            return
        for pos_row in pos_rows:
            negs = rows(sample_distinct(rng, pool, skip, k)) if pool is not None else []
            if pool is not None and len(negs) < k:
                counts["short"] += 1
            if len(negs) < k:
                negs += random_rows(rng, n_corpus, k - len(negs), [*skip_rows, *negs])
            yield [text, [pos_row, *negs], [1] + [0] * k]

    seen: set[str] = set()
    if run is not None:
        for qid, ranked in iter_run(run, pid_reader(run, corpus), depth):
            if qid not in positives:
                counts["no_positive"] += 1
                continue
            seen.add(qid)
            yield from emit(qid, [p for p, _ in ranked])
    for qid in positives:
        if qid not in seen:
            counts["not_in_run"] += run is not None
            yield from emit(qid, None)
    notes = {
        "no_positive": "run queries have no positive in the qrels: skipped",
        "not_in_run": "train queries with positives are not in the run: "
        + ("random negatives" if listwise else "positives only"),
        "short": f"lists of the top {depth} have fewer than {k} passages that are not positives: "
        + ("topped up at random" if listwise else "took them all"),
    }
    for key, n in counts.items():
        if n:
            warnings.warn(f"{run}: {n} {notes[key]}", stacklevel=2)

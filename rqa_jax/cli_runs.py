"""Binary runs on the command line: ``rqa convert run`` (text ↔ binary), and the binary-run
side of ``rqa search`` / ``mine`` / ``score`` / ``denoise`` / ``augment`` / ``evaluate`` /
``rerank`` (:mod:`rqa_jax.data.mining`): the run is read a chunk of queries at a time and the
corpus from a record store, so MS MARCO's 502M-row top-1000 never sits in memory.

The corpus store of a TSV is converted once into ``$RQA_CACHE_DIR`` (default
``~/.cache/rqa_jax``) and reused while the file is unchanged."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rqa_jax.data import binrun
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.data.store import CorpusStore
from rqa_jax.errors import UserInputError

CACHE_ENV = "RQA_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rqa_jax")


def corpus_store(corpus: str, titles: str | None = None, progress: bool = True) -> CorpusStore:
    """``pid \\t text [\\t title]`` (titles from ``titles`` winning, as ``rqa score`` reads
    them) as a corpus store: rows in file order, converted once."""
    from rqa_jax.data import formats as F
    from rqa_jax.data import store

    def passages() -> Any:
        by_id = F.read_titles(titles) if titles else {}
        for r in F.iter_collection(corpus, allow_title=True):
            yield r.id, by_id.get(r.id, r.title), r.text

    files = [corpus, *([titles] if titles else [])]
    return CorpusStore(store.ensure_corpus(cache_dir(), files, passages, progress=progress))


def need_corpus(args: argparse.Namespace) -> None:
    """A binary run's rows are read against the corpus it was searched over."""
    if not args.corpus:
        raise UserInputError(
            f"{args.run} is a binary run: --corpus (the corpus it was searched over) is needed"
        )


def checked_run(path: str, corpus: CorpusStore) -> BinaryRun:
    run = BinaryRun(path)
    run.check_corpus(len(corpus), corpus.fingerprint(), f"the corpus store {corpus.dir}")
    return run


def queries_of(path: str) -> dict[str, str]:
    from rqa_jax.data import formats as F

    return {q.id: q.text for q in F.iter_queries(path)}


# ----------------------------------------------------------------------------- convert


def add_convert_run(sources: argparse._SubParsersAction) -> None:
    r = sources.add_parser(
        "run",
        help="a TREC / RocketQA text run to a binary run, or back",
        description="A text run (TREC 'qid Q0 pid rank score tag' or RocketQA 'qid pid rank "
        "score', each query's lines together) becomes a binary run dir (memory-mapped corpus "
        "rows + scores); a binary run dir becomes a text run in --format. Both directions "
        "stream. Rows are the corpus file's line order.",
    )
    r.add_argument("--input", required=True, help="text run file, or binary run dir")
    r.add_argument("--output", required=True, help="binary run dir, or text run file")
    r.add_argument("--corpus", required=True, help="TSV 'pid<TAB>text[<TAB>title]' searched")
    r.add_argument("--format", choices=["trec", "rocketqa"], default="trec",
                   help="text form written from a binary run (default trec)")  # fmt: skip
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run_convert_run)


def run_convert_run(args: argparse.Namespace) -> int:
    corpus = corpus_store(args.corpus, progress=not args.no_progress)
    if binrun.is_binary_run(args.input):
        checked_run(args.input, corpus)
        n = binrun.binary_to_text(args.input, args.output, corpus.pid_of_rows, args.format)
        print(f"{n} run lines -> {args.output}")
        return 0
    if not Path(args.input).is_file():
        raise FileNotFoundError(f"{args.input}: no such run file")
    n = binrun.text_to_binary(
        args.input, args.output, corpus.rows_of, len(corpus), corpus.fingerprint()
    )
    print(f"{n} queries -> binary run {args.output}")
    return 0


# ----------------------------------------------------------------------------- search


def search_binary(model: Any, index: Any, queries: list[Any], k: int, out: str, chunk: int = 4096,
                  progress: bool = True) -> int:  # fmt: skip
    """``rqa search --format binary`` (:func:`rqa_jax.pipelines.retrieval.search_into`)."""
    from rqa_jax.pipelines.retrieval import search_into

    search_into(model, index, [(q.id, q.text) for q in queries], k, out, chunk, progress)
    return len(queries)


# ----------------------------------------------------------------------------- RocketQA's steps


def mine(args: argparse.Namespace) -> int:
    """``rqa mine`` on a binary run: a binary run of each judged query's top ``depth`` with
    its positives removed."""
    from rqa_jax.data import formats as F
    from rqa_jax.data import mining as M

    need_corpus(args)
    corpus = corpus_store(args.corpus)
    run, qrels = checked_run(args.run, corpus), F.read_qrels(args.qrels)
    n = M.mine_run(run, qrels, corpus, args.output, args.depth)
    print(f"mined candidates for {n} queries -> binary run {args.output}")
    return 0


def score(args: argparse.Namespace, scorer: Any) -> int:
    """``rqa score`` on a binary run: a binary run of the re-ranker's scores (resumable,
    split over the processes of a multi-process run)."""
    from rqa_jax.pipelines.retrieval import score_into

    corpus = corpus_store(args.corpus, args.titles, not args.no_progress)
    run = checked_run(args.run, corpus)
    out = score_into(scorer, run, queries_of(args.queries), corpus, args.output, args.top,
                     progress=not args.no_progress, chunk_queries=args.chunk_queries)  # fmt: skip
    print(f"scored the top {out.k} of {out.n} queries -> binary run {args.output}")
    return 0


def denoise(args: argparse.Namespace) -> int:
    """``rqa denoise`` on a binary run and its scores: chunks split over the processes."""
    from rqa_jax.data import formats as F
    from rqa_jax.data import mining as M
    from rqa_jax.pipelines.retrieval import chunked

    corpus = corpus_store(args.corpus, args.titles)
    run, qrels = checked_run(args.run, corpus), F.read_qrels(args.qrels)
    scores = checked_run(args.scores, corpus)
    queries = queries_of(args.queries)
    not_negatives = F.read_qrels(args.not_negatives) if args.not_negatives else None
    counts = chunked(Path(args.output), len(M.judged_rows(run, qrels)), M.CHUNK, lambda pi, pc: M.denoise_run(
        run, qrels, scores, queries, corpus, args.output, args.per_positive, args.top, args.depth, args.tau_neg,
        args.seed, args.pick, None, M.CHUNK, pi, pc, False, not_negatives))  # fmt: skip
    print(f"{counts['lines']} training lines -> {args.output}; {json.dumps(counts)}")
    return 0


def augment(args: argparse.Namespace) -> int:
    """``rqa augment`` on a binary run and its scores: chunks split over the processes."""
    from rqa_jax.data import mining as M
    from rqa_jax.pipelines.retrieval import chunked

    corpus = corpus_store(args.corpus, args.titles)
    run, scores = checked_run(args.run, corpus), checked_run(args.scores, corpus)
    queries = queries_of(args.queries)
    counts = chunked(Path(args.output), len(run), M.CHUNK, lambda pi, pc: M.augment_run(
        run, scores, queries, corpus, args.output, args.negatives, args.top, args.tau_pos, args.tau_neg,
        args.seed, None, M.CHUNK, pi, pc, False, args.pick))  # fmt: skip
    print(f"{counts['lines']} training lines -> {args.output}; {json.dumps(counts)}")
    return 0


def evaluate(args: argparse.Namespace, metrics: list[str]) -> dict[str, float]:
    """Metrics of a binary run against qrels, one query at a time (needs ``--corpus``)."""
    from rqa_jax.data import formats as F
    from rqa_jax.eval.metrics import evaluate_stream

    need_corpus(args)
    corpus = corpus_store(args.corpus, progress=False)
    run = checked_run(args.run, corpus)
    return evaluate_stream(
        F.read_qrels(args.qrels), binrun.iter_run(run, corpus.pid_of_rows), metrics
    )

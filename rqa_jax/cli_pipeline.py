"""``rqa pipeline v1`` and the RocketQA data steps as commands over files (``rqa mine``,
``score``, ``denoise``, ``augment``), so users run each step on their own data."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from rqa_jax.config_flags import config_with_overrides

PIPELINES = ("v1", "v2")
BINARY = " (text, or a binary run dir from `rqa search --format binary`: read a chunk of queries at a time)"


def _corpus(path: str, titles: str | None, raw: bool = False) -> dict[str, tuple[str | None, str]]:
    """``pid \\t text [\\t title]``, titles from ``--titles`` (``pid \\t title``) winning.
    ``raw``: titles verbatim (``-`` and ``''`` kept, for the ``rocketqa_literal`` title form)."""
    from rqa_jax.data import formats as F

    rows = F.iter_collection(path, allow_title=True, raw_titles=raw)
    corpus = {r.id: (r.title, r.text) for r in rows}
    if titles:
        by_id = F.read_titles(titles, raw=raw)
        corpus = {pid: (by_id.get(pid, title), text) for pid, (title, text) in corpus.items()}
    return corpus


def _queries(path: str) -> dict[str, str]:
    from rqa_jax.data import formats as F

    return {q.id: q.text for q in F.iter_queries(path)}


def _text_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", required=True, help="TSV 'qid<TAB>query'")
    p.add_argument("--corpus", required=True, help="TSV 'pid<TAB>text[<TAB>title]'")
    p.add_argument(
        "--titles",
        default=None,
        help="TSV 'pid<TAB>title'; its titles replace the corpus' 3rd column where both give "
        "one (default: the corpus' 3rd column, if any)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mine", help="a retriever run's top-n per judged query, labelled positives removed"
    )
    p.add_argument(
        "--run", required=True, help=f"the retriever's run over the train queries{BINARY}"
    )
    p.add_argument("--qrels", required=True, help="train qrels: their positives are excluded")
    p.add_argument(
        "--depth", type=int, default=1000, help="candidates kept per query (default 1000)"
    )
    p.add_argument(
        "--output",
        required=True,
        help="run of hard-negative candidates (binary for a binary --run)",
    )
    p.add_argument(
        "--corpus", default=None, help="with a binary --run: the corpus TSV it was searched over"
    )
    p.set_defaults(func=_run_mine)

    p = sub.add_parser(
        "score", help="cross-encoder scores of each query's top candidates (resumable)"
    )
    p.add_argument("--model", required=True, help="cross-encoder dir")
    p.add_argument("--run", required=True, help=f"candidates to score{BINARY}")
    _text_inputs(p)
    p.add_argument("--top", type=int, default=50, help="candidates scored per query (default 50)")
    p.add_argument("--output", required=True,
                   help="scores, as a run 'qid pid rank score' (a binary run dir for a binary --run; resumable)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="pairs per model call (default 64)")
    p.add_argument("--chunk-queries", type=int, default=256,
                   help="binary --run: queries scored per chunk, the unit a resumed run redoes and "
                        "processes share out (default 256)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_score)

    p = sub.add_parser("denoise", help="denoised hard negatives -> RocketQA dual-encoder TSV")
    p.add_argument(
        "--run", required=True, help=f"the retriever's run over the train queries{BINARY}"
    )
    p.add_argument("--qrels", required=True, help="train qrels")
    p.add_argument(
        "--scores", required=True, help="`rqa score` output for the run's top candidates"
    )
    _text_inputs(p)
    p.add_argument(
        "--output", required=True, help="TSV 'query, pos title, pos para, neg title, neg para, 0'"
    )
    p.add_argument(
        "--per-positive", type=int, default=4, help="negatives per positive (MS MARCO 4, NQ 1)"
    )
    p.add_argument(
        "--top", type=int, default=50, help="candidates the cross encoder judged (default 50)"
    )
    p.add_argument(
        "--depth", type=int, default=1000, help="top-up pool: ranks top+1..depth (default 1000)"
    )
    p.add_argument(
        "--tau-neg", type=float, default=0.1, help="a negative scores below this (default 0.1)"
    )
    p.add_argument("--pick", choices=["random", "rank"], default="rank",
                   help="best-ranked first (the released script; default) or random")  # fmt: skip
    p.add_argument("--not-negatives", default=None,
                   help="qrels of passages never taken as negatives (RocketQA's "
                        "qrels.train.addition.tsv: positives found by literal match)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.set_defaults(func=_run_denoise)

    p = sub.add_parser("augment", help="pseudo-labelled unlabeled questions -> RocketQA dual TSV")
    p.add_argument(
        "--run", required=True, help=f"a retriever's run over the unlabeled questions{BINARY}"
    )
    p.add_argument("--scores", required=True, help="`rqa score` output for that run")
    _text_inputs(p)
    p.add_argument("--output", required=True, help="dual-encoder TSV")
    p.add_argument("--top", type=int, default=50, help="candidates considered (default 50)")
    p.add_argument(
        "--tau-pos", type=float, default=0.9, help="pseudo positive above this (default 0.9)"
    )
    p.add_argument("--tau-neg", type=float, default=0.1, help="negatives below this (default 0.1)")
    p.add_argument("--negatives", type=int, default=4, help="negatives per question (default 4)")
    p.add_argument("--pick", choices=["random", "rank"], default="rank",
                   help="best-ranked negatives first (the released script; default) or random")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.set_defaults(func=_run_augment)


def _stats_path(output: str) -> Path:
    return Path(f"{output}.stats.json")


def _run_mine(args: argparse.Namespace) -> int:
    from rqa_jax import cli_runs
    from rqa_jax.data import binrun
    from rqa_jax.data import formats as F
    from rqa_jax.data import lists as L

    if binrun.is_binary_run(args.run):
        return cli_runs.mine(args)
    qrels, count, queries = F.read_qrels(args.qrels), [0], [0]

    def mined() -> Iterator[str]:  # streamed: one query of the run at a time
        for qid, ranked in F.iter_run_groups(args.run):
            for q, docs in L.mine({qid: ranked}, qrels, args.depth).items():
                queries[0] += 1
                count[0] += len(docs)
                yield from (f"{q} Q0 {p} {r} {s:.6f} rqa_jax" for r, (p, s) in enumerate(docs, 1))

    F.write_lines(args.output, mined())
    print(f"mined {count[0]} candidates for {queries[0]} queries -> {args.output}")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from rqa_jax import cli_runs
    from rqa_jax.data import binrun
    from rqa_jax.data import formats as F
    from rqa_jax.data import lists as L
    from rqa_jax.pipelines.retrieval import cross_scorer

    if binrun.is_binary_run(args.run):
        return cli_runs.score(args, cross_scorer(args.model, args.batch_size))
    run, queries, corpus = (
        F.read_run(args.run),
        _queries(args.queries),
        _corpus(args.corpus, args.titles),
    )
    scores = L.score_candidates(cross_scorer(args.model, args.batch_size), run, queries, corpus, args.output,
                                args.top, progress=not args.no_progress)  # fmt: skip
    print(
        f"scored {sum(map(len, scores.values()))} pairs for {len(scores)} queries -> {args.output}"
    )
    return 0


def _run_denoise(args: argparse.Namespace) -> int:
    from rqa_jax import cli_runs
    from rqa_jax.data import binrun
    from rqa_jax.data import formats as F
    from rqa_jax.data import lists as L

    if binrun.is_binary_run(args.run):
        return cli_runs.denoise(args)

    not_negatives = F.read_qrels(args.not_negatives) if args.not_negatives else None
    pairs, stats, _ = L.denoise(F.read_run(args.run), F.read_qrels(args.qrels), L.read_scores(args.scores),
                                args.per_positive, args.top, args.depth, args.tau_neg, args.seed, args.pick,
                                not_negatives)  # fmt: skip
    lines = L.write_dual(
        args.output, pairs, _queries(args.queries), _corpus(args.corpus, args.titles)
    )
    L.write_stats(_stats_path(args.output), {"lines": lines, **stats.as_dict()})
    print(f"{lines} training lines -> {args.output}; {json.dumps(stats.as_dict())}")
    return 0


def _run_augment(args: argparse.Namespace) -> int:
    from rqa_jax import cli_runs
    from rqa_jax.data import binrun
    from rqa_jax.data import formats as F
    from rqa_jax.data import lists as L

    if binrun.is_binary_run(args.run):
        return cli_runs.augment(args)

    pairs, stats = L.augment(F.read_run(args.run), L.read_scores(args.scores), args.negatives, args.top,
                             args.tau_pos, args.tau_neg, args.seed, args.pick)  # fmt: skip
    lines = L.write_dual(
        args.output, pairs, _queries(args.queries), _corpus(args.corpus, args.titles)
    )
    L.write_stats(_stats_path(args.output), {"lines": lines, **stats.as_dict()})
    print(f"{lines} training lines -> {args.output}; {json.dumps(stats.as_dict())}")
    return 0


def build_pipeline_parser() -> argparse.ArgumentParser:
    """The parser of ``rqa pipeline`` (its epilog lists the config files)."""
    from rqa_jax.cli_help import HelpFormatter, pipeline_epilog

    parser = argparse.ArgumentParser(
        prog="rqa pipeline",
        description="RocketQA's steps as resumable stages: each stage's outputs go into "
        "WORKDIR/<stage>/ and a finished stage is skipped when the command runs again.",
        epilog=pipeline_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("which", choices=PIPELINES,
                        help="v1: RocketQA's four steps; v2: RocketQAv2's joint training from v1's models")  # fmt: skip
    parser.add_argument("--config", required=True,
                        help="config file FILE.py[:runlocal] with get_config() (listed below)")  # fmt: skip
    parser.add_argument(
        "--workdir", required=True, help="stage dirs, report.json and report.md go here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="on an error in your input, print its traceback too")  # fmt: skip
    return parser


def run_pipeline_command(argv: Sequence[str], debug: bool = False) -> int:
    """``rqa pipeline v1|v2 --config configs/X.py[:arg] --workdir DIR [--config.key=value ...]``.
    A config that cannot be loaded exits 2; other errors propagate to ``rqa``'s handler."""
    from rqa_jax.errors import RqaError

    args, rest = build_pipeline_parser().parse_known_args(argv)
    try:
        config = config_with_overrides(args.config, rest)
    except (RqaError, FileNotFoundError, SyntaxError) as e:
        if debug or args.debug:
            traceback.print_exc()
        print(f"rqa pipeline: error: {e}", file=sys.stderr)
        return 2
    if args.which == "v1":
        from rqa_jax.pipelines.rocketqa_v1 import run_pipeline
    else:
        from rqa_jax.pipelines.rocketqa_v2 import run_pipeline

    report = run_pipeline(config, args.workdir, progress=not args.no_progress)
    print((Path(args.workdir) / "report.md").read_text())
    print(json.dumps(report["stages"]))
    return 0

"""The ``rqa`` command. Each subcommand is a thin layer over the library.

Errors in the user's input (the project's :class:`~rqa_jax.errors.RqaError` types, and
missing files) print one clear line (file:line where there is one) and exit 1; with
``--debug`` their traceback comes first. Any other exception is a bug: its traceback is
printed and the exit status is 70 (EX_SOFTWARE), so scripts can tell the two apart."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from rqa_jax.cli_export import add_commands as add_export_commands
from rqa_jax.cli_help import HelpFormatter, set_formatter, train_epilog
from rqa_jax.cli_pipeline import add_commands as add_pipeline_commands
from rqa_jax.cli_pipeline import run_pipeline_command
from rqa_jax.cli_runs import add_convert_run
from rqa_jax.config_flags import config_with_overrides
from rqa_jax.data import binrun
from rqa_jax.data.formats import ID_TEXT_FORMATS
from rqa_jax.data.tokenize import PAIR_FORMS, TITLE_FORMS
from rqa_jax.errors import RqaError, UserInputError

# Errors that mean "your input is wrong", reported as one line without a traceback. Every
# error type of the project subclasses RqaError (FormatError, ModelDirError, ModelKindError,
# CheckpointMismatchError, UnsupportedModelError, IndexMismatchError, ...); a plain
# ValueError / TypeError / KeyError is a bug and shows its traceback.
USER_ERRORS = (RqaError, FileNotFoundError)
EXIT_USER_ERROR, EXIT_CONFIG_ERROR, EXIT_BUG = 1, 2, 70
POOLINGS = ("cls", "mean")
DEBUG_FLAG = "--debug"
DEBUG_HELP = "on an error in your input, print its traceback too (a bug always shows one)"
TITLES_HELP = (
    "TSV 'pid<TAB>title' (MS MARCO's titles file); its titles replace the corpus' 3rd column "
    "where both give one, encoded in the model's title form as in training (default: the "
    "corpus' 3rd column, if any)"
)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a TSV of queries or passages to embeddings.npy + ids.txt",
        description="Input: 'id<TAB>text' lines (passages may add '<TAB>title', or take titles "
        "from --titles). Output DIR gets embeddings.npy (float32, row i = line i), ids.txt and "
        "meta.json. The whole input is validated (columns, empty texts, duplicate ids) before "
        "the model is loaded. Settings left unset come from the model dir (rqa_jax.json, "
        "sentence-transformers files), as it was trained.",
    )
    p.add_argument("--model", required=True,
                   help="dual-encoder dir: HF / sentence-transformers encoder, or an rqa_jax dir "
                        "with query_encoder/ + passage_encoder/ (not a re-ranker)")  # fmt: skip
    p.add_argument("--kind", required=True, choices=["query", "passage"],
                   help="which tower encodes the rows")  # fmt: skip
    p.add_argument("--input", required=True, help="TSV file 'id<TAB>text[<TAB>title]'")
    p.add_argument("--output", required=True, help="output dir")
    p.add_argument("--format", default="id_text_title", choices=ID_TEXT_FORMATS,
                   help="column order of passage files with titles")  # fmt: skip
    p.add_argument("--titles", default=None, help=f"passages only: {TITLES_HELP}")
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="default: the model dir's (rqa_jax.json, sentence-transformers metadata), else cls")  # fmt: skip
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise vectors (default: the model dir's choice, else no)")  # fmt: skip
    p.add_argument("--max-length", type=int, default=None,
                   help="max tokens (default: the model dir's, else 32 query / 128 passage)")  # fmt: skip
    p.add_argument("--title-form", choices=TITLE_FORMS, default=None,
                   help="how titles are encoded: hf | rocketqa ([CLS] [SEP] para [SEP] without "
                        "title) | rocketqa_literal (titles verbatim, '-' a one-token title, as the "
                        "original; default: the model dir's, else hf)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass")
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype"
    )
    p.add_argument("--storage-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the stored embeddings")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=0,
                   help="write shards of this many rows (multi-host jobs split them); 0 = one file")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> int:
    import jax

    from rqa_jax.data import formats
    from rqa_jax.index.encode import count_valid_lines, encode_file, encode_sharded
    from rqa_jax.inference import check_model_dir_kind, load_dual_encoder

    # Everything that can be checked before spending time loading the model.
    check_model_dir_kind(args.model, "dual")
    if args.titles is not None:
        if args.kind != "passage":
            raise UserInputError("--titles applies to --kind passage only")
        formats.read_titles(args.titles, keep=())  # validates every line, keeps nothing
    n_rows = count_valid_lines(args.input, args.kind, args.format)  # columns, texts, unique ids
    lengths = {"q_max_len" if args.kind == "query" else "p_max_len": args.max_length}
    model = load_dual_encoder(
        args.model,
        pooling=args.pooling,
        normalize=args.normalize,
        title_form=args.title_form,
        dtype=args.dtype,
        batch_size=args.batch_size,
        **lengths,
    )
    start = time.perf_counter()
    from rqa_jax.models.hf import model_fingerprint

    common = dict(fmt=args.format, progress=not args.no_progress, model_name=str(args.model),
                  model_fingerprint=model_fingerprint(args.model), storage_dtype=args.storage_dtype,
                  titles=args.titles)  # fmt: skip
    if args.shard_size:
        encode_sharded(model, args.kind, args.input, args.output, args.shard_size,
                       jax.process_index(), jax.process_count(), **common)  # fmt: skip
        if jax.process_count() > 1:  # every shard done: process 0 writes shards.json
            from jax.experimental import multihost_utils

            from rqa_jax.index.encode import finalize_shards

            multihost_utils.sync_global_devices("rqa encode: shards written")
            if jax.process_index() == 0:
                finalize_shards(args.output, n_rows, args.shard_size)
        n = n_rows
    else:
        n = encode_file(model, args.kind, args.input, args.output, n_rows=n_rows, **common)
    secs = time.perf_counter() - start
    print(f"encoded {n} {args.kind} rows in {secs:.1f}s ({n / secs:.1f}/s) -> {args.output}")
    return 0


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="build a ScaNN or exact index over `rqa encode` passage embeddings"
    )
    p.add_argument("--embeddings", required=True, help="output dir of rqa encode --kind passage")
    p.add_argument("--output", required=True, help="index dir")
    p.add_argument("--backend", choices=["scann", "exact"], default="scann",
                   help="scann: approximate, fast on large corpora; exact: brute force")  # fmt: skip
    p.add_argument(
        "--num-leaves", type=int, default=None, help="ScaNN tree leaves (default ~sqrt(N))"
    )
    p.add_argument("--num-leaves-to-search", type=int, default=None,
                   help="ScaNN leaves searched per query (default: chosen from N)")  # fmt: skip
    p.add_argument("--reorder", type=int, default=None,
                   help="ScaNN exact re-scoring depth (default: chosen from N)")  # fmt: skip
    p.add_argument("--shard-rows", type=int, default=0,
                   help="split the corpus into indexes of this many rows each, searched in turn and "
                        "merged (for embeddings that do not fit in memory at once; default: one index)")  # fmt: skip
    p.set_defaults(func=_run_index)


def _run_index(args: argparse.Namespace) -> int:
    from rqa_jax.index.search import Index

    params = {k: v for k, v in (("num_leaves", args.num_leaves), ("num_leaves_to_search", args.num_leaves_to_search),
                                ("reorder", args.reorder)) if v is not None}  # fmt: skip
    start = time.perf_counter()
    if args.shard_rows:
        from rqa_jax.index.sharded import build_sharded

        meta = build_sharded(args.embeddings, args.output, args.shard_rows, args.backend, **params)
        print(f"indexed {meta['count']} passages ({args.backend}, {len(meta['shards'])} shards) in "
              f"{time.perf_counter() - start:.1f}s -> {args.output}")  # fmt: skip
        return 0
    index = Index.build(args.embeddings, args.backend, **params)
    index.save(args.output)
    print(
        f"indexed {index.meta['count']} passages ({args.backend}) in {time.perf_counter() - start:.1f}s -> {args.output}"
    )
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="encode queries and retrieve the top k passages into a TREC run",
        description="Encodes the queries with the model that encoded the corpus and searches "
        "the index. Passage text is not read here (titles matter at `rqa encode`). Query "
        "pooling and normalisation default to those the index's passages were encoded with "
        "(recorded by rqa encode / rqa index), then to the model dir's.",
    )
    p.add_argument("--model", required=True, help="the model that encoded the corpus")
    p.add_argument("--index", required=True, help="output dir of rqa index")
    p.add_argument("--queries", required=True, help="TSV 'qid<TAB>query'")
    p.add_argument("--top-k", type=int, default=1000, help="passages retrieved per query")
    p.add_argument("--output", required=True, help="run file to write (a dir for --format binary)")
    p.add_argument(
        "--corpus", default=None, help="optional: check the index covers this collection"
    )
    p.add_argument("--format", choices=["trec", "rocketqa", "binary"], default="trec",
                   help="run format: trec 'qid Q0 pid rank score tag' | rocketqa 'qid<TAB>pid<TAB>rank<TAB>score' "
                        "| binary: a dir of memory-mapped corpus rows + scores, written a chunk of queries at a "
                        "time and resumed if cut off (for large top-k: rqa mine/score/denoise read it by row)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar (binary)")
    p.add_argument("--chunk-queries", type=int, default=4096,
                   help="binary: queries encoded and searched per chunk; a chunk is what a resumed run "
                        "redoes and what processes share out (default 4096)")  # fmt: skip
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="query pooling (default: the index's passages', else the model dir's)")  # fmt: skip
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise query vectors (default: as the index's passages, else the "
                        "model dir's choice)")  # fmt: skip
    p.add_argument("--max-length", type=int, default=None,
                   help="max query tokens (default: the model dir's, else 32)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="queries per forward pass")
    p.set_defaults(func=_run_search)


def _index_encoding(index_dir: str) -> dict:
    """Pooling / normalisation the index's passages were encoded with ({} if unrecorded)."""
    import json
    from pathlib import Path

    from rqa_jax.index.search import META

    meta_file = Path(index_dir) / META
    if (Path(index_dir) / "shards.json").is_file():
        meta_file = Path(index_dir) / "shards.json"
    if not meta_file.is_file():
        return {}  # Index.load names the problem
    meta = json.loads(meta_file.read_text())
    return {k: meta[k] for k in ("pooling", "normalize") if meta.get(k) is not None}


def _run_search(args: argparse.Namespace) -> int:
    from rqa_jax.data import formats
    from rqa_jax.index.sharded import is_sharded, load_index
    from rqa_jax.inference import check_model_dir_kind, load_dual_encoder
    from rqa_jax.models.hf import model_fingerprint

    check_model_dir_kind(args.model, "dual")
    queries = list(formats.iter_queries(args.queries))
    if not queries:
        raise UserInputError(f"{args.queries}: no queries (the file is empty)")
    corpus_ids = (
        [r.id for r in formats.iter_collection(args.corpus, allow_title=True)]
        if args.corpus
        else None
    )
    encoded = _index_encoding(args.index)
    chosen = {"pooling": args.pooling, "normalize": args.normalize}
    for key, value in chosen.items():
        if value is not None and key in encoded and encoded[key] != value:
            print(f"rqa search: warning: --{key} gives {value}, the index's passages were "
                  f"encoded with {encoded[key]}", file=sys.stderr)  # fmt: skip
    model = load_dual_encoder(
        args.model,
        batch_size=args.batch_size,
        q_max_len=args.max_length,
        **{k: v if v is not None else encoded.get(k) for k, v in chosen.items()},
    )
    index = load_index(
        args.index,
        dim=model.dim,
        model_fingerprint=model_fingerprint(args.model),
        corpus_ids=corpus_ids,
    )
    start = time.perf_counter()
    if args.format == "binary":
        from rqa_jax.cli_runs import search_binary

        search_binary(
            model, index, queries, args.top_k, args.output, args.chunk_queries, not args.no_progress
        )
        print(
            f"searched {len(queries)} queries in {time.perf_counter() - start:.1f}s -> binary run {args.output}"
        )
        return 0
    q = model.encode_query([r.text for r in queries])
    hits = (
        index.search_ids(q, args.top_k) if is_sharded(args.index) else index.search(q, args.top_k)
    )
    formats.write_run(
        args.output, {r.id: h for r, h in zip(queries, hits, strict=True)}, fmt=args.format
    )
    print(f"searched {len(queries)} queries in {time.perf_counter() - start:.1f}s -> {args.output}")
    return 0


def _add_rerank(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerank",
        help="re-score each query's top-k candidates of a run with a cross encoder",
        description="Settings left unset come from the model dir (its rqa_jax.json, else its "
        "tokenizer's model_max_length for the max length), as it was trained.",
    )
    p.add_argument("--model", required=True,
                   help="cross-encoder dir (HF *ForSequenceClassification, e.g. rqa export of a "
                        "cross run; not a dual encoder)")  # fmt: skip
    p.add_argument("--queries", required=True, help="TSV 'qid<TAB>query'")
    p.add_argument("--corpus", required=True, help="TSV 'pid<TAB>text[<TAB>title]'")
    p.add_argument("--titles", default=None, help=TITLES_HELP)
    p.add_argument(
        "--run", required=True, help="TREC or RocketQA run to re-rank, or a binary run dir"
    )
    p.add_argument("--top-k", type=int, default=100, help="candidates re-scored per query")
    p.add_argument("--output", required=True, help="re-ranked run to write (TREC)")
    p.add_argument("--skip-missing", action="store_true",
                   help="drop (and count) run ids missing from --queries/--corpus instead of failing")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass")
    p.add_argument("--max-length", type=int, default=None,
                   help="max pair tokens (default: the model dir's rqa_jax.json, else its "
                        "tokenizer's model_max_length, else 160)")  # fmt: skip
    p.add_argument("--q-max-len", type=int, default=None,
                   help="cut the query to this many tokens before pairing, 0 = no separate cut "
                        "(default: the model dir's, else 32 for the v2 head, none otherwise)")  # fmt: skip
    p.add_argument("--pair-form", choices=PAIR_FORMS, default=None,
                   help="pair truncation: v1 (query and title+para cut jointly) | v2 (RocketQAv2's "
                        "training reader: query to 30, title+para to the rest); default: the "
                        "model dir's, else v1")  # fmt: skip
    p.add_argument("--title-form", choices=TITLE_FORMS, default=None,
                   help="how titles are encoded (default: the model dir's, else hf)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_rerank)


def _run_rerank(args: argparse.Namespace) -> int:
    from rqa_jax.cli_pipeline import _corpus
    from rqa_jax.data import formats
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import check_model_dir_kind, cross_encoder_settings, load_cross_encoder

    check_model_dir_kind(args.model, "cross")
    # The original's literal titles: '-' and '' differ there, so the titles go verbatim.
    title_form = args.title_form or cross_encoder_settings(args.model).get("title_form", "hf")
    queries = {q.id: q.text for q in formats.iter_queries(args.queries)}
    if binrun.is_binary_run(args.run):  # its top-k by pid; passages read from a store
        from rqa_jax.cli_runs import checked_run, corpus_store
        from rqa_jax.data.store import CorpusMap

        store = corpus_store(args.corpus, args.titles, not args.no_progress)
        checked_run(args.run, store)
        run = binrun.read_run_top(args.run, args.top_k, store.pid_of_rows)
        corpus = (_corpus(args.corpus, args.titles, raw=True) if title_form == "rocketqa_literal"
                  else CorpusMap(store))  # fmt: skip
    else:
        run = formats.read_run(args.run)
        corpus = _corpus(args.corpus, args.titles, raw=title_form == "rocketqa_literal")
    model = load_cross_encoder(args.model, max_len=args.max_length, q_max_len=args.q_max_len,
                               batch_size=args.batch_size, pair_form=args.pair_form,
                               title_form=title_form)  # fmt: skip
    start = time.perf_counter()
    out = rerank(
        model, run, queries, corpus, args.top_k, args.skip_missing, progress=not args.no_progress
    )
    formats.write_run(args.output, out)
    pairs = sum(len(v) for v in out.values())
    secs = time.perf_counter() - start
    print(
        f"re-ranked {pairs} pairs for {len(out)} queries in {secs:.1f}s ({pairs / secs:.0f} pairs/s) -> {args.output}"
    )
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a run against qrels (or NQ answers); prints JSON")
    p.add_argument("--run", required=True,
                   help="TREC or RocketQA run to score, or a binary run dir (read one query at a time; needs --corpus)")  # fmt: skip
    p.add_argument("--qrels", default=None, help="qrels 'qid 0 pid relevance' (TREC or TSV)")
    p.add_argument("--metrics", default="mrr@10,recall@50,recall@1000,ndcg@10",
                   help="comma-separated NAME@K with --qrels (mrr, recall, ndcg, ...)")  # fmt: skip
    p.add_argument(
        "--answers",
        default=None,
        help="NQ qa.csv (question<TAB>[answers]); needs --corpus and --queries",
    )
    p.add_argument(
        "--queries", default=None, help="qid<TAB>question, to match --answers to run qids"
    )
    p.add_argument(
        "--corpus",
        default=None,
        help="DPR psgs_w100.tsv (passage text is searched for answers); for a "
        "binary run with --qrels, the corpus it was searched over (its rows are that file's lines)",
    )
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from rqa_jax.data import formats
    from rqa_jax.eval import answers as nq
    from rqa_jax.eval.metrics import evaluate

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if binrun.is_binary_run(args.run):
        from rqa_jax.cli_runs import evaluate as evaluate_binary

        if args.answers or not args.qrels:
            raise UserInputError(
                f"{args.run} is a binary run: it is evaluated with --qrels (and --corpus)"
            )
        print(json.dumps(evaluate_binary(args, metrics), indent=2))
        return 0
    run = formats.read_run(args.run)
    out: dict[str, float] = {}
    if args.qrels:
        out |= evaluate(formats.read_qrels(args.qrels), run, metrics)
    if args.answers:
        if not (args.corpus and args.queries):
            raise UserInputError(
                "--answers needs --corpus (passages) and --queries (qid<TAB>question)"
            )
        qid_of = {q.text: q.id for q in formats.iter_queries(args.queries)}
        golds = {}
        for qa in formats.iter_qa_pairs(args.answers):
            if qa.question not in qid_of:
                raise UserInputError(
                    f"{args.answers}: question {qa.question!r} is not in {args.queries}"
                )
            golds[qid_of[qa.question]] = qa.answers
        passages = {r.id: r.text for r in formats.iter_dpr_passages(args.corpus)}
        out |= nq.top_k_accuracy(run, golds, passages)
    if not out:
        raise UserInputError("nothing to evaluate: give --qrels and/or --answers")
    print(json.dumps(out, indent=2))
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model released by another toolkit to HF dirs, or a run text <-> binary",
        description="Converts a model directory released by the original RocketQA (PaddlePaddle "
        "tensors) to HF dirs that rqa encode / rqa rerank / rqa train use as they are.",
    )
    sources = p.add_subparsers(dest="source", required=True, help="the toolkit that released it")
    r = sources.add_parser(
        "rocketqa",
        help="a RocketQA model dir (config.json + ERNIE config + vocab + parameter folder)",
        description="Reads a RocketQA model directory without Paddle. A dual encoder becomes "
        "OUT/query_encoder + OUT/passage_encoder (one dir OUT if its towers are shared), a cross "
        "encoder one sequence-classification dir OUT; the original's input forms are saved in "
        "OUT's rqa_jax.json.",
    )
    r.add_argument("--model", required=True,
                   help="RocketQA model dir (holding config.json), or its config.json")  # fmt: skip
    r.add_argument("--output", required=True, help="output dir for the HF model dir(s)")
    r.set_defaults(func=_run_convert)
    add_convert_run(sources)


def _run_convert(args: argparse.Namespace) -> int:
    from rqa_jax.models.rocketqa_convert import convert_rocketqa

    result = convert_rocketqa(args.model, args.output)
    what = "dual encoder" if result["kind"] == "dual" else f"cross encoder ({result['head']} head)"
    print(f"converted RocketQA {what} -> {', '.join(result['dirs'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``rqa`` parser (``train`` and ``pipeline`` are stubs here: their own parsers are
    :func:`build_train_parser` and :func:`rqa_jax.cli_pipeline.build_pipeline_parser`)."""
    parser = argparse.ArgumentParser(
        prog="rqa",
        description="RocketQA in JAX: train, encode, search, re-rank, evaluate.",
        epilog="`rqa COMMAND --help` describes a command. Errors in your input print one line "
        "and exit 1 (--debug adds the traceback); a bug prints its traceback and exits 70; in a "
        "multi-process run, a process that died or stopped answering makes the others exit 75.",
    )
    parser.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="the step to run")  # fmt: skip
    sub.add_parser("train", help="train a model: rqa train --config configs/X.py --workdir DIR "
                   "(see rqa train --help)", add_help=False)  # fmt: skip
    _add_encode(sub)
    _add_index(sub)
    _add_search(sub)
    _add_rerank(sub)
    _add_evaluate(sub)
    _add_convert(sub)
    add_export_commands(sub)
    sub.add_parser("pipeline", help="RocketQA's steps as resumable stages: rqa pipeline v1 "
                   "--config configs/X.py --workdir DIR (see rqa pipeline --help)",
                   add_help=False)  # fmt: skip
    add_pipeline_commands(sub)
    set_formatter(parser)
    return parser


def build_train_parser() -> argparse.ArgumentParser:
    """The parser of ``rqa train`` (its epilog lists the config files and the overrides)."""
    parser = argparse.ArgumentParser(
        prog="rqa train",
        description="Train a model from a config file: checkpoints, metrics.jsonl and the "
        "exported model go into WORKDIR; running it again resumes from the last checkpoint.",
        epilog=train_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--config", required=True,
                        help="config file FILE.py[:runlocal] with get_config() (listed below)")  # fmt: skip
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics and exports go here")
    parser.add_argument(DEBUG_FLAG, action="store_true", help=DEBUG_HELP)
    return parser


def run_train(argv: Sequence[str], debug: bool = False) -> int:
    """``rqa train --config configs/X.py[:arg] --workdir DIR [--config.key=value ...]``.
    A config that cannot be loaded exits 2; other errors propagate to :func:`main`'s handler."""
    args, rest = build_train_parser().parse_known_args(argv)
    try:
        config = config_with_overrides(args.config, rest)
    except (*USER_ERRORS, SyntaxError) as e:
        if debug or args.debug:
            traceback.print_exc()
        print(f"rqa train: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    from rqa_jax.train.loop import train

    result = train(config, args.workdir)
    import jax

    if jax.process_index() == 0:  # one report for the run, not one per process
        shown = {k: float(f"{v:.4g}") for k, v in result["metrics"].items() if isinstance(v, float)}
        print(f"rqa train: {result['status']} at step {result['step']}: {shown}")
        if "export" in result["metrics"]:
            print(f"rqa train: model exported to {result['metrics']['export']}")
    return 0 if result["status"] == "completed" else 3


def _run_guarded(
    command: str, fn: Callable[[], int], debug: bool, user_errors: tuple = USER_ERRORS
) -> int:
    """Runs ``fn``: a user error → one line (after its traceback with ``debug``), exit 1; any
    other exception → its traceback, as a bug, exit 70."""
    try:
        return fn()
    except user_errors as e:
        if debug:
            traceback.print_exc()
        print(f"rqa {command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        from rqa_jax.distributed import EXIT_PEER_LOST, peer_lost

        lost = peer_lost(e)
        if lost:  # a peer died or timed out: its own message and exit code, not "a bug"
            if debug:
                traceback.print_exc()
            print(f"rqa {command}: error: {lost}", file=sys.stderr)
            return EXIT_PEER_LOST
        traceback.print_exc()
        print(f"rqa {command}: internal error ({type(e).__name__}): this is a bug in rqa_jax, "
              "not in your input; please report it with the traceback above", file=sys.stderr)  # fmt: skip
        return EXIT_BUG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv  # accepted before or after the command
    argv = [a for a in argv if a != DEBUG_FLAG]
    from rqa_jax.distributed import join

    try:
        join()  # one process of several (a pod slice, a cluster): join the others first
    except USER_ERRORS as e:  # the multi-process environment variables are wrong
        if debug:
            traceback.print_exc()
        print(f"rqa: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if argv and argv[0] == "train":
        return _run_guarded("train", lambda: run_train(argv[1:], debug), debug)
    if argv and argv[0] == "pipeline":
        return _run_guarded("pipeline", lambda: run_pipeline_command(argv[1:], debug), debug)
    args = build_parser().parse_args(argv)
    return _run_guarded(args.command, lambda: args.func(args), debug)


if __name__ == "__main__":
    sys.exit(main())

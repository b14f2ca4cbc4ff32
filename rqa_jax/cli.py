"""The ``rqa`` command. Each subcommand is a thin layer over the library; errors in the
user's input print one clear line (file:line where there is one) and exit non-zero."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rqa_jax.cli_export import add_commands as add_export_commands
from rqa_jax.cli_pipeline import add_commands as add_pipeline_commands
from rqa_jax.cli_pipeline import run_pipeline_command
from rqa_jax.config_flags import config_with_overrides
from rqa_jax.data.formats import ID_TEXT_FORMATS, FormatError
from rqa_jax.data.tokenize import PAIR_FORMS, TITLE_FORMS
from rqa_jax.models.bert import UnsupportedModelError
from rqa_jax.models.hf import CheckpointMismatchError, ModelDirError

# KeyError: a run naming a passage missing from the corpus.

# Errors that mean "your input is wrong", reported without a traceback.
USER_ERRORS = (
    FormatError,
    ModelDirError,
    UnsupportedModelError,
    CheckpointMismatchError,
    FileNotFoundError,
    ValueError,
    TypeError,
    KeyError,
)


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a TSV of queries or passages to embeddings.npy + ids.txt",
        description="Input: 'id<TAB>text' lines (passages may add '<TAB>title'). Output DIR gets "
        "embeddings.npy (float32, row i = line i), ids.txt and meta.json.",
    )
    p.add_argument("--model", required=True, help="HF or rqa_jax model dir")
    p.add_argument("--kind", required=True, choices=["query", "passage"])
    p.add_argument("--input", required=True, help="TSV file")
    p.add_argument("--output", required=True, help="output dir")
    p.add_argument("--format", default="id_text_title", choices=ID_TEXT_FORMATS,
                   help="column order of passage files with titles")  # fmt: skip
    p.add_argument("--pooling", choices=["cls", "mean"], default=None,
                   help="default: the model dir's (sentence-transformers metadata) or cls")  # fmt: skip
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise vectors (default: the model dir's choice)")  # fmt: skip
    p.add_argument("--max-length", type=int, default=None,
                   help="max tokens (default: the model dir's, else 32 query / 128 passage)")  # fmt: skip
    p.add_argument("--title-form", choices=TITLE_FORMS, default=None,
                   help="how titles are encoded: hf | rocketqa ([CLS] [SEP] para [SEP] without "
                        "title) | rocketqa_literal (titles verbatim, '-' a one-token title, as the "
                        "original; default: the model dir's, else hf)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype"
    )
    p.add_argument("--storage-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of the stored embeddings")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=0,
                   help="write shards of this many rows (multi-host jobs split them); 0 = one file")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> int:
    import jax

    from rqa_jax.index.encode import count_valid_lines, encode_file, encode_sharded
    from rqa_jax.inference import load_dual_encoder

    # Validate the input before spending time loading the model.
    n_rows = count_valid_lines(args.input, args.kind, args.format)
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
                  model_fingerprint=model_fingerprint(args.model), storage_dtype=args.storage_dtype)  # fmt: skip
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
    p.add_argument("--backend", choices=["scann", "exact"], default="scann")
    p.add_argument(
        "--num-leaves", type=int, default=None, help="ScaNN tree leaves (default ~sqrt(N))"
    )
    p.add_argument("--num-leaves-to-search", type=int, default=None)
    p.add_argument("--reorder", type=int, default=None, help="ScaNN exact re-scoring depth")
    p.set_defaults(func=_run_index)


def _run_index(args: argparse.Namespace) -> int:
    from rqa_jax.index.search import Index

    params = {k: v for k, v in (("num_leaves", args.num_leaves), ("num_leaves_to_search", args.num_leaves_to_search),
                                ("reorder", args.reorder)) if v is not None}  # fmt: skip
    start = time.perf_counter()
    index = Index.build(args.embeddings, args.backend, **params)
    index.save(args.output)
    print(
        f"indexed {index.meta['count']} passages ({args.backend}) in {time.perf_counter() - start:.1f}s -> {args.output}"
    )
    return 0


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="encode queries and retrieve the top k passages into a TREC run"
    )
    p.add_argument("--model", required=True, help="the model that encoded the corpus")
    p.add_argument("--index", required=True)
    p.add_argument("--queries", required=True, help="TSV 'qid<TAB>query'")
    p.add_argument("--top-k", type=int, default=1000)
    p.add_argument("--output", required=True, help="run file to write")
    p.add_argument(
        "--corpus", default=None, help="optional: check the index covers this collection"
    )
    p.add_argument("--format", choices=["trec", "rocketqa"], default="trec")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_run_search)


def _run_search(args: argparse.Namespace) -> int:
    from rqa_jax.data import formats
    from rqa_jax.index.search import Index
    from rqa_jax.inference import load_dual_encoder
    from rqa_jax.models.hf import model_fingerprint

    queries = list(formats.iter_queries(args.queries))
    if not queries:
        raise ValueError(f"{args.queries}: no queries (the file is empty)")
    corpus_ids = (
        [r.id for r in formats.iter_collection(args.corpus, allow_title=True)]
        if args.corpus
        else None
    )
    model = load_dual_encoder(args.model, batch_size=args.batch_size)
    index = Index.load(
        args.index,
        dim=model.dim,
        model_fingerprint=model_fingerprint(args.model),
        corpus_ids=corpus_ids,
    )
    start = time.perf_counter()
    q = model.encode_query([r.text for r in queries])
    hits = index.search(q, args.top_k)
    formats.write_run(
        args.output, {r.id: h for r, h in zip(queries, hits, strict=True)}, fmt=args.format
    )
    print(f"searched {len(queries)} queries in {time.perf_counter() - start:.1f}s -> {args.output}")
    return 0


def _add_rerank(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rerank", help="re-score each query's top-k candidates of a run with a cross encoder"
    )
    p.add_argument(
        "--model", required=True, help="cross-encoder dir (HF *ForSequenceClassification)"
    )
    p.add_argument("--queries", required=True, help="TSV 'qid<TAB>query'")
    p.add_argument("--corpus", required=True, help="TSV 'pid<TAB>text[<TAB>title]'")
    p.add_argument("--run", required=True, help="TREC or RocketQA run to re-rank")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--output", required=True)
    p.add_argument("--skip-missing", action="store_true",
                   help="drop (and count) run ids missing from --queries/--corpus instead of failing")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=None,
                   help="max pair tokens (default: the model dir's rqa_jax.json, else 160)")  # fmt: skip
    p.add_argument("--pair-form", choices=PAIR_FORMS, default=None,
                   help="pair truncation: v1 (query and title+para cut jointly) | v2 (RocketQAv2's "
                        "training reader: query to 30, title+para to the rest); default: the "
                        "model dir's, else v1")  # fmt: skip
    p.add_argument("--title-form", choices=TITLE_FORMS, default=None,
                   help="how titles are encoded (default: the model dir's, else hf)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_rerank)


def _run_rerank(args: argparse.Namespace) -> int:
    from rqa_jax.data import formats
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import load_cross_encoder

    run = formats.read_run(args.run)
    queries = {q.id: q.text for q in formats.iter_queries(args.queries)}
    model = load_cross_encoder(args.model, max_len=args.max_length, batch_size=args.batch_size,
                               pair_form=args.pair_form, title_form=args.title_form)  # fmt: skip
    # The original's literal titles: '-' and '' differ there, so the corpus titles go verbatim.
    raw = model.title_form == "rocketqa_literal"
    corpus = {
        r.id: (r.title, r.text)
        for r in formats.iter_collection(args.corpus, allow_title=True, raw_titles=raw)
    }
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
    p.add_argument("--run", required=True)
    p.add_argument("--qrels", default=None)
    p.add_argument("--metrics", default="mrr@10,recall@50,recall@1000,ndcg@10")
    p.add_argument(
        "--answers",
        default=None,
        help="NQ qa.csv (question<TAB>[answers]); needs --corpus and --queries",
    )
    p.add_argument(
        "--queries", default=None, help="qid<TAB>question, to match --answers to run qids"
    )
    p.add_argument(
        "--corpus", default=None, help="DPR psgs_w100.tsv (passage text is searched for answers)"
    )
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    import json

    from rqa_jax.data import formats
    from rqa_jax.eval import answers as nq
    from rqa_jax.eval.metrics import evaluate

    run = formats.read_run(args.run)
    out: dict[str, float] = {}
    if args.qrels:
        out |= evaluate(
            formats.read_qrels(args.qrels),
            run,
            [m.strip() for m in args.metrics.split(",") if m.strip()],
        )
    if args.answers:
        if not (args.corpus and args.queries):
            raise ValueError("--answers needs --corpus (passages) and --queries (qid<TAB>question)")
        qid_of = {q.text: q.id for q in formats.iter_queries(args.queries)}
        golds = {}
        for qa in formats.iter_qa_pairs(args.answers):
            if qa.question not in qid_of:
                raise ValueError(
                    f"{args.answers}: question {qa.question!r} is not in {args.queries}"
                )
            golds[qid_of[qa.question]] = qa.answers
        passages = {r.id: r.text for r in formats.iter_dpr_passages(args.corpus)}
        out |= nq.top_k_accuracy(run, golds, passages)
    if not out:
        raise ValueError("nothing to evaluate: give --qrels and/or --answers")
    print(json.dumps(out, indent=2))
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a model released by another toolkit to HF dirs",
        description="Converts a model directory released by the original RocketQA (PaddlePaddle "
        "tensors) to HF dirs that rqa encode / rqa rerank / rqa train use as they are.",
    )
    sources = p.add_subparsers(dest="source", required=True)
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


def _run_convert(args: argparse.Namespace) -> int:
    from rqa_jax.models.rocketqa_convert import convert_rocketqa

    result = convert_rocketqa(args.model, args.output)
    what = "dual encoder" if result["kind"] == "dual" else f"cross encoder ({result['head']} head)"
    print(f"converted RocketQA {what} -> {', '.join(result['dirs'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rqa", description="RocketQA in JAX: train, encode, search"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a model: rqa train --config configs/X.py --workdir DIR",
                   add_help=False)  # fmt: skip
    _add_encode(sub)
    _add_index(sub)
    _add_search(sub)
    _add_rerank(sub)
    _add_evaluate(sub)
    _add_convert(sub)
    add_export_commands(sub)
    sub.add_parser("pipeline", help="RocketQA's steps as resumable stages: rqa pipeline v1 "
                   "--config configs/X.py --workdir DIR", add_help=False)  # fmt: skip
    add_pipeline_commands(sub)
    return parser


def run_train(argv: Sequence[str]) -> int:
    """``rqa train --config configs/X.py[:arg] --workdir DIR [--config.key=value ...]``."""
    parser = argparse.ArgumentParser(
        prog="rqa train", description="train a model from a config file"
    )
    parser.add_argument("--config", required=True, help="configs/X.py[:arg] with get_config()")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics and exports go here")
    args, rest = parser.parse_known_args(argv)
    try:
        config = config_with_overrides(args.config, rest)
    except (ValueError, FileNotFoundError, SyntaxError) as e:
        print(f"rqa train: error: {e}", file=sys.stderr)
        return 2
    from rqa_jax.train.loop import train

    try:
        result = train(config, args.workdir)
    except USER_ERRORS as e:
        print(f"rqa train: error: {e}", file=sys.stderr)
        return 1
    import jax

    if jax.process_index() == 0:  # one report for the run, not one per process
        shown = {k: float(f"{v:.4g}") for k, v in result["metrics"].items() if isinstance(v, float)}
        print(f"rqa train: {result['status']} at step {result['step']}: {shown}")
        if "export" in result["metrics"]:
            print(f"rqa train: model exported to {result['metrics']['export']}")
    return 0 if result["status"] == "completed" else 3


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from rqa_jax.distributed import join

    try:
        join()  # one process of several (a pod slice, a cluster): join the others first
    except ValueError as e:
        print(f"rqa: error: {e}", file=sys.stderr)
        return 2
    if argv and argv[0] == "train":
        return run_train(argv[1:])
    if argv and argv[0] == "pipeline":
        return run_pipeline_command(argv[1:], USER_ERRORS)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError quotes its text
        print(f"rqa {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

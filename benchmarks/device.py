"""One command for whatever accelerator is present (GPU, TPU; the CPU when there is none):
the BERT-base dual step (queries 32 / passages 128 tokens, two towers, bf16 compute) at the
largest per-device batch that fits, with and without gradient cache; its model FLOPs
utilisation against the chip's peak; encoding passages/s; the joint step's lists/s. Writes
benchmarks/results/device_<platform>.json with the device name.

    python benchmarks/device.py                 # BERT-base on an accelerator
    python benchmarks/device.py --model minilm  # the CPU default: MiniLM-sized, small batches
    python benchmarks/device.py --out DIR --budget-s 400   # stop growing the batch after 400 s

MFU = model FLOPs / step time / peak, model FLOPs counted by hand (3 x the forward's matmul
and attention FLOPs per token: what the model needs, remat not counted); XLA's cost analysis
of the compiled step (what the chip executes) is reported beside it. The same dual step in
PyTorch (transformers' BertModel, two towers, bf16 autocast, SDPA attention, fused AdamW)
runs first in a child process at the first batch, for the ratio. Results are written after
every section, so a run stopped early keeps what it measured. Peaks: the vendor's dense bf16 figure for the device kind
(table below), or on a CPU the float32 matmul peak measured here (:func:`common.matmul_peak`:
2048² float32 matmuls, all threads, best of 5 runs of 10) beside the CPU's theoretical peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Dense bf16 peak per chip (vendor figures), FLOP/s.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "TPU v4": 275e12,
         "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6e": 918e12}  # fmt: skip
MODELS = {
    "bert-base": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072},
    "minilm": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
               "num_attention_heads": 12, "intermediate_size": 1536},
    # for tests/test_device_benchmark.py: every section in seconds, no figure worth reading
    "tiny": {"vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64},
}  # fmt: skip


Q_LEN, P_LEN = 32, 128


def chip_peak(kind: str) -> float | None:
    return next((v for k, v in PEAKS.items() if k.lower() in kind.lower()), None)


def _tok(rng, shape):
    from common import random_tokens

    return random_tokens(rng, shape)


def model_flops(cfg: dict, tokens: int, seq: int, train: bool = True) -> float:
    """Hand-counted FLOPs of ``tokens`` tokens through the encoder at length ``seq``: per layer
    and token 2 x (4h^2 + 2hi) for the projections and FFN plus 4 x seq x h for the attention
    scores and their use; x3 for forward + backward when training."""
    h, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    per_token = n * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h)
    return (3 if train else 1) * per_token * tokens


def dual_model_flops(cfg: dict, batch: int) -> float:
    return model_flops(cfg, batch * Q_LEN, Q_LEN) + model_flops(cfg, 2 * batch * P_LEN, P_LEN)


def _memory(compiled) -> dict:
    try:
        ma = compiled.memory_analysis()
        return {"xla_temp_bytes": int(ma.temp_size_in_bytes),
                "xla_argument_bytes": int(ma.argument_size_in_bytes)}  # fmt: skip
    except Exception:  # not every backend reports it
        return {}


def _timed(step, state, batch, steps: int) -> tuple[float, float, dict, object]:
    """(XLA FLOPs per step, seconds per step, memory figures, state)."""
    import jax

    rng = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    memory = {"compile_s": time.perf_counter() - t0, **_memory(compiled)}
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
    state, m = compiled(state, batch, rng)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, batch, rng)
    jax.block_until_ready(m)
    seconds = (time.perf_counter() - t0) / steps
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        memory["device_peak_bytes_process_so_far"] = int(stats["peak_bytes_in_use"])
    return flops, seconds, memory, state


_PARAMS: dict = {}  # BertConfig -> host copy of the dual encoder's initial parameters


def dual(config, cfg: dict, batch_size: int, steps: int, chunk: int = 0) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rqa_jax import parallel
    from rqa_jax.models.towers import DualEncoderNet
    from rqa_jax.train.state import init_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import dual_step_fn, jit_step

    t0 = time.perf_counter()
    net = DualEncoderNet(config, tie_towers=False, pooling="cls", dtype=jnp.bfloat16)
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    rng = np.random.default_rng(0)
    b = {"query": _tok(rng, (batch_size, Q_LEN)), "passages": _tok(rng, (batch_size, 2, P_LEN))}
    if config not in _PARAMS:  # one initialisation per model, reused by every batch size
        flat = {k: v.reshape(-1, P_LEN)[:2] for k, v in b["passages"].items()}
        _PARAMS[config] = jax.device_get(jax.jit(net.init)(
            jax.random.PRNGKey(0), {k: v[:2] for k, v in b["query"].items()}, flat
        )["params"])  # fmt: skip
    tx = make_optimizer(3e-5, 1000, 0.0)
    state = init_state(jax.device_put(_PARAMS[config], parallel.replicated(mesh)), tx)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    fn = dual_step_fn(net, tx, mesh, rocketqa_schedule(3e-5, 1000, 0), grad_cache_chunk=chunk)
    step = jit_step(fn, jax.tree.map(lambda x: x.sharding, state), mesh)
    flops, seconds, memory, _ = _timed(step, state, parallel.global_batch(b, mesh), steps)
    return {"batch": batch_size, "grad_cache_chunk": chunk, "step_s": seconds, "init_s": init_s,
            "xla_flops": flops,
            "model_flops": dual_model_flops(cfg, batch_size), "queries_per_s": batch_size / seconds,
            **memory}  # fmt: skip


class _Skip(Exception):
    pass


def _is_oom(e: Exception) -> bool:
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def encode(config, cfg: dict, batch_size: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rqa_jax.models.bert import BertModel

    model = BertModel(config, jnp.bfloat16, add_pooling_layer=False)
    x = _tok(np.random.default_rng(0), (batch_size, P_LEN))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x["input_ids"], x["attention_mask"])
    f = jax.jit(lambda p, ids, mask: model.apply(p, ids, mask)[0][:, 0])
    ids, mask = jax.device_put(x["input_ids"]), jax.device_put(x["attention_mask"])
    f(params, ids, mask).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(steps):
        f(params, ids, mask).block_until_ready()
    seconds = (time.perf_counter() - t0) / steps
    return {"batch": batch_size, "passages_per_s": batch_size / seconds,
            "model_flops": model_flops(cfg, batch_size * P_LEN, P_LEN, train=False),
            "step_s": seconds}  # fmt: skip


def joint(config, cfg: dict, lists: int, m: int, steps: int) -> dict:
    import jax
    from joint import LENGTHS, _step

    def params(de, ce):
        import numpy as np

        ids = np.zeros((1, 8), np.int32)
        b = {"input_ids": ids, "attention_mask": ids + 1}
        return {"retriever": jax.jit(de.init)(jax.random.PRNGKey(0), b, b)["params"],
                "reranker": jax.jit(ce.init)(jax.random.PRNGKey(1), b)["params"]}  # fmt: skip

    step, state, batch = _step(config, params, m, lists, True, "bfloat16")
    flops, seconds, memory, _ = _timed(step, state, batch, steps)
    q, p, pair = LENGTHS["q"], LENGTHS["p"], LENGTHS["pair"]
    mf = lists * (
        model_flops(cfg, q, q) + model_flops(cfg, m * p, p) + model_flops(cfg, m * pair, pair)
    )
    return {"lists": lists, "m": m, "remat": True, "step_s": seconds, "xla_flops": flops,
            "model_flops": mf, "lists_per_s": lists / seconds, **memory}  # fmt: skip


def torch_dual(cfg: dict, batch_size: int, steps: int) -> dict:
    """The same dual step in plain PyTorch: two BertModel towers, bf16 autocast on a GPU,
    SDPA attention, in-batch cross-entropy, clipping, (fused) AdamW."""
    import numpy as np
    import torch
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel as HFBertModel

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    hf_cfg = HFBertConfig(**cfg, max_position_embeddings=512, attn_implementation="sdpa")
    towers = [HFBertModel(hf_cfg, add_pooling_layer=False).to(dev).train() for _ in range(2)]
    params = [p for t in towers for p in t.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-5, eps=1e-6, weight_decay=0.0, fused=dev == "cuda")
    rng = np.random.default_rng(0)
    q = {k: torch.tensor(v, dtype=torch.long, device=dev)
         for k, v in _tok(rng, (batch_size, Q_LEN)).items()}  # fmt: skip
    p = {k: torch.tensor(v.reshape(-1, P_LEN), dtype=torch.long, device=dev)
         for k, v in _tok(rng, (batch_size, 2, P_LEN)).items()}  # fmt: skip
    labels = torch.arange(batch_size, device=dev) * 2

    def one():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            qv = towers[0](**q).last_hidden_state[:, 0]
            pv = towers[1](**p).last_hidden_state[:, 0]
            loss = torch.nn.functional.cross_entropy((qv @ pv.T).float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    one()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    sync()
    seconds = (time.perf_counter() - t0) / steps
    return {"batch": batch_size, "step_s": seconds, "queries_per_s": batch_size / seconds,
            "model_flops": dual_model_flops(cfg, batch_size),
            "torch": torch.__version__, "device": dev,
            "peak_bytes": int(torch.cuda.max_memory_allocated()) if dev == "cuda" else None}  # fmt: skip


def _torch_in_child(model: str | None, batch: int | None, steps: int | None) -> dict:
    """Runs torch_dual in its own process, before JAX takes the device's memory."""
    cmd = [sys.executable, __file__, "--torch-child"]
    for flag, value in (("--model", model), ("--start-batch", batch), ("--steps", steps)):
        if value:
            cmd += [flag, str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode:
        return {"error": (out.stderr or out.stdout)[-600:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _torch_child(args) -> None:
    import torch

    accel = torch.cuda.is_available()
    model = args.model or ("bert-base" if accel else "minilm")
    batch = args.start_batch or (128 if accel else 8)
    result = torch_dual(MODELS[model], batch, args.steps or (10 if accel else 2))
    print(json.dumps({"model": model, **result}))


def _earlier_results(out: str | None, name: str, device_kind: str, model: str) -> dict:
    """The results file a cut-short run left in ``out``, if it is this device's and model's."""
    from common import RESULTS_DIR

    path = (Path(out) if out else RESULTS_DIR) / f"{name}.json"
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("device") != device_kind or earlier.get("model") != model:
        print(f"{path} is from {earlier.get('device')} / {earlier.get('model')}: not merged "
              f"(this run: {device_kind} / {model}); it will be overwritten", flush=True)  # fmt: skip
        return {}
    earlier.pop("machine", None)
    return earlier


def main() -> None:
    import jax
    from common import matmul_peak, theoretical_cpu_peak, write_results

    from rqa_jax.models.bert import BertConfig

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--model", choices=list(MODELS), default=None,
                    help="bert-base on an accelerator, minilm on the CPU")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None, help="timed steps (10; 2 on the CPU)")
    ap.add_argument("--start-batch", type=int, default=None,
                    help="first dual batch tried (128; 8 on the CPU)")  # fmt: skip
    ap.add_argument("--max-batch", type=int, default=None,
                    help="largest dual batch tried (4096; 16 on the CPU)")  # fmt: skip
    ap.add_argument("--joint-lists", type=int, default=None, help="lists per joint step (4; 1)")
    ap.add_argument("--joint-m", type=int, default=None, help="passages per list (128; 32)")
    ap.add_argument("--budget-s", type=float, default=float("inf"),
                    help="stop growing the dual batch once this many seconds have passed")  # fmt: skip
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--only", default="", help="comma list of encode,grad_cache,joint: run just "
                    "these, with --start-batch as the dual batch (to finish a run cut short)")  # fmt: skip
    ap.add_argument("--out", default=None, help="results folder (benchmarks/results)")
    args = ap.parse_args()
    if args.torch_child:
        return _torch_child(args)
    t_start = time.perf_counter()
    # PyTorch first, in a child, before JAX preallocates the accelerator's memory.
    torch_result = (
        None if args.no_torch else _torch_in_child(args.model, args.start_batch, args.steps)
    )
    on_cpu = jax.default_backend() == "cpu"
    model = args.model or ("minilm" if on_cpu else "bert-base")
    steps = args.steps or (2 if on_cpu else 10)
    start_batch = args.start_batch or (8 if on_cpu else 128)
    max_batch = args.max_batch or (16 if on_cpu else 4096)
    cfg = MODELS[model]
    config = BertConfig(**cfg, max_position_embeddings=512)
    device = jax.devices()[0]
    if on_cpu:
        peak = matmul_peak()
        peak_how = "measured float32 matmul peak (2048², all threads, best of 5 x 10)"
    else:
        peak, peak_how = (
            chip_peak(device.device_kind),
            f"vendor dense bf16 peak of {device.device_kind}",
        )
    results = {"device": device.device_kind, "platform": jax.default_backend(), "model": model,
               "q_len": Q_LEN, "p_len": P_LEN, "steps": steps, "jax": jax.__version__,
               "peak_flop_per_s": peak, "peak_how": peak_how}  # fmt: skip
    if on_cpu:
        results["theoretical_cpu_peak"] = theoretical_cpu_peak()
    name = f"device_{jax.default_backend()}"
    only = set(filter(None, args.only.split(",")))
    if only:  # finishing a cut-short run: keep the sections it measured
        results = {**_earlier_results(args.out, name, device.device_kind, model), **results}

    def save(section: str, value) -> None:
        if isinstance(value, dict):
            value = [value]
        for r in value:
            if peak and "model_flops" in r:
                r["mfu"] = r["model_flops"] / r["step_s"] / peak
                r["xla_flop_utilisation"] = r.get("xla_flops", 0.0) / r["step_s"] / peak
        results[section] = value if len(value) > 1 or section == "dual" else value[0]
        results["elapsed_s"] = time.perf_counter() - t_start
        write_results(name, results, args.out)
        for r in value:
            print(f"[{results['elapsed_s']:6.0f} s] {section}: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                flush=True)  # fmt: skip

    if torch_result is not None:
        save("torch_dual", torch_result)
    runs, b = [{"batch": start_batch}] if only else [], start_batch
    while b <= max_batch and not only:
        if runs and time.perf_counter() - t_start > args.budget_s:
            results["dual_stopped"] = f"time budget of {args.budget_s:.0f} s spent before batch {b}"
            break
        try:
            runs.append(dual(config, cfg, b, steps))
        except Exception as e:  # the last size did not fit
            if not _is_oom(e):
                raise
            results["dual_stopped"] = f"batch {b} did not fit: {str(e).splitlines()[0][:300]}"
            break
        if len(runs) == 1 and torch_result and "step_s" in torch_result:
            same = torch_result["batch"] == start_batch and torch_result["model"] == model
            if same:
                results["rqa_vs_torch_at_batch"] = {
                    "batch": start_batch,
                    "speedup": torch_result["step_s"] / runs[0]["step_s"],
                }
        save("dual", runs)
        b *= 2
    best = runs[-1]
    if only and "encode" in only:
        save("encode", encode(config, cfg, max(best["batch"] * 2, 16), steps))
    try:
        if only and "grad_cache" not in only:
            raise _Skip
        save("dual_grad_cache", dual(config, cfg, best["batch"] * 4, steps, chunk=best["batch"]))
    except _Skip:
        pass
    except Exception as e:
        if not _is_oom(e):
            raise
        results["dual_grad_cache"] = {"error": str(e).splitlines()[0][:300]}
    if not only:
        save("encode", encode(config, cfg, max(best["batch"] * 2, 16), steps))
    if not only or "joint" in only:
        save("joint", joint(config, cfg, args.joint_lists or (1 if on_cpu else 4),
                        args.joint_m or (32 if on_cpu else 128), steps))  # fmt: skip


if __name__ == "__main__":
    main()

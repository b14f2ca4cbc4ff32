"""Shared benchmark helpers: machine description and results files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict:
    import jax

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [d.device_kind for d in jax.devices()],
        "date": time.strftime("%Y-%m-%d"),
    }


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started its program (VmHWM). Not
    ``ru_maxrss``: on Linux that keeps the high-water mark of the parent it was forked from
    across exec, so a child of a big parent reports the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_results(name: str, results: dict, directory: Path | str | None = None) -> Path:
    directory = Path(directory) if directory else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def random_tokens(rng, shape: tuple[int, ...], vocab: int = 30522) -> dict:
    """A full-length tokenized batch of random ids (no padding): what every benchmark feeds."""
    import numpy as np

    ids = rng.integers(1000, vocab, size=shape).astype(np.int32)
    return {"input_ids": ids, "token_type_ids": np.zeros(shape, np.int32),
            "attention_mask": np.ones(shape, np.int32)}  # fmt: skip


def matmul_peak(n: int = 2048, reps: int = 10, runs: int = 5, dtype: str = "float32") -> float:
    """This machine's matmul FLOP/s, measured the same way everywhere: n x n ``dtype``
    matmuls under jit, all threads, the best of ``runs`` timings of ``reps`` calls (best,
    not mean: what the hardware can do, not what a neighbour left it)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), getattr(jnp, dtype))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(reps):
            f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * reps / best


def theoretical_cpu_peak() -> dict:
    """The CPU's float32 peak from its specification: cores x FLOP/cycle x clock. FLOP/cycle
    assumes two FMA units of the widest vector width the flags list (AVX-512: 2 x 16 lanes x
    2 = 64; AVX2: 32), the clock is /proc/cpuinfo's (often the base clock: a measured figure
    above this peak means the cores were boosting)."""
    flags, mhz = set(), 0.0
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":", 1)[1])
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    cores = os.cpu_count() or 1
    return {"cores": cores, "flop_per_cycle_per_core": per_cycle, "mhz": mhz,
            "peak_f32_flop_per_s": cores * per_cycle * mhz * 1e6}  # fmt: skip

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


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    print(f"wrote {path}")
    return path

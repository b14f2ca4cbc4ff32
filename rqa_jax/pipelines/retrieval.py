"""What every pipeline stage does with a trained model: encode the corpus (with its titles,
as training saw them), index it, retrieve runs, re-rank, evaluate. Resumable where it is
expensive (corpus encoding continues from its progress file)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data.binrun import BinaryRun, BinaryRunWriter
from rqa_jax.data.formats import Qrels, Run
from rqa_jax.data.store import CorpusMap, CorpusStore
from rqa_jax.errors import UserInputError
from rqa_jax.eval.metrics import evaluate
from rqa_jax.parallel import on_process_0

METRICS = ["mrr@10", "recall@50", "recall@1000"]

Corpus = Mapping[str, tuple[str | None, str]]


def corpus_file(corpus: CorpusStore, path: Path) -> Path:
    """The corpus as ``pid \\t text \\t title`` in row order (written once, streamed), what
    :func:`encode` reads: the passages with their titles, as training saw them; row i of
    the embeddings (and of the index) is row i of the store."""
    if not path.is_file():
        records = (F.TextRecord(pid, text, title or None) for pid, title, text in corpus)
        F.write_id_text(path, records, with_title=True)
    return path


def processes() -> tuple[int, int]:
    import jax

    return jax.process_index(), jax.process_count()


def open_binary_run(
    path: Path, qids: Sequence[str], k: int, chunk: int, corpus: CorpusStore
) -> BinaryRunWriter:
    """A binary run writer over ``corpus``, laid out by process 0 and opened by the rest."""

    def lay_out() -> None:
        BinaryRunWriter(path, qids, k, chunk, len(corpus), corpus.fingerprint())

    on_process_0(lay_out, f"{path} laid out")
    return BinaryRunWriter(path, qids, k, chunk, len(corpus), corpus.fingerprint(), create=False)


def barrier(what: str) -> None:
    """Every process waits here for the others (nothing to do on one process)."""
    on_process_0(lambda: None, what)


def finish_binary_run(writer: BinaryRunWriter) -> BinaryRun:
    """Once every process wrote its chunks: process 0 marks the run complete."""
    barrier(f"{writer.path} chunks written")

    def finish() -> None:
        if not writer.finish():
            raise RuntimeError(
                f"{writer.path}: {writer.done_queries()} of {writer.n} queries written"
            )

    on_process_0(finish, f"{writer.path} complete")
    return BinaryRun(writer.path)


class Retriever:
    """A dual-encoder export with its corpus embeddings and index."""

    def __init__(self, model_dir: str | Path, corpus: CorpusStore, workdir: Path, backend: str = "scann",
                 batch_size: int = 128, progress: bool = True) -> None:  # fmt: skip
        from rqa_jax.index.encode import encode_file
        from rqa_jax.index.search import Index
        from rqa_jax.inference import load_dual_encoder
        from rqa_jax.models.hf import model_fingerprint

        self.model = load_dual_encoder(model_dir, batch_size=batch_size)
        self.corpus, self.progress = corpus, progress
        emb_dir = workdir / "corpus_embeddings"

        def encode() -> None:  # resumable; skipped when this model already encoded the corpus
            source = corpus_file(corpus, workdir.parent / "corpus.titled.tsv")
            encode_file(self.model, "passage", source, emb_dir, progress=progress, model_name=str(model_dir),
                        model_fingerprint=model_fingerprint(model_dir))  # fmt: skip

        on_process_0(encode, f"{emb_dir} encoded")
        self.index = Index.build(emb_dir, backend)
        if self.index.meta["corpus_fingerprint"] != corpus.fingerprint():
            raise RuntimeError(f"{emb_dir}: encoded another corpus than {corpus.dir}")

    def search(
        self, queries: Mapping[str, str], k: int, out: Path, chunk_queries: int = 4096
    ) -> BinaryRun:
        """The top ``k`` of every query (in ``queries`` order) into the binary run ``out``:
        a chunk of queries encoded and searched at a time, chunks split over the processes,
        resumed after a kill (finished chunks are kept)."""
        from tqdm import tqdm

        qids = list(queries)
        if not qids:
            raise UserInputError(f"{out}: no queries to search")
        k = min(k, len(self.corpus))
        writer = open_binary_run(out, qids, k, chunk_queries, self.corpus)
        todo = writer.pending(*processes())
        for c in tqdm(todo, unit="chunk", desc=f"search {out.name}", disable=not self.progress):
            span = writer.chunk_rows(c)
            vectors = self.model.encode_query([queries[qids[i]] for i in span])
            scores, rows = self.index.backend_index.search(np.asarray(vectors, np.float32), k)
            writer.write_chunk(c, rows, scores)
        return finish_binary_run(writer)


def iter_pids(
    run: BinaryRun, corpus: CorpusStore, depth: int | None = None
) -> Iterator[tuple[str, Run]]:
    """(qid, {qid: [(pid, score)]}) per query of a binary run: one query's ids at a time."""
    for qid, rows, scores in run.groups(depth):
        yield qid, {qid: list(zip(corpus.pid_of_rows(rows), scores, strict=True))}


def top_of(run: BinaryRun, corpus: CorpusStore, depth: int) -> Run:
    """Every query's first ``depth`` candidates by pid (dev re-ranking: queries × depth)."""
    return {qid: r[qid] for qid, r in iter_pids(run, corpus, depth)}


def retrieval_metrics(
    qrels: Qrels, run: Run | BinaryRun, corpus: CorpusStore | None = None
) -> dict[str, float]:
    """RocketQA's table: MRR@10, R@50, R@1000 (hit rates, MS MARCO conventions). A binary
    run is read one query at a time; the sums run in qrels order either way, so both forms
    of one run give the same figures to the last bit."""
    if not isinstance(run, BinaryRun):
        return evaluate(qrels, run, METRICS)
    assert corpus is not None, "a binary run's metrics need its corpus"
    per_query = {qid: evaluate({qid: qrels[qid]}, one, METRICS)
                 for qid, one in iter_pids(run, corpus) if qid in qrels}  # fmt: skip
    zero = dict.fromkeys(METRICS, 0.0)
    out = {}
    for name in METRICS:
        total = 0.0
        for qid in qrels:
            total += per_query.get(qid, zero)[name]
        out[name] = total / len(qrels) if qrels else 0.0
    return out


def rerank_run(model_dir: str | Path, run: Run | BinaryRun, queries: Mapping[str, str], corpus: CorpusStore,
               top_k: int, batch_size: int = 64, progress: bool = True) -> Run:  # fmt: skip
    """The re-ranker's order of each query's top ``top_k`` (its saved input settings used)."""
    if isinstance(run, BinaryRun):
        run = top_of(run, corpus, top_k)
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return rerank(model, run, queries, CorpusMap(corpus), top_k, progress=progress)


def cross_scorer(model_dir: str | Path, batch_size: int = 64):
    """A :data:`rqa_jax.data.lists.Scorer` from a cross-encoder export."""
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return lambda queries, paras, titles: model.matching(queries, paras, titles)

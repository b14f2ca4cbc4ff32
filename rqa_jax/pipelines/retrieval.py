"""What every pipeline stage does with a trained model: encode the corpus (with its titles,
as training saw them), index it, retrieve runs, re-rank, evaluate. Resumable where it is
expensive (corpus encoding continues from its progress file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rqa_jax.data import formats as F
from rqa_jax.data.binrun import BinaryRun, BinaryRunWriter, iter_run, read_run_top
from rqa_jax.data.formats import Qrels, Run
from rqa_jax.data.store import CorpusMap, CorpusStore
from rqa_jax.errors import UserInputError
from rqa_jax.eval.metrics import evaluate, evaluate_stream
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


def open_binary_run(path: str | Path, qids: Sequence[str], k: int, chunk: int, corpus_size: int,
                    corpus_fingerprint: str | None) -> BinaryRunWriter:  # fmt: skip
    """A binary run writer over a corpus, laid out by process 0 and opened by the rest."""
    on_process_0(lambda: BinaryRunWriter(path, qids, k, chunk, corpus_size, corpus_fingerprint),
                 f"{path} laid out")  # fmt: skip
    return BinaryRunWriter(path, qids, k, chunk, corpus_size, corpus_fingerprint, create=False)


def search_into(model: Any, index: Any, queries: Sequence[tuple[str, str]], k: int, out: str | Path,
                chunk_queries: int = 4096, progress: bool = True) -> BinaryRun:  # fmt: skip
    """The top ``k`` of each (qid, text) query, in order, into the binary run ``out``: a
    chunk of queries encoded and searched at a time, chunks split over the processes,
    resumed after a kill (finished chunks are kept)."""
    from tqdm import tqdm

    if not queries:
        raise UserInputError(f"{out}: no queries to search")
    count = int(index.meta["count"])
    writer = open_binary_run(out, [q for q, _ in queries], min(k, count), chunk_queries, count,
                             index.meta.get("corpus_fingerprint"))  # fmt: skip
    todo = writer.pending(*processes())
    for c in tqdm(todo, unit="chunk", desc=f"search {Path(out).name}", disable=not progress):
        vectors = model.encode_query([queries[i][1] for i in writer.chunk_rows(c)])
        scores, rows = index.backend_index.search(np.asarray(vectors, np.float32), writer.k)
        writer.write_chunk(c, rows, scores)
    return finish_binary_run(writer)


def score_into(scorer: Any, run: BinaryRun, queries: Mapping[str, str], corpus: CorpusStore, out: str | Path,
               top: int, selected: np.ndarray | None = None, progress: bool = True,
               chunk_queries: int = 256) -> BinaryRun:  # fmt: skip
    """The re-ranker's scores of each selected query's top candidates, as a binary run:
    computed resumably, chunks split over the processes."""
    from rqa_jax.data import mining as M

    on_process_0(lambda: M.scores_writer(run, out, top, selected, chunk_queries), f"{out} laid out")
    writer = M.scores_writer(run, out, top, selected, chunk_queries, create=False)
    M.score_run(scorer, run, writer, queries, corpus, selected, *processes(), progress=progress)
    return finish_binary_run(writer)


def chunked(out: Path, n: int, chunk: int, step: Callable[[int, int], Any]) -> dict[str, Any]:
    """``step(process_index, process_count)`` on every process (each writes its chunks'
    parts of ``out``, :mod:`rqa_jax.data.mining`), then process 0 merges the parts into
    ``out``; every process returns the summed counts (also in ``out.counts.json``)."""
    from rqa_jax.data import mining as M

    step(*processes())
    barrier(f"{out.name} chunks")
    counts = Path(f"{out}.counts.json")
    on_process_0(lambda: counts.write_text(json.dumps(M.merge_parts(out, n, chunk), indent=2) + "\n"),
                 f"{out.name} merged")  # fmt: skip
    return json.loads(counts.read_text())


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
                 batch_size: int = 128, progress: bool = True, shard_rows: int = 0) -> None:  # fmt: skip
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
        if shard_rows:  # built once, saved; one shard in memory at a time while searching
            from rqa_jax.index.sharded import ShardedIndex, build_sharded

            index_dir = workdir / "index"
            on_process_0(
                lambda: build_sharded(emb_dir, index_dir, shard_rows, backend, progress),
                f"{index_dir} built",
            )
            self.index = ShardedIndex(index_dir, in_memory=False)
        else:
            self.index = Index.build(emb_dir, backend)
        if self.index.meta["corpus_fingerprint"] != corpus.fingerprint():
            raise RuntimeError(f"{emb_dir}: encoded another corpus than {corpus.dir}")

    def search(
        self, queries: Mapping[str, str], k: int, out: Path, chunk_queries: int = 4096
    ) -> BinaryRun:
        """The top ``k`` of every query (in ``queries`` order) into the binary run ``out``
        (:func:`search_into`: chunked, split over processes, resumable)."""
        return search_into(
            self.model, self.index, list(queries.items()), k, out, chunk_queries, self.progress
        )


def retrieval_metrics(
    qrels: Qrels, run: Run | BinaryRun, corpus: CorpusStore | None = None
) -> dict[str, float]:
    """RocketQA's table: MRR@10, R@50, R@1000 (hit rates, MS MARCO conventions). A binary
    run is read one query at a time, with the same figures as its text form."""
    if not isinstance(run, BinaryRun):
        return evaluate(qrels, run, METRICS)
    assert corpus is not None, "a binary run's metrics need its corpus"
    return evaluate_stream(qrels, iter_run(run, corpus.pid_of_rows), METRICS)


def rerank_run(model_dir: str | Path, run: Run | BinaryRun, queries: Mapping[str, str], corpus: CorpusStore,
               top_k: int, batch_size: int = 64, progress: bool = True) -> Run:  # fmt: skip
    """The re-ranker's order of each query's top ``top_k`` (its saved input settings used)."""
    if isinstance(run, BinaryRun):
        run = read_run_top(run, top_k, corpus.pid_of_rows)
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return rerank(model, run, queries, CorpusMap(corpus), top_k, progress=progress)


def cross_scorer(model_dir: str | Path, batch_size: int = 64):
    """A :data:`rqa_jax.data.lists.Scorer` from a cross-encoder export."""
    from rqa_jax.inference import load_cross_encoder

    model = load_cross_encoder(model_dir, batch_size=batch_size)
    return lambda queries, paras, titles: model.matching(queries, paras, titles)

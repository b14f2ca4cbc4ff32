"""Natural Questions in ``rqa pipeline v1``, as RocketQA's released NQ recipe runs it: DPR's
files read directly (``psgs_w100.tsv``, ``nq-train.json``, ``nq-test.qa.csv``), step 1 on
DPR's training data with its hard negatives, positives decided by answer strings rather
than labels (:mod:`rqa_jax.eval.answers`: the training-data matcher for the re-ranker and
denoised data, DPR's token matcher for the published answer recall@5/20/100 on the test
questions)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rqa_jax.data import binrun, store
from rqa_jax.data import formats as F
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.errors import UserFileNotFoundError
from rqa_jax.eval import answers as A
from rqa_jax.parallel import on_process_0

DPR_FILES = {"passages": "psgs_w100.tsv", "train": "nq-train.json", "test": "nq-test.qa.csv"}
RECALL_DEPTHS = (5, 20, 100)  # the paper's NQ table


def dpr_file(root: Path, name: str) -> Path:
    path = root / DPR_FILES[name]
    if not path.is_file():
        raise UserFileNotFoundError(f"{path} does not exist: data.source 'nq' reads DPR's "
                                    f"{', '.join(DPR_FILES.values())} from data.dir")  # fmt: skip
    return path


class NqDataset:
    """What the NQ pipeline reads: the corpus with titles as a record store; the train
    questions (1-based position in ``nq-train.json``, as the released ids) and the test
    questions (1-based line of ``nq-test.qa.csv``) with their answers; unlabeled questions.
    NQ has no qrels: ``qrels`` and ``dev_judged`` are empty, answers decide."""

    def __init__(self, root: Path, unlabeled: str = "", cache: Path | None = None,
                 progress: bool = False) -> None:  # fmt: skip
        self.root = root
        psgs = dpr_file(root, "passages")
        self.train_file = dpr_file(root, "train")

        def passages() -> Iterator[tuple[str, str | None, str]]:
            return ((r.id, r.title, r.text) for r in F.iter_dpr_passages(psgs))

        cache = cache or root / ".rqa_cache"
        stored: list[Path] = []
        on_process_0(lambda: stored.append(store.ensure_corpus(cache, [psgs], passages, progress=progress)),
                     "corpus store")  # fmt: skip
        self.corpus = store.CorpusStore(
            stored[0] if stored else store.store_dir(cache, "corpus", [psgs], {})
        )
        train = list(F.iter_dpr_examples(self.train_file))
        test = list(F.iter_qa_pairs(dpr_file(root, "test")))
        self.queries = {"train": {str(i): e.question for i, e in enumerate(train, 1)},
                        "dev": {str(i): p.question for i, p in enumerate(test, 1)}}  # fmt: skip
        self.answers = {"train": {str(i): list(e.answers) for i, e in enumerate(train, 1) if e.answers},
                        "dev": {str(i): list(p.answers) for i, p in enumerate(test, 1)}}  # fmt: skip
        self.qrels: dict[str, F.Qrels] = {"train": {}, "dev": {}}
        self.dev_judged: F.Qrels = {}
        self.not_negatives: F.Qrels = {}
        self.planted: F.Qrels = {}
        path = Path(unlabeled) if unlabeled else root / "queries.unlabeled.tsv"
        self.unlabeled = {q.id: q.text for q in F.iter_queries(path)} if path.is_file() else {}


class _Texts(Mapping[str, str]):
    """A corpus store as ``pid -> text``, one record read per lookup."""

    def __init__(self, corpus: store.CorpusStore) -> None:
        self.map = store.CorpusMap(corpus)

    def __getitem__(self, pid: str) -> str:
        return self.map[pid][1]

    def __contains__(self, pid: object) -> bool:
        return pid in self.map

    def __iter__(self) -> Iterator[str]:
        return iter(self.map)

    def __len__(self) -> int:
        return len(self.map)


def top_of(run: BinaryRun | F.Run, depth: int, corpus: store.CorpusStore) -> F.Run:
    return run if isinstance(run, dict) else binrun.read_run_top(run, depth, corpus.pid_of_rows)


def answer_metrics(ds: NqDataset, run: BinaryRun | F.Run, depth: int) -> dict[str, float]:
    """Answer recall@k on the test questions for the depths searched (none beyond ``depth``)."""
    ks = [k for k in RECALL_DEPTHS if k <= depth]
    return A.answer_recall(top_of(run, depth, ds.corpus), ds.answers["dev"], _Texts(ds.corpus), ks)


def judged_by_answers(ds: NqDataset, run: BinaryRun | F.Run, depth: int) -> F.Qrels:
    """Relevance of the run's top ``depth`` by answer matching (for ranking metrics on NQ)."""
    return A.answer_qrels(
        top_of(run, depth, ds.corpus), ds.answers["dev"], _Texts(ds.corpus), depth
    )


def metric_keys(depths: Sequence[int] = RECALL_DEPTHS) -> tuple[str, ...]:
    return tuple(f"answer_recall@{k}" for k in depths)


def report_row(metrics: Mapping[str, Any]) -> list[str]:
    return [f"{metrics[k]:.3f}" if k in metrics else "—" for k in metric_keys()]

"""TFDS builders (array_record files) over the raw files a user puts in ``manual_dir``.

No TensorFlow is needed: builds use ``file_format="array_record"`` and reads go through
``builder.as_data_source()`` (random access, what grain wants). Example order is TFDS's
deterministic key-hash order, so a seeded run sees the same examples in the same order.

* ``msmarco_passage``: ``collection.tsv`` [+ ``titles.tsv``] → split ``corpus``;
  ``triples.train.tsv`` or ``queries.train.tsv`` + ``qrels.train.tsv`` → ``train`` (dual
  examples; with qrels, ``num_random_negatives`` negatives drawn from the corpus, seeded);
  ``queries.dev.tsv`` / ``qrels.dev.tsv`` → ``dev_queries`` / ``dev_qrels``.
* ``nq_dpr``: ``psgs_w100.tsv`` → ``corpus``; ``nq-train.json`` / ``nq-dev.json`` →
  ``train`` / ``dev`` (question, answers, positive / negative / hard-negative contexts);
  ``nq-test.qa.csv`` → ``test`` (question, answers).
* ``rocketqa_tsv``: config ``dual`` | ``cross`` | ``joint`` (``list_size``) over ``train.tsv``.

Splits whose files are absent are skipped. Records come back as Python strings
(:func:`data_source` decodes TFDS's bytes); titles are '' when there is none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from rqa_jax.data import examples as E
from rqa_jax.data import formats as F
from rqa_jax.data.examples import passage as _passage
from rqa_jax.errors import MissingIdError, UserInputError

_TEXT = tfds.features.Text
_PASSAGE = {"id": _TEXT(), "title": _TEXT(), "text": _TEXT()}
DUAL_FEATURES = {
    "query": _TEXT(),
    "positive": dict(_PASSAGE),
    "negatives": tfds.features.Sequence(dict(_PASSAGE)),
}
DPR_FEATURES = {
    "question": _TEXT(),
    "answers": tfds.features.Sequence(_TEXT()),
    "positives": tfds.features.Sequence(dict(_PASSAGE)),
    "negatives": tfds.features.Sequence(dict(_PASSAGE)),
    "hard_negatives": tfds.features.Sequence(dict(_PASSAGE)),
}


class _ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared plumbing: files come from manual_dir; each subclass builds its DatasetInfo in
    code (TFDS's metadata-file lookup would need a package dir per dataset)."""

    VERSION = tfds.core.Version("1.0.0")
    DESCRIPTION = ""

    def _generate_examples(self, *args: Any) -> Iterator:
        """Unused where splits come from per-split generator methods."""
        raise NotImplementedError


def _present(manual: Path, *names: str) -> bool:
    return all((manual / n).is_file() for n in names)


class MsmarcoPassage(_ManualBuilder):
    """MS MARCO passage ranking from its TSV files."""

    DESCRIPTION = "MS MARCO passage ranking: corpus, train dual examples, dev queries and qrels."
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put collection.tsv (and optionally titles.tsv, triples.train.tsv, queries.train.tsv, "
        "qrels.train.tsv, queries.dev.tsv, qrels.dev.tsv) in manual_dir."
    )
    num_random_negatives = 4
    seed = 0

    def _info(self) -> tfds.core.DatasetInfo:
        # Splits have different features: one FeaturesDict with every field, unused ones empty.
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "kind": _TEXT(),
                    "passage": dict(_PASSAGE),
                    "dual": dict(DUAL_FEATURES),
                    "query": {"id": _TEXT(), "text": _TEXT()},
                    "qrel": {"qid": _TEXT(), "pid": _TEXT(), "relevance": np.int32},
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        manual = Path(dl_manager.manual_dir)
        if not _present(manual, "collection.tsv"):
            raise FileNotFoundError(f"{manual}: msmarco_passage needs collection.tsv")
        splits: dict[str, Iterator] = {"corpus": self._corpus(manual)}
        if _present(manual, "triples.train.tsv") or _present(
            manual, "queries.train.tsv", "qrels.train.tsv"
        ):
            splits["train"] = self._train(manual)
        if _present(manual, "queries.dev.tsv"):
            splits["dev_queries"] = self._queries(manual / "queries.dev.tsv")
        if _present(manual, "qrels.dev.tsv"):
            splits["dev_qrels"] = self._qrels(manual / "qrels.dev.tsv")
        return splits

    @staticmethod
    def _empty(**fields: Any) -> dict[str, Any]:
        record = {
            "kind": "",
            "passage": _passage("", None, ""),
            "dual": {"query": "", "positive": _passage("", None, ""), "negatives": []},
            "query": {"id": "", "text": ""},
            "qrel": {"qid": "", "pid": "", "relevance": 0},
        }
        record.update(fields)
        return record

    def _titles(self, manual: Path) -> dict[str, str | None]:
        return F.read_titles(manual / "titles.tsv") if _present(manual, "titles.tsv") else {}

    def _corpus(self, manual: Path) -> Iterator:
        titles = self._titles(manual)
        for i, rec in enumerate(F.iter_collection(manual / "collection.tsv")):
            yield (
                i,
                self._empty(kind="passage", passage=_passage(rec.id, titles.get(rec.id), rec.text)),
            )

    def _train(self, manual: Path) -> Iterator:
        if _present(manual, "triples.train.tsv"):
            duals = E.dual_from_triples(manual / "triples.train.tsv")
        else:
            titles = manual / "titles.tsv" if _present(manual, "titles.tsv") else None
            duals = E.dual_from_marco(
                manual / "collection.tsv", manual / "queries.train.tsv", manual / "qrels.train.tsv",
                titles, self.num_random_negatives, self.seed,
            )  # fmt: skip
        for i, dual in enumerate(duals):
            yield i, self._empty(kind="dual", dual=dual)

    def _queries(self, path: Path) -> Iterator:
        for i, q in enumerate(F.iter_queries(path)):
            yield i, self._empty(kind="query", query={"id": q.id, "text": q.text})

    def _qrels(self, path: Path) -> Iterator:
        for i, (_, qid, pid, rel) in enumerate(F.iter_qrels(path)):
            yield i, self._empty(kind="qrel", qrel={"qid": qid, "pid": pid, "relevance": rel})


class NqDpr(_ManualBuilder):
    """Natural Questions in DPR's release format."""

    DESCRIPTION = "Natural Questions (DPR form): corpus, train/dev with contexts, test QA pairs."
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put psgs_w100.tsv, nq-train.json, nq-dev.json and/or nq-test.qa.csv in manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {"kind": _TEXT(), "passage": dict(_PASSAGE), "example": dict(DPR_FEATURES)}
            ),
        )

    @staticmethod
    def _empty(**fields: Any) -> dict[str, Any]:
        record = {
            "kind": "",
            "passage": _passage("", None, ""),
            "example": {
                "question": "",
                "answers": [],
                "positives": [],
                "negatives": [],
                "hard_negatives": [],
            },
        }
        record.update(fields)
        return record

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        manual = Path(dl_manager.manual_dir)
        splits: dict[str, Iterator] = {}
        if _present(manual, "psgs_w100.tsv"):
            splits["corpus"] = self._corpus(manual / "psgs_w100.tsv")
        for split in ("train", "dev"):
            if _present(manual, f"nq-{split}.json"):
                splits[split] = self._examples(manual / f"nq-{split}.json")
        if _present(manual, "nq-test.qa.csv"):
            splits["test"] = self._qa(manual / "nq-test.qa.csv")
        if not splits:
            raise FileNotFoundError(f"{manual}: none of psgs_w100.tsv, nq-*.json, nq-test.qa.csv")
        return splits

    def _corpus(self, path: Path) -> Iterator:
        for i, rec in enumerate(F.iter_dpr_passages(path)):
            yield i, self._empty(kind="passage", passage=_passage(rec.id, rec.title, rec.text))

    def _examples(self, path: Path) -> Iterator:
        for i, example in enumerate(E.dpr_examples(path)):
            yield i, self._empty(kind="dpr", example=example)

    def _qa(self, path: Path) -> Iterator:
        for i, qa in enumerate(F.iter_qa_pairs(path)):
            example = {"question": qa.question, "answers": list(qa.answers), "positives": [],
                       "negatives": [], "hard_negatives": []}  # fmt: skip
            yield i, self._empty(kind="qa", example=example)


@dataclasses.dataclass
class RocketqaTsvConfig(tfds.core.BuilderConfig):
    """``kind``: dual | cross | joint; ``list_size`` for joint lists."""

    kind: str = "dual"
    list_size: int = 0


class RocketqaTsv(_ManualBuilder):
    """One of RocketQA's three training TSVs (``train.tsv`` in manual_dir)."""

    DESCRIPTION = "RocketQA training TSV (dual encoder, cross encoder or v2 joint lists)."
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the training file as train.tsv in manual_dir."
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        RocketqaTsvConfig(name="dual", kind="dual"),
        RocketqaTsvConfig(name="cross", kind="cross"),
        RocketqaTsvConfig(name="joint8", kind="joint", list_size=8),
        RocketqaTsvConfig(name="joint32", kind="joint", list_size=32),
        RocketqaTsvConfig(name="joint128", kind="joint", list_size=128),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        kind = self.builder_config.kind
        if kind == "dual":
            features = dict(DUAL_FEATURES)
        elif kind == "cross":
            features = {"query": _TEXT(), "title": _TEXT(), "para": _TEXT(), "label": np.int32}
        else:
            features = {
                "query": _TEXT(),
                "titles": tfds.features.Sequence(_TEXT()),
                "paras": tfds.features.Sequence(_TEXT()),
                "labels": tfds.features.Sequence(np.int32),
            }
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        path = Path(dl_manager.manual_dir) / "train.tsv"
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent}: rocketqa_tsv needs train.tsv")
        return {"train": self._generate_examples(path)}

    def _generate_examples(self, path: Path) -> Iterator:
        cfg = self.builder_config
        if cfg.kind == "dual":
            yield from enumerate(E.dual_from_rocketqa_tsv(path))
        elif cfg.kind == "cross":
            yield from enumerate(E.cross_from_tsv(path))
        else:
            yield from enumerate(E.joint_from_tsv(path, cfg.list_size))


BUILDERS = {"msmarco_passage": MsmarcoPassage, "nq_dpr": NqDpr, "rocketqa_tsv": RocketqaTsv}


def build(
    name: str, manual_dir: str | Path, data_dir: str | Path, config: str | None = None
) -> tfds.core.DatasetBuilder:
    """Builds (once; later calls reuse the files) dataset ``name`` from ``manual_dir``."""
    if name not in BUILDERS:
        raise UserInputError(f"unknown dataset {name!r}; known: {', '.join(BUILDERS)}")
    builder = BUILDERS[name](data_dir=str(data_dir), file_format="array_record", config=config)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


# Sequence(dict) features come back as a dict of lists; these become lists of dicts.
_PASSAGE_LISTS = ("negatives", "positives", "hard_negatives")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        out = {k: _decode(v) for k, v in value.items()}
        for key in _PASSAGE_LISTS:
            if isinstance(out.get(key), dict):
                cols = out[key]
                out[key] = [
                    dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)
                ]
        return out
    if isinstance(value, list | tuple):
        return [_decode(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class DecodedSource:
    """A random-access split with TFDS bytes decoded to str and the record's payload
    selected (``field``), so loaders see the same dicts as from the raw files."""

    def __init__(self, source: Any, field: str | None = None) -> None:
        self._source, self._field = source, field

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Any:
        return self._select(self._source[index])

    def __getitems__(self, indices: Any) -> list[Any]:
        """One batched read (array_record reads batches much faster than single records)."""
        batched = getattr(self._source, "__getitems__", None)
        records = batched(list(indices)) if batched else [self._source[i] for i in indices]
        return [self._select(r) for r in records]

    def _select(self, raw: Any) -> Any:
        record = _decode(raw)
        return record[self._field] if self._field else record


# split -> payload field of the union records
_FIELDS = {
    "msmarco_passage": {
        "corpus": "passage",
        "train": "dual",
        "dev_queries": "query",
        "dev_qrels": "qrel",
    },
    "nq_dpr": {"corpus": "passage", "train": "example", "dev": "example", "test": "example"},
}


def data_source(builder: tfds.core.DatasetBuilder, split: str) -> DecodedSource:
    """The random-access, decoded records of one split of a built dataset."""
    sources = builder.as_data_source()
    if split not in sources:
        raise MissingIdError(f"{builder.name} has no split {split!r} (built: {', '.join(sources)})")
    return DecodedSource(sources[split], _FIELDS.get(builder.name, {}).get(split))

"""From a config to the pieces the loop needs: model, tokenizer, parameters, data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rqa_jax import parallel
from rqa_jax.api import DTYPES, load_tokenizer
from rqa_jax.data import examples as E
from rqa_jax.data import tfds_builders
from rqa_jax.data.sample import generate
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig
from rqa_jax.models.towers import DualEncoderNet


@dataclasses.dataclass
class DevSet:
    """A dev split for retrieval evaluation: queries, qrels and the corpus to search."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus: dict[str, tuple[str | None, str]]  # pid -> (title, text)


def dual_net(config: ml_collections.ConfigDict, bert_config: BertConfig) -> DualEncoderNet:
    return DualEncoderNet(
        bert_config,
        tie_towers=config.tie_towers,
        pooling=config.pooling,
        normalize=config.normalize,
        dtype=DTYPES[config.dtype],
        param_dtype=DTYPES[config.param_dtype],
        remat=config.remat,
        scan_layers=config.scan_layers,
    )


def _to_mesh(tree: Any, shardings: Any) -> Any:
    """Host numpy arrays (the same on every process) → global arrays in ``shardings``."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(x.shape, s, lambda idx, x=x: x[idx]),
        tree,
        shardings,
    )


def init_dual_params(
    config: ml_collections.ConfigDict, net: DualEncoderNet, mesh: jax.sharding.Mesh
) -> tuple[Any, Any]:
    """(params on the mesh, their shardings): from ``config.model_dir``'s HF weights (both
    towers start from them), or random under jit with ``out_shardings`` (from scratch)."""
    rules = parallel.RULE_SETS[config.partition_rules]
    ids = jnp.zeros((1, 8), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": ids + 1}
    abstract = hf.abstract_params(net, batch, batch)
    shardings = parallel.param_shardings(abstract, mesh, rules)
    if not config.model_dir:
        init = lambda: net.init(jax.random.PRNGKey(config.seed), batch, batch)["params"]  # noqa: E731
        return parallel.sharded_init(init, shardings), shardings
    _, tower = hf.load_bert(
        config.model_dir, param_dtype=DTYPES[config.param_dtype], scan_layers=config.scan_layers
    )
    names = ["encoder"] if config.tie_towers else ["query_encoder", "passage_encoder"]
    host = {name: tower for name in names}
    return _to_mesh(jax.tree.map(np.asarray, host), shardings), shardings


def bert_config_for(config: ml_collections.ConfigDict) -> BertConfig:
    if config.model_dir:
        return hf.load_config(config.model_dir)
    return BertConfig(**config.model_config.to_dict())


def tokenizer_for(config: ml_collections.ConfigDict) -> Any:
    return load_tokenizer(config.tokenizer_dir or config.model_dir)


def _on_process_0(write: Any, what: str) -> None:
    """Shared files are written by process 0 alone; the others wait for it."""
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        write()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"rqa_jax: {what} ready")


def _marco_root(d: ml_collections.ConfigDict, workdir: Path) -> Path:
    """The MS MARCO-format dir of ``data.source`` marco (``data.dir``) or sample (generated
    once into ``workdir/data``)."""
    root = Path(d.dir) if d.source == "marco" else workdir / "data"
    if d.source == "sample" and not (root / "qrels.dev.tsv").is_file():
        _on_process_0(lambda: generate(root, seed=d.sample_seed), "sample data")
    return root


def _marco_dev(d: Path) -> DevSet:
    from rqa_jax.data import formats as F

    titles = F.read_titles(d / "titles.tsv") if (d / "titles.tsv").is_file() else {}
    corpus = {r.id: (titles.get(r.id), r.text) for r in F.iter_collection(d / "collection.tsv")}
    queries = {q.id: q.text for q in F.iter_queries(d / "queries.dev.tsv")}
    qrels = F.read_qrels(d / "qrels.dev.tsv", corpus_ids=corpus)
    return DevSet(queries, qrels, corpus)


def dual_data(config: ml_collections.ConfigDict, workdir: Path) -> tuple[Any, DevSet | None]:
    """(random-access training examples, dev set or None) for ``config.data.source``:

    * ``sample``: the generated sample dataset (written to ``workdir/data`` once);
    * ``marco``: an MS MARCO dir (``triples.train.tsv``, or queries/qrels + random negatives);
    * ``rocketqa_tsv``: RocketQA's 6-column file at ``data.path``;
    * ``dpr``: DPR ``nq-train.json`` at ``data.path``;
    * ``tfds``: a built TFDS dataset (``data.tfds_name`` from ``data.dir`` into ``data.tfds_dir``).
    """
    d = config.data
    dev: DevSet | None = None
    if d.source in ("sample", "marco"):
        root = _marco_root(d, workdir)
        if (root / "triples.train.tsv").is_file():
            examples = list(E.dual_from_triples(root / "triples.train.tsv"))
        else:
            titles = root / "titles.tsv" if (root / "titles.tsv").is_file() else None
            examples = list(E.dual_from_marco(root / "collection.tsv", root / "queries.train.tsv", root / "qrels.train.tsv",
                                              titles, d.num_random_negatives, config.seed))  # fmt: skip
        if (root / "queries.dev.tsv").is_file():
            dev = _marco_dev(root)
    elif d.source == "rocketqa_tsv":
        examples = list(E.dual_from_rocketqa_tsv(d.path))
    elif d.source == "dpr":
        examples = list(E.dual_from_dpr(d.path))
    elif d.source == "tfds":
        _on_process_0(lambda: tfds_builders.build(d.tfds_name, d.dir, d.tfds_dir), "TFDS build")
        builder = tfds_builders.build(d.tfds_name, d.dir, d.tfds_dir)  # reuses the built files
        examples = tfds_builders.data_source(builder, "train")
        if (
            d.tfds_name == "nq_dpr"
        ):  # DPR form -> dual form; questions without a positive are skipped
            records = (examples[i] for i in range(len(examples)))
            examples = [E.dual_from_dpr_example(r) for r in records if r["positives"]]
    else:
        raise ValueError(
            f"data.source must be sample|marco|rocketqa_tsv|dpr|tfds, got {d.source!r}"
        )
    if d.dev_max_queries and dev is not None:
        keep = list(dev.queries)[: d.dev_max_queries]
        dev = DevSet(
            {q: dev.queries[q] for q in keep},
            {q: dev.qrels[q] for q in keep if q in dev.qrels},
            dev.corpus,
        )
    return examples, dev


def cross_net(config: ml_collections.ConfigDict, bert_config: BertConfig) -> Any:
    from rqa_jax.models.towers import CrossEncoderNet

    return CrossEncoderNet(bert_config, config.cross_head, dtype=DTYPES[config.dtype],
                           param_dtype=DTYPES[config.param_dtype], remat=config.remat)  # fmt: skip


def init_cross_params(
    config: ml_collections.ConfigDict, net: Any, mesh: jax.sharding.Mesh
) -> tuple[Any, Any]:
    """(params on the mesh, shardings): the encoder from ``config.model_dir`` (a plain HF
    encoder gets a fresh head; a sequence-classification dir brings its own), or random."""
    rules = parallel.RULE_SETS[config.partition_rules]
    ids = jnp.zeros((1, 8), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": ids + 1}
    shardings = parallel.param_shardings(hf.abstract_params(net, batch), mesh, rules)
    fresh = lambda: net.init(jax.random.PRNGKey(config.seed), batch)["params"]  # noqa: E731
    if not config.model_dir:
        return parallel.sharded_init(fresh, shardings), shardings
    archs = (
        json.loads((Path(config.model_dir) / "config.json").read_text()).get("architectures") or []
    )
    if any(a.endswith("ForSequenceClassification") for a in archs):
        _, _, params = hf.load_cross_encoder(config.model_dir, config.cross_head)
    else:
        _, bert = hf.load_bert(config.model_dir, param_dtype=DTYPES[config.param_dtype])
        head = jax.tree.map(np.asarray, jax.jit(fresh)())
        if config.cross_head == "v2":
            bert = {k: v for k, v in bert.items() if k != "pooler"}
        params = {"bert": bert, "classifier": head["classifier"]}
    return _to_mesh(jax.tree.map(np.asarray, params), shardings), shardings


def cross_data(config: ml_collections.ConfigDict, workdir: Path) -> tuple[list[dict], Any]:
    """(training examples, dev set with its candidate run or None).

    Pointwise examples are labelled pairs; listwise ones are lists of ``list_size`` passages,
    positive first. Negatives come from ``data.train_run`` (a retriever's run for the train
    queries: RocketQA samples them from the top 1000, positives excluded) or, without one, at
    random from the corpus. ``data.path`` instead reads RocketQA's cross TSV (pointwise) or
    v2 list TSV (listwise).
    """
    from rqa_jax.data import formats as F

    d = config.data
    if d.source == "rocketqa_tsv":
        examples = list(
            E.cross_from_tsv(d.path)
            if config.objective == "pointwise"
            else E.joint_from_tsv(d.path, config.list_size)
        )
        return examples, None
    root = _marco_root(d, workdir)
    titles = F.read_titles(root / "titles.tsv") if (root / "titles.tsv").is_file() else {}
    corpus = {r.id: (titles.get(r.id), r.text) for r in F.iter_collection(root / "collection.tsv")}
    queries = {q.id: q.text for q in F.iter_queries(root / "queries.train.tsv")}
    qrels = F.read_qrels(root / "qrels.train.tsv", corpus_ids=corpus, strict=True)
    run = F.read_run(d.train_run) if d.train_run else {}
    pids = sorted(corpus)
    rng = np.random.default_rng(config.seed)
    n_neg = 1 if config.objective == "pointwise" else config.list_size - 1
    examples: list[dict] = []
    for qid, docs in qrels.items():
        positives = {p for p, rel in docs.items() if rel > 0}
        pool = [p for p, _ in run.get(qid, [])[: d.negative_depth] if p not in positives]
        for pos in positives:
            negs = list(rng.choice(pool, n_neg, replace=len(pool) < n_neg)) if pool else []
            while len(negs) < n_neg:
                p = pids[rng.integers(len(pids))]
                if p not in positives:
                    negs.append(p)
            if config.objective == "pointwise":
                for pid, label in [(pos, 1)] + [(n, 0) for n in negs]:
                    examples.append(
                        {
                            "query": queries[qid],
                            "title": corpus[pid][0] or "",
                            "para": corpus[pid][1],
                            "label": label,
                        }
                    )
            else:
                ids = [pos, *negs]
                examples.append({"query": queries[qid], "titles": [corpus[p][0] or "" for p in ids],
                                 "paras": [corpus[p][1] for p in ids], "labels": [1] + [0] * n_neg})  # fmt: skip
    dev = None
    if d.dev_run and (root / "queries.dev.tsv").is_file():
        dev = (_marco_dev(root), F.read_run(d.dev_run))
    return examples, dev

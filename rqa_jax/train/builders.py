"""From a config to the pieces the loop needs: model, tokenizer, parameters, data."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rqa_jax import parallel
from rqa_jax.data import binrun, store, tfds_builders
from rqa_jax.data import examples as E
from rqa_jax.data import formats as F
from rqa_jax.data.sample import generate
from rqa_jax.errors import ConfigError
from rqa_jax.inference import DTYPES, load_tokenizer
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig
from rqa_jax.models.towers import DualEncoderNet


@dataclasses.dataclass
class DevSet:
    """A dev split for retrieval evaluation: queries, qrels and the corpus to search."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    corpus: dict[str, tuple[str | None, str]]  # pid -> (title, text)
    # The candidate set when it is not the whole corpus ("sample200000", "run1000"):
    # dev metric names carry it (dev_mrr@10[sample200000]).
    name: str = ""


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
    towers start from them; a two-tower dir, see :func:`tower_dirs`, gives each its own), or
    random under jit with ``out_shardings`` (from scratch)."""
    rules = parallel.RULE_SETS[config.partition_rules]
    ids = jnp.zeros((1, 8), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": ids + 1}
    abstract = hf.abstract_params(net, batch, batch)
    shardings = parallel.param_shardings(abstract, mesh, rules)
    if not config.model_dir:
        init = lambda: net.init(jax.random.PRNGKey(config.seed), batch, batch)["params"]  # noqa: E731
        return parallel.sharded_init(init, shardings), shardings
    names = ["encoder"] if config.tie_towers else ["query_encoder", "passage_encoder"]
    towers = tower_dirs(config.model_dir)
    if config.tie_towers and len(towers) > 1:
        raise ConfigError(
            f"model_dir {config.model_dir!r} has separate query/passage towers but tie_towers is "
            "set: give one tower dir (e.g. its passage_encoder/) or --config.tie_towers=false"
        )
    sources = dict(zip(names, towers if len(towers) > 1 else towers * len(names), strict=True))
    kw = {"param_dtype": DTYPES[config.param_dtype], "scan_layers": config.scan_layers}
    loaded = {d: hf.load_bert(d, **kw)[1] for d in dict.fromkeys(sources.values())}
    host = {name: loaded[d] for name, d in sources.items()}
    return _to_mesh(jax.tree.map(np.asarray, host), shardings), shardings


JOINT_PARTS = ("retriever", "reranker")


def joint_part(config: ml_collections.ConfigDict, part: str) -> ml_collections.ConfigDict:
    """One model's view of a joint config: the shared keys plus ``config.<part>``'s (model
    dir, pooling, head, ...), in the shape the dual/cross builders read. The re-ranker's
    view is listwise, as RocketQAv2 trains it."""
    if part not in JOINT_PARTS:
        raise ConfigError(f"part must be one of {JOINT_PARTS}, got {part!r}")
    view = {k: v for k, v in config.to_dict().items() if k not in JOINT_PARTS}
    view.update(config[part].to_dict())
    if part == "reranker":
        view.update(objective="listwise")
    return ml_collections.ConfigDict(view)


def tower_dirs(model_dir: str | Path) -> list[Path]:
    """``[query_encoder/, passage_encoder/]`` of a two-tower dir (``rqa train``'s export, or
    ``rqa convert rocketqa`` of a dual encoder), else ``[model_dir]``: each tower then starts
    from its own weights."""
    path = Path(model_dir)
    separate = [path / "query_encoder", path / "passage_encoder"]
    return separate if all(d.is_dir() for d in separate) else [path]


def bert_config_for(config: ml_collections.ConfigDict) -> BertConfig:
    if config.model_dir:
        return hf.load_config(tower_dirs(config.model_dir)[0])
    return BertConfig(**config.model_config.to_dict())


def tokenizer_for(config: ml_collections.ConfigDict) -> Any:
    if config.tokenizer_dir or not config.model_dir:
        return load_tokenizer(config.tokenizer_dir or config.model_dir)
    return load_tokenizer(tower_dirs(config.model_dir)[0])


# data.source choices per task, and what each reads (for the messages of check_data)
DATA_SOURCES = {
    "dual": ("sample", "marco", "rocketqa_tsv", "dpr", "tfds"),
    "cross": ("sample", "marco", "rocketqa_tsv"),
    "joint": ("sample", "marco", "rocketqa_tsv"),
}
_SOURCE_READS = {
    "sample": "generates its data (into WORKDIR/data)",
    "marco": "reads the MS MARCO-form files in data.dir",
    "rocketqa_tsv": "reads RocketQA's training TSV at data.path",
    "dpr": "reads DPR's nq-train.json at data.path",
    "tfds": "reads the TFDS dataset data.tfds_name (built from data.dir into data.tfds_dir)",
}
# data.* keys that name files: each set one must be read, or the config is refused
_DATA_FILE_KEYS = ("dir", "path", "tfds_dir", "train_run", "dev_run", "dev_candidates_run")


def _data_reads(task: str, d: ml_collections.ConfigDict) -> tuple[set[str], set[str]]:
    """(keys read for training, keys read only for dev evaluation) under ``data.source``."""
    source, dev_candidates = d.source, ({"dev_candidates_run"} if task != "cross" else set())
    train = {
        "sample": set(),
        "marco": {"dir"},
        "rocketqa_tsv": {"path"},
        "dpr": {"path"},
        "tfds": {"dir", "tfds_dir"},
    }[source]
    if task == "dual":
        dev = dev_candidates | ({"dir"} if source in ("rocketqa_tsv", "dpr") else set())
    else:  # cross / joint: MS MARCO form reads a retriever's train run for the negatives
        train = train | ({"train_run"} if source != "rocketqa_tsv" else set())
        dev = {"dev_run"} | dev_candidates | ({"dir"} if source == "rocketqa_tsv" else set())
    return train, dev


def _note(message: str) -> None:
    if jax.process_index() == 0:
        print(f"rqa train: {message}")


def check_data(config: ml_collections.ConfigDict) -> None:
    """Refuses data settings that would be ignored (no silent fallbacks): a ``data.*`` key
    that names files (``dir``, ``path``, ``tfds_dir``, ``train_run``, ``dev_run``,
    ``dev_candidates_run``; ``negatives='triples'``) which ``data.source`` never reads for
    ``config.task`` is an error saying which key and why; so are a source the task cannot
    read and a source without the file it needs. Keys read only for dev evaluation are
    accepted with ``eval_every=0`` (one line says they are not read). Called by
    :func:`dual_data` and :func:`cross_data`: every task (the joint task's data is the
    re-ranker's) checks its config before reading anything."""
    d, task = config.data, config.task
    if d.source not in DATA_SOURCES[task]:
        raise ConfigError(f"data.source must be one of {'|'.join(DATA_SOURCES[task])} for the "
                          f"{task} task, got {d.source!r}")  # fmt: skip
    reads = f"data.source={d.source!r} {_SOURCE_READS[d.source]}"
    if d.source == "marco" and not d.dir:
        raise ConfigError(f"{reads}: set data.dir (collection.tsv, queries.train.tsv, "
                          "qrels.train.tsv, ...; see rqa_jax.data.formats.MARCO_FILES)")  # fmt: skip
    if d.source in ("rocketqa_tsv", "dpr") and not d.path:
        raise ConfigError(f"{reads}: set data.path")
    train, dev = _data_reads(task, d)
    named = {k: d[k] for k in _DATA_FILE_KEYS if d.get(k)}
    hints = {
        "dir": "set data.source='marco' to train on the files there",
        "path": f"data.path is read by data.source="
        f"{'rocketqa_tsv or dpr' if task == 'dual' else 'rocketqa_tsv'}",
        "tfds_dir": "it is read only by data.source='tfds'",
        "train_run": "the TSV's lines carry their negatives already (data.train_run gives "
        "the negatives of MS MARCO-form data: data.source='marco' or 'sample')",
        "dev_candidates_run": "the re-ranker is evaluated on data.dev_run's candidates "
        "(data.dev_candidates_run is for retrieval evaluation: the dual and joint tasks)",
    }
    for key, value in named.items():
        if key in train:
            continue
        if key not in dev:
            raise ConfigError(f"{reads}; data.{key}={value!r} would be ignored: {hints[key]}")
        if not config.eval_every:
            _note(f"eval_every=0: data.{key}={value!r} (read for dev evaluation only) is not read")
    lines = d.get("random_negative_lines", 1)
    step_one_source = task == "dual" and d.source in ("sample", "marco")
    if lines != 1 and not (step_one_source and d.negatives == "random"):
        why = (f"data.random_negative_lines={lines} would be ignored: it lays out step 1's random "
               "negatives (task 'dual', data.source 'marco' or 'sample', data.negatives='random')")  # fmt: skip
        if step_one_source:  # same files, other negatives: the layout asked for is not the one read
            raise ConfigError(why)
        # another source (a step-1 config pointed at your own TSV): its files set the lines
        _note(why.replace("would be ignored", "is not read") + f"; data.source={d.source!r} reads "
              "its lines as they are")  # fmt: skip
    if d.dev_candidates_run and parse_dev_corpus(d.dev_corpus)[0] != "run":
        raise ConfigError(f"data.dev_candidates_run={d.dev_candidates_run!r} would be ignored: it is "
                          f"read only with data.dev_corpus='run:K' (got {d.dev_corpus!r})")  # fmt: skip
    if task == "cross" and d.source == "rocketqa_tsv" and d.dir and not d.dev_run:
        raise ConfigError(f"{reads}; data.dir={d.dir!r} would be ignored: a re-ranker trained on a "
                          "TSV reads data.dir only for the dev files that data.dev_run re-ranks: "
                          "set data.dev_run too, or drop data.dir")  # fmt: skip
    if task != "dual" and d.source == "rocketqa_tsv" and d.dev_run and not d.dir:
        raise ConfigError(f"{reads}; data.dev_run={d.dev_run!r} re-ranks dev queries whose queries, "
                          "qrels and passages come from data.dir (MS MARCO form): set data.dir")  # fmt: skip
    if d.get("negatives", "random") == "triples" and d.source not in ("sample", "marco"):
        raise ConfigError(f"{reads}; data.negatives='triples' would be ignored: it reads MS MARCO's "
                          "triples.train.tsv from data.dir (data.source='marco')")  # fmt: skip


def _marco_root(d: ml_collections.ConfigDict, workdir: Path) -> Path:
    """The MS MARCO-format dir of ``data.source`` marco (``data.dir``) or sample (generated
    once into ``workdir/data``)."""
    if d.source == "marco" and not d.dir:
        raise ConfigError("data.source='marco' reads the MS MARCO-form files in data.dir: set it")
    root = Path(d.dir) if d.source == "marco" else workdir / "data"
    if d.source == "sample":
        # Every process meets the barrier; only process 0 looks at the files. Deciding on each
        # process whether to wait let a slow one (a loaded machine) see process 0's files,
        # skip the barrier, and meet process 0 at the next one under another name.
        def make() -> None:
            if not (root / "qrels.dev.tsv").is_file():
                generate(root, seed=d.sample_seed)

        parallel.on_process_0(make, "sample data")
    return root


def dev_root(d: ml_collections.ConfigDict, workdir: Path) -> Path | None:
    """Where the MS MARCO-form dev files are: the data dir of ``sample`` / ``marco``, else
    ``data.dir`` when set (a TSV-trained run can still be evaluated), else None."""
    if d.source in ("sample", "marco"):
        return _marco_root(d, workdir)
    return Path(d.dir) if d.dir else None


def retrieval_dev_set(config: ml_collections.ConfigDict, workdir: Path) -> DevSet | None:
    """The dev set retrieval evaluation searches (dual and joint tasks, when ``eval_every``):
    from :func:`dev_root`'s dev queries and qrels (:func:`marco_dev_set`); None, said on
    stdout, when there is no dev root or it has no dev queries."""
    if not config.eval_every:
        return None
    d = config.data
    root = dev_root(d, workdir)
    if root is None:
        _note(f"eval_every={config.eval_every} but data.source={d.source!r} has no dev files "
              "(set data.dir to an MS MARCO-form dir with the dev queries and qrels): "
              "no retrieval evaluation")  # fmt: skip
        return None
    if F.marco_file(root, "queries.dev", required=False) is None:
        names = " or ".join(F.MARCO_FILES["queries.dev"])
        _note(f"eval_every={config.eval_every} but {root} has no dev queries ({names}): "
              "no retrieval evaluation")  # fmt: skip
        return None
    return marco_dev_set(root, d)


def _cache_root(d: ml_collections.ConfigDict, workdir: Path) -> Path:
    return Path(d.cache_dir) if d.cache_dir else workdir / "data_cache"


def _stored(d: ml_collections.ConfigDict, workdir: Path, kind: str, files: list[Path],
            params: dict[str, Any], records: Any, corpus: bool = False) -> Path:  # fmt: skip
    """The directory of a lazy store (:mod:`rqa_jax.data.store`), converted from ``files``
    once (reused while they keep their size and mtime) in ``data.cache_dir`` (default
    ``workdir/data_cache``): process 0 converts while the others wait; a process that then
    does not see the store (a cache dir that is not shared) converts its own copy."""
    root = _cache_root(d, workdir)

    def make(progress: bool) -> Path:
        if corpus:
            return store.ensure_corpus(root, files, records, params, progress=progress)
        return store.ensure(root, kind, files, params, records, progress=progress)

    parallel.on_process_0(lambda: make(True), f"{kind} store")
    return make(jax.process_index() == 0)


def _need(path: Path, why: str) -> Path:
    if not (path.is_file() or binrun.is_binary_run(path)):
        raise FileNotFoundError(f"{path} does not exist: {why}")
    return path


def marco_corpus(d: ml_collections.ConfigDict, root: Path, workdir: Path) -> store.CorpusStore:
    """``root``'s collection (+ titles; any of their names, :data:`F.MARCO_FILES`) as a lazy
    corpus store."""
    collection = F.marco_file(root, "collection", "the MS MARCO corpus")
    titles = F.marco_file(root, "titles", required=False)

    def passages() -> Any:
        title_of = F.read_titles(titles) if titles else {}
        return ((r.id, title_of.get(r.id), r.text) for r in F.iter_collection(collection))

    files = [collection, *([titles] if titles else [])]
    return store.CorpusStore(_stored(d, workdir, "corpus", files, {}, passages, corpus=True))


def _marco_dual(config: ml_collections.ConfigDict, root: Path, workdir: Path) -> E.Source:
    d = config.data
    if d.negatives == "triples":
        triples = F.marco_file(root, "triples.train", "data.negatives='triples' trains on MS MARCO's "
                               "triples (data.negatives='random' draws RocketQA's random corpus negatives)")  # fmt: skip
        records = lambda: map(E.dual_record, E.dual_from_triples(triples))  # noqa: E731
        path = _stored(d, workdir, "dual_triples", [triples], {}, records)
        return E.MappedSource(store.RecordStore(path), E.dual_from_record)
    if d.negatives != "random":
        raise ConfigError(f"data.negatives must be 'random' or 'triples', got {d.negatives!r}")
    why = "data.negatives='random' pairs the train queries with their qrels positives"
    queries = F.marco_file(root, "queries.train", why)
    qrels = F.marco_file(root, "qrels.train", why)
    corpus = marco_corpus(d, root, workdir)
    pairs = _stored(d, workdir, "marco_pairs", [queries, qrels], {"corpus": corpus.dir.name},
                    lambda: E.marco_pair_records(queries, qrels, corpus.rows_of))  # fmt: skip
    return E.MarcoRandomNegatives(store.RecordStore(pairs), corpus, d.num_random_negatives, config.seed,
                                  d.random_negative_lines)  # fmt: skip


def _dpr_with_positives(source: Any) -> list[int]:
    """Rows of DPR-form records that have a positive context (DPR skips the others)."""
    rows, n = [], len(source)
    for start in range(0, n, 1024):
        batch = range(start, min(start + 1024, n))
        rows += [
            i for i, r in zip(batch, E.read_rows(source, batch), strict=True) if r["positives"]
        ]
    return rows


def dual_data(config: ml_collections.ConfigDict, workdir: Path) -> tuple[Any, DevSet | None]:
    """(random-access training examples, dev set or None) for ``config.data.source``:

    * ``sample``: the generated sample dataset (written to ``workdir/data`` once);
    * ``marco``: an MS MARCO dir: ``data.negatives`` "random" (RocketQA step 1: queries/qrels
      positives + ``num_random_negatives`` corpus negatives drawn per (seed, epoch, example))
      or "triples" (``triples.train.tsv``);
    * ``rocketqa_tsv``: RocketQA's 6-column file at ``data.path``;
    * ``dpr``: DPR ``nq-train.json`` at ``data.path`` (``num_negatives`` negatives sampled
      per epoch from the hard negatives, then the others);
    * ``tfds``: a built TFDS dataset (``data.tfds_name`` from ``data.dir`` into ``data.tfds_dir``).

    Settings it would ignore are refused first (:func:`check_data`). Text files are
    converted once into lazy stores (:func:`_stored`): the examples are read by index, never
    held in memory. The dev set (MS MARCO form, only when ``eval_every``: the data dir's, or
    ``data.dir``'s for the other sources, :func:`retrieval_dev_set`) holds the candidate
    passages ``data.dev_corpus`` asks for (:func:`marco_dev_set`).
    """
    check_data(config)
    d = config.data
    if d.source in ("sample", "marco"):
        examples: Any = _marco_dual(config, _marco_root(d, workdir), workdir)
    elif d.source == "rocketqa_tsv":
        path = Path(d.path)
        records = lambda: map(E.dual_record, E.dual_from_rocketqa_tsv(path))  # noqa: E731
        examples = E.MappedSource(
            store.RecordStore(_stored(d, workdir, "dual_rocketqa", [path], {}, records)),
            E.dual_from_record,
        )
    elif d.source == "dpr":
        path = Path(d.path)
        stored = _stored(d, workdir, "dpr", [path], {}, lambda: E.dpr_records(path))
        examples = E.DprSampledNegatives(
            E.MappedSource(store.RecordStore(stored), E.dpr_from_record),
            config.num_negatives,
            config.seed,
        )
    elif d.source == "tfds":
        parallel.on_process_0(
            lambda: tfds_builders.build(d.tfds_name, d.dir, d.tfds_dir), "TFDS build"
        )
        builder = tfds_builders.build(d.tfds_name, d.dir, d.tfds_dir)  # reuses the built files
        examples = tfds_builders.data_source(builder, "train")
        if d.tfds_name == "nq_dpr":  # DPR form -> dual form, negatives sampled per epoch
            examples = E.DprSampledNegatives(examples, config.num_negatives, config.seed,
                                             _dpr_with_positives(examples))  # fmt: skip
    return examples, retrieval_dev_set(config, workdir)


def parse_dev_corpus(value: str) -> tuple[str, int, int]:
    """``data.dev_corpus`` → (kind, size or depth, seed): "full" | "sample:N[:SEED]" | "run:K"."""
    parts = value.split(":")
    try:
        if parts == ["full"]:
            return "full", 0, 0
        if parts[0] == "sample" and len(parts) in (2, 3) and int(parts[1]) > 0:
            return "sample", int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        if parts[0] == "run" and len(parts) == 2 and int(parts[1]) > 0:
            return "run", int(parts[1]), 0
    except ValueError:
        pass
    raise ConfigError(
        f"data.dev_corpus must be 'full', 'sample:N[:SEED]' or 'run:K', got {value!r}"
    )


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def marco_dev_set(root: Path, d: ml_collections.ConfigDict) -> DevSet:
    """The MS MARCO dev queries (the first ``data.dev_max_queries``), their qrels, and the
    passages to search, as ``data.dev_corpus`` says:

    * ``full``: the whole corpus, if it has at most ``data.dev_full_limit`` passages (a
      larger one is an error with the choices below: encoding 8.8M passages at every
      evaluation is a job of its own, not a training-time metric);
    * ``sample:N[:SEED]``: N passages: the dev queries' judged passages plus passages drawn
      at random (seeded, 0 by default: the same set in every run) → metrics ``…[sampleN]``;
    * ``run:K``: the judged passages plus ``data.dev_candidates_run``'s top K for each dev
      query → metrics ``…[runK]``.

    Only the chosen passages are read into memory (the collection is streamed once). The
    files may have any of their names (:data:`F.MARCO_FILES`: the official
    ``queries.dev.small.tsv`` / ``qrels.dev.small.tsv``, RocketQA's ``dev.query.txt``, ...;
    :func:`F.marco_dev_files`)."""
    kind, n, seed = parse_dev_corpus(d.dev_corpus)
    collection = F.marco_file(root, "collection", "the MS MARCO corpus")
    queries_file, qrels_file = F.marco_dev_files(root, "dev evaluation reads them")
    queries = {q.id: q.text for q in F.iter_queries(queries_file)}
    if d.dev_max_queries:
        queries = {q: queries[q] for q in list(queries)[: d.dev_max_queries]}
    qrels_all = F.read_qrels(qrels_file)
    qrels = {q: qrels_all[q] for q in queries if q in qrels_all}
    judged = dict.fromkeys(p for docs in qrels.values() for p in docs)
    name, rows, wanted = "", None, None  # rows: random rows drawn; wanted: pids kept
    if kind == "full" or kind == "sample":
        size = _count_lines(collection)
        if kind == "full" and size > d.dev_full_limit:
            raise ConfigError(
                f"{collection} has {size} passages: dev evaluation would encode them all at every "
                f"evaluation. Set data.dev_corpus='sample:200000' (judged passages + a fixed random "
                f"sample) or 'run:1000' with data.dev_candidates_run (judged passages + a run's top "
                f"1000), or raise data.dev_full_limit ({d.dev_full_limit}) to encode everything"
            )
        if kind == "sample" and n < len(judged):
            raise ConfigError(f"data.dev_corpus={d.dev_corpus!r}: the dev queries judge "
                             f"{len(judged)} passages, more than the sample of {n}")  # fmt: skip
        if kind == "sample" and n < size:
            name = f"sample{n}"
            draws = np.random.default_rng(seed).choice(
                size, min(size, n + len(judged)), replace=False
            )
            rows = {int(r): i for i, r in enumerate(draws)}  # row -> its place in the draw
    else:
        run = _need(Path(d.dev_candidates_run), f"data.dev_corpus={d.dev_corpus!r} takes the "
                    "candidates from data.dev_candidates_run (a run over the dev queries)")  # fmt: skip
        wanted = dict(judged)
        for qid, ranked in F.iter_run_groups(run, n):
            if qid in queries:
                wanted.update(dict.fromkeys(p for p, _ in ranked))
        name = f"run{n}"
    texts: dict[str, str] = {}
    drawn: dict[int, str] = {}  # place in the draw -> pid
    for row, rec in enumerate(F.iter_collection(collection)):
        if rows is not None and row in rows:
            drawn[rows[row]] = rec.id
        elif wanted is not None:  # run:K (judged included)
            if rec.id not in wanted:
                continue
        elif rows is not None and rec.id not in judged:  # sample:N
            continue
        texts[rec.id] = rec.text
    if rows is not None:  # judged + the first N - |judged| other drawn passages
        others = [p for _, p in sorted(drawn.items()) if p not in judged][: n - len(judged)]
        keep = [*judged, *others]
        texts = {p: texts[p] for p in keep if p in texts}
    missing = [p for p in judged if p not in texts]
    if missing:
        warnings.warn(f"{qrels_file}: {len(missing)} judged passages are not in "
                      f"the corpus (first: {missing[0]!r})", stacklevel=2)  # fmt: skip
    titles = F.marco_file(root, "titles", required=False)
    title_of = F.read_titles(titles, keep=texts) if titles else {}
    corpus = {p: (title_of.get(p), t) for p, t in texts.items()}
    return DevSet(queries, qrels, corpus, name)


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
        head, saved_head = config.cross_head, hf.load_cross_encoder_head(config.model_dir)
        if head == "v2" and saved_head == "v1":
            raise ConfigError(
                f"{config.model_dir} is a v1 re-ranker (2 labels): it cannot take the v2 head; "
                "cross_head='pooler_logit' continues it as one logit, its log-odds (same ranking)"
            )
        if head == "pooler_logit" and saved_head == "v1":
            _, _, params = hf.load_cross_encoder(config.model_dir, "v1")
            params = hf.v1_head_as_log_odds(params)
        else:
            _, _, params = hf.load_cross_encoder(config.model_dir, head)
    else:
        _, bert = hf.load_bert(config.model_dir, param_dtype=DTYPES[config.param_dtype])
        head = jax.tree.map(np.asarray, jax.jit(fresh)())
        if config.cross_head == "v2":
            bert = {k: v for k, v in bert.items() if k != "pooler"}
        params = {"bert": bert, "classifier": head["classifier"]}
    return _to_mesh(jax.tree.map(np.asarray, params), shardings), shardings


def cross_data(config: ml_collections.ConfigDict, workdir: Path) -> tuple[E.Source, Any]:
    """(training examples, (dev set, its candidate run) or None), read lazily from stores.

    MS MARCO form (``sample`` / ``marco``), as RocketQA's ``construct_marco_train_ce.py``:
    pointwise, per train query its qrels positives (label 1) and
    ``data.cross_negatives_per_query`` distinct negatives sampled from the top
    ``data.negative_depth`` of ``data.train_run`` (a retriever's run over the train
    queries), positives excluded (label 0), and so are the pairs of RocketQA's
    ``qrels.train.addition.tsv`` when the dir has one; listwise, per (query, positive) a
    list of ``list_size`` passages, positive first, with distinct sampled negatives. Without
    a run the negatives are random corpus passages (said on stdout). See
    :func:`rqa_jax.data.examples.cross_marco_records`. ``data.source`` "rocketqa_tsv" reads
    RocketQA's cross TSV (pointwise) or v2 list TSV (listwise) at ``data.path`` instead.

    The dev set (when ``eval_every`` and ``data.dev_run``): the dev queries, qrels and
    ``data.dev_run``'s top ``rerank_top_k`` passages of the data dir (``data.dir`` for
    "rocketqa_tsv"). Settings it would ignore are refused first (:func:`check_data`).
    """
    check_data(config)
    d = config.data
    listwise = config.objective == "listwise"
    dev = None
    if config.eval_every and d.dev_run:
        root = dev_root(d, workdir)  # check_data: data.dir is set for rocketqa_tsv
        if binrun.is_binary_run(d.dev_run):  # only the top that dev reads, by row
            corpus = marco_corpus(d, root, workdir)
            depth = max(config.rerank_top_k, 10)
            dev_run = binrun.read_run_top(d.dev_run, depth, binrun.pid_reader(d.dev_run, corpus))
        else:
            dev_run = F.read_run(d.dev_run)
        dev = (marco_rerank_dev(root, dev_run, config.rerank_top_k), dev_run)
    elif config.eval_every:
        _note(f"eval_every={config.eval_every} but no data.dev_run (a candidate run over the dev "
              "queries): the re-ranker is not evaluated on dev")  # fmt: skip
    if d.source == "rocketqa_tsv":
        path = Path(d.path)
        if listwise:
            extra = d.extra_positives
            records = lambda: map(E.joint_record, E.joint_from_tsv(path, config.list_size, extra))  # noqa: E731
            stored = _stored(d, workdir, "joint_tsv", [path],
                             {"list_size": config.list_size, "extra_positives": extra}, records)  # fmt: skip
            return E.MappedSource(store.RecordStore(stored), E.joint_from_record), dev
        records = lambda: map(E.cross_record, E.cross_from_tsv(path))  # noqa: E731
        stored = _stored(d, workdir, "cross_tsv", [path], {}, records)
        return E.MappedSource(store.RecordStore(stored), E.cross_from_record), dev
    root = _marco_root(d, workdir)
    corpus = marco_corpus(d, root, workdir)
    why = "re-ranker training pairs the train queries with their qrels positives"
    queries = F.marco_file(root, "queries.train", why)
    qrels = F.marco_file(root, "qrels.train", why)
    addition = F.marco_file(root, "qrels.train.addition", required=False)
    run = _need(Path(d.train_run), "data.train_run") if d.train_run else None
    if run is None:
        _note("no data.train_run: the re-ranker's negatives are random corpus passages "
              "(RocketQA samples them from the retriever's top 1000 for each train query)")  # fmt: skip
    negatives = 0 if listwise else d.cross_negatives_per_query
    params = {"objective": config.objective, "negatives": negatives,
              "list_size": config.list_size, "depth": d.negative_depth, "seed": config.seed,
              "corpus": corpus.dir.name}  # fmt: skip
    records = lambda: E.cross_marco_records(  # noqa: E731
        queries, qrels, corpus, run, config.objective, negatives,
        config.list_size, d.negative_depth, config.seed, not_negatives=addition,
    )  # fmt: skip
    files = [
        queries,
        qrels,
        *([binrun.key_file(run)] if run else []),
        *([addition] if addition else []),
    ]
    stored = store.RecordStore(_stored(d, workdir, "cross_marco", files, params, records))
    examples = (E.CorpusLists if listwise else E.CorpusPairs)(stored, corpus)
    return examples, dev


def marco_rerank_dev(root: Path, run: F.Run, top_k: int) -> DevSet:
    """Dev queries, qrels and the passages of ``run``'s top ``top_k`` (what re-ranking reads),
    from ``root``'s files under any of their names (:data:`F.MARCO_FILES`)."""
    wanted = {p for ranked in run.values() for p, _ in ranked[:top_k]}
    why = "re-ranking data.dev_run on dev"
    collection = F.marco_file(root, "collection", why)
    texts = {r.id: r.text for r in F.iter_collection(collection) if r.id in wanted}
    titles = F.marco_file(root, "titles", required=False)
    title_of = F.read_titles(titles, keep=texts) if titles else {}
    queries_file, qrels_file = F.marco_dev_files(root, why)
    queries = {q.id: q.text for q in F.iter_queries(queries_file)}
    qrels = F.read_qrels(qrels_file)
    return DevSet(queries, qrels, {p: (title_of.get(p), t) for p, t in texts.items()})

"""``rqa export``: any training checkpoint → Hugging Face / sentence-transformers model dirs.

A workdir's ``checkpoints/<step>/`` holds the parameters and the run's config; this reads
both (the parameters as numpy, without the optimizer state and without rebuilding the
model) and writes what the end of training writes into ``export/`` (see
:mod:`rqa_jax.train.loop`), plus what other tools need to use it as it was trained:

* dual encoder: tied towers → one dir that is an HF BERT dir *and* a sentence-transformers
  model (``modules.json``, pooling, ``Normalize``, max length, similarity); two towers →
  ``query_encoder/`` + ``passage_encoder/`` (each such a dir) + ``rqa_jax.json``;
* cross encoder: an HF sequence-classification dir that ``sentence_transformers.CrossEncoder``
  scores as rqa does (identity activation: P(relevant) = softmax(logits)[1] for v1, the logit
  for one-label heads; max length = the trained pair length);
* joint (RocketQAv2): ``retriever/`` and ``reranker/``, each as above;

and a model card (``README.md``) in every dir: the task, the step, the data, that step's dev
metrics from ``metrics.jsonl``, usage and the config. The architecture comes from the run's
``model_dir`` when it still exists, else from the run's own final export, else from the
parameter shapes plus ``config.model_config``; the tokenizer likewise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from rqa_jax.errors import UserFileNotFoundError, UserInputError
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig

SEPARATE_TOWERS = ("query_encoder", "passage_encoder")
IDENTITY_ACTIVATION = "torch.nn.modules.linear.Identity"


class CheckpointNotFoundError(UserFileNotFoundError):
    """The workdir, its checkpoints, or the requested step are not there."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One saved step of a run: where it is and the config it was trained with."""

    workdir: Path
    step: int
    path: Path
    config: ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Part:
    """One model of a checkpoint (a joint run has two): its kind, its flat config view, its
    parameters, and the run's own final export of it (a fallback for the architecture)."""

    name: str  # "" (the whole checkpoint) | "retriever" | "reranker"
    kind: str  # "dual" | "cross"
    config: ml_collections.ConfigDict
    params: Any
    run_export: Path


# ---------------------------------------------------------------------------- checkpoints


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Orbax warns (through absl) that a read-only manager saves nothing and that a sub-item
    has no metadata file of its own: true, and nothing for the user to act on."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _manager(checkpoints: Path) -> Any:
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    return ocp.CheckpointManager(checkpoints.absolute(), options=options,
                                 item_names=("state", "data", "config"))  # fmt: skip


def _no_checkpoints(workdir: Path) -> str:
    return (f"{workdir / 'checkpoints'} holds no checkpoint: nothing to export (rqa train "
            f"--workdir {workdir} writes one every checkpoint_every steps)")  # fmt: skip


def find_checkpoint(workdir: str | Path, step: int | None = None) -> Checkpoint:
    """The newest checkpoint of ``workdir`` (or ``step``) with its saved config; errors name
    the workdir / step and list the steps there are."""
    import orbax.checkpoint as ocp

    root = Path(workdir)
    if not root.is_dir():
        raise CheckpointNotFoundError(f"workdir {str(root)!r} does not exist")
    checkpoints = root / "checkpoints"
    if not checkpoints.is_dir():
        raise CheckpointNotFoundError(_no_checkpoints(root))
    with _quiet_orbax():
        mngr = _manager(checkpoints)
    try:
        steps = sorted(mngr.all_steps())
        if not steps:
            raise CheckpointNotFoundError(_no_checkpoints(root))
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointNotFoundError(
                f"{checkpoints} has no step {step} (steps there: {', '.join(map(str, steps))})"
            )
        try:
            with _quiet_orbax():
                saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises several types for a missing or broken item
            raise UserInputError(f"{checkpoints / str(step)}: cannot read the saved config "
                             f"({type(e).__name__}: {e})") from None  # fmt: skip
    finally:
        mngr.close()
    config = ml_collections.ConfigDict(saved["config"])
    if config.get("task") not in ("dual", "cross", "joint"):
        raise UserInputError(f"{checkpoints / str(step)}: config.task is {config.get('task')!r}, "
                         "expected dual, cross or joint")  # fmt: skip
    return Checkpoint(root, step, checkpoints / str(step), config)


def restore_params(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The ``params`` of a checkpoint's TrainState as host numpy arrays: read from orbax's
    own metadata, so no model, mesh or optimizer state is built (any device count works)."""
    import jax
    import orbax.checkpoint as ocp

    path = Path(checkpoint_dir).absolute() / "state"
    with _quiet_orbax():
        tree = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
    if "params" not in tree:
        raise UserInputError(f"{path}: no 'params' in the saved state (keys: {', '.join(tree)})")
    target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree["params"])
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    args = ocp.args.PyTreeRestore(item={"params": target}, restore_args={"params": restore_args},
                                  partial_restore=True)  # fmt: skip
    with _quiet_orbax(), ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
        return ckptr.restore(path, args=args)["params"]


def parts_of(ckpt: Checkpoint, params: Mapping[str, Any]) -> list[Part]:
    """The models a checkpoint holds, each with the config view the loop trained it with."""
    from rqa_jax.train.builders import joint_part

    export = ckpt.workdir / "export"
    if ckpt.config.task == "joint":
        return [Part("retriever", "dual", joint_part(ckpt.config, "retriever"), params["retriever"],
                     export / "retriever"),
                Part("reranker", "cross", joint_part(ckpt.config, "reranker"), params["reranker"],
                     export / "reranker")]  # fmt: skip
    return [Part("", ckpt.config.task, ckpt.config, params, export)]


# ---------------------------------------------------------------------------- architecture


def _tower(part: Part) -> Mapping[str, Any]:
    """The BERT parameters whose shapes describe the part's architecture."""
    if part.kind == "cross":
        return part.params["bert"]
    name = "encoder" if part.config.tie_towers else "query_encoder"
    if name not in part.params:
        raise hf.CheckpointMismatchError(
            f"the checkpoint's parameters have {', '.join(part.params)}, but its config says "
            f"tie_towers={part.config.tie_towers}"
        )
    return part.params[name]


def shape_fields(tower: Mapping[str, Any]) -> dict[str, Any]:
    """The BertConfig fields that parameter shapes determine (not heads, activation, eps)."""
    emb = tower["embeddings"]
    vocab, hidden = np.shape(emb["word_embeddings"]["embedding"])
    layers = tower["encoder"]["layer"]
    if "0" in layers:  # per-layer tree
        n_layers, kernel = len(layers), layers["0"]["intermediate"]["dense"]["kernel"]
    else:  # nn.scan's stacked tree: leading axis = layer
        kernel = layers["intermediate"]["dense"]["kernel"]
        n_layers = np.shape(kernel)[0]
    fields = {
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": int(n_layers),
        "intermediate_size": int(np.shape(kernel)[-1]),
        "max_position_embeddings": int(np.shape(emb["position_embeddings"]["embedding"])[0]),
        "type_vocab_size": int(np.shape(emb["token_type_embeddings"]["embedding"])[0]),
        "use_task_id": "task_type_embeddings" in emb,
    }
    if fields["use_task_id"]:  # only ERNIE has task-type embeddings
        fields["model_type"] = "ernie"
        fields["task_type_vocab_size"] = int(np.shape(emb["task_type_embeddings"]["embedding"])[0])
    return fields


def _config_json(model_dir: str | Path) -> Path | None:
    from rqa_jax.train.builders import tower_dirs

    found = tower_dirs(model_dir)[0] / "config.json"
    return found if found.is_file() else None


def bert_config_of(part: Part) -> tuple[BertConfig, str]:
    """(architecture, where it came from): the run's ``model_dir`` (or ``model_config`` when
    it trained from scratch), else the run's own final export, else the parameter shapes
    completed by ``model_config``. Checked against the shapes whatever the source."""
    from rqa_jax.train.builders import bert_config_for

    cfg, tower = part.config, _tower(part)
    fields = shape_fields(tower)
    model_dir = cfg.get("model_dir") or ""
    model_config = dict(cfg.get("model_config") or {})
    if not model_dir:
        config, source = bert_config_for(cfg), "config.model_config"
    elif found := _config_json(model_dir) or _config_json(part.run_export):
        config, source = BertConfig.from_json_file(found), str(found)
    elif "num_attention_heads" in model_config:
        config, source = BertConfig(**{**model_config, **fields}), "the parameter shapes"
    else:
        raise hf.ModelDirError(
            f"cannot tell the {part.name or cfg.task} model's architecture: its model_dir "
            f"{model_dir!r} no longer exists, the run's export {str(part.run_export)!r} has no "
            "config.json, and parameter shapes do not give num_attention_heads (nor does "
            f"config.model_config). Put {model_dir}'s config.json (and tokenizer files) back"
        )
    wrong = {k: (getattr(config, k), v) for k, v in fields.items() if getattr(config, k) != v}
    if wrong:
        shown = ", ".join(f"{k}={a} (checkpoint: {b})" for k, (a, b) in wrong.items())
        raise hf.CheckpointMismatchError(
            f"{source} does not describe the checkpoint's model: {shown}"
        )
    return config, source


def tokenizer_of(part: Part) -> Any:
    """The tokenizer the part trained with: ``tokenizer_dir`` or ``model_dir`` (as the loop
    reads it), else the run's own final export."""
    from rqa_jax.inference import load_tokenizer
    from rqa_jax.train.builders import tower_dirs

    cfg = part.config
    wanted = cfg.get("tokenizer_dir") or ""
    if not wanted and cfg.get("model_dir"):
        wanted = str(tower_dirs(cfg.model_dir)[0])
    candidates = [Path(wanted)] if wanted else []
    candidates.append(tower_dirs(part.run_export)[0])
    for d in candidates:
        if any((d / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
            return load_tokenizer(d)
    raise hf.ModelDirError(
        f"the {part.name or cfg.task} model's tokenizer dir {wanted or '(none set)'!r} "
        f"(config tokenizer_dir or model_dir) is missing or has no tokenizer.json / vocab.txt, "
        f"and the run's export {str(part.run_export)!r} has none either: put it back"
    )


# ---------------------------------------------------------------------------- writing


def _inline_model(cfg: ml_collections.ConfigDict, config: BertConfig) -> ml_collections.ConfigDict:
    """``cfg`` with its architecture written in (``model_config``, no ``model_dir``): what
    :func:`export_dual` reads, whether or not the model dir still exists."""
    return ml_collections.ConfigDict(
        {**cfg.to_dict(), "model_dir": "", "model_config": dataclasses.asdict(config)}
    )


def _update_json(path: Path, **values: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(values)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _finish_tower(tower_dir: Path, normalize: bool) -> None:
    """sentence-transformers' own config: the similarity RocketQA ranks with (inner product;
    cosine is the same for normalised vectors) instead of its cosine default."""
    _update_json(tower_dir / "config_sentence_transformers.json", model_type="SentenceTransformer",
                 prompts={}, default_prompt_name=None,
                 similarity_fn_name="cosine" if normalize else "dot")  # fmt: skip


def _finish_cross(model_dir: Path, max_length: int) -> None:
    """``CrossEncoder(dir).predict`` = rqa's scores: raw logits (not its sigmoid default for one
    label), pairs cut at the trained length (its default is the tokenizer's, e.g. 512)."""
    _update_json(
        model_dir / "config.json", sentence_transformers={"activation_fn": IDENTITY_ACTIVATION}
    )
    _update_json(model_dir / "tokenizer_config.json", model_max_length=max_length)


def tower_dirs_written(part_dir: Path, part: Part) -> list[tuple[str, Path]]:
    """(role, dir) of each HF model dir a part's export holds."""
    if part.kind == "cross":
        return [("reranker", part_dir)]
    if part.config.tie_towers:
        return [("both", part_dir)]
    return [(name.split("_")[0], part_dir / name) for name in SEPARATE_TOWERS]


def export_dual(out: Path, config: ml_collections.ConfigDict, params: Any, tokenizer: Any) -> Path:
    """Writes the towers as HF dirs under ``out`` (one dir if tied, else ``query_encoder/`` +
    ``passage_encoder/``) that :func:`rqa_jax.load_model` reads back."""
    from rqa_jax.train.builders import bert_config_for  # model settings, not the loop

    bert_config = bert_config_for(config)
    settings = {"pooling": config.pooling, "normalize": config.normalize, "q_max_len": config.q_max_len,
                "p_max_len": config.p_max_len, "title_form": config.title_form}  # fmt: skip
    if config.tie_towers:
        hf.export_bert(out, bert_config, params["encoder"], tokenizer, config.pooling, config.normalize,
                       config.p_max_len, settings)  # fmt: skip
    else:
        for name, max_len in (
            ("query_encoder", config.q_max_len),
            ("passage_encoder", config.p_max_len),
        ):
            hf.export_bert(out / name, bert_config, params[name], tokenizer, config.pooling, config.normalize,
                           max_len, settings)  # fmt: skip
        (out / "rqa_jax.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out


def export_cross(out: Path, config: ml_collections.ConfigDict, bert_config: Any, params: Any,
                 tokenizer: Any) -> Path:  # fmt: skip
    """The re-ranker as an HF sequence-classification dir, with its input settings."""
    input_form = {"pair_form": config.pair_form, "title_form": config.title_form,
                  "q_max_len": config.cross_q_max_len or None}  # fmt: skip
    return hf.export_cross_encoder(out, bert_config, config.cross_head, params, tokenizer,
                                   config.cross_max_len, extra_settings=input_form)  # fmt: skip


def write_part(part: Part, out: Path) -> BertConfig:
    """Writes one model as the loop's export does, plus the sentence-transformers extras."""
    config, _ = bert_config_of(part)
    tokenizer = tokenizer_of(part)
    if len(tokenizer) > config.vocab_size:
        raise hf.CheckpointMismatchError(
            f"the tokenizer has {len(tokenizer)} tokens, the model's vocabulary {config.vocab_size}"
        )
    if part.kind == "dual":
        export_dual(out, _inline_model(part.config, config), part.params, tokenizer)
        for _, tower_dir in tower_dirs_written(out, part):
            _finish_tower(tower_dir, bool(part.config.normalize))
    else:
        export_cross(out, part.config, config, part.params, tokenizer)
        _finish_cross(out, int(part.config.cross_max_len))
    return config


# ---------------------------------------------------------------------------- model cards


def dev_metrics(metrics_file: str | Path, step: int) -> tuple[int, dict[str, float]] | None:
    """(its step, dev metrics) of the latest ``metrics.jsonl`` record at or before ``step``
    that has dev metrics; None if there is none (or no file)."""
    path = Path(metrics_file)
    if not path.is_file():
        return None
    best: tuple[int, dict[str, float]] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        dev = {k: v for k, v in record.items() if k.startswith("dev_")}
        if dev and record["step"] <= step and (best is None or record["step"] >= best[0]):
            best = (int(record["step"]), dev)
    return best


def _is_rerank_metric(name: str) -> bool:
    return name.startswith(("dev_rerank_", "dev_run_"))


def _metrics_for(kind: str, task: str, metrics: dict[str, float]) -> dict[str, float]:
    """A joint run's dev metrics split by model (re-ranking metrics go to the re-ranker)."""
    if task != "joint" or kind == "all":
        return metrics
    return {k: v for k, v in metrics.items() if _is_rerank_metric(k) == (kind == "cross")}


# The data keys worth a card line, by data.source (then the runs any source may use).
DATA_KEYS = {"sample": ("sample_seed",), "marco": ("dir", "negatives"), "rocketqa_tsv": ("path",),
             "dpr": ("path",), "tfds": ("tfds_name", "dir")}  # fmt: skip
RUN_KEYS = ("train_run", "dev_run", "dev_corpus")


@dataclasses.dataclass(frozen=True)
class CardContext:
    """What every card of one export shares. ``root`` is where the files are being written,
    ``output`` where they will be (the snippets name that)."""

    ckpt: Checkpoint
    metrics: tuple[int, dict[str, float]] | None
    root: Path
    output: Path
    repo_id: str | None


def _where(ctx: CardContext, model_dir: Path) -> tuple[str, str]:
    """(Python expression, shell path) that name ``model_dir`` in usage snippets: the local
    output, or with ``repo_id`` the Hub repo (a local copy of it, ``EXPORT``, for rqa)."""
    rel = model_dir.relative_to(ctx.root).as_posix()
    if not ctx.repo_id:
        local = str((ctx.output / rel).absolute()) if rel != "." else str(ctx.output.absolute())
        return json.dumps(local), local
    if rel == ".":
        return json.dumps(ctx.repo_id), "EXPORT"
    return (
        f"snapshot_download({json.dumps(ctx.repo_id)}) + {json.dumps('/' + rel)}",
        f"EXPORT/{rel}",
    )


def _front_matter(kind: str) -> list[str]:
    if kind == "dual":
        meta = ["library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
                "tags: [rqa_jax, rocketqa, dense-retrieval, sentence-transformers]"]  # fmt: skip
    elif kind == "cross":
        meta = ["library_name: sentence-transformers", "pipeline_tag: text-ranking",
                "tags: [rqa_jax, rocketqa, cross-encoder, re-ranking]"]  # fmt: skip
    else:
        meta = ["tags: [rqa_jax, rocketqa]"]
    return ["---", *meta, "---"]


def _architecture(config: BertConfig) -> str:
    return (f"- {config.model_type}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"{config.num_attention_heads} heads")  # fmt: skip


def _metrics_lines(ctx: CardContext, kind: str) -> list[str]:
    lines = ["## Dev metrics", ""]
    shown = _metrics_for(kind, ctx.ckpt.config.task, ctx.metrics[1]) if ctx.metrics else {}
    if not shown:
        return [*lines, f"No dev evaluation recorded at or before step {ctx.ckpt.step} "
                        "(`eval_every` was 0, or there was no dev data).", ""]  # fmt: skip
    at = ctx.metrics[0]
    note = "" if at == ctx.ckpt.step else f" (the latest evaluation before step {ctx.ckpt.step})"
    lines += [f"From `metrics.jsonl`, step {at}{note}:", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(shown.items())]
    return [*lines, ""]


def _provenance(ctx: CardContext, part: Part | None) -> list[str]:
    cfg = ctx.ckpt.config
    what = cfg.task + (f" → {part.name}" if part and part.name else "")
    lines = ["## Training", "",
             f"- exported from `{ctx.ckpt.workdir.absolute()}`, checkpoint step **{ctx.ckpt.step}**",
             f"- task: `{what}`"]  # fmt: skip
    if part is not None and part.config.get("model_dir"):
        lines.append(f"- initialised from `{part.config.model_dir}`")
    data = cfg.get("data") or {}
    keys = ("source", *DATA_KEYS.get(data.get("source"), ()), *RUN_KEYS)
    shown = [f"{k}=`{data[k]}`" for k in keys if data.get(k) not in (None, "")]
    if shown:
        lines.append(f"- data: {', '.join(shown)}")
    return [*lines, ""]


def _config_block(ctx: CardContext) -> list[str]:
    text = json.dumps(ctx.ckpt.config.to_dict(), indent=2, sort_keys=True)
    return ["<details><summary>Training config (the checkpoint's <code>config</code>)</summary>",
            "", "```json", text, "```", "", "</details>", ""]  # fmt: skip


def _export_hint(ctx: CardContext) -> list[str]:
    if not ctx.repo_id:
        return []
    return [
        f"`EXPORT` is a local copy of the repo: `hf download {ctx.repo_id} --local-dir EXPORT`.",
        "",
    ]


def _python(ctx: CardContext, expr: str, cls: str, body: Sequence[str]) -> list[str]:
    lines = ["```python"]
    if "snapshot_download" in expr:
        lines.append("from huggingface_hub import snapshot_download")
    return [*lines, f"from sentence_transformers import {cls}", "", f"model = {cls}({expr})",
            *body, "```", ""]  # fmt: skip


def _dual_lines(
    ctx: CardContext, part: Part, role: str, tower_dir: Path, config: BertConfig
) -> list[str]:
    cfg = part.config
    st_len = cfg.q_max_len if role == "query" else cfg.p_max_len
    what = {"both": "queries and passages (tied towers)", "query": "queries (the passage "
            "tower is `../passage_encoder`)", "passage": "passages (the query tower is "
            "`../query_encoder`)"}[role]  # fmt: skip
    expr, shell = _where(ctx, tower_dir)
    rqa_dir = shell if role == "both" else str(Path(shell).parent)
    lines = [f"- encodes {what}; relevance = inner product of query and passage vectors",
             _architecture(config),
             f"- pooling `{cfg.pooling}`, L2-normalised: {'yes' if cfg.normalize else 'no'}",
             f"- max length (rqa): queries {cfg.q_max_len}, passages {cfg.p_max_len} tokens; "
             f"sentence-transformers `max_seq_length` {st_len}",
             f"- title form `{cfg.title_form}`", "", "## Usage", "", *_export_hint(ctx),
             "```bash",
             f"rqa encode --model {rqa_dir} --kind query --input queries.tsv --output q_emb",
             f"rqa encode --model {rqa_dir} --kind passage --input corpus.tsv --output p_emb",
             "```", ""]  # fmt: skip
    if role == "both":
        body = ['q = model.encode(["what is a dual encoder"])',
                'p = model.encode(["A dual encoder embeds queries and passages separately."])',
                "scores = q @ p.T"]  # fmt: skip
    else:
        body = [
            f"vectors = model.encode([{'what is a dual encoder' if role == 'query' else 'A passage.'!r}])"
        ]
    return [*lines, *_python(ctx, expr, "SentenceTransformer", body), *_st_dual_notes(cfg, role)]


def _st_dual_notes(cfg: ml_collections.ConfigDict, role: str) -> list[str]:
    """Where sentence-transformers' plain-text encoding differs from rqa's inputs."""
    notes = []
    if role == "both" and cfg.q_max_len != cfg.p_max_len:
        notes.append(f"sentence-transformers cuts every text at {cfg.p_max_len} tokens; rqa cuts "
                     f"queries at {cfg.q_max_len}, so longer queries encode differently")  # fmt: skip
    if role != "query":
        notes.append("rqa encodes a passage with a title as the pair `[CLS] title [SEP] passage "
                     "[SEP]`; sentence-transformers takes one text")  # fmt: skip
        if cfg.title_form != "hf":
            notes.append(f"title form `{cfg.title_form}`: rqa encodes an untitled passage as "
                         "`[CLS] [SEP] passage [SEP]`, sentence-transformers as `[CLS] passage "
                         "[SEP]`: the passage vectors differ; use `rqa encode` to match training")  # fmt: skip
    if not notes:
        return []
    return ["Differences from `rqa encode` (which uses the trained input forms):", "",
            *[f"- {n}" for n in notes], ""]  # fmt: skip


def _v2_head_note(head: str) -> list[str]:
    if head != "v2":
        return []
    return ["- the v2 head ([CLS] → linear, no pooler) is stored as HF's one-label classifier with "
            f"a near-identity pooler (ε·I, ε = {hf.V2_POOLER_EPS:g}; classifier ÷ ε): its logit "
            "equals the trained score to ~1e-7 relative"]  # fmt: skip


def _cross_lines(ctx: CardContext, part: Part, model_dir: Path, config: BertConfig) -> list[str]:
    cfg = part.config
    two = cfg.cross_head == "v1"
    expr, shell = _where(ctx, model_dir)
    cut = f", query first cut to {cfg.cross_q_max_len}" if cfg.cross_q_max_len else ""
    lines = [f"- cross encoder, head `{cfg.cross_head}` ({'2 labels' if two else '1 label'}); "
             f"score = {'P(relevant) = softmax(logits)[1]' if two else 'the logit'}",
             _architecture(config),
             f"- pairs `[CLS] query [SEP] title passage [SEP]`, at most {cfg.cross_max_len} tokens, "
             f"pair form `{cfg.pair_form}`{cut}, title form `{cfg.title_form}`",
             *_v2_head_note(cfg.cross_head), "", "## Usage", "", *_export_hint(ctx), "```bash",
             f"rqa rerank --model {shell} --queries queries.tsv --corpus corpus.tsv --run run.trec "
             "--output reranked.trec", "```", ""]  # fmt: skip
    predict = ("scores = model.predict(pairs, apply_softmax=True)[:, 1]  # P(relevant)" if two
               else "scores = model.predict(pairs)  # the logit (activation: identity)")  # fmt: skip
    body = ['pairs = [("what is a dual encoder", "Title" + " " + "the passage text")]', predict]
    note = (f"sentence-transformers cuts a pair jointly (longest side first) at {cfg.cross_max_len} "
            "tokens" + ("; rqa first cuts the query (pair form v2)" if cfg.pair_form == "v2" else "")
            + ": the scores agree while nothing is cut.")  # fmt: skip
    return [*lines, *_python(ctx, expr, "CrossEncoder", body), note, ""]


TITLES = {"both": "Dual encoder", "query": "Query tower of a dual encoder",
          "passage": "Passage tower of a dual encoder", "reranker": "Cross-encoder re-ranker"}  # fmt: skip
ROLE_TEXT = {"query": "query tower", "passage": "passage tower", "both": "dual encoder",
             "reranker": "cross-encoder re-ranker"}  # fmt: skip


def _model_card(
    ctx: CardContext, part: Part, role: str, model_dir: Path, config: BertConfig
) -> str:
    body = (_cross_lines(ctx, part, model_dir, config) if part.kind == "cross"
            else _dual_lines(ctx, part, role, model_dir, config))  # fmt: skip
    return "\n".join([*_front_matter(part.kind), f"# {TITLES[role]} (rqa_jax, step {ctx.ckpt.step})",
                      "", *body, *_metrics_lines(ctx, part.kind), *_provenance(ctx, part),
                      *_config_block(ctx)])  # fmt: skip


def _index_card(ctx: CardContext, entries: Sequence[tuple[str, str]], part: Part | None,
                encode_dir: Path | None) -> str:  # fmt: skip
    """The card of a dir that holds model dirs (two towers, or a joint run's two models)."""
    title = f"rqa_jax {ctx.ckpt.config.task} model" + (
        f": {part.name}" if part and part.name else ""
    )
    lines = [*_front_matter("index"), f"# {title} (step {ctx.ckpt.step})", "",
             "| folder | what |", "|---|---|", *[f"| `{d}/` | {w} |" for d, w in entries], ""]  # fmt: skip
    if encode_dir is not None:
        _, shell = _where(ctx, encode_dir)
        lines += [*_export_hint(ctx), "`rqa encode` picks the tower by `--kind`:", "", "```bash",
                  f"rqa encode --model {shell} --kind query --input queries.tsv --output q_emb",
                  f"rqa encode --model {shell} --kind passage --input corpus.tsv --output p_emb",
                  "```", ""]  # fmt: skip
    lines += ["Each folder is a sentence-transformers model with its own card.", ""]
    kind = part.kind if part is not None else "all"
    return "\n".join([*lines, *_metrics_lines(ctx, kind), *_provenance(ctx, part),
                      *_config_block(ctx)])  # fmt: skip


def write_cards(ctx: CardContext, written: Sequence[tuple[Part, Path, BertConfig]]) -> None:
    """A model card in every model dir, and an index card in each dir holding several."""
    index: list[tuple[str, str]] = []
    for part, part_dir, config in written:
        towers = tower_dirs_written(part_dir, part)
        for role, model_dir in towers:
            (model_dir / "README.md").write_text(_model_card(ctx, part, role, model_dir, config))
            of = f" of the {part.name}" if part.name and part.kind == "dual" else ""
            what = ROLE_TEXT[role] + of
            index.append((model_dir.relative_to(ctx.root).as_posix(), what))
        if len(towers) > 1 and part_dir != ctx.root:  # a joint run's two-tower retriever
            entries = [(d.relative_to(part_dir).as_posix(), ROLE_TEXT[r]) for r, d in towers]
            (part_dir / "README.md").write_text(_index_card(ctx, entries, part, part_dir))
    if len(index) > 1:
        single = written[0][0] if len(written) == 1 else None
        encode_dir = ctx.root if single is not None and single.kind == "dual" else None
        (ctx.root / "README.md").write_text(_index_card(ctx, index, single, encode_dir))


# ---------------------------------------------------------------------------- entry points


def _check_output(output: Path, workdir: Path, overwrite: bool) -> None:
    out, work = output.absolute().resolve(), workdir.absolute().resolve()
    if out == work or out in work.parents:
        raise UserInputError(
            f"--output {output} would replace the workdir {workdir}: choose another dir"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise UserInputError(
            f"output {str(output)!r} exists and is not empty: choose a new --output, or "
            "--overwrite to replace it"
        )


def export_checkpoint(
    workdir: str | Path,
    output: str | Path,
    step: int | None = None,
    *,
    overwrite: bool = False,
    repo_id: str | None = None,
) -> Path:
    """Exports ``workdir``'s checkpoint ``step`` (default: the newest) to ``output`` (see the
    module docstring for the layout); ``repo_id`` only names the Hub repo in the cards' usage.
    Written to a temporary sibling first, so a failed export leaves no half-written dir."""
    output, workdir = Path(output), Path(workdir)
    ckpt = find_checkpoint(workdir, step)
    _check_output(output, workdir, overwrite)
    params = restore_params(ckpt.path)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        written = []
        for part in parts_of(ckpt, params):
            part_dir = tmp / part.name if part.name else tmp
            written.append((part, part_dir, write_part(part, part_dir)))
        metrics = dev_metrics(workdir / "metrics.jsonl", ckpt.step)
        write_cards(CardContext(ckpt, metrics, tmp, output, repo_id), written)
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Uploads an export to the Hub model repo ``repo_id`` (created if needed) with
    ``huggingface_hub.HfApi`` (its token: ``HF_TOKEN`` or ``hf auth login``); returns its URL.
    ``api`` replaces the HfApi (tests)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to upload: {str(folder)!r} is not a directory")
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message=commit_message or f"rqa export of {folder.name}")  # fmt: skip
    return str(url) if url else f"https://huggingface.co/{repo_id}"

"""The training loop: data → jitted steps → metrics, dev evaluation, orbax checkpoints.

``workdir`` holds everything a run needs to continue: ``checkpoints/`` (parameters,
optimizer state, step, the data iterator's position and the config, every
``checkpoint_every`` steps and on SIGTERM), ``metrics.jsonl``, TensorBoard event files in
``tb/``, and the final model as HF dirs in ``export/``. Starting again with the same
workdir resumes from the newest checkpoint that restores; one that fails is reported and
the one before it is used. Only process 0 writes logs and exports; orbax coordinates the
checkpoint writes of all processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm import tqdm

from rqa_jax import parallel
from rqa_jax.data.loader import BatchSpec, Loader
from rqa_jax.errors import ConfigError
from rqa_jax.export import export_cross, export_dual
from rqa_jax.train import builders
from rqa_jax.train.dev_eval import DevEvaluator
from rqa_jax.train.state import (
    TrainState,
    init_state,
    make_joint_optimizer,
    make_optimizer,
    rocketqa_schedule,
)
from rqa_jax.train.steps import cross_step_fn, dual_step_fn, jit_step, joint_step_fn

log = logging.getLogger(__name__)
Hook = Callable[[int, dict[str, float]], None]


class MetricsWriter:
    """JSONL + TensorBoard scalars, process 0 only. On resume, records past the restored
    step are dropped (they belong to steps that will run again)."""

    def __init__(self, workdir: Path, resume_step: int) -> None:
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
        self._tb = None
        if not self.enabled:
            return
        if self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if json.loads(line)["step"] <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(workdir / "tb"), purge_step=resume_step + 1)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class _Preemption:
    """Turns SIGTERM into a flag the loop checks after each step (then saves and stops)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Preemption:
        def handler(signum, frame):
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: no handler, no preemption support
            self._previous = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True on every process once any process got SIGTERM, so all of them take part in
        the final checkpoint and stop together (a lone process would hang the others)."""
        if jax.process_count() == 1:
            return self.requested
        return bool(np.any(multihost_utils.process_allgather(np.array([self.requested]))))


def _batch_crc(batch: dict[str, Any]) -> int:
    """A fingerprint of the batch's tokens: equal sequences mean the same data order."""
    crc = 0
    for leaf in jax.tree.leaves(batch):
        crc = zlib.crc32(np.ascontiguousarray(leaf).tobytes(), crc)
    return crc


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


# Config keys (dotted for nested ones) that change the parameter tree: checkpoints made with
# other values cannot be restored into this run, and are not "corrupted" either.
SHAPE_KEYS = ("task", "model_dir", "model_config", "tie_towers", "scan_layers", "param_dtype",
              "cross_head", "retriever.model_dir", "retriever.model_config", "retriever.tie_towers",
              "reranker.model_dir", "reranker.model_config", "reranker.cross_head")  # fmt: skip


def _dotted(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _check_same_model(mngr: ocp.CheckpointManager, config: ml_collections.ConfigDict) -> None:
    steps = mngr.all_steps()
    if not steps:
        return
    try:
        saved = mngr.restore(max(steps), args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
            "config"
        ]
    except Exception:  # unreadable config: the restore that follows reports the checkpoint
        return
    now = config.to_dict()
    changed = [k for k in SHAPE_KEYS if _dotted(saved, k) != _dotted(now, k)]
    if changed:
        was = ", ".join(f"{k}={_dotted(saved, k)!r}" for k in changed)
        raise ConfigError(f"{mngr.directory} holds checkpoints of another model ({was}); "
                         "use a new --workdir or the same model settings")  # fmt: skip


def _param_tree_mismatch(mngr: ocp.CheckpointManager, step: int, params: Any) -> str | None:
    """How the checkpoint's parameter tree differs from ``params`` (a path missing, extra, or
    of another shape), read from orbax's metadata; None when they agree or the metadata is
    unreadable (then the restore itself reports the checkpoint as broken)."""
    try:
        meta = ocp.StandardCheckpointer().metadata(Path(mngr.directory) / str(step) / "state")
        saved = meta.item_metadata.tree["params"]
        saved_shapes = {jax.tree_util.keystr(k): tuple(v.shape)
                        for k, v in jax.tree_util.tree_leaves_with_path(saved)}  # fmt: skip
    except Exception:
        return None
    now = {jax.tree_util.keystr(k): tuple(v.shape)
           for k, v in jax.tree_util.tree_leaves_with_path(params)}  # fmt: skip
    for path in sorted(now.keys() | saved_shapes.keys()):
        if path not in saved_shapes:
            return f"it has no parameter {path}"
        if path not in now:
            return f"it has a parameter {path} this model lacks"
        if saved_shapes[path] != now[path]:
            return f"{path} is {saved_shapes[path]} there, {now[path]} here"
    return None


def _restore_latest(
    mngr: ocp.CheckpointManager, state: TrainState
) -> tuple[TrainState, dict | None, int]:
    """Newest restorable checkpoint → (state, data iterator state, step); falls back to older
    ones, reporting each failure and moving the broken checkpoint aside (kept, not deleted,
    under ``corrupted_checkpoints/``); (state, None, 0) when there is none."""
    for step in sorted(mngr.all_steps(), reverse=True):
        mismatch = _param_tree_mismatch(mngr, step, state.params)
        if mismatch:
            raise ConfigError(
                f"{mngr.directory}: checkpoint step {step} holds another model's parameters "
                f"({mismatch}); use a new --workdir or the settings it was trained with"
            )
        try:
            restored = mngr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(state)), data=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # a corrupted or partial checkpoint: say so, try the previous one
            msg = f"checkpoint step {step} failed to restore ({type(e).__name__}: {e}); trying an earlier one"
            log.error("%s: %s", mngr.directory, msg)
            print(f"rqa train: {msg}")
            _move_aside(Path(mngr.directory), step)
            mngr.reload()
            continue
        return restored["state"], restored["data"], step
    return state, None, 0


def _move_aside(checkpoints: Path, step: int) -> None:
    """checkpoints/<step> → corrupted_checkpoints/<step>[.n] (process 0), so the step can be
    written again when training passes it."""
    if jax.process_index() == 0:
        target = checkpoints.parent / "corrupted_checkpoints" / str(step)
        n = 0
        while target.exists():
            n += 1
            target = target.with_name(f"{step}.{n}")
        target.parent.mkdir(exist_ok=True)
        (checkpoints / str(step)).rename(target)
    multihost_utils.sync_global_devices(f"rqa_jax: moved checkpoint {step} aside")


@dataclasses.dataclass
class Task:
    """What differs between training a retriever and a re-ranker; the loop does the rest."""

    name: str
    tokenizer: Any
    examples: Any
    spec: BatchSpec
    init_params: Callable[[Mesh], Any]
    make_step: Callable[[optax.GradientTransformation, optax.Schedule, Mesh], Any]
    evaluator: Callable[[Any], dict[str, float]] | None
    export: Callable[[Path, Any], Path | None]
    # (total steps) -> optimizer; None: make_optimizer from the config's top-level keys
    optimizer: Callable[[int], optax.GradientTransformation] | None = None


def dual_task(config: ml_collections.ConfigDict, workdir: Path) -> Task:
    """RocketQA step 1: query/passage towers, cross-batch contrastive loss, dev MRR@10."""
    bert_config = builders.bert_config_for(config)
    tokenizer = builders.tokenizer_for(config)
    net = builders.dual_net(config, bert_config)
    examples, dev = builders.dual_data(config, workdir)
    spec = BatchSpec("dual", config.train_batch_size, config.q_max_len, config.p_max_len,
                     num_negatives=config.num_negatives, title_form=config.title_form)  # fmt: skip
    evaluator = (DevEvaluator(dev, net, tokenizer, config.q_max_len, config.p_max_len, config.title_form,
                              config.eval_batch_size) if dev is not None and config.eval_every else None)  # fmt: skip
    return Task(
        name="dual",
        tokenizer=tokenizer,
        examples=examples,
        spec=spec,
        init_params=lambda mesh: builders.init_dual_params(config, net, mesh)[0],
        make_step=lambda tx, schedule, mesh: dual_step_fn(
            net,
            tx,
            mesh,
            schedule,
            config.logit_scale,
            config.cross_batch,
            config.dropout,
            config.grad_cache_chunk,
        ),
        evaluator=evaluator,
        export=lambda workdir, params: export_dual(workdir / "export", config, params, tokenizer),
    )


def _rerank_evaluator(
    config: ml_collections.ConfigDict, bert_config: Any, tokenizer: Any, dev: Any
) -> Callable[[Any], dict[str, float]]:
    """Dev MRR@10 of the re-ranker over ``data.dev_run``'s top ``rerank_top_k``, and of the
    run itself (what re-ranking starts from)."""
    from rqa_jax.eval.metrics import mrr_at_k
    from rqa_jax.index.rerank import rerank
    from rqa_jax.inference import CrossEncoder

    dev_set, dev_run = dev
    judged = {q: dev_set.qrels[q] for q in dev_set.queries if q in dev_set.qrels}

    def evaluate(params: Any) -> dict[str, float]:
        if jax.process_count() > 1:
            params = multihost_utils.process_allgather(params, tiled=True)
        model = CrossEncoder(bert_config, config.cross_head, params, tokenizer, config.cross_max_len,
                             config.cross_q_max_len or None, config.dtype, config.eval_batch_size,
                             pair_form=config.pair_form, title_form=config.title_form)  # fmt: skip
        reranked = rerank(
            model, dev_run, dev_set.queries, dev_set.corpus, config.rerank_top_k, progress=False
        )
        return {
            "dev_rerank_mrr@10": mrr_at_k(judged, reranked, 10),
            "dev_run_mrr@10": mrr_at_k(judged, dev_run, 10),
        }

    return evaluate


def cross_task(config: ml_collections.ConfigDict, workdir: Path) -> Task:
    """The re-ranker: pointwise (v1) or listwise (v2) cross entropy, optional FGM; dev metric
    is MRR@10 after re-ranking a candidate run (``data.dev_run``)."""
    bert_config = builders.bert_config_for(config)
    tokenizer = builders.tokenizer_for(config)
    net = builders.cross_net(config, bert_config)
    examples, dev = builders.cross_data(config, workdir)
    q_cut = config.cross_q_max_len or None
    spec = BatchSpec("cross", config.train_batch_size, cross_max_len=config.cross_max_len,
                     list_size=config.list_size if config.objective == "listwise" else 0, cross_q_max_len=q_cut,
                     pair_form=config.pair_form, title_form=config.title_form)  # fmt: skip
    evaluate = _rerank_evaluator(config, bert_config, tokenizer, dev) if dev is not None else None

    def export(workdir: Path, params: Any) -> Path | None:
        return export_cross(workdir / "export", config, bert_config, params, tokenizer)

    return Task(
        name="cross",
        tokenizer=tokenizer,
        examples=examples,
        spec=spec,
        init_params=lambda mesh: builders.init_cross_params(config, net, mesh)[0],
        make_step=lambda tx, schedule, mesh: cross_step_fn(
            net, tx, schedule, config.objective, config.fgm_epsilon, config.dropout, config.fgm_mode
        ),
        evaluator=evaluate if config.eval_every else None,
        export=export,
    )


def joint_task(config: ml_collections.ConfigDict, workdir: Path) -> Task:
    """RocketQAv2: the retriever and the re-ranker trained together on lists (one state
    ``{"retriever", "reranker"}``, one step: listwise CE + KL, :func:`joint_step_fn`).
    Initialised from ``retriever.model_dir`` and ``reranker.model_dir``; dev evaluation
    scores both (retrieval MRR@10 / recall, and re-ranking ``data.dev_run``); the export is
    ``export/retriever`` and ``export/reranker``."""
    de_cfg = builders.joint_part(config, "retriever")
    ce_cfg = builders.joint_part(config, "reranker")
    de_bert, ce_bert = builders.bert_config_for(de_cfg), builders.bert_config_for(ce_cfg)
    tokenizer = builders.tokenizer_for(de_cfg)
    if builders.tokenizer_for(ce_cfg).get_vocab() != tokenizer.get_vocab():
        raise ConfigError("the retriever and the re-ranker must share one vocabulary (the lists are "
                         "tokenized once): check retriever/reranker.model_dir and tokenizer_dir")  # fmt: skip
    de_net, ce_net = builders.dual_net(de_cfg, de_bert), builders.cross_net(ce_cfg, ce_bert)
    examples, rerank_dev = builders.cross_data(ce_cfg, workdir)
    spec = BatchSpec("joint", config.train_batch_size, config.q_max_len, config.p_max_len,
                     config.cross_max_len, list_size=config.list_size,
                     cross_q_max_len=config.cross_q_max_len or None, pair_form=config.pair_form,
                     title_form=config.title_form)  # fmt: skip
    evaluators: list[Callable[[Any], dict[str, float]]] = []
    if config.eval_every:
        dev_set = builders.retrieval_dev_set(config, workdir)
        if dev_set is not None:
            dev = DevEvaluator(dev_set, de_net, tokenizer, config.q_max_len, config.p_max_len,
                               config.title_form, config.eval_batch_size)  # fmt: skip
            evaluators.append(lambda params: dev(params["retriever"]))
        if rerank_dev is not None:
            rerank_eval = _rerank_evaluator(ce_cfg, ce_bert, tokenizer, rerank_dev)
            evaluators.append(lambda params: rerank_eval(params["reranker"]))

    def init_params(mesh: Mesh) -> Any:
        return {"retriever": builders.init_dual_params(de_cfg, de_net, mesh)[0],
                "reranker": builders.init_cross_params(ce_cfg, ce_net, mesh)[0]}  # fmt: skip

    def export(workdir: Path, params: Any) -> Path:
        out = workdir / "export"
        export_dual(out / "retriever", de_cfg, params["retriever"], tokenizer)
        export_cross(out / "reranker", ce_cfg, ce_bert, params["reranker"], tokenizer)
        return out

    return Task(
        name="joint",
        tokenizer=tokenizer,
        examples=examples,
        spec=spec,
        init_params=init_params,
        make_step=lambda tx, schedule, mesh: joint_step_fn(
            de_net,
            ce_net,
            tx,
            schedule,
            config.distillation,
            config.kl_weight,
            config.logit_scale,
            config.temperature,
            config.dropout,
            config.train_reranker,
            config.cross_batch_weight,
            mesh,
            config.grad_cache_chunk,
        ),
        evaluator=(lambda params: {k: v for e in evaluators for k, v in e(params).items()})
        if evaluators
        else None,
        export=export,
        optimizer=lambda total: make_joint_optimizer(
            config.learning_rate,
            total,
            config.warmup_proportion,
            config.weight_decay,
            config.clip_norm,
            config.adam_epsilon,
            config.retriever.learning_rate,
            config.reranker.learning_rate,
            config.train_reranker,
        ),
    )


TASKS = {"dual": dual_task, "cross": cross_task, "joint": joint_task}


def train(
    config: ml_collections.ConfigDict, workdir: str | Path, hooks: Sequence[Hook] = ()
) -> dict[str, Any]:
    """Trains (or resumes training) ``config.task``; returns the last metrics and status."""
    if "://" in str(workdir):
        raise ConfigError(
            f"workdir {workdir!r} is a URL: give a directory every process sees at the same path "
            "(on a TPU pod: a GCS bucket mounted with gcsfuse on every worker, see README)"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if config.task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {config.task!r}")
    mesh = parallel.make_mesh(config.mesh_model)
    task = TASKS[config.task](config, workdir)
    loader = Loader(task.examples, task.tokenizer, task.spec, seed=config.seed)
    total = config.num_train_steps or config.num_epochs * loader.steps_per_epoch
    if total <= 0:
        raise ConfigError("set num_train_steps or num_epochs to a positive number")
    tx = (
        task.optimizer(total)
        if task.optimizer
        else make_optimizer(config.learning_rate, total, config.warmup_proportion,
                            config.weight_decay, config.clip_norm, eps=config.adam_epsilon)
    )  # fmt: skip
    schedule = rocketqa_schedule(config.learning_rate, total, int(total * config.warmup_proportion))
    state = init_state(task.init_params(mesh), tx, mesh)
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    mngr = ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True),
        item_names=("state", "data", "config"),
    )
    _check_same_model(mngr, config)
    state, data_state, start = _restore_latest(mngr, state)
    if data_state is not None:
        loader.set_state(data_state)
        print(f"rqa train: resumed from step {start} in {workdir}")
    step_fn = jit_step(task.make_step(tx, schedule, mesh), state_shardings, mesh)
    evaluator = task.evaluator
    writer = MetricsWriter(workdir, start)
    rng = jax.random.PRNGKey(config.seed)

    def save(step: int) -> None:
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                data=ocp.args.JsonSave(loader.get_state()),
                                                config=ocp.args.JsonSave(config.to_dict())), force=True)  # fmt: skip

    if start == 0 and evaluator is not None and config.eval_at_start:
        writer.write(0, evaluator(state.params))
    last: dict[str, Any] = {}
    status = "completed"
    with _Preemption() as preemption, tqdm(total=total, initial=start, desc=f"train {task.name}", unit="step",
                                           disable=jax.process_index() != 0) as bar:  # fmt: skip
        for step in range(start + 1, total + 1):
            local = next(loader)
            crc = _batch_crc(local)
            state, metrics = step_fn(state, parallel.global_batch(local, mesh), rng)
            bar.update(1)
            logging_step = step % config.log_every == 0 or step == total
            eval_step = evaluator is not None and (step % config.eval_every == 0 or step == total)
            if logging_step or eval_step:
                last = {k: float(v) for k, v in jax.device_get(metrics).items()} | {
                    "batch_crc": crc
                }
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                if eval_step:
                    last |= evaluator(state.params)
                writer.write(step, last)
            for hook in hooks:
                hook(step, last)
            stop = preemption.agreed()
            if step % config.checkpoint_every == 0 or step == total or stop:
                save(step)
            if stop and step < total:
                status = "preempted"
                print(
                    f"rqa train: SIGTERM: saved step {step}; run again with the same --workdir to resume"
                )
                break
    mngr.wait_until_finished()
    writer.close()
    if status == "completed":
        host_params = multihost_utils.process_allgather(
            state.params, tiled=True
        )  # collective: all processes
        if jax.process_index() == 0:
            exported = task.export(workdir, host_params)
            if exported is not None:
                last["export"] = str(exported)
    return {"status": status, "step": int(state.step), "metrics": last, "state": state}

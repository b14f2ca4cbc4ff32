"""Jitted training steps: pure functions (state, batch, rng) → (state, metrics).

The dual step is RocketQA step 1: query and passage towers, contrastive loss with
cross-batch negatives over the mesh's 'data' axis (:mod:`rqa_jax.losses`), AdamW update.
The cross step trains the re-ranker pointwise (v1) or listwise (v2), optionally with FGM.
The state is donated: parameters and optimizer moments are updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from rqa_jax import losses, parallel
from rqa_jax.errors import ConfigError
from rqa_jax.models.towers import CrossEncoderNet, DualEncoderNet
from rqa_jax.train import grad_cache
from rqa_jax.train.state import TrainState

Step = Callable[[TrainState, dict[str, Any], jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def apply_gradients(
    state: TrainState,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    grads: Any,
    loss: jax.Array,
    metrics: dict[str, jax.Array],
) -> tuple[TrainState, dict[str, jax.Array]]:
    """The end of every step: the optimizer update, and the metrics every step reports."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
               "learning_rate": schedule(state.step)}  # fmt: skip
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def dual_step_fn(
    net: DualEncoderNet,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    schedule: optax.Schedule,
    scale: float = 1.0,
    cross_batch: bool = True,
    dropout: bool = True,
    grad_cache_chunk: int = 0,
) -> Step:
    """The (unjitted) dual-encoder step; see :func:`jit_step` to compile it for a mesh.
    ``grad_cache_chunk`` > 0 computes the same update chunk by chunk with a gradient cache
    (:mod:`rqa_jax.train.grad_cache`): activation memory of that many queries, not the batch."""

    def represent(params, batch, rng):
        group = batch["passages"]["input_ids"].shape[1]
        passages = {k: v.reshape(-1, v.shape[-1]) for k, v in batch["passages"].items()}
        q, p = net.apply({"params": params}, batch["query"], passages, deterministic=not dropout,
                         rngs={"dropout": rng})  # fmt: skip
        return q, p.reshape(q.shape[0], group, -1)

    def loss_of(reps):
        return losses.cross_batch_contrastive_loss(*reps, mesh, scale, cross_batch)

    def step(state: TrainState, batch: dict[str, Any], rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        inputs = {"query": batch["query"], "passages": batch["passages"]}
        (loss, metrics), grads = _value_and_grad(represent, loss_of, state.params, inputs, rng,
                                                 grad_cache_chunk, mesh)  # fmt: skip
        return apply_gradients(state, tx, schedule, grads, loss, metrics)

    return step


def _value_and_grad(represent, loss_of, params, batch, rng, chunk: int, mesh: Mesh | None):
    """The loss of the batch's representations and its gradient: at once, or with a
    gradient cache of ``chunk`` rows."""
    if chunk:
        return grad_cache.value_and_grad(represent, loss_of, params, batch, rng, chunk, mesh)
    return jax.value_and_grad(lambda p: loss_of(represent(p, batch, rng)), has_aux=True)(params)


def jit_step(step: Step, state_shardings: Any, mesh: Mesh) -> Step:
    """Compiles ``step`` for ``mesh``: state kept in its shardings and donated, batch split on
    'data', metrics replicated."""
    rep = parallel.replicated(mesh)
    return jax.jit(
        step,
        in_shardings=(state_shardings, parallel.data_sharded(mesh), rep),
        out_shardings=(state_shardings, rep),
        donate_argnums=0,
    )


WORD_EMBEDDINGS = ("bert", "embeddings", "word_embeddings", "embedding")
FGM_MODES = ("rocketqa", "sum")


def _word_embedding_grad(grads: Any, path: tuple[str, ...] = WORD_EMBEDDINGS) -> jax.Array:
    for key in path:
        grads = grads[key]
    return grads


def fgm_perturbation(
    grads: Any, epsilon: float, path: tuple[str, ...] = WORD_EMBEDDINGS, norm_eps: float = 0.0
) -> jax.Array:
    """FGM's adversarial step on the word-embedding table: ε·g/‖g‖ (g its loss gradient).
    ``norm_eps`` > 0 takes ‖g‖ as √(Σg² + norm_eps), as RocketQA's code does (1e-8)."""
    g = _word_embedding_grad(grads, path)
    if norm_eps > 0:
        return epsilon * g / jnp.sqrt(jnp.sum(jnp.square(g)) + norm_eps)
    return epsilon * g / jnp.maximum(jnp.linalg.norm(g), 1e-12)


def _add_at(params: Any, path: tuple[str, ...], delta: jax.Array) -> Any:
    if not path:
        return params + delta
    return {**params, path[0]: _add_at(params[path[0]], path[1:], delta)}


LossFn = Callable[[Any, bool], tuple[jax.Array, dict]]


def fgm_value_and_grad(loss_fn: LossFn, params: Any, epsilon: float, mode: str = "rocketqa"):
    """FGM (Miyato et al.) on the word embeddings. ``loss_fn(params, deterministic)``.

    * ``"rocketqa"`` (RocketQA's released ``cross_encoder.py``): a probe pass with dropout
      off gives g, the word-embedding gradient; the table moves by 0.01·g/√(Σg² + 1e-8) (held
      constant), and training uses the loss *at the perturbed embeddings* (dropout on) and its
      gradient. The clean loss is reported as ``probe_loss``.
    * ``"sum"``: the clean loss's gradient plus the gradient at the perturbed embeddings
      (both with dropout), the common FGM recipe.

    Returns ((loss, metrics), grads, perturbation).
    """
    if mode == "rocketqa":
        (probe_loss, _), probe = jax.value_and_grad(loss_fn, has_aux=True)(params, True)
        delta = jax.lax.stop_gradient(fgm_perturbation(probe, epsilon, norm_eps=1e-8))
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            _add_at(params, WORD_EMBEDDINGS, delta), False
        )
        return (loss, {**metrics, "probe_loss": probe_loss}), grads, delta
    if mode != "sum":
        raise ConfigError(f"fgm_mode must be one of {FGM_MODES}, got {mode!r}")
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, False)
    delta = jax.lax.stop_gradient(fgm_perturbation(grads, epsilon))
    (adv_loss, _), adv_grads = jax.value_and_grad(loss_fn, has_aux=True)(
        _add_at(params, WORD_EMBEDDINGS, delta), False
    )
    grads = jax.tree.map(jnp.add, grads, adv_grads)
    return (loss, {**metrics, "adversarial_loss": adv_loss}), grads, delta


def cross_step_fn(
    net: CrossEncoderNet,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    objective: str = "pointwise",
    fgm_epsilon: float = 0.0,
    dropout: bool = True,
    fgm_mode: str = "rocketqa",
) -> Step:
    """The (unjitted) cross-encoder step. ``pointwise``: batch ``pairs`` [B, L] + ``labels``
    [B] with the v1 head (2 logits); ``listwise``: ``pairs`` [B, m, L], positive first, one
    logit per pair. ``fgm_epsilon`` > 0 trains with FGM (RocketQA: 0.01; ``fgm_mode`` see
    :func:`fgm_value_and_grad`)."""
    if fgm_mode not in FGM_MODES:
        raise ConfigError(f"fgm_mode must be one of {FGM_MODES}, got {fgm_mode!r}")
    if objective not in ("pointwise", "listwise"):
        raise ConfigError(f"objective must be pointwise or listwise, got {objective!r}")

    def step(state: TrainState, batch: dict[str, Any], rng: jax.Array):
        pairs = batch["pairs"]
        shape = pairs["input_ids"].shape
        flat = {k: v.reshape(-1, shape[-1]) for k, v in pairs.items()}
        rngs = {"dropout": jax.random.fold_in(rng, state.step)}

        def loss_fn(params, deterministic=False):
            logits = net.apply({"params": params}, flat, deterministic=deterministic or not dropout,
                               rngs=rngs)  # fmt: skip
            if objective == "pointwise":
                return losses.pointwise_cross_entropy(logits, batch["labels"])
            return losses.listwise_cross_entropy(CrossEncoderNet.score(logits).reshape(shape[:-1]))

        if fgm_epsilon > 0:
            (loss, metrics), grads, _ = fgm_value_and_grad(
                loss_fn, state.params, fgm_epsilon, fgm_mode
            )
        else:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return apply_gradients(state, tx, schedule, grads, loss, metrics)

    return step


def joint_step_fn(
    retriever: DualEncoderNet,
    reranker: CrossEncoderNet,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    variant: str = "paper",
    weight: float = 1.0,
    scale: float = 1.0,
    temperature: float = 1.0,
    dropout: bool = True,
    train_reranker: bool = True,
    cross_batch_weight: float = 0.0,
    mesh: Mesh | None = None,
    grad_cache_chunk: int = 0,
) -> Step:
    """RocketQAv2's joint step (unjitted; :func:`jit_step` compiles it): one update of
    ``params = {"retriever": ..., "reranker": ...}`` on lists of m passages per query,
    positive first. The retriever scores its own list, ``scale``·<q, p> ([B, m], no in-batch
    negatives, as v2), the re-ranker scores the same pairs; the loss is the re-ranker's
    listwise CE + ``weight``·KL (:func:`rqa_jax.losses.joint_loss`, ``variant`` "paper" or
    "released_code"). Batch: ``query`` [B, Lq], ``passages`` [B, m, Lp], ``pairs`` [B, m, Lc].

    ``train_reranker=False`` is static distillation: the re-ranker is a fixed teacher (no
    dropout, its scores constant, so nothing flows back into it; pair it with an optimizer
    that leaves it unchanged). ``cross_batch_weight`` > 0 adds the retriever's contrastive
    loss over every list of the global batch (all-gathered over ``mesh``'s 'data' axis:
    RocketQA v1's cross-batch negatives on top of v2's lists). ``grad_cache_chunk`` > 0: the
    same update with a gradient cache of that many lists (:mod:`rqa_jax.train.grad_cache`)."""
    if variant not in losses.DISTILLATION_VARIANTS:
        raise ConfigError(f"variant must be one of {losses.DISTILLATION_VARIANTS}, got {variant!r}")
    if cross_batch_weight > 0 and mesh is None:
        raise ConfigError("cross-batch negatives in the joint step need the mesh")

    def represent(params, batch, rng):
        b, m = batch["pairs"]["input_ids"].shape[:2]
        passages = {k: v.reshape(b * m, v.shape[-1]) for k, v in batch["passages"].items()}
        pairs = {k: v.reshape(b * m, v.shape[-1]) for k, v in batch["pairs"].items()}
        de_rng, ce_rng = jax.random.split(rng)
        q, p = retriever.apply({"params": params["retriever"]}, batch["query"], passages,
                               deterministic=not dropout, rngs={"dropout": de_rng})  # fmt: skip
        logits = reranker.apply({"params": params["reranker"]}, pairs,
                                deterministic=not (dropout and train_reranker),
                                rngs={"dropout": ce_rng})  # fmt: skip
        ce_scores = CrossEncoderNet.score(logits).reshape(b, m)
        if not train_reranker:
            ce_scores = jax.lax.stop_gradient(ce_scores)
        return q, p.reshape(b, m, -1), ce_scores

    def loss_of(reps):
        q, p, ce_scores = reps
        de_scores = scale * jnp.einsum("bh,bmh->bm", q.astype(jnp.float32), p.astype(jnp.float32))
        loss, metrics = losses.joint_loss(de_scores, ce_scores, variant, weight, temperature)
        if cross_batch_weight > 0:
            contrastive, cb = losses.cross_batch_contrastive_loss(q, p, mesh, scale, True)
            loss = loss + cross_batch_weight * contrastive
            metrics = {**metrics, "cross_batch_loss": contrastive,
                       "cross_batch_accuracy": cb["accuracy"]}  # fmt: skip
        retriever_rank = jnp.sum(de_scores >= de_scores[:, :1], axis=-1)
        return loss, {**metrics, "retriever_accuracy": jnp.mean(retriever_rank == 1)}

    def step(state: TrainState, batch: dict[str, Any], rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        inputs = {k: batch[k] for k in ("query", "passages", "pairs")}
        (loss, metrics), grads = _value_and_grad(represent, loss_of, state.params, inputs, rng,
                                                 grad_cache_chunk, mesh)  # fmt: skip
        return apply_gradients(state, tx, schedule, grads, loss, metrics)

    return step

"""Jitted training steps: pure functions (state, batch, rng) → (state, metrics).

The dual step is RocketQA step 1: query and passage towers, contrastive loss with
cross-batch negatives over the mesh's 'data' axis (:mod:`rqa_jax.losses`), AdamW update.
The state is donated: parameters and optimizer moments are updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from jax.sharding import Mesh

from rqa_jax import losses, parallel
from rqa_jax.models.towers import DualEncoderNet
from rqa_jax.train.state import TrainState

Step = Callable[[TrainState, dict[str, Any], jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def dual_step_fn(
    net: DualEncoderNet,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    schedule: optax.Schedule,
    scale: float = 1.0,
    cross_batch: bool = True,
    dropout: bool = True,
) -> Step:
    """The (unjitted) dual-encoder step; see :func:`jit_step` to compile it for a mesh."""

    def step(state: TrainState, batch: dict[str, Any], rng: jax.Array):
        group = batch["passages"]["input_ids"].shape[1]
        passages = {k: v.reshape(-1, v.shape[-1]) for k, v in batch["passages"].items()}
        rngs = {"dropout": jax.random.fold_in(rng, state.step)}

        def loss_fn(params):
            q, p = net.apply(
                {"params": params}, batch["query"], passages, deterministic=not dropout, rngs=rngs
            )
            return losses.cross_batch_contrastive_loss(
                q, p.reshape(q.shape[0], group, -1), mesh, scale, cross_batch
            )

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": schedule(state.step)}  # fmt: skip
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


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

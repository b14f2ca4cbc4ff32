"""Train state and RocketQA's optimizer.

AdamW with decoupled weight decay (``p -= wd · lr · p``) that skips LayerNorm parameters and
biases, global-norm clipping at 1.0, and RocketQA's schedule on the 0-based step t with w
warmup steps of N: ``lr0 · t / w`` while t < w, then ``lr0 · (1 − t / N)`` (decay counted
from step 0, so the first step has lr 0 when there is warmup).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def rocketqa_schedule(learning_rate: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """RocketQA's linear warmup then linear decay to 0 at ``total_steps``, both from step 0."""

    def schedule(count: jax.Array) -> jax.Array:
        t = count.astype(jnp.float32)
        warm = learning_rate * t / max(warmup_steps, 1)
        decay = learning_rate * jnp.maximum(0.0, 1.0 - t / total_steps)
        return jnp.where(t < warmup_steps, warm, decay)

    return schedule


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: not LayerNorm parameters, not biases."""
    flat = traverse_util.flatten_dict(params)
    mask = {path: not ("LayerNorm" in path or path[-1] == "bias") for path in flat}
    return traverse_util.unflatten_dict(mask)


def make_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_proportion: float = 0.1,
    weight_decay: float = 0.0,
    clip_norm: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
) -> optax.GradientTransformation:
    """Clip → AdamW (decoupled decay, LayerNorm/bias exempt) on RocketQA's schedule."""
    warmup = int(total_steps * warmup_proportion)
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adamw(
            rocketqa_schedule(learning_rate, total_steps, warmup),
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            mask=decay_mask,
        ),
    )


def create_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

"""Train state and RocketQA's optimizer.

AdamW with decoupled weight decay (``p -= wd · lr · p``) that skips LayerNorm parameters and
biases, global-norm clipping at 1.0, and RocketQA's schedule on the 0-based step t with w
warmup steps of N: ``lr0 · t / w`` while t < w, then ``lr0 · (1 − t / N)`` (decay counted
from step 0, so the first step has lr 0 when there is warmup); without warmup, constant.
Adam's epsilon defaults to 1e-8, Paddle's (the released code never sets it).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def rocketqa_schedule(learning_rate: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """RocketQA's linear warmup then linear decay to 0 at ``total_steps``, both from step 0;
    with no warmup a constant rate, as the released ``optimization.py`` (its decay schedule is
    only built when ``warmup_steps > 0``; the re-rankers and v2 train that way)."""
    if warmup_steps <= 0:
        return optax.constant_schedule(learning_rate)

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
    eps: float = 1e-8,
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


def state_shardings(tx: optax.GradientTransformation, params: Any) -> TrainState:
    """Shardings of the state for ``params`` (arrays already on the mesh): every optimizer
    moment takes its parameter's sharding, counters and other scalars are replicated."""
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    mesh = jax.tree.leaves(param_shardings)[0].mesh
    rep = NamedSharding(mesh, PartitionSpec())
    abstract = jax.eval_shape(lambda p: create_state(p, tx), params)
    opt = optax.tree_map_params(
        tx, lambda _, s: s, abstract.opt_state, param_shardings, transform_non_params=lambda _: rep
    )
    return TrainState(step=rep, params=param_shardings, opt_state=opt)


def init_state(
    params: Any, tx: optax.GradientTransformation, mesh: Mesh | None = None
) -> TrainState:
    """The optimizer initialised under jit with ``out_shardings``: Adam's moments are created
    already split like their parameters (never whole on one device)."""
    del mesh  # the shardings come from the parameters themselves
    return jax.jit(lambda p: create_state(p, tx), out_shardings=state_shardings(tx, params))(params)

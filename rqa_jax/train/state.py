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
    leaf that is a copy of a parameter (Adam's moments) takes that parameter's sharding,
    found by its path (an optimizer-state path ends with its parameter's path, also inside
    ``optax.multi_transform`` and masked states); counters and other scalars are replicated."""
    by_path = {jax.tree_util.keystr(k): (v.sharding, v.shape)
               for k, v in jax.tree_util.tree_leaves_with_path(params)}  # fmt: skip
    mesh = jax.tree.leaves(params)[0].sharding.mesh
    rep = NamedSharding(mesh, PartitionSpec())
    abstract = jax.eval_shape(lambda p: create_state(p, tx), params)

    def sharding_of(path: tuple, leaf: Any) -> NamedSharding:
        for start in range(len(path)):
            found = by_path.get(jax.tree_util.keystr(path[start:]))
            if found is not None and found[1] == leaf.shape:
                return found[0]
        return rep

    opt = jax.tree_util.tree_map_with_path(sharding_of, abstract.opt_state)
    return TrainState(step=rep, params=jax.tree.map(lambda x: x.sharding, params), opt_state=opt)


def init_state(
    params: Any, tx: optax.GradientTransformation, mesh: Mesh | None = None
) -> TrainState:
    """The optimizer initialised under jit with ``out_shardings``: Adam's moments are created
    already split like their parameters (never whole on one device)."""
    del mesh  # the shardings come from the parameters themselves
    return jax.jit(lambda p: create_state(p, tx), out_shardings=state_shardings(tx, params))(params)


def make_joint_optimizer(
    learning_rate: float,
    total_steps: int,
    warmup_proportion: float = 0.0,
    weight_decay: float = 0.0,
    clip_norm: float = 1.0,
    eps: float = 1e-8,
    retriever_learning_rate: float = 0.0,
    reranker_learning_rate: float = 0.0,
    train_reranker: bool = True,
) -> optax.GradientTransformation:
    """The optimizer of ``{"retriever", "reranker"}`` parameters. By default one AdamW over
    both, clipped on their joint global norm (RocketQAv2 trains one program with one
    optimizer). A per-model rate (> 0) gives each model its own clipped AdamW; a frozen
    re-ranker (static distillation) gets no update and no Adam moments."""

    def adamw(rate: float) -> optax.GradientTransformation:
        return make_optimizer(
            rate, total_steps, warmup_proportion, weight_decay, clip_norm, eps=eps
        )

    if not retriever_learning_rate and not reranker_learning_rate and train_reranker:
        return adamw(learning_rate)
    parts = {
        "retriever": adamw(retriever_learning_rate or learning_rate),
        "reranker": adamw(reranker_learning_rate or learning_rate)
        if train_reranker
        else optax.set_to_zero(),
    }

    def label(params: Any) -> Any:  # each leaf named after its model
        return {name: jax.tree.map(lambda _, n=name: n, sub) for name, sub in params.items()}

    return optax.multi_transform(parts, label)

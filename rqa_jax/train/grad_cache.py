"""Gradient cache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup"): the paper's batch on a device that cannot hold its activations.

A contrastive loss couples every query with every passage of the global batch, so the
batch cannot simply be split into accumulated micro-batches. But the loss depends on the
parameters only through the representations (vectors, scores), which are small. So:

1. represent the batch chunk by chunk without keeping activations (a ``lax.scan`` whose
   body returns only the representations);
2. compute the loss on all representations at once (cross-batch negatives over the mesh
   exactly as the plain step) and its gradient with respect to them;
3. run each chunk again under ``jax.vjp`` and pull that chunk's representation gradient
   back to the parameters; the sum over chunks is the full gradient (chain rule).

Peak activation memory is one chunk's, whatever the batch. Each chunk is spread over every
'data' device (rows w·b/W + i·c/W … of device w), so chunking moves no data between devices.
The price is a second forward pass. Dropout: chunk i draws its masks from ``fold_in(rng,
i)`` in both passes (they must agree); the plain step draws them for the whole batch at
once, so the two agree exactly with dropout off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rqa_jax.errors import ConfigError
from rqa_jax.parallel import DATA

Represent = Callable[[Any, Any, jax.Array], Any]  # (params, batch chunk, rng) -> representations
LossOf = Callable[[Any], tuple[jax.Array, dict]]  # representations of the whole batch -> loss


def check_chunk(batch_size: int, chunk: int, data_devices: int) -> None:
    if batch_size % chunk or chunk % data_devices:
        raise ConfigError(
            f"grad_cache_chunk={chunk} must divide the global batch ({batch_size}) and be a multiple "
            f"of the {data_devices} 'data' devices (each chunk is spread over all of them)"
        )


def _constrain(x: jax.Array, mesh: Mesh | None, spec: PartitionSpec) -> jax.Array:
    return x if mesh is None else jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def to_chunks(x: jax.Array, n: int, w: int, mesh: Mesh | None = None) -> jax.Array:
    """[B, ...] (split over w devices) → [n, B/n, ...]: chunk i takes B/(n·w) rows of each
    device's block, so every chunk stays split over the devices."""
    b = x.shape[0]
    x = x.reshape(w, n, b // (w * n), *x.shape[1:]).swapaxes(0, 1)
    return _constrain(x.reshape(n, b // n, *x.shape[3:]), mesh, PartitionSpec(None, DATA))


def from_chunks(x: jax.Array, w: int, mesh: Mesh | None = None) -> jax.Array:
    """The inverse of :func:`to_chunks`: [n, c, ...] → [n·c, ...] in the batch's order."""
    n, c = x.shape[:2]
    x = x.reshape(n, w, c // w, *x.shape[2:]).swapaxes(0, 1)
    return _constrain(x.reshape(n * c, *x.shape[3:]), mesh, PartitionSpec(DATA))


def value_and_grad(
    represent: Represent,
    loss_of: LossOf,
    params: Any,
    batch: Any,
    rng: jax.Array,
    chunk: int,
    mesh: Mesh | None = None,
) -> tuple[tuple[jax.Array, dict], Any]:
    """((loss, metrics), gradient) of ``loss_of(represent(params, batch))`` computed chunk by
    chunk: equal to ``jax.value_and_grad`` of the whole batch (up to float summation order)
    with a peak activation memory of one chunk of ``chunk`` rows."""
    b = jax.tree.leaves(batch)[0].shape[0]
    w = 1 if mesh is None else mesh.shape[DATA]
    check_chunk(b, chunk, w)
    n = b // chunk
    chunks = jax.tree.map(lambda x: to_chunks(x, n, w, mesh), batch)

    def forward(_, xs):
        i, part = xs
        return None, jax.lax.stop_gradient(represent(params, part, jax.random.fold_in(rng, i)))

    _, reps = jax.lax.scan(forward, None, (jnp.arange(n), chunks))
    whole = jax.tree.map(lambda r: from_chunks(r, w, mesh), reps)
    (loss, metrics), rep_grads = jax.value_and_grad(loss_of, has_aux=True)(whole)
    rep_grads = jax.tree.map(lambda g: to_chunks(g, n, w, mesh), rep_grads)

    def backward(acc, xs):
        i, part, cotangent = xs
        _, pull = jax.vjp(lambda p: represent(p, part, jax.random.fold_in(rng, i)), params)
        (g,) = pull(cotangent)
        return jax.tree.map(jnp.add, acc, g), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    grads, _ = jax.lax.scan(backward, zeros, (jnp.arange(n), chunks, rep_grads))
    return (loss, metrics), grads

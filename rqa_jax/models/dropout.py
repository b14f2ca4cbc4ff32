"""Dropout whose mask is a hash of (key, element index) instead of threefry random bits.

Why: JAX's ``random.bernoulli`` draws every mask bit through threefry-2x32 (20 rounds per
32-bit value). A BERT training step drops ~120 million values on a 32-query MiniLM batch;
on a 2-core CPU threefry alone took 0.72 s of the 4.09 s step (``benchmarks/cpu_split.py``),
~9 ns a value, more than all the attention arithmetic it masks. Here each element's bit is
a 32-bit integer hash of its global index mixed with two words drawn once from the key: a
few multiply/xor-shift operations that XLA fuses into the consumer, so the mask is never
materialised as random bits and costs next to nothing on CPU, GPU and TPU alike.

What is kept from threefry: the mask is a pure function of (key, shape, index), so the same
key gives the same mask (resumed runs, the gradient cache's second pass) and a sharded array
gets exactly the mask of the unsharded one (the index is the global one: XLA partitions the
iota, every shard hashes its own elements). The hash is Wellons' ``triple32`` (three
multiply/xorshift rounds, the lowest-bias 32-bit integer hash his search found), applied to
the index's leading and trailing parts separately and then to their combination, so arrays
larger than 2**32 elements do not repeat. Tests check keep rate, independence between
neighbours and between keys, and sharded = unsharded (``tests/test_dropout.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_U32 = jnp.uint32


def triple32(x: jax.Array) -> jax.Array:
    """Wellons' triple32 integer hash on uint32 (a bijection with near-ideal avalanche)."""
    x = x ^ (x >> 17)
    x = x * _U32(0xED5AD4BB)
    x = x ^ (x >> 11)
    x = x * _U32(0xAC4C1B51)
    x = x ^ (x >> 15)
    x = x * _U32(0x31848BAB)
    return x ^ (x >> 14)


def _linear_index(shape: Sequence[int], axes: Sequence[int]) -> jax.Array:
    """Row-major index over ``axes`` of ``shape``, broadcast to the full shape (uint32)."""
    index = jnp.zeros(shape, _U32)
    for axis in axes:
        index = index * _U32(shape[axis]) + jax.lax.broadcasted_iota(_U32, shape, axis)
    return index


def hash_bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Uniform uint32 per element of ``shape``, a pure function of the key and the index.

    The last two axes (≤ 2**32 elements in any model here: a sequence × sequence block or
    a sequence × hidden block) and the leading axes are indexed separately, so no two
    elements share an index however large the array."""
    shape = tuple(int(d) for d in shape)
    seeds = jax.random.bits(key, (2,), _U32)
    split = max(len(shape) - 2, 0)
    if math.prod(shape[split:]) > 2**32:
        raise ValueError(f"hash dropout: trailing block {shape[split:]} exceeds 2**32 elements")
    lead = _linear_index(shape, range(split))
    trail = _linear_index(shape, range(split, len(shape)))
    return triple32(triple32(trail + seeds[1]) ^ triple32(lead ^ seeds[0]))


def keep_mask(key: jax.Array, shape: Sequence[int], rate: float) -> jax.Array:
    """Boolean mask keeping each element with probability ``1 - rate`` (exact to 2**-32)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    threshold = min(round(rate * 2**32), 2**32 - 1)
    return hash_bits(key, shape) >= _U32(threshold)


class Dropout(nn.Module):
    """Drop-in for ``flax.linen.Dropout`` (inverted dropout, ``dropout`` rng collection)."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = keep_mask(self.make_rng("dropout"), x.shape, self.rate)
        return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros_like(x))

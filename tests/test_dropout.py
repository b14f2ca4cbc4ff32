"""Hash dropout: the keep rate, independence of neighbouring elements and of different keys,
the same mask for the same key, and a sharded array masked exactly like the unsharded one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rqa_jax import parallel
from rqa_jax.models.dropout import Dropout, hash_bits, keep_mask, triple32

# attention probabilities of a small batch: [batch, heads, query, key]
SHAPE = (16, 12, 128, 128)
RATE = 0.1


def _within_sigmas(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * np.sqrt(p * (1 - p) / n)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return np.asarray(jax.jit(lambda k: keep_mask(k, SHAPE, RATE))(jax.random.PRNGKey(0)))


def test_triple32_by_hand():
    """Wellons' triple32 on known inputs, computed here with Python integers."""

    def by_hand(x: int) -> int:
        m = 0xFFFFFFFF
        x ^= x >> 17
        x = (x * 0xED5AD4BB) & m
        x ^= x >> 11
        x = (x * 0xAC4C1B51) & m
        x ^= x >> 15
        x = (x * 0x31848BAB) & m
        return x ^ (x >> 14)

    xs = [0, 1, 2, 12345, 0xDEADBEEF, 0xFFFFFFFF]
    got = np.asarray(triple32(jnp.asarray(xs, jnp.uint32)))
    assert [int(g) for g in got] == [by_hand(x) for x in xs]


def test_keep_rate_is_one_minus_rate(mask):
    assert _within_sigmas(mask.mean(), 1 - RATE, mask.size)
    # every slice keeps at that rate too (no block is all kept or all dropped)
    per_row = mask.reshape(-1, SHAPE[-1]).mean(axis=1)
    assert per_row.min() > 0.7 and per_row.max() < 1.0


@pytest.mark.parametrize("axis", range(len(SHAPE)))
def test_neighbours_along_every_axis_are_independent(mask, axis):
    a = np.take(mask, range(SHAPE[axis] - 1), axis=axis)
    b = np.take(mask, range(1, SHAPE[axis]), axis=axis)
    both = (a & b).mean()
    assert _within_sigmas(both, (1 - RATE) ** 2, a.size), (axis, both)


def test_different_keys_give_independent_masks_and_the_same_key_the_same(mask):
    other = np.asarray(keep_mask(jax.random.PRNGKey(1), SHAPE, RATE))
    assert _within_sigmas((mask & other).mean(), (1 - RATE) ** 2, mask.size)
    folded = np.asarray(keep_mask(jax.random.fold_in(jax.random.PRNGKey(0), 1), SHAPE, RATE))
    assert _within_sigmas((mask & folded).mean(), (1 - RATE) ** 2, mask.size)
    np.testing.assert_array_equal(np.asarray(keep_mask(jax.random.PRNGKey(0), SHAPE, RATE)), mask)


def test_bits_are_uniform_over_their_top_byte():
    bits = np.asarray(hash_bits(jax.random.PRNGKey(3), (64, 128, 384)))
    counts = np.bincount((bits >> 24).ravel(), minlength=256)
    expected = bits.size / 256
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # 255 degrees of freedom: mean 255, sd 22.6; 6 sd either side
    assert 120 < chi2 < 390, chi2


@pytest.mark.parametrize(
    "model, spec",
    [(1, P("data")), (1, P(None, None, "data")), (2, P("data", None, None, "model"))],
)
def test_sharded_array_gets_the_unsharded_mask(mask, model, spec):
    mesh = parallel.make_mesh(model=model)
    sharded = jax.jit(lambda k: keep_mask(k, SHAPE, RATE), out_shardings=NamedSharding(mesh, spec))(
        jax.random.PRNGKey(0)
    )
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(sharded), mask)


def test_dropout_module_scales_kept_values_and_is_off_when_deterministic():
    x = jnp.ones((4, 1000), jnp.float32)
    rngs = {"dropout": jax.random.PRNGKey(0)}
    y = np.asarray(Dropout(0.25).apply({}, x, deterministic=False, rngs=rngs))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert _within_sigmas(kept.mean(), 0.75, kept.size)
    np.testing.assert_array_equal(np.asarray(Dropout(0.25).apply({}, x, deterministic=True)), x)
    bf16 = Dropout(0.25).apply({}, x.astype(jnp.bfloat16), deterministic=False, rngs=rngs)
    assert bf16.dtype == jnp.bfloat16


def test_bad_rate_and_oversized_trailing_block_are_refused():
    with pytest.raises(ValueError, match="rate"):
        keep_mask(jax.random.PRNGKey(0), (4, 4), 1.0)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        jax.eval_shape(lambda k: keep_mask(k, (2, 70_000, 70_000), 0.1), jax.random.PRNGKey(0))

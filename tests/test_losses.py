"""Losses against hand computation; cross-batch over 8 devices equals the global-batch loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rqa_jax import losses, parallel


def rand(seed, *shape):
    return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_in_batch_loss_equals_hand_computation():
    q = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    p = jnp.array([[[1.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [2.0, 0.0]]])  # [B=2, 1+k=2, H=2]
    loss, m = losses.contrastive_loss(q, p)
    # logits q @ [p00, p01, p10, p11].T: row 0 = [1, 0, 0, 2], label 0; row 1 = [2, 2, 2, 0], label 2
    l0 = -1 + np.log(np.exp(1) + 1 + 1 + np.exp(2))
    l1 = -2 + np.log(3 * np.exp(2) + 1)
    np.testing.assert_allclose(loss, (l0 + l1) / 2, rtol=1e-6)
    assert (
        float(m["accuracy"]) == 0.0
    )  # row 0: the positive (1) loses to p11 (2); row 1: a 3-way tie
    np.testing.assert_allclose(m["mean_positive_rank"], (2 + 3) / 2)  # ties rank pessimistically
    scaled, _ = losses.contrastive_loss(q, p, scale=20.0)
    assert float(scaled) != pytest.approx(float(loss))


@pytest.mark.parametrize("b_per_device,k", [(2, 1), (3, 2)])
def test_cross_batch_equals_global_batch_loss_and_gradients(b_per_device, k):
    mesh = parallel.make_mesh()
    w = parallel.data_size(mesh)
    q = rand(0, w * b_per_device, 16)
    p = rand(1, w * b_per_device, 1 + k, 16)
    sharding = NamedSharding(mesh, PartitionSpec(parallel.DATA))
    q_s, p_s = jax.device_put(q, sharding), jax.device_put(p, sharding)

    def global_loss(q, p):
        return losses.contrastive_loss(q, p, scale=2.0)[0]

    def sharded_loss(q, p):
        return losses.cross_batch_contrastive_loss(q, p, mesh, scale=2.0)[0]

    ref, (gq_ref, gp_ref) = jax.value_and_grad(global_loss, argnums=(0, 1))(q, p)
    got, (gq, gp) = jax.jit(jax.value_and_grad(sharded_loss, argnums=(0, 1)))(q_s, p_s)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(gq, gq_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gp, gp_ref, rtol=1e-5, atol=1e-7)
    _, m_ref = losses.contrastive_loss(q, p, scale=2.0)
    m = jax.jit(lambda a, b: losses.cross_batch_contrastive_loss(a, b, mesh, scale=2.0)[1])(
        q_s, p_s
    )
    np.testing.assert_allclose(m["mean_positive_rank"], m_ref["mean_positive_rank"], rtol=1e-6)


def test_in_batch_only_mode_sees_only_the_devices_passages():
    mesh = parallel.make_mesh()
    w, b = parallel.data_size(mesh), 2
    q, p = rand(2, w * b, 8), rand(3, w * b, 2, 8)
    sharding = NamedSharding(mesh, PartitionSpec(parallel.DATA))
    got, _ = jax.jit(
        lambda a, c: losses.cross_batch_contrastive_loss(a, c, mesh, cross_batch=False)
    )(jax.device_put(q, sharding), jax.device_put(p, sharding))
    per_device = [
        losses.contrastive_loss(q[i * b : (i + 1) * b], p[i * b : (i + 1) * b])[0] for i in range(w)
    ]
    np.testing.assert_allclose(got, np.mean(per_device), rtol=1e-6)
    global_loss, _ = losses.contrastive_loss(q, p)
    assert float(got) < float(global_loss)  # fewer negatives, easier

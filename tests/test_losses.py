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


def _kl(p, q):
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


DE = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]], np.float32)
CE = np.array([[3.0, 0.0, -1.0], [1.0, 2.0, 0.0]], np.float32)


def test_listwise_distillation_paper_variant_by_hand():
    from rqa_jax.losses import listwise_distillation_loss

    want = np.mean([_kl(_softmax(d), _softmax(c)) for d, c in zip(DE, CE, strict=True)])
    loss, m = listwise_distillation_loss(jnp.asarray(DE), jnp.asarray(CE), "paper")
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(m["kl_per_query"], want, rtol=1e-5)
    t2, _ = listwise_distillation_loss(jnp.asarray(DE), jnp.asarray(CE), "paper", temperature=2.0)
    want_t2 = np.mean([_kl(_softmax(d / 2), _softmax(c / 2)) for d, c in zip(DE, CE, strict=True)])
    np.testing.assert_allclose(t2, want_t2, rtol=1e-5)


def test_listwise_distillation_released_code_variant_by_hand():
    from rqa_jax.losses import listwise_distillation_loss

    per_query = [_kl(_softmax(c), _softmax(d)) for d, c in zip(DE, CE, strict=True)]
    loss, m = listwise_distillation_loss(jnp.asarray(DE), jnp.asarray(CE), "released_code")
    np.testing.assert_allclose(loss, np.sum(per_query) / DE.size, rtol=1e-5)  # over all B·m
    np.testing.assert_allclose(m["kl_per_query"], np.mean(per_query), rtol=1e-5)


def test_reranker_gets_no_kl_gradient_in_released_code_and_some_in_paper():
    from rqa_jax.losses import listwise_distillation_loss

    for variant, moves in (("released_code", False), ("paper", True)):
        g_ce = jax.grad(lambda c, v=variant: listwise_distillation_loss(jnp.asarray(DE), c, v)[0])(
            jnp.asarray(CE)
        )
        g_de = jax.grad(lambda d, v=variant: listwise_distillation_loss(d, jnp.asarray(CE), v)[0])(
            jnp.asarray(DE)
        )
        assert bool(jnp.any(g_ce != 0)) == moves
        assert bool(jnp.all(g_ce == 0)) != moves
        assert bool(jnp.any(g_de != 0))


def test_joint_loss_is_reranker_ce_plus_weighted_kl():
    from rqa_jax.losses import joint_loss, listwise_cross_entropy, listwise_distillation_loss

    de, ce = jnp.asarray(DE), jnp.asarray(CE)
    loss, m = joint_loss(de, ce, "paper", weight=0.5)
    want = listwise_cross_entropy(ce)[0] + 0.5 * listwise_distillation_loss(de, ce, "paper")[0]
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert set(m) >= {"reranker_loss", "distillation_loss", "kl_per_query"}
    with pytest.raises(ValueError, match="variant"):
        joint_loss(de, ce, "both")

"""Cross-encoder objectives by hand, FGM's perturbation, and the sharded cross step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from rqa_jax import losses, parallel
from rqa_jax.models.towers import CrossEncoderNet
from rqa_jax.train import state as S
from rqa_jax.train.steps import cross_step_fn, fgm_value_and_grad, jit_step


def test_pointwise_cross_entropy_by_hand():
    logits = jnp.array([[2.0, 0.0], [0.5, 1.5]])
    loss, m = losses.pointwise_cross_entropy(logits, jnp.array([1, 1]))
    want = (-np.log(1 / (1 + np.exp(2.0))) - np.log(np.exp(1.5) / (np.exp(0.5) + np.exp(1.5)))) / 2
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert float(m["accuracy"]) == 0.5


def test_listwise_cross_entropy_takes_index_0_as_positive():
    logits = jnp.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    loss, m = losses.listwise_cross_entropy(logits)
    lse = np.log(np.exp([3.0, 1.0, 0.0]).sum()), np.log(np.exp([0.0, 2.0, 1.0]).sum())
    np.testing.assert_allclose(loss, ((lse[0] - 3.0) + (lse[1] - 0.0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(m["mean_positive_rank"], (1 + 3) / 2)


def _pairs(shape, seed=0, vocab=16):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=shape).astype(np.int32)
    return {
        "input_ids": ids,
        "token_type_ids": np.zeros(shape, np.int32),
        "attention_mask": np.ones(shape, np.int32),
    }


def _net_and_params(head):
    net = CrossEncoderNet(tiny_config(), head)
    batch = _pairs((2, 8))
    params = jax.tree.map(
        np.asarray, jax.jit(lambda r: net.init(r, batch))(jax.random.PRNGKey(0))["params"]
    )
    return net, params


def test_fgm_perturbation_is_eps_g_over_norm_g():
    net, params = _net_and_params("v1")
    batch = {"pairs": _pairs((4, 10)), "labels": jnp.array([1, 0, 1, 0])}

    def loss_fn(p):
        return losses.pointwise_cross_entropy(
            net.apply({"params": p}, batch["pairs"]), batch["labels"]
        )

    (_, metrics), grads, delta = fgm_value_and_grad(loss_fn, params, 0.01)
    g = jax.grad(lambda p: loss_fn(p)[0])(params)["bert"]["embeddings"]["word_embeddings"][
        "embedding"
    ]
    np.testing.assert_allclose(delta, 0.01 * g / np.linalg.norm(g), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(delta), 0.01, rtol=1e-5)
    moved = jax.tree.map(lambda x: x, params)
    moved["bert"]["embeddings"]["word_embeddings"]["embedding"] = (
        params["bert"]["embeddings"]["word_embeddings"]["embedding"] + delta
    )
    adv_loss, adv_grads = jax.value_and_grad(lambda p: loss_fn(p)[0])(moved)
    clean_grads = jax.grad(lambda p: loss_fn(p)[0])(params)
    np.testing.assert_allclose(metrics["adversarial_loss"], adv_loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b, c: np.testing.assert_allclose(a, b + c, rtol=1e-5, atol=1e-8),
        grads,
        clean_grads,
        adv_grads,
    )


@pytest.mark.parametrize("objective,head", [("pointwise", "v1"), ("listwise", "v2")])
def test_cross_step_on_8_devices_equals_1_device(objective, head):
    net, params = _net_and_params(head)
    if objective == "pointwise":
        batches = [
            {"pairs": _pairs((16, 10), seed=i), "labels": np.arange(16, dtype=np.int32) % 2}
            for i in range(2)
        ]
    else:
        batches = [{"pairs": _pairs((8, 3, 10), seed=i), "labels": np.tile([1, 0, 0], (8, 1)).astype(np.int32)}
                   for i in range(2)]  # fmt: skip
    results = []
    for mesh in (parallel.make_mesh(devices=jax.devices()[:1]), parallel.make_mesh()):
        tx = S.make_optimizer(1e-3, 10, 0.0, weight_decay=0.01)
        st = jax.device_put(S.create_state(params, tx), parallel.replicated(mesh))
        shardings = jax.tree.map(lambda x: x.sharding, st)
        step = jit_step(cross_step_fn(net, tx, S.rocketqa_schedule(1e-3, 10, 0), objective, fgm_epsilon=0.01,
                                      dropout=False), shardings, mesh)  # fmt: skip
        losses_seen = []
        for b in batches:
            st, m = step(st, parallel.global_batch(b, mesh), jax.random.PRNGKey(0))
            losses_seen.append(float(m["loss"]))
        results.append((jax.device_get(st.params), losses_seen))
    (p1, l1), (p8, l8) = results
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p8, p1)

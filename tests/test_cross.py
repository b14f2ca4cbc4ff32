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


def test_fgm_sum_mode_is_clean_plus_adversarial_gradient():
    net, params = _net_and_params("v1")
    batch = {"pairs": _pairs((4, 10)), "labels": jnp.array([1, 0, 1, 0])}

    def loss_fn(p, deterministic=True):
        return losses.pointwise_cross_entropy(
            net.apply({"params": p}, batch["pairs"]), batch["labels"]
        )

    (_, metrics), grads, delta = fgm_value_and_grad(loss_fn, params, 0.01, mode="sum")
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


WORD = ("bert", "embeddings", "word_embeddings", "embedding")


def test_fgm_rocketqa_mode_trains_on_the_perturbed_loss_probed_without_dropout():
    """RocketQA's cross_encoder.py: probe (dropout off) → g; table += 0.01·g/√(Σg²+1e-8);
    the trained gradient is the perturbed loss's (dropout on), nothing of the clean one."""
    net = CrossEncoderNet(
        tiny_config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3), "v1"
    )
    _, params = _net_and_params("v1")
    batch = {"pairs": _pairs((4, 10), seed=3), "labels": jnp.array([1, 0, 1, 0])}
    rngs = {"dropout": jax.random.PRNGKey(7)}

    def loss(p, deterministic):
        logits = net.apply({"params": p}, batch["pairs"], deterministic=deterministic, rngs=rngs)
        return losses.pointwise_cross_entropy(logits, batch["labels"])[0]

    # by hand, step by step
    g = jax.grad(loss)(params, True)
    for key in WORD:
        g = g[key]
    g = np.asarray(g, np.float64)
    delta = 0.01 * g / np.sqrt((g**2).sum() + 1e-8)
    moved = jax.tree.map(lambda x: x, params)
    moved["bert"]["embeddings"]["word_embeddings"]["embedding"] = params["bert"]["embeddings"][
        "word_embeddings"
    ]["embedding"] + delta.astype(np.float32)
    want_loss, want_grads = jax.value_and_grad(loss)(moved, False)
    clean_dropout = float(loss(params, False))
    assert abs(float(want_loss) - clean_dropout) > 1e-6  # the perturbation is felt

    (got_loss, metrics), got_grads, got_delta = fgm_value_and_grad(
        lambda p, deterministic: (loss(p, deterministic), {}), params, 0.01
    )
    np.testing.assert_allclose(got_delta, delta, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(metrics["probe_loss"], loss(params, True), rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), got_grads, want_grads
    )


def test_cross_step_default_fgm_update_is_the_perturbed_gradient():
    """Through the step: with plain SGD (lr 1) the update is exactly −(perturbed gradient)."""
    import optax

    net, params = _net_and_params("v1")
    batch = {"pairs": _pairs((4, 10), seed=5), "labels": np.array([1, 0, 1, 0], np.int32)}
    tx = optax.sgd(1.0)
    step = cross_step_fn(
        net, tx, optax.constant_schedule(1.0), "pointwise", fgm_epsilon=0.01, dropout=False
    )
    st, m = jax.jit(step)(S.create_state(params, tx), batch, jax.random.PRNGKey(0))

    def loss(p, deterministic=True):
        return losses.pointwise_cross_entropy(
            net.apply({"params": p}, batch["pairs"]), batch["labels"]
        )

    _, grads, _ = fgm_value_and_grad(loss, params, 0.01)
    jax.tree.map(lambda new, old, g: np.testing.assert_allclose(new, old - g, rtol=1e-5, atol=1e-7),
                 st.params, params, grads)  # fmt: skip
    assert "probe_loss" in m and "adversarial_loss" not in m


def test_unknown_fgm_mode_is_refused():
    net, _ = _net_and_params("v1")
    with pytest.raises(ValueError, match="fgm_mode"):
        cross_step_fn(
            net, S.make_optimizer(1e-3, 10), S.rocketqa_schedule(1e-3, 10, 0), fgm_mode="both"
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
        # eps 1e-6: a listwise head's bias has a zero true gradient (softmax ignores a shift);
        # Adam would blow its float32 rounding noise (~1e-9, different per layout) up to ±lr
        tx = S.make_optimizer(1e-3, 10, 0.0, weight_decay=0.01, eps=1e-6)
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

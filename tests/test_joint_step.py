"""RocketQAv2's joint step: the loss is the re-ranker's listwise CE + KL on the same lists,
8 simulated devices give the single device's values and update, and in the released-code
variant the re-ranker moves only by its own loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_config

from rqa_jax import losses, parallel
from rqa_jax.models.towers import CrossEncoderNet, DualEncoderNet
from rqa_jax.train import state as S
from rqa_jax.train.steps import jit_step, joint_step_fn

B, M = 8, 3


def _tok(rng, shape, vocab=16):
    ids = rng.integers(5, vocab, size=shape).astype(np.int32)
    mask = np.ones(shape, np.int32)
    mask[..., -2:] = rng.integers(0, 2, size=(*shape[:-1], 2))
    return {
        "input_ids": ids * mask,
        "token_type_ids": np.zeros(shape, np.int32),
        "attention_mask": mask,
    }


def _batch(seed):
    rng = np.random.default_rng(seed)
    return {"query": _tok(rng, (B, 8)), "passages": _tok(rng, (B, M, 10)), "pairs": _tok(rng, (B, M, 12)),
            "labels": np.tile(np.array([1] + [0] * (M - 1), np.int32), (B, 1))}  # fmt: skip


def _nets_and_params():
    de = DualEncoderNet(tiny_config(), tie_towers=False, pooling="cls")
    ce = CrossEncoderNet(tiny_config(), "v2")
    b = _batch(0)
    flat = lambda g: {k: v.reshape(-1, v.shape[-1]) for k, v in g.items()}  # noqa: E731
    params = {
        "retriever": de.init(jax.random.PRNGKey(0), b["query"], flat(b["passages"]))["params"],
        "reranker": ce.init(jax.random.PRNGKey(1), flat(b["pairs"]))["params"],
    }
    return de, ce, jax.tree.map(np.asarray, params), flat


def _scores(de, ce, params, batch, flat):
    q, p = de.apply({"params": params["retriever"]}, batch["query"], flat(batch["passages"]))
    de_s = jnp.einsum("bh,bmh->bm", q, p.reshape(B, M, -1))
    ce_s = CrossEncoderNet.score(
        ce.apply({"params": params["reranker"]}, flat(batch["pairs"]))
    ).reshape(B, M)
    return de_s, ce_s


@pytest.mark.parametrize("variant", ["paper", "released_code"])
def test_joint_step_on_8_devices_equals_1_device_and_the_hand_loss(variant):
    de, ce, params, flat = _nets_and_params()
    want = losses.joint_loss(*_scores(de, ce, params, _batch(0), flat), variant)[0]
    results = []
    for mesh in (parallel.make_mesh(devices=jax.devices()[:1]), parallel.make_mesh()):
        tx = S.make_optimizer(1e-3, 10, 0.0, weight_decay=0.01, eps=1e-6)
        st = S.init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
        step = jit_step(joint_step_fn(de, ce, tx, S.rocketqa_schedule(1e-3, 10, 0), variant, dropout=False),
                        jax.tree.map(lambda x: x.sharding, st), mesh)  # fmt: skip
        seen = []
        for i in range(2):
            st, m = step(st, parallel.global_batch(_batch(i), mesh), jax.random.PRNGKey(0))
            seen.append(float(m["loss"]))
        results.append((jax.device_get(st.params), seen))
    (p1, l1), (p8, l8) = results
    np.testing.assert_allclose(l1[0], want, rtol=1e-5)
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p8, p1)


def test_released_code_variant_moves_the_reranker_by_its_own_loss_only():
    de, ce, params, flat = _nets_and_params()
    batch = _batch(3)
    tx = optax.sgd(1.0)
    step = jax.jit(
        joint_step_fn(de, ce, tx, optax.constant_schedule(1.0), "released_code", dropout=False)
    )
    new, _ = step(S.create_state(params, tx), batch, jax.random.PRNGKey(0))

    def ce_only(rp):
        return losses.listwise_cross_entropy(
            _scores(de, ce, {**params, "reranker": rp}, batch, flat)[1]
        )[0]

    g = jax.grad(ce_only)(params["reranker"])
    jax.tree.map(lambda n, o, gg: np.testing.assert_allclose(n, o - gg, rtol=1e-5, atol=1e-7),
                 new.params["reranker"], params["reranker"], g)  # fmt: skip
    paper = jax.jit(joint_step_fn(de, ce, tx, optax.constant_schedule(1.0), "paper", dropout=False))
    moved, _ = paper(S.create_state(params, tx), batch, jax.random.PRNGKey(0))
    diff = jax.tree.map(lambda n, o, gg: float(jnp.abs(n - (o - gg)).max()),
                        moved.params["reranker"], params["reranker"], g)  # fmt: skip
    assert (
        max(jax.tree.leaves(diff)) > 1e-6
    )  # in the paper's variant the KL pulls the re-ranker too

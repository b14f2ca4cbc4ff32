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


def test_cross_batch_negatives_in_the_joint_step_on_8_devices_equal_1_device():
    """The option that adds the retriever's contrastive loss over every list of the batch:
    its value is the hand-computed global-batch loss, and 8 devices give 1 device's step."""
    de, ce, params, flat = _nets_and_params()
    batch = _batch(5)
    q, p = de.apply({"params": params["retriever"]}, batch["query"], flat(batch["passages"]))
    contrastive = losses.contrastive_loss(q, p.reshape(B, M, -1))[0]
    want = losses.joint_loss(*_scores(de, ce, params, batch, flat))[0] + 0.5 * contrastive
    got = []
    for mesh in (parallel.make_mesh(devices=jax.devices()[:1]), parallel.make_mesh()):
        tx = optax.sgd(0.1)
        st = S.init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
        fn = joint_step_fn(de, ce, tx, optax.constant_schedule(0.1), dropout=False,
                           cross_batch_weight=0.5, mesh=mesh)  # fmt: skip
        step = jit_step(fn, jax.tree.map(lambda x: x.sharding, st), mesh)
        st, m = step(st, parallel.global_batch(batch, mesh), jax.random.PRNGKey(0))
        got.append((float(m["loss"]), float(m["cross_batch_loss"]), jax.device_get(st.params)))
    np.testing.assert_allclose(got[0][1], contrastive, rtol=1e-5)
    np.testing.assert_allclose([got[0][0], got[1][0]], [want, want], rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got[0][2], got[1][2]
    )


def test_static_distillation_leaves_the_reranker_as_it_was_and_keeps_no_moments_for_it():
    de, ce, params, _ = _nets_and_params()
    tx = S.make_joint_optimizer(1e-3, 10, train_reranker=False)
    st = S.create_state(params, tx)
    step = jax.jit(joint_step_fn(de, ce, tx, optax.constant_schedule(1e-3), train_reranker=False))
    for i in range(2):
        st, _ = step(st, _batch(i), jax.random.PRNGKey(0))
    jax.tree.map(
        np.testing.assert_array_equal, jax.device_get(st.params["reranker"]), params["reranker"]
    )
    assert not jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, b),
                                         jax.device_get(st.params["retriever"]), params["retriever"]))  # fmt: skip
    size = lambda t: sum(x.size for x in jax.tree.leaves(t) if x.ndim)  # noqa: E731  (no counters)
    assert size(st.opt_state) == 2 * size(params["retriever"])  # Adam's mu and nu, retriever only


def test_per_model_learning_rates_set_each_models_first_adam_step():
    """Adam's first step moves every weight by ±lr (m/√v = g/|g|): with a rate per model, the
    largest change in each model is its own rate."""
    rng = np.random.default_rng(0)
    params = {"retriever": {"w": rng.normal(size=(4, 3)).astype(np.float32)},
              "reranker": {"w": rng.normal(size=(5,)).astype(np.float32)}}  # fmt: skip
    grads = jax.tree.map(lambda x: np.float32(0.1) + np.abs(x), params)
    tx = S.make_joint_optimizer(1e-3, 10, retriever_learning_rate=1e-2, reranker_learning_rate=1e-4)
    updates, _ = tx.update(grads, tx.init(params), params)
    for name, lr in (("retriever", 1e-2), ("reranker", 1e-4)):
        np.testing.assert_allclose(np.abs(updates[name]["w"]), lr, rtol=1e-4)
    shared = S.make_joint_optimizer(1e-3, 10)
    updates, _ = shared.update(grads, shared.init(params), params)
    for name in params:
        np.testing.assert_allclose(np.abs(updates[name]["w"]), 1e-3, rtol=1e-4)


def test_a_v1_reranker_continues_as_its_log_odds_exactly():
    from rqa_jax.models import hf

    v1 = CrossEncoderNet(tiny_config(), "v1")
    pairs = _tok(np.random.default_rng(7), (6, 12))
    params = v1.init(jax.random.PRNGKey(2), pairs)["params"]
    logits = np.asarray(v1.apply({"params": params}, pairs))
    one = CrossEncoderNet(tiny_config(), "pooler_logit")
    converted = hf.v1_head_as_log_odds(jax.tree.map(np.asarray, params))
    got = np.asarray(one.apply({"params": converted}, pairs))[:, 0]
    np.testing.assert_allclose(got, logits[:, 1] - logits[:, 0], rtol=1e-5, atol=1e-6)
    # the same ranking as the v1 score, P(relevant)
    assert list(np.argsort(got)) == list(np.argsort(np.asarray(CrossEncoderNet.score(logits))))


@pytest.mark.parametrize("kind", ["per_model_rates", "frozen_reranker"])
def test_joint_optimizer_state_is_sharded_like_the_parameters(kind):
    """Per-model optimizers (optax.multi_transform) keep every moment split like its
    parameter under model-parallel rules, as the single optimizer does."""
    from flax import traverse_util
    from jax.sharding import PartitionSpec

    from rqa_jax.models import hf

    de, ce, _, flat = _nets_and_params()
    b = _batch(0)
    mesh = parallel.make_mesh(model=2)
    rules = parallel.RULE_SETS["model_parallel"]
    abstract = {"retriever": hf.abstract_params(de, b["query"], flat(b["passages"])),
                "reranker": hf.abstract_params(ce, flat(b["pairs"]))}  # fmt: skip
    shardings = parallel.param_shardings(abstract, mesh, rules)
    params = parallel.sharded_init(lambda: jax.tree.map(jnp.zeros_like, abstract), shardings)
    kw = {"per_model_rates": {"retriever_learning_rate": 1e-4, "reranker_learning_rate": 1e-5},
          "frozen_reranker": {"train_reranker": False}}[kind]  # fmt: skip
    state = S.init_state(params, S.make_joint_optimizer(1e-3, 10, weight_decay=0.01, **kw))
    specs = {
        jax.tree_util.keystr(k): v.sharding.spec
        for k, v in jax.tree_util.tree_leaves_with_path(params)
    }
    moments = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state):
        name = jax.tree_util.keystr(path)
        owner = next((p for p in specs if name.endswith(p)), None)
        if owner is not None and leaf.ndim:
            moments += 1
            assert leaf.sharding.spec == specs[owner], name
            assert leaf.addressable_shards[0].data.shape == leaf.sharding.shard_shape(leaf.shape)
    n = len(traverse_util.flatten_dict(params["retriever"]))
    m = len(traverse_util.flatten_dict(params["reranker"]))
    assert moments == 2 * (n + m if kind == "per_model_rates" else n)
    assert any(s != PartitionSpec() for s in specs.values())

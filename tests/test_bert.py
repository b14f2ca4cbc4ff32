"""The Flax encoder on tiny random configs: layouts, options and masks agree exactly."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from rqa_jax.models import hf
from rqa_jax.models.bert import (
    BertConfig,
    BertModel,
    UnsupportedModelError,
    stack_layer_params,
    unstack_layer_params,
)


def batch(seed=0, b=3, length=10, vocab=16):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(b, length)).astype(np.int32)
    mask = np.ones((b, length), np.int32)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    segments = np.zeros_like(ids)
    segments[:, 4:] = 1
    return jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(segments * mask)


def run(model, params, ids, mask, seg, **kw):
    return model.apply({"params": params}, ids, mask, seg, **kw)


def test_scanned_layers_equal_unrolled_layers():
    cfg = tiny_config()
    params = hf.init_params(BertModel(cfg))
    ids, mask, seg = batch()
    h_loop, p_loop = run(BertModel(cfg), params, ids, mask, seg)
    stacked = stack_layer_params(params, cfg.num_hidden_layers)
    assert stacked["encoder"]["layer"]["attention"]["self"]["query"]["kernel"].shape == (2, 32, 32)
    h_scan, p_scan = run(BertModel(cfg, scan_layers=True), stacked, ids, mask, seg)
    np.testing.assert_allclose(h_scan, h_loop, atol=1e-6)
    np.testing.assert_allclose(p_scan, p_loop, atol=1e-6)
    back = unstack_layer_params(stacked, cfg.num_hidden_layers)
    jax.tree.map(np.testing.assert_array_equal, back, params)


def test_scanned_init_has_the_stacked_shape_of_unrolled_init():
    cfg = tiny_config()
    ids = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(
        lambda: BertModel(cfg, scan_layers=True).init(jax.random.PRNGKey(0), ids)
    )
    unrolled = hf.init_params(BertModel(cfg))
    expected = jax.tree.map(np.shape, stack_layer_params(unrolled, cfg.num_hidden_layers))
    assert jax.tree.map(lambda s: s.shape, shapes["params"]) == expected


@pytest.mark.parametrize("scan", [False, True])
def test_remat_gives_the_same_outputs_and_gradients(scan):
    cfg = tiny_config()
    params = hf.init_params(BertModel(cfg))
    if scan:
        params = stack_layer_params(params, cfg.num_hidden_layers)
    ids, mask, seg = batch()
    # A random projection: sum(h**2) of LayerNorm outputs is nearly constant (tiny gradients).
    w = jax.random.normal(jax.random.PRNGKey(3), (*ids.shape, cfg.hidden_size))

    def loss(p, remat):
        h, _ = run(BertModel(cfg, remat=remat, scan_layers=scan), p, ids, mask, seg)
        return jnp.sum(h * w)

    g_plain = jax.grad(loss)(params, False)
    g_remat = jax.grad(loss)(params, True)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g_remat, g_plain
    )


def test_padding_does_not_change_real_positions():
    cfg = tiny_config()
    model = BertModel(cfg)
    params = hf.init_params(model)
    ids, mask, seg = batch()
    h, _ = run(model, params, ids, mask, seg)
    # Same rows with 6 more pad columns (and garbage ids under the padding).
    pad = 6
    ids2 = jnp.pad(ids, ((0, 0), (0, pad)), constant_values=9)
    h2, _ = run(
        model, params, ids2, jnp.pad(mask, ((0, 0), (0, pad))), jnp.pad(seg, ((0, 0), (0, pad)))
    )
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(
        np.asarray(h2)[:, : ids.shape[1]][real], np.asarray(h)[real], atol=1e-5
    )


def test_dropout_is_active_only_when_not_deterministic():
    cfg = tiny_config(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    model = BertModel(cfg)
    params = hf.init_params(model)
    ids, mask, seg = batch()
    h_det, _ = run(model, params, ids, mask, seg)
    h_det2, _ = run(model, params, ids, mask, seg, deterministic=True)
    np.testing.assert_array_equal(h_det, h_det2)
    rngs = {"dropout": jax.random.PRNGKey(1)}
    h_a, _ = model.apply({"params": params}, ids, mask, seg, deterministic=False, rngs=rngs)
    h_b, _ = model.apply({"params": params}, ids, mask, seg, deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(h_a, h_b)  # same key, same mask
    assert np.abs(np.asarray(h_a) - np.asarray(h_det)).max() > 1e-2


def test_training_attention_path_equals_the_fused_inference_path():
    """With dropout on, attention runs its own einsums (probabilities masked, context left
    per head for the output projection); at a rate too small to drop anything it must give
    the fused path's (jax.nn.dot_product_attention) outputs and gradients."""
    cfg = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=1e-9)
    model = BertModel(cfg)
    params = hf.init_params(model)
    ids, mask, seg = batch()
    rngs = {"dropout": jax.random.PRNGKey(1)}

    def loss(p, deterministic):
        h, _ = model.apply({"params": p}, ids, mask, seg, deterministic=deterministic, rngs=rngs)
        return jnp.sum(jnp.where(mask[..., None] > 0, h, 0.0) ** 2), h

    (l_fused, h_fused), g_fused = jax.value_and_grad(loss, has_aux=True)(params, True)
    (l_train, h_train), g_train = jax.value_and_grad(loss, has_aux=True)(params, False)
    real = np.asarray(mask) > 0
    np.testing.assert_allclose(np.asarray(h_train)[real], np.asarray(h_fused)[real], atol=2e-6)
    np.testing.assert_allclose(float(l_train), float(l_fused), rtol=1e-6)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_fused))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6 * scale), g_train, g_fused)


def test_ernie_options_task_embeddings_and_relu():
    cfg = tiny_config(model_type="ernie", use_task_id=True, hidden_act="relu", layer_norm_eps=1e-5)
    model = BertModel(cfg)
    params = hf.init_params(model)
    assert params["embeddings"]["task_type_embeddings"]["embedding"].shape == (3, 32)
    ids, mask, seg = batch()
    h0, _ = model.apply({"params": params}, ids, mask, seg, jnp.zeros_like(ids))
    h1, _ = model.apply({"params": params}, ids, mask, seg, jnp.ones_like(ids))
    assert np.abs(np.asarray(h0) - np.asarray(h1)).max() > 1e-3  # task type matters


def test_bfloat16_compute_keeps_float32_params_and_stays_close():
    cfg = tiny_config()
    params = hf.init_params(BertModel(cfg))
    ids, mask, seg = batch()
    h32, _ = run(BertModel(cfg), params, ids, mask, seg)
    h16, _ = run(BertModel(cfg, dtype=jnp.bfloat16), params, ids, mask, seg)
    assert h16.dtype == jnp.bfloat16
    assert jax.tree.leaves(params)[0].dtype == np.float32
    # Post-LN outputs have unit scale; bf16 keeps ~3 significant digits.
    assert np.abs(np.asarray(h16, np.float32) - np.asarray(h32)).max() < 0.05


def test_unsupported_architectures_are_refused():
    with pytest.raises(UnsupportedModelError, match="model_type 'roberta'"):
        BertConfig.from_hf_dict({"model_type": "roberta"}, source="x/config.json")
    with pytest.raises(UnsupportedModelError, match="hidden_act"):
        BertConfig.from_hf_dict({"model_type": "bert", "hidden_act": "swish"})
    with pytest.raises(UnsupportedModelError, match="position_embedding_type"):
        BertConfig.from_hf_dict({"position_embedding_type": "relative_key"})


def test_param_names_match_hf_bert_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel as TorchBert

    cfg = tiny_config()
    torch.manual_seed(0)
    torch_keys = set(TorchBert(HFBertConfig(**cfg.to_hf_dict())).state_dict())
    ours = set(hf.params_to_state_dict(hf.init_params(BertModel(cfg))))
    assert ours == torch_keys - {"embeddings.position_ids"}


def test_module_names_follow_hf():
    assert isinstance(BertModel(tiny_config()), nn.Module)
    params = hf.init_params(BertModel(tiny_config()))
    assert set(params) == {"embeddings", "encoder", "pooler"}
    assert set(params["encoder"]["layer"]["0"]) == {"attention", "intermediate", "output"}


def test_ernie_config_without_layer_norm_eps_gets_ernies_1e_5_with_a_warning():
    from rqa_jax.models.bert import BertConfig

    base = {"model_type": "ernie", "hidden_size": 32, "num_attention_heads": 2, "vocab_size": 50}
    with pytest.warns(UserWarning, match="without layer_norm_eps: using ERNIE's 1e-5"):
        assert BertConfig.from_hf_dict(base).layer_norm_eps == 1e-5
    assert BertConfig.from_hf_dict({**base, "layer_norm_eps": 1e-12}).layer_norm_eps == 1e-12
    assert BertConfig.from_hf_dict({**base, "model_type": "bert"}).layer_norm_eps == 1e-12

"""Dual-encoder training: optimizer details, sharded step equal to single-device step,
preemption + resume equal to an uninterrupted run, and the demo config improving dev MRR."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny_config
from jax.sharding import PartitionSpec

from configs import common, demo_dual
from rqa_jax import parallel
from rqa_jax.models import hf
from rqa_jax.models.towers import DualEncoderNet
from rqa_jax.train import state as S
from rqa_jax.train.loop import train
from rqa_jax.train.steps import dual_step_fn, jit_step


def test_rocketqa_schedule_by_hand():
    sched = S.rocketqa_schedule(1e-3, total_steps=10, warmup_steps=2)
    got = [float(sched(jnp.array(t))) for t in range(11)]
    want = [0.0, 5e-4] + [1e-3 * (1 - t / 10) for t in range(2, 11)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_no_warmup_means_a_constant_rate_as_released_optimization_py():
    sched = S.rocketqa_schedule(1e-5, total_steps=10, warmup_steps=0)
    np.testing.assert_allclose([float(sched(jnp.array(t))) for t in (0, 5, 9, 10)], [1e-5] * 4)
    tx = S.make_optimizer(1e-5, total_steps=10, warmup_proportion=0.0)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    for _ in range(9):  # the last step of the run moves the weights as much as the first
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(updates["w"], -1e-5, rtol=1e-4)


@pytest.mark.parametrize("rule_set", list(parallel.RULE_SETS))
def test_optimizer_state_is_sharded_like_the_parameters(rule_set):
    from flax import traverse_util

    rules = parallel.RULE_SETS[rule_set]
    mesh = parallel.make_mesh(model=2)
    net = DualEncoderNet(tiny_config(), pooling="cls")
    b = _batch(2, 1)
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in b["passages"].items()}
    shardings = parallel.param_shardings(hf.abstract_params(net, b["query"], flat), mesh, rules)
    params = parallel.sharded_init(
        lambda: net.init(jax.random.PRNGKey(0), b["query"], flat)["params"], shardings
    )
    state = S.init_state(params, S.make_optimizer(1e-3, 10, weight_decay=0.01))
    want = traverse_util.flatten_dict(jax.tree.map(lambda x: x.sharding.spec, params))
    adam = state.opt_state[1][0]  # clip → (adam moments, decay mask, schedule)
    for moments in (adam.mu, adam.nu):
        assert traverse_util.flatten_dict(jax.tree.map(lambda x: x.sharding.spec, moments)) == want
        for path, x in traverse_util.flatten_dict(moments).items():  # memory really split
            assert x.addressable_shards[0].data.shape == x.sharding.shard_shape(x.shape), path
    assert any(s != PartitionSpec() for s in want.values()) == (rule_set == "model_parallel")
    assert adam.count.sharding.spec == PartitionSpec()


def test_weight_decay_is_decoupled_and_skips_layernorm_and_bias():
    params = {
        "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
        "LayerNorm": {"scale": jnp.ones(2)},
    }
    assert S.decay_mask(params) == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm": {"scale": False},
    }
    tx = S.make_optimizer(0.1, total_steps=100, warmup_proportion=0.0, weight_decay=0.5)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    # zero gradients: Adam's step is 0, only decay moves the kernel: p -= wd * lr * p
    np.testing.assert_allclose(new["dense"]["kernel"], 1 - 0.5 * 0.1, rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["bias"], 1.0)
    np.testing.assert_allclose(new["LayerNorm"]["scale"], 1.0)


def _batch(b, k, lq=8, lp=12, vocab=16, seed=0):
    rng = np.random.default_rng(seed)

    def tok(shape):
        ids = rng.integers(5, vocab, size=shape).astype(np.int32)
        mask = np.ones(shape, np.int32)
        mask[..., -3:] = rng.integers(0, 2, size=(*shape[:-1], 3))
        return {
            "input_ids": ids * mask,
            "token_type_ids": np.zeros(shape, np.int32),
            "attention_mask": mask,
        }

    return {"query": tok((b, lq)), "passages": tok((b, 1 + k, lp))}


def _run_steps(mesh, rules, n_steps=2, tie=False, dropout=False):
    cfg = tiny_config()
    net = DualEncoderNet(cfg, tie_towers=tie, pooling="cls")
    batch = _batch(16, 1)
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in batch["passages"].items()}
    abstract = hf.abstract_params(net, batch["query"], flat)
    shardings = parallel.param_shardings(abstract, mesh, rules)
    params = parallel.sharded_init(
        lambda: net.init(jax.random.PRNGKey(0), batch["query"], flat)["params"], shardings
    )
    # eps 1e-6 (not Paddle's 1e-8): Adam turns rounding-noise gradients into ±eps-scaled
    # steps whose sign depends on the layout; a larger eps keeps those below the tolerance
    tx = S.make_optimizer(1e-3, total_steps=10, warmup_proportion=0.0, eps=1e-6)
    state = S.init_state(params, tx)
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    sched = S.rocketqa_schedule(1e-3, 10, 0)
    step = jit_step(dual_step_fn(net, tx, mesh, sched, dropout=dropout), state_shardings, mesh)
    losses = []
    for i in range(n_steps):
        state, metrics = step(
            state, parallel.global_batch(_batch(16, 1, seed=i), mesh), jax.random.PRNGKey(0)
        )
        losses.append(float(metrics["loss"]))
    return jax.device_get(state.params), losses, state


@pytest.mark.parametrize("dropout", [False, True], ids=["no_dropout", "dropout"])
def test_step_on_8_devices_equals_step_on_1_device(dropout):
    """With dropout on too: each element's mask is a hash of its global index, so the
    8 shards draw exactly the masks of the unsharded batch."""
    one_mesh = parallel.make_mesh(devices=jax.devices()[:1])
    p1, l1, _ = _run_steps(one_mesh, parallel.REPLICATED_RULES, dropout=dropout)
    p8, l8, _ = _run_steps(parallel.make_mesh(), parallel.REPLICATED_RULES, dropout=dropout)
    if dropout:  # and it is on: the loss is not the dropout-free one
        _, plain, _ = _run_steps(one_mesh, parallel.REPLICATED_RULES, n_steps=1)
        assert abs(l1[0] - plain[0]) > 1e-2, (l1, plain)
    np.testing.assert_allclose(l8, l1, rtol=1e-5)
    # Updates are lr-sized (1e-3); where a gradient is rounding noise (~1e-9) Adam still
    # normalises it to a ~1e-6 step whose sign depends on summation order: atol 1e-5.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p8, p1)


@pytest.mark.parametrize("dropout", [False, True], ids=["no_dropout", "dropout"])
def test_model_parallel_rules_shard_matrices_and_give_the_same_step(dropout):
    """With dropout on, the training attention path contracts the per-head context with the
    row-sharded output kernel reshaped to [heads, head dim, hidden]."""
    mesh = parallel.make_mesh(model=2)  # 4 data x 2 model
    p_mp, l_mp, state = _run_steps(mesh, parallel.MODEL_PARALLEL_RULES, dropout=dropout)
    q = state.params["query_encoder"]["encoder"]["layer"]["0"]["attention"]["self"]["query"][
        "kernel"
    ]
    assert q.sharding.spec == PartitionSpec(None, "model")
    assert q.addressable_shards[0].data.shape == (32, 16)
    one_mesh = parallel.make_mesh(devices=jax.devices()[:1])
    p1, l1, _ = _run_steps(one_mesh, parallel.REPLICATED_RULES, dropout=dropout)
    np.testing.assert_allclose(l_mp, l1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), p_mp, p1)


def tiny_run_config(minilm_dir, steps=6):
    c = common.get_dual_config()
    c.model_dir = ""
    c.tokenizer_dir = str(minilm_dir)
    c.model_config = tiny_config(vocab_size=30522, max_position_embeddings=64).__dict__
    c.tie_towers = False
    c.q_max_len, c.p_max_len = 16, 24
    c.data.source = "sample"
    c.data.dev_max_queries = 16
    c.train_batch_size, c.num_negatives = 8, 1
    c.learning_rate, c.num_train_steps, c.num_epochs = 1e-3, steps, 0
    c.log_every, c.eval_every, c.checkpoint_every, c.eval_at_start = 1, 0, 2, False
    c.dropout = True  # dropout rngs must also resume exactly
    return c


def metrics_lines(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_preempted_run_resumes_to_the_uninterrupted_result(minilm_dir, tmp_path):
    config = tiny_run_config(minilm_dir)
    full = train(config, tmp_path / "full")
    assert full["status"] == "completed" and full["step"] == 6

    def preempt(step, _):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    first = train(config, tmp_path / "split", hooks=[preempt])
    assert first["status"] == "preempted" and first["step"] == 3
    second = train(config, tmp_path / "split")
    assert second["status"] == "completed" and second["step"] == 6
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(second["state"].params),
                 jax.device_get(full["state"].params))  # fmt: skip
    want, got = metrics_lines(tmp_path / "full"), metrics_lines(tmp_path / "split")
    assert [m["step"] for m in got] == [1, 2, 3, 4, 5, 6]
    assert [m["loss"] for m in got] == [m["loss"] for m in want]
    assert [m["batch_crc"] for m in got] == [m["batch_crc"] for m in want]  # same data, in order
    assert len({m["batch_crc"] for m in want}) == 6  # ... and no batch twice


def test_corrupted_checkpoint_falls_back_to_the_previous(minilm_dir, tmp_path, capsys):
    config = tiny_run_config(minilm_dir, steps=4)
    config.keep_checkpoints = 5
    train(config, tmp_path)
    newest = tmp_path / "checkpoints" / "4" / "state"
    assert newest.is_dir()
    for f in newest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    config.num_train_steps = 5
    result = train(config, tmp_path)
    out = capsys.readouterr().out
    assert "checkpoint step 4 failed to restore" in out and "resumed from step 2" in out
    assert result["status"] == "completed" and result["step"] == 5
    assert (tmp_path / "corrupted_checkpoints" / "4").is_dir()  # kept for inspection, not deleted


@pytest.mark.slow
def test_demo_config_improves_dev_mrr(tmp_path):
    config = demo_dual.get_config("runlocal")
    result = train(config, tmp_path)
    lines = metrics_lines(tmp_path)
    before, after = lines[0]["dev_mrr@10"], result["metrics"]["dev_mrr@10"]
    assert lines[0]["step"] == 0 and after > before, (before, after)
    # the export loads as a model and encodes
    import rqa_jax

    model = rqa_jax.load_model(result["metrics"]["export"])
    assert model.encode_query(["who fronts the band"]).shape == (1, 384)


def test_checkpoints_of_another_model_are_refused_not_discarded(minilm_dir, tmp_path):
    config = tiny_run_config(minilm_dir, steps=2)
    train(config, tmp_path)
    config.tie_towers = True
    with pytest.raises(ValueError, match=r"another model .*tie_towers=False"):
        train(config, tmp_path)
    assert (tmp_path / "checkpoints" / "2").is_dir()


def test_a_parameter_tree_change_is_refused_even_without_a_known_key(
    minilm_dir, tmp_path, monkeypatch
):
    """A tree that no longer fits is another model, never a corrupted checkpoint to set aside."""
    from rqa_jax.train import loop

    config = tiny_run_config(minilm_dir, steps=2)
    train(config, tmp_path)
    monkeypatch.setattr(loop, "SHAPE_KEYS", ())  # as if the changing key were not listed
    config.tie_towers = True
    with pytest.raises(
        ValueError, match=r"another model's parameters \(it has no parameter \['encoder'\]"
    ):
        train(config, tmp_path)
    assert (tmp_path / "checkpoints" / "2").is_dir()
    assert not (tmp_path / "corrupted_checkpoints").exists()


def test_rqa_train_cli_overrides_and_bad_keys(minilm_dir, tmp_path, capsys):
    from rqa_jax.cli import main as rqa

    argv = ["train", "--config", "configs/demo_dual.py:runlocal", "--workdir", str(tmp_path)]
    assert rqa([*argv, "--config.q_max_lenn=8"]) == 2  # a typo is an error, not ignored
    assert "q_max_lenn" in capsys.readouterr().err
    overrides = ["--config.num_train_steps=1", "--config.eval_every=0", "--config.train_batch_size=8",
                 "--config.data.dev_max_queries=4"]  # fmt: skip
    assert rqa([*argv, *overrides]) == 0
    saved = json.loads(next((tmp_path / "checkpoints" / "1" / "config").glob("*")).read_text())
    assert saved["num_train_steps"] == 1 and saved["train_batch_size"] == 8


def test_bfloat16_training_keeps_float32_state_and_tracks_the_float32_loss(minilm_dir, tmp_path):
    """Mixed precision: bf16 compute, float32 parameters, Adam moments and loss; the loss curve
    stays within 0.02 of float32's here (benchmarks/bf16.py: within 0.0016, 2.4% relative, on
    MiniLM over 50 steps of the demo config)."""
    curves = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_run_config(minilm_dir, steps=8)
        config.dtype, config.dropout = dtype, False
        out = train(config, tmp_path / dtype)
        leaves = jax.tree.leaves((out["state"].params, out["state"].opt_state))
        floats = {np.dtype(x.dtype) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {np.dtype(np.float32)}
        curves[dtype] = np.array([m["loss"] for m in metrics_lines(tmp_path / dtype)])
    assert not np.array_equal(curves["float32"], curves["bfloat16"])  # bf16 really computed
    np.testing.assert_allclose(curves["bfloat16"], curves["float32"], atol=0.02, rtol=0)

"""Gradient cache: the dual and joint steps computed chunk by chunk give the plain step's
loss and update (8 devices, cross-batch negatives on, dropout off), with the activation
memory of a chunk; `rqa train --config.grad_cache_chunk=N` runs."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from conftest import tiny_config
from test_joint_step import _batch as joint_batch
from test_joint_step import _nets_and_params

from rqa_jax import parallel
from rqa_jax.models.towers import DualEncoderNet
from rqa_jax.train import grad_cache
from rqa_jax.train import state as S
from rqa_jax.train.steps import dual_step_fn, jit_step, joint_step_fn

CONFIG = (
    str(Path(__file__).resolve().parent.parent / "configs" / "rocketqa_v1_marco.py") + ":runlocal"
)


def test_chunks_take_rows_from_every_device_and_come_back_in_order():
    b, n, w = 16, 2, 4  # 4 rows per device, chunks of 8 = 2 rows of each device
    x = np.arange(b * 3).reshape(b, 3)
    chunks = np.asarray(grad_cache.to_chunks(x, n, w))
    assert chunks.shape == (n, b // n, 3)
    assert [r // 4 for r in chunks[0][:, 0] // 3] == [0, 0, 1, 1, 2, 2, 3, 3]  # device of each row
    np.testing.assert_array_equal(grad_cache.from_chunks(chunks, w), x)
    with pytest.raises(ValueError, match="multiple of the 8 'data' devices"):
        grad_cache.check_chunk(32, 4, 8)


def _dual_batch(seed, b=16, k=1, lq=8, lp=12):
    rng = np.random.default_rng(seed)

    def tok(shape):
        ids = rng.integers(5, 16, size=shape).astype(np.int32)
        mask = np.ones(shape, np.int32)
        mask[..., -2:] = rng.integers(0, 2, size=(*shape[:-1], 2))
        return {
            "input_ids": ids * mask,
            "token_type_ids": np.zeros(shape, np.int32),
            "attention_mask": mask,
        }

    return {"query": tok((b, lq)), "passages": tok((b, 1 + k, lp))}


def _run(make_step, params, batches, mesh):
    tx = S.make_optimizer(1e-3, 10, 0.0, weight_decay=0.01, eps=1e-6)
    st = S.init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
    step = jit_step(make_step(tx, mesh), jax.tree.map(lambda x: x.sharding, st), mesh)
    seen = []
    for b in batches:
        st, m = step(st, parallel.global_batch(b, mesh), jax.random.PRNGKey(0))
        seen.append(float(m["loss"]))
    return seen, jax.device_get(st.params)


def test_gradient_cached_dual_step_equals_the_plain_step_on_8_devices():
    net = DualEncoderNet(tiny_config(), tie_towers=False, pooling="cls")
    b = _dual_batch(0)
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in b["passages"].items()}
    params = jax.tree.map(np.asarray, net.init(jax.random.PRNGKey(0), b["query"], flat)["params"])
    mesh = parallel.make_mesh()
    batches = [_dual_batch(i) for i in range(3)]
    results = {}
    for chunk in (0, 8):
        results[chunk] = _run(
            lambda tx, mesh, c=chunk: dual_step_fn(net, tx, mesh, S.rocketqa_schedule(1e-3, 10, 0),
                                                   dropout=False, grad_cache_chunk=c),
            params, batches, mesh,
        )  # fmt: skip
    (plain_loss, plain), (cached_loss, cached) = results[0], results[8]
    np.testing.assert_allclose(cached_loss, plain_loss, rtol=1e-5)
    jax.tree.map(lambda a, c: np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5), plain, cached)


def test_gradient_cached_joint_step_equals_the_plain_step_with_cross_batch_negatives():
    de, ce, params, _ = _nets_and_params()
    mesh = parallel.make_mesh()
    results = {}
    for chunk in (0, 8):  # the test's batch has 8 lists: one chunk spread over 8 devices...
        results[chunk] = _run(
            lambda tx, mesh, c=chunk: joint_step_fn(de, ce, tx, optax.constant_schedule(1e-3), dropout=False,
                                                    cross_batch_weight=0.5, mesh=mesh, grad_cache_chunk=c),
            params, [joint_batch(i) for i in range(2)], mesh,
        )  # fmt: skip
    np.testing.assert_allclose(results[8][0], results[0][0], rtol=1e-5)
    jax.tree.map(
        lambda a, c: np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5),
        results[0][1],
        results[8][1],
    )
    one = parallel.make_mesh(devices=jax.devices()[:1])  # ...and 4 chunks of 2 on one device
    four = _run(
        lambda tx, mesh: joint_step_fn(de, ce, tx, optax.constant_schedule(1e-3), dropout=False,
                                       cross_batch_weight=0.5, mesh=mesh, grad_cache_chunk=2),
        params, [joint_batch(i) for i in range(2)], one,
    )  # fmt: skip
    np.testing.assert_allclose(four[0], results[0][0], rtol=1e-5)
    jax.tree.map(
        lambda a, c: np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-5), results[0][1], four[1]
    )


def test_activation_memory_follows_the_chunk_not_the_batch():
    """XLA's own buffer plan for the compiled step: the temporaries of a 64-query batch in
    chunks of 8 are a fraction of the plain step's."""
    net = DualEncoderNet(tiny_config(max_position_embeddings=128), tie_towers=True, pooling="cls")
    b = _dual_batch(0, b=64, lq=32, lp=96)
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in b["passages"].items()}
    params = net.init(jax.random.PRNGKey(0), b["query"], flat)["params"]
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    temp = {}
    for chunk in (0, 8):
        tx = S.make_optimizer(1e-3, 10)
        st = S.init_state(jax.device_put(params, parallel.replicated(mesh)), tx)
        step = jit_step(dual_step_fn(net, tx, mesh, S.rocketqa_schedule(1e-3, 10, 0), grad_cache_chunk=chunk),
                        jax.tree.map(lambda x: x.sharding, st), mesh)  # fmt: skip
        compiled = step.lower(st, parallel.global_batch(b, mesh), jax.random.PRNGKey(0)).compile()
        temp[chunk] = compiled.memory_analysis().temp_size_in_bytes
    assert temp[8] < temp[0] / 3, temp


def test_rqa_train_takes_grad_cache_chunk_from_the_command_line(tmp_path, capsys):
    from rqa_jax.cli import main

    code = main(["train", "--config", CONFIG, "--workdir", str(tmp_path),
                 "--config.train_batch_size=16", "--config.grad_cache_chunk=8", "--config.num_train_steps=2",
                 "--config.eval_every=0"])  # fmt: skip
    assert code == 0 and "completed at step 2" in capsys.readouterr().out
    code = main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "b"),
                 "--config.train_batch_size=16", "--config.grad_cache_chunk=6", "--config.num_train_steps=2"])  # fmt: skip
    assert code == 1 and "grad_cache_chunk=6" in capsys.readouterr().err

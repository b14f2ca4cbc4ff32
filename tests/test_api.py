"""The Python API on the real MiniLM model: numpy outputs, settings from the model dir,
order-preserving bucketed batches, and sharded encoding equal to single-device encoding."""

import jax
import numpy as np
import pytest

import rqa_jax
from rqa_jax import parallel
from rqa_jax.inference import BatchRunner
from rqa_jax.models.settings import EncoderSettings, resolve_settings

TEXTS = [
    "a",
    "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris.",
    "Chlorophyll absorbs blue and red light.",
    "why is the sky blue",
    "Mitochondria produce most of a cell's supply of ATP through cellular respiration, and "
    "they have their own DNA inherited from the mother in most animals, " * 3,
    "how many keys on a piano",
    "JAX compiles numerical Python with XLA.",
]


@pytest.fixture(scope="module")
def model(minilm_dir):
    return rqa_jax.load_model(minilm_dir, batch_size=4)


def test_minilm_dir_settings_come_from_sentence_transformers_metadata(minilm_dir):
    assert resolve_settings(minilm_dir) == EncoderSettings(
        pooling="mean", normalize=True, q_max_len=256, p_max_len=256
    )
    assert resolve_settings(minilm_dir, pooling="cls", p_max_len=64).pooling == "cls"
    assert resolve_settings(None) == EncoderSettings()  # RocketQA's: cls, 32 / 128


def test_encode_returns_numpy_in_input_order(model):
    q = model.encode_query(TEXTS)
    assert isinstance(q, np.ndarray) and q.shape == (len(TEXTS), 384) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([model.encode_query([t])[0] for t in TEXTS])
    np.testing.assert_allclose(q, one_by_one, atol=1e-5)


def test_matching_is_the_pairwise_inner_product(model):
    queries, paras = TEXTS[:3], TEXTS[3:6]
    scores = model.matching(queries, paras)
    expected = np.sum(model.encode_query(queries) * model.encode_para(paras), axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_titles_change_the_passage_encoding_and_dash_means_none(model):
    plain = model.encode_para(["The piano has 88 keys."])
    dash = model.encode_para(["The piano has 88 keys."], titles=["-"])
    titled = model.encode_para(["The piano has 88 keys."], titles=["Piano"])
    np.testing.assert_array_equal(plain, dash)
    assert np.abs(titled - plain).max() > 1e-3


def test_string_instead_of_list_is_an_error(model):
    with pytest.raises(TypeError, match="not a single string"):
        model.encode_query("what is a dual encoder")
    with pytest.raises(TypeError, match="not a single string"):
        model.matching("q", "p")


def test_sharded_over_8_devices_equals_one_device(model):
    enc = model.tokenize_paras(TEXTS)
    net = model.net

    def fn(p, b):
        return net.apply({"params": p}, b, method=type(net).encode_passage)

    params = jax.device_get(model.runner.params)
    one = BatchRunner(
        params, {"p": fn}, batch_size=3, mesh=parallel.make_mesh(devices=jax.devices()[:1])
    )
    eight = BatchRunner(params, {"p": fn}, batch_size=3, mesh=parallel.make_mesh())
    assert eight.batch_size == 8  # rounded up to a multiple of the data axis
    np.testing.assert_allclose(eight.run("p", enc), one.run("p", enc), atol=1e-5)


def test_bfloat16_model_stays_close_to_float32(minilm_dir, model):
    bf16 = rqa_jax.load_model(minilm_dir, dtype="bfloat16")
    e16, e32 = bf16.encode_para(TEXTS), model.encode_para(TEXTS)
    assert np.abs(e16 - e32).max() < 5e-3
    assert (e16 * e32).sum(1).min() > 0.999


def test_nothing_inside_the_library_imports_the_face():
    """api.py is a thin layer over rqa_jax.inference: index/, train/, pipelines/ and the CLI
    build on the core, so the face can change without touching them."""
    import re
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "rqa_jax"
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name not in ("api.py", "__init__.py") or path.parent != package
        if re.search(
            r"^\s*(from rqa_jax\.api import|from rqa_jax import api|import rqa_jax\.api)",
            path.read_text(),
            re.M,
        )
    ]
    assert offenders == []

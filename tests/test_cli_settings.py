"""A model dir's saved settings win unless a flag overrides them: the re-ranker's max length
(rqa_jax.json, else the tokenizer's model_max_length) and query cut, and the query pooling /
normalisation `rqa search` must share with the corpus it searches."""

import json

import jax
import numpy as np
import pytest
from conftest import tiny_config

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats
from rqa_jax.inference import load_cross_encoder, load_dual_encoder
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel
from rqa_jax.models.towers import CrossEncoderNet

QUERY = "what is a dog"
# P1/P2 share their first 40 passage tokens, P3/P4 their first 70: at 64 pair tokens (57 for
# the passage) only P1/P2 differ, at 32 none, at 160 both pairs.
PASSAGES = {
    "p1": "dog " * 40 + "cat " * 100,
    "p2": "dog " * 40 + "big " * 100,
    "p3": "dog " * 70 + "cat " * 100,
    "p4": "dog " * 70 + "big " * 100,
}


def cross_dir(path, tokenizer, max_length):
    cfg = tiny_config(max_position_embeddings=256)
    net = CrossEncoderNet(cfg, "pooler_logit")
    ids = np.zeros((1, 8), np.int32)
    params = net.init(jax.random.PRNGKey(5), {"input_ids": ids, "attention_mask": ids + 1})[
        "params"
    ]
    # a larger head: score differences well above the run file's 6 decimals
    params = {**params, "classifier": {**params["classifier"], "kernel": params["classifier"]["kernel"] * 100}}  # fmt: skip
    return hf.export_cross_encoder(path, cfg, "pooler_logit", params, tokenizer, max_length)


@pytest.fixture
def rerank_inputs(tmp_path):
    (tmp_path / "q.tsv").write_text(f"q1\t{QUERY}\n")
    (tmp_path / "c.tsv").write_text("".join(f"{p}\t{t.strip()}\n" for p, t in PASSAGES.items()))
    formats.write_run(tmp_path / "in.run", {"q1": [(p, 1.0) for p in PASSAGES]})
    return tmp_path


def _rerank(model, d, *extra):
    out = d / f"out{len(list(d.glob('out*')))}.run"
    argv = ["rerank", "--model", str(model), "--queries", str(d / "q.tsv"), "--corpus", str(d / "c.tsv")]  # fmt: skip
    assert rqa([*argv, "--run", str(d / "in.run"), "--output", str(out), "--no-progress", *extra]) == 0  # fmt: skip
    return dict(formats.read_run(out)["q1"])


def _same(scores, a, b):
    return abs(scores[a] - scores[b]) < 2e-6


def test_rerank_uses_the_exported_max_length_and_a_flag_overrides_it(
    tmp_path, tiny_tokenizer, rerank_inputs
):
    model = cross_dir(tmp_path / "ce", tiny_tokenizer, 64)
    assert json.loads((model / "rqa_jax.json").read_text())["max_length"] == 64
    scores = _rerank(model, rerank_inputs)
    assert not _same(scores, "p1", "p2") and _same(scores, "p3", "p4")  # cut at 64 tokens
    want = load_cross_encoder(model, max_len=64).matching([QUERY] * 4, [t.strip() for t in PASSAGES.values()])  # fmt: skip
    np.testing.assert_allclose([scores[p] for p in PASSAGES], want, atol=2e-6)
    scores = _rerank(model, rerank_inputs, "--max-length", "32")
    assert _same(scores, "p1", "p2") and _same(scores, "p3", "p4")  # cut at 32
    scores = _rerank(model, rerank_inputs, "--max-length", "160")
    assert not _same(scores, "p3", "p4")


def test_rerank_without_rqa_json_takes_the_tokenizers_max_length(
    tmp_path, tiny_tokenizer, rerank_inputs
):
    """A cross-encoder dir as sentence-transformers writes it (no rqa_jax.json): its
    tokenizer's model_max_length is the length it was trained with, not 160."""
    model = cross_dir(tmp_path / "ce", tiny_tokenizer, 64)
    (model / "rqa_jax.json").unlink()
    tok_cfg = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps(tok_cfg | {"model_max_length": 64}))
    assert load_cross_encoder(model).max_len == 64
    scores = _rerank(model, rerank_inputs)
    assert not _same(scores, "p1", "p2") and _same(scores, "p3", "p4")
    # a tokenizer without a real length (1e30) or past the position embeddings: 160
    (model / "tokenizer_config.json").write_text(json.dumps(tok_cfg | {"model_max_length": 4096}))
    assert load_cross_encoder(model).max_len == 160


def test_rerank_query_cut_flag_overrides_the_model_dirs(tmp_path, tiny_tokenizer, rerank_inputs):
    model = cross_dir(tmp_path / "ce", tiny_tokenizer, 64)
    long_query = "what is a big dog " * 5
    (rerank_inputs / "q.tsv").write_text(f"q1\t{long_query}\n")
    paras = [t.strip() for t in PASSAGES.values()]
    default = _rerank(model, rerank_inputs)
    cut = _rerank(model, rerank_inputs, "--q-max-len", "4")
    want = load_cross_encoder(model, q_max_len=4).matching([long_query] * 4, paras)
    np.testing.assert_allclose([cut[p] for p in PASSAGES], want, atol=2e-6)
    assert not _same({"a": default["p1"], "b": cut["p1"]}, "a", "b")


def _dual_dir(path, tokenizer):
    """A tower whose own settings are mean pooling, normalised (sentence-transformers files)."""
    cfg = tiny_config()
    params = hf.init_params(BertModel(cfg), seed=2)
    return hf.export_bert(path, cfg, params, tokenizer, "mean", True, 32)


def test_search_encodes_queries_as_the_indexed_passages_were(tmp_path, tiny_tokenizer, capsys):
    """Passages encoded with --pooling cls --no-normalize: search's queries follow the index,
    not the model dir's mean/normalised default (the scores would mix two embeddings)."""
    model = _dual_dir(tmp_path / "de", tiny_tokenizer)
    paras = {"p1": "a big dog", "p2": "the small cats", "p3": "dog para title"}
    (tmp_path / "c.tsv").write_text("".join(f"{p}\t{t}\n" for p, t in paras.items()))
    (tmp_path / "q.tsv").write_text("q1\twhat is a dog\nq2\tbig cat\n")
    enc = ["encode", "--model", str(model), "--kind", "passage", "--input", str(tmp_path / "c.tsv")]
    assert rqa([*enc, "--output", str(tmp_path / "emb"), "--pooling", "cls", "--no-normalize", "--no-progress"]) == 0  # fmt: skip
    idx = ["index", "--embeddings", str(tmp_path / "emb"), "--output", str(tmp_path / "idx")]
    assert rqa([*idx, "--backend", "exact"]) == 0
    search = ["search", "--model", str(model), "--index", str(tmp_path / "idx"), "--queries", str(tmp_path / "q.tsv"), "--top-k", "3"]  # fmt: skip
    passages = np.load(tmp_path / "emb" / "embeddings.npy")

    def scores(run_file):
        run = formats.read_run(run_file)
        return np.array([[dict(run[q])[p] for p in paras] for q in ("q1", "q2")])

    assert rqa([*search, "--output", str(tmp_path / "a.run")]) == 0
    cls = load_dual_encoder(model, pooling="cls", normalize=False)
    want = cls.encode_query(["what is a dog", "big cat"]) @ passages.T
    np.testing.assert_allclose(scores(tmp_path / "a.run"), want, rtol=1e-5, atol=1e-5)
    # flags still override (with a warning: the corpus was encoded otherwise)
    assert rqa([*search, "--output", str(tmp_path / "b.run"), "--pooling", "mean", "--normalize"]) == 0  # fmt: skip
    assert (
        "--pooling gives mean, the index's passages were encoded with cls"
        in capsys.readouterr().err
    )
    mean = load_dual_encoder(model)
    want = mean.encode_query(["what is a dog", "big cat"]) @ passages.T
    np.testing.assert_allclose(scores(tmp_path / "b.run"), want, rtol=1e-5, atol=1e-5)

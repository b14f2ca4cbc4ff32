"""HF import/export: parity with transformers (torch) and sentence-transformers on the real
all-MiniLM-L6-v2 weights, round trips through AutoModel, and clear errors."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import AutoModel

from rqa_jax.data import tokenize
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel, UnsupportedModelError
from rqa_jax.models.towers import l2_normalize, pool

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Dense passage retrieval encodes questions and passages with two BERT towers.",
    "hi",
    "RocketQA trains the retriever with cross-batch negatives, denoised hard negatives and "
    "data augmentation, then a cross encoder re-ranks the top passages it retrieves.",
]


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    from rqa_jax.api import load_tokenizer

    config, params = hf.load_bert(minilm_dir)
    return config, params, load_tokenizer(minilm_dir)


def torch_hidden(model_dir, enc, **kwargs):
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(enc.input_ids, dtype=torch.long),
            attention_mask=torch.tensor(enc.attention_mask, dtype=torch.long),
            token_type_ids=torch.tensor(enc.token_type_ids, dtype=torch.long),
            **kwargs,
        )
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def ours(config, params, enc, **kw):
    hidden, pooled = BertModel(config, **kw).apply(
        {"params": params}, enc.input_ids, enc.attention_mask, enc.token_type_ids
    )
    return np.asarray(hidden, np.float32), np.asarray(pooled, np.float32)


def test_minilm_hidden_states_equal_torch_bert(minilm, minilm_dir):
    config, params, tok = minilm
    enc = tokenize.encode_queries(tok, SENTENCES, max_len=40)  # padded, lengths 3..35
    assert len(set(enc.lengths.tolist())) == len(SENTENCES)
    ref_h, ref_p = torch_hidden(minilm_dir, enc)
    h, p = ours(config, params, enc)
    real = enc.attention_mask.astype(bool)
    np.testing.assert_allclose(h[real], ref_h[real], atol=1e-4)
    np.testing.assert_allclose(p, ref_p, atol=1e-4)


def test_minilm_embeddings_equal_sentence_transformers(minilm, minilm_dir):
    from sentence_transformers import SentenceTransformer

    config, params, tok = minilm
    enc = tokenize.encode_queries(tok, SENTENCES, max_len=256)
    h, _ = ours(config, params, enc)
    emb = np.asarray(l2_normalize(pool(jnp.asarray(h), enc.attention_mask, "mean")))
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(emb, ref, atol=1e-5)


def test_bfloat16_compute_stays_within_tolerance_on_minilm(minilm):
    config, params, tok = minilm
    enc = tokenize.encode_queries(tok, SENTENCES, max_len=64)
    h32, _ = ours(config, params, enc)
    h16, _ = ours(config, params, enc, dtype=jnp.bfloat16)
    e32 = np.asarray(l2_normalize(pool(jnp.asarray(h32), enc.attention_mask, "mean")))
    e16 = np.asarray(l2_normalize(pool(jnp.asarray(h16), enc.attention_mask, "mean")))
    # Stated tolerance (README): normalised embeddings within 5e-3, cosine >= 0.999.
    assert np.abs(e16 - e32).max() < 5e-3
    assert (e16 * e32).sum(-1).min() > 0.999


def test_export_round_trip_through_automodel(minilm, minilm_dir, tmp_path):
    config, params, tok = minilm
    out = hf.export_bert(tmp_path / "export", config, params, tok, "mean", True, 256)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "modules.json"):
        assert (out / name).is_file(), name
    _, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    enc = tokenize.encode_queries(tok, SENTENCES, max_len=48)
    ref_h, ref_p = torch_hidden(out, enc)
    h, p = ours(config, params, enc)
    real = enc.attention_mask.astype(bool)
    np.testing.assert_allclose(h[real], ref_h[real], atol=1e-5)
    np.testing.assert_allclose(p, ref_p, atol=1e-5)
    # and our loader reads the export back bit for bit, with its pooling metadata
    config2, params2 = hf.load_bert(out)
    assert config2 == config
    for k, v in hf.params_to_state_dict(params2).items():
        np.testing.assert_array_equal(v, hf.params_to_state_dict(params)[k])
    assert "mean" in (out / "README.md").read_text()


def test_random_ernie_tower_round_trips(tiny_tokenizer, tmp_path):
    cfg = tiny_config(model_type="ernie", use_task_id=True, hidden_act="relu", layer_norm_eps=1e-5)
    params = hf.init_params(BertModel(cfg), seed=7)
    out = hf.export_bert(tmp_path / "ernie", cfg, params, tiny_tokenizer, "cls", False, 64)
    assert json.loads((out / "config.json").read_text())["model_type"] == "ernie"
    model, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert type(model).__name__ == "ErnieModel"
    assert not info["missing_keys"] and not info["unexpected_keys"]
    enc = tokenize.encode_passages(tiny_tokenizer, ["a big dog", "cat"], ["the title", "-"], 12)
    task = np.zeros_like(enc.input_ids)
    ref_h, ref_p = torch_hidden(out, enc, task_type_ids=torch.tensor(task, dtype=torch.long))
    h, p = ours(cfg, params, enc)
    real = enc.attention_mask.astype(bool)
    np.testing.assert_allclose(h[real], ref_h[real], atol=1e-5)
    np.testing.assert_allclose(p, ref_p, atol=1e-5)


def _torch_tiny(tmp_path, cls_name="BertForSequenceClassification", **kw):
    import transformers

    cfg = tiny_config()
    hf_cfg = transformers.BertConfig(**cfg.to_hf_dict(), **kw)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(hf_cfg).eval()
    return cfg, model


def test_prefixed_checkpoint_and_pytorch_bin_import(tmp_path, tiny_tokenizer):
    _, model = _torch_tiny(tmp_path, num_labels=2)
    st_dir, bin_dir = tmp_path / "st", tmp_path / "bin"
    model.save_pretrained(str(st_dir))  # keys 'bert.*' + 'classifier.*'
    bin_dir.mkdir()
    shutil.copy(st_dir / "config.json", bin_dir / "config.json")
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    _, from_st = hf.load_bert(st_dir)
    _, from_bin = hf.load_bert(bin_dir)
    a, b = hf.params_to_state_dict(from_st), hf.params_to_state_dict(from_bin)
    torch_state = model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], torch_state["bert." + k].numpy())


@pytest.mark.parametrize("num_labels", [2, 1])
def test_cross_encoder_scores_equal_torch_sequence_classifier(tmp_path, tiny_tokenizer, num_labels):
    from rqa_jax.api import load_model

    _, model = _torch_tiny(tmp_path, num_labels=num_labels)
    model.save_pretrained(str(tmp_path / "ce"))
    tiny_tokenizer.save_pretrained(str(tmp_path / "ce"))
    ce = load_model(tmp_path / "ce", max_len=16)
    assert ce.head == ("v1" if num_labels == 2 else "pooler_logit")
    queries, paras = ["what is a dog", "cat", "big cat"], ["a big dog", "the small cats", "dog"]
    enc = tokenize.encode_pairs(tiny_tokenizer, queries, paras, max_len=16)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(enc.input_ids, dtype=torch.long),
            attention_mask=torch.tensor(enc.attention_mask, dtype=torch.long),
            token_type_ids=torch.tensor(enc.token_type_ids, dtype=torch.long),
        ).logits
    ref = torch.softmax(logits, -1)[:, 1] if num_labels == 2 else logits[:, 0]
    np.testing.assert_allclose(ce.matching(queries, paras), ref.numpy(), atol=1e-5)


def test_missing_dir_and_files_are_clear_errors(tmp_path):
    with pytest.raises(hf.ModelDirError, match="does not exist"):
        hf.load_bert(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(hf.ModelDirError, match=r"no config\.json"):
        hf.load_bert(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(tiny_config().to_hf_dict()))
    with pytest.raises(hf.ModelDirError, match=r"model\.safetensors"):
        hf.load_bert(tmp_path / "empty")


def test_unsupported_architecture_dir_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(UnsupportedModelError, match=r"config.json: model_type 'roberta'"):
        hf.load_bert(tmp_path)


def test_checkpoint_that_does_not_fit_the_config_is_refused(tmp_path, minilm_dir):
    shutil.copy(minilm_dir / "model.safetensors", tmp_path / "model.safetensors")
    cfg = json.loads((minilm_dir / "config.json").read_text())
    cfg["hidden_size"], cfg["num_attention_heads"] = 768, 12
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hf.CheckpointMismatchError, match="has shape"):
        hf.load_bert(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(hf.CheckpointMismatchError, match="cannot read safetensors"):
        hf.load_bert(tmp_path)

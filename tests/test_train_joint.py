"""RocketQAv2's joint task through the shared loop: both models evaluated on dev during
training, both exported as HF dirs that score as the trained parameters do, resumed runs
equal to uninterrupted ones, and a checkpoint of another model refused."""

import json

import jax
import numpy as np
import pytest
from test_train_cross import small_sample
from transformers import BertTokenizerFast

from configs import rocketqa_v2_marco
from rqa_jax.inference import CrossEncoder, DualEncoder, load_cross_encoder, load_dual_encoder
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig
from rqa_jax.models.settings import EncoderSettings
from rqa_jax.models.towers import CrossEncoderNet
from rqa_jax.train import builders
from rqa_jax.train.loop import train


def _config(tmp_path, steps=6):
    small_sample(tmp_path)
    c = rocketqa_v2_marco.get_config("runlocal")
    c.data.source, c.data.dir = "marco", str(tmp_path / "data")
    c.data.train_run, c.data.dev_run = str(tmp_path / "train.run"), str(tmp_path / "dev.run")
    c.num_train_steps, c.rerank_top_k = steps, 10
    return c


def test_joint_training_evaluates_and_exports_both_models(tmp_path):
    config = _config(tmp_path)
    result = train(config, tmp_path / "work")
    assert result["status"] == "completed" and result["step"] == 6
    lines = [json.loads(x) for x in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert {"dev_mrr@10", "dev_recall@100", "dev_rerank_mrr@10"} <= set(lines[0])  # step 0
    assert {"reranker_loss", "distillation_loss", "retriever_accuracy"} <= set(lines[1])
    np.testing.assert_allclose(lines[1]["loss"], lines[1]["reranker_loss"] + lines[1]["distillation_loss"],
                               rtol=1e-5)  # fmt: skip
    params = result["state"].params
    export = tmp_path / "work" / "export"

    de = load_dual_encoder(export / "retriever")
    de_cfg = builders.joint_part(config, "retriever")
    trained = DualEncoder(de.config, jax.device_get(params["retriever"]), de.tokenizer,
                          EncoderSettings(pooling="cls", normalize=False, q_max_len=config.q_max_len,
                                          p_max_len=config.p_max_len, title_form=config.title_form),
                          tie_towers=de_cfg.tie_towers)  # fmt: skip
    q, p = ["who fronts the band"], ["the band is fronted by a singer"]
    np.testing.assert_allclose(de.encode_query(q), trained.encode_query(q), atol=1e-5)
    np.testing.assert_allclose(de.encode_para(p), trained.encode_para(p), atol=1e-5)

    ce = load_cross_encoder(export / "reranker")
    mine = CrossEncoder(ce.config, "v2", jax.device_get(params["reranker"]), ce.tokenizer,
                        config.cross_max_len, config.cross_q_max_len, pair_form="v2",
                        title_form=config.title_form)  # fmt: skip
    np.testing.assert_allclose(ce.matching(q * 2, p + q), mine.matching(q * 2, p + q), atol=1e-5)


def test_joint_training_resumes_to_the_same_parameters(tmp_path):
    config = _config(tmp_path)
    config.eval_every, config.checkpoint_every = 0, 3
    straight = train(config, tmp_path / "straight")["state"].params
    config.num_train_steps = 3
    train(config, tmp_path / "resumed")
    config.num_train_steps = 6
    resumed = train(config, tmp_path / "resumed")
    assert resumed["step"] == 6
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
                 jax.device_get(resumed["state"].params), jax.device_get(straight))  # fmt: skip

    config.reranker.cross_head = "pooler_logit"  # another re-ranker head: another model
    with pytest.raises(ValueError, match=r"reranker\.cross_head"):
        train(config, tmp_path / "resumed")


def test_joint_models_must_share_a_vocabulary(tmp_path):
    """The lists are tokenized once: a re-ranker with another vocabulary is refused."""
    config = _config(tmp_path)
    config.reranker.tokenizer_dir = ""
    config.reranker.model_dir = str(tmp_path / "other")
    cfg = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                     intermediate_size=8, max_position_embeddings=64)  # fmt: skip
    net = CrossEncoderNet(cfg, "v2")
    ids = np.zeros((1, 4), np.int32)
    params = net.init(jax.random.PRNGKey(0), {"input_ids": ids, "attention_mask": ids + 1})[
        "params"
    ]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    hf.export_cross_encoder(
        tmp_path / "other", cfg, "v2", params, BertTokenizerFast(vocab=vocab), 32
    )
    with pytest.raises(ValueError, match="share one vocabulary"):
        train(config, tmp_path / "work")

"""Cross-encoder export scores like transformers' sequence classifier; `rqa rerank` orders
by those scores and refuses ids it cannot find."""

import jax
import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import AutoModelForSequenceClassification

from rqa_jax.api import load_cross_encoder
from rqa_jax.cli import main as rqa
from rqa_jax.data import formats, tokenize
from rqa_jax.models import hf
from rqa_jax.models.towers import CrossEncoderNet

QUERIES = ["what is a dog", "big cat", "the title"]
PARAS = ["a big dog", "the small cats", "dog para"]


def make_ce(tmp_path, head, tokenizer):
    cfg = tiny_config()
    net = CrossEncoderNet(cfg, head)
    ids = np.zeros((1, 8), np.int32)
    params = jax.jit(lambda r: net.init(r, {"input_ids": ids, "attention_mask": ids + 1}))(
        jax.random.PRNGKey(3)
    )
    return (
        hf.export_cross_encoder(tmp_path / head, cfg, head, params["params"], tokenizer, 16),
        net,
        params,
    )


@pytest.mark.parametrize("head", ["v1", "pooler_logit", "v2"])
def test_exported_cross_encoder_scores_equal_transformers(tmp_path, tiny_tokenizer, head):
    out, net, params = make_ce(tmp_path, head, tiny_tokenizer)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(out), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    enc = tokenize.encode_pairs(tiny_tokenizer, QUERIES, PARAS, max_len=16)
    with torch.no_grad():
        logits = model.eval()(
            **{k: torch.tensor(v, dtype=torch.long) for k, v in enc.as_dict().items()}
        ).logits
    ref = torch.softmax(logits, -1)[:, 1] if head == "v1" else logits[:, 0]
    ours = CrossEncoderNet.score(net.apply(params, enc.as_dict()))
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-5)
    back = load_cross_encoder(out, max_len=16)  # and it loads back, scoring the same
    assert back.head == ("pooler_logit" if head == "v2" else head)
    np.testing.assert_allclose(back.matching(QUERIES, PARAS), ours, rtol=1e-4, atol=1e-5)


def test_rqa_rerank_orders_by_cross_encoder_scores_and_refuses_unknown_ids(
    tmp_path, tiny_tokenizer, capsys, monkeypatch
):
    monkeypatch.setenv("RQA_CACHE_DIR", str(tmp_path / "cache"))
    out, _, _ = make_ce(tmp_path, "v1", tiny_tokenizer)
    formats.write_id_text(
        tmp_path / "q.tsv",
        [formats.TextRecord("q1", QUERIES[0]), formats.TextRecord("q2", QUERIES[1])],
    )
    formats.write_id_text(tmp_path / "c.tsv", [formats.TextRecord(f"p{i}", t, "title" if i == 0 else None)
                                               for i, t in enumerate(PARAS)], with_title=True)  # fmt: skip
    run = {"q1": [("p0", 3.0), ("p1", 2.0), ("p2", 1.0)], "q2": [("p2", 1.0), ("p1", 0.5)]}
    formats.write_run(tmp_path / "in.run", run)
    argv = ["rerank", "--model", str(out), "--queries", str(tmp_path / "q.tsv"), "--corpus", str(tmp_path / "c.tsv"),
            "--no-progress", "--top-k", "2"]  # fmt: skip
    assert (
        rqa([*argv, "--run", str(tmp_path / "in.run"), "--output", str(tmp_path / "out.run")]) == 0
    )
    got = formats.read_run(tmp_path / "out.run")
    # the same run as a binary run (corpus rows): the same re-ranked run
    assert rqa(["convert", "run", "--input", str(tmp_path / "in.run"), "--output", str(tmp_path / "in.bin"),
                "--corpus", str(tmp_path / "c.tsv"), "--no-progress"]) == 0  # fmt: skip
    assert (
        rqa([*argv, "--run", str(tmp_path / "in.bin"), "--output", str(tmp_path / "out_bin.run")])
        == 0
    )
    assert (tmp_path / "out_bin.run").read_text() == (tmp_path / "out.run").read_text()
    ce = load_cross_encoder(out)
    for qid, q in (("q1", QUERIES[0]), ("q2", QUERIES[1])):
        pids = [p for p, _ in run[qid][:2]]
        scores = ce.matching(
            [q] * 2,
            [PARAS[int(p[1])] for p in pids],
            ["title" if p == "p0" else None for p in pids],
        )
        assert [p for p, _ in got[qid]] == [pids[i] for i in np.argsort(-scores, kind="stable")]
    run["q3"] = [("p0", 1.0)]
    run["q1"].insert(0, ("p9", 9.0))
    formats.write_run(tmp_path / "bad.run", run)
    capsys.readouterr()
    assert (
        rqa([*argv, "--run", str(tmp_path / "bad.run"), "--output", str(tmp_path / "x.run")]) == 1
    )
    assert "'q3' is not in the queries file" in capsys.readouterr().err
    del run["q3"]
    formats.write_run(tmp_path / "bad.run", run)
    assert (
        rqa([*argv, "--run", str(tmp_path / "bad.run"), "--output", str(tmp_path / "x.run")]) == 1
    )
    assert "'p9' is not in the corpus" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="skipped 0 queries and 1 passages"):
        assert (
            rqa(
                [
                    *argv,
                    "--run",
                    str(tmp_path / "bad.run"),
                    "--output",
                    str(tmp_path / "y.run"),
                    "--skip-missing",
                ]
            )
            == 0
        )

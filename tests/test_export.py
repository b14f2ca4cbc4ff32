"""``rqa export``: checkpoints of tiny real training runs (dual tied / two towers, cross,
joint) exported as HF dirs that transformers loads with no missing or unexpected weights,
sentence-transformers encodes / scores exactly as rqa does, with model cards, older steps,
and clear errors."""

import argparse
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config

from configs import common, demo_dual, rocketqa_v2_marco
from rqa_jax import export as E
from rqa_jax.inference import load_cross_encoder, load_dual_encoder, load_tokenizer
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel, stack_layer_params
from rqa_jax.train.loop import train

QUERIES = ["who fronts the band", "where is the museum of the old town"]
PASSAGES = [  # no titles: sentence-transformers takes one plain text
    "The band is fronted by a singer from the north.",
    "The museum of the old town is near the river.",
    "Ada",
]
ATOL = 1e-5


def rqa_export(argv, capsys=None):
    """``rqa export ARGV`` as ``rqa_jax.cli.main`` runs a command (user errors → exit 1)."""
    from rqa_jax.cli import USER_ERRORS
    from rqa_jax.cli_export import add_commands

    parser = argparse.ArgumentParser(prog="rqa")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *map(str, argv)])
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"rqa export: error: {e}", file=sys.stderr)
        return 1


def _quick(c, steps):
    c.num_train_steps, c.num_epochs, c.log_every = steps, 0, 1
    c.eval_every, c.eval_at_start, c.checkpoint_every = 0, False, steps


def _tiny_bert_dir(path, tokenizer_dir):
    """A random 2-layer BERT as an HF dir (with MiniLM's tokenizer) to start a run from."""
    cfg = tiny_config(vocab_size=30522, max_position_embeddings=64)
    params = hf.init_params(BertModel(cfg), seed=1)
    return hf.export_bert(path, cfg, params, load_tokenizer(tokenizer_dir), "cls", False, 32)


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory):
    """demo_dual: the real MiniLM, one tied tower, mean pooling + normalize, 2 steps."""
    c = demo_dual.get_config("runlocal")
    _quick(c, 2)
    c.train_batch_size, c.q_max_len, c.p_max_len = 8, 16, 32
    work = tmp_path_factory.mktemp("tied")
    train(c, work)
    return work


@pytest.fixture(scope="module")
def two_tower_run(tmp_path_factory, minilm_dir):
    """A tiny random two-tower retriever from scratch; a checkpoint every step, dev
    evaluation at steps 2 and 4."""
    c = common.get_dual_config()
    c.model_dir, c.tokenizer_dir = "", str(minilm_dir)
    c.model_config = tiny_config(vocab_size=30522, max_position_embeddings=64).__dict__
    c.tie_towers, c.q_max_len, c.p_max_len = False, 16, 24
    c.data.source, c.data.dev_max_queries = "sample", 8
    c.train_batch_size, c.num_negatives, c.learning_rate = 8, 1, 1e-3
    _quick(c, 4)
    c.eval_every, c.checkpoint_every, c.keep_checkpoints = 2, 1, 4
    work = tmp_path_factory.mktemp("two_tower")
    train(c, work)
    return work


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory, minilm_dir):
    """A tiny v1 re-ranker started from an HF dir (the part that may later go missing)."""
    root = tmp_path_factory.mktemp("cross")
    c = common.get_cross_config()
    c.model_dir = str(_tiny_bert_dir(root / "init", minilm_dir))
    c.cross_head, c.objective, c.cross_max_len = "v1", "pointwise", 32
    c.data.source, c.train_batch_size = "sample", 8
    _quick(c, 2)
    train(c, root / "work")
    return root / "work", root / "init"


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """RocketQAv2's tiny joint run: two-tower retriever (title form rocketqa) + v2 head."""
    c = rocketqa_v2_marco.get_config("runlocal")
    _quick(c, 2)
    work = tmp_path_factory.mktemp("joint")
    train(c, work)
    return work


def _clean_load(model_dir, auto_cls):
    model, info = auto_cls.from_pretrained(str(model_dir), output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        assert not info[key], (model_dir, key, info[key])
    return model


def _max_diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _st(model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def _ce(model_dir):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model_dir), device="cpu")


def test_tied_dual_is_one_dir_that_sentence_transformers_encodes_as_rqa(tied_run, tmp_path):
    from transformers import AutoModel

    out = E.export_checkpoint(tied_run, tmp_path / "out")
    meta = {f: json.loads((out / f).read_text()) for f in ("modules.json", "sentence_bert_config.json",
                                                            "1_Pooling/config.json")}  # fmt: skip
    assert [m["path"] for m in meta["modules.json"]] == ["", "1_Pooling", "2_Normalize"]
    assert meta["sentence_bert_config.json"]["max_seq_length"] == 32  # p_max_len
    assert meta["1_Pooling/config.json"]["pooling_mode_mean_tokens"]
    _clean_load(out, AutoModel)
    st, ours = _st(out), load_dual_encoder(out)
    d_para = _max_diff(st.encode(PASSAGES), ours.encode_para(PASSAGES))
    d_query = _max_diff(st.encode(QUERIES), ours.encode_query(QUERIES))  # shorter than q_max_len
    print(f"\ntied MiniLM: max |ST - rqa| passages {d_para:.2e}, queries {d_query:.2e}")
    assert d_para <= ATOL and d_query <= ATOL
    card = (out / "README.md").read_text()
    assert "library_name: sentence-transformers" in card and "SentenceTransformer(" in card
    assert "rqa cuts queries at 16" in card  # the documented query-length difference
    assert "initialised from" in card and "step **2**" in card


def test_two_towers_each_load_and_rqa_encode_picks_by_kind(two_tower_run, tmp_path):
    from transformers import AutoModel

    from rqa_jax.cli import main as rqa

    out = tmp_path / "out"
    assert rqa_export(["--workdir", two_tower_run, "--output", out]) == 0
    assert (out / "rqa_jax.json").is_file() and (out / "README.md").is_file()
    for tower in E.SEPARATE_TOWERS:
        _clean_load(out / tower, AutoModel)
        assert json.loads((out / tower / "config_sentence_transformers.json").read_text())[
            "similarity_fn_name"
        ] == "dot"  # fmt: skip
    (tmp_path / "q.tsv").write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    argv = ["encode", "--model", str(out), "--kind", "query", "--input", str(tmp_path / "q.tsv")]
    assert rqa([*argv, "--output", str(tmp_path / "q_emb"), "--no-progress"]) == 0
    by_cli = np.load(tmp_path / "q_emb" / "embeddings.npy")
    st_q, st_p = _st(out / "query_encoder"), _st(out / "passage_encoder")
    d_query = _max_diff(st_q.encode(QUERIES), by_cli)
    ours = load_dual_encoder(out)
    d_para = _max_diff(st_p.encode(PASSAGES), ours.encode_para(PASSAGES))
    print(f"\ntwo towers: max |ST - rqa| queries {d_query:.2e}, passages {d_para:.2e}")
    assert d_query <= ATOL and d_para <= ATOL
    assert _max_diff(st_p.encode(QUERIES), by_cli) > 1e-3  # the towers differ: the right one won
    direct = load_dual_encoder(out / "query_encoder")  # a tower dir given directly works too
    np.testing.assert_allclose(direct.encode_query(QUERIES), by_cli, atol=ATOL)


def test_model_card_has_the_steps_dev_metrics_and_config(two_tower_run, tmp_path):
    out = E.export_checkpoint(two_tower_run, tmp_path / "out")
    records = [json.loads(x) for x in (two_tower_run / "metrics.jsonl").read_text().splitlines()]
    at_4 = next(r for r in records if r["step"] == 4)
    for card in (out / "README.md", out / "query_encoder" / "README.md"):
        text = card.read_text()
        assert "From `metrics.jsonl`, step 4:" in text
        assert f"| dev_mrr@10 | {at_4['dev_mrr@10']:.4f} |" in text
        assert f"| dev_recall@100 | {at_4['dev_recall@100']:.4f} |" in text
        assert '"tie_towers": false' in text and "<details>" in text and "source=`sample`" in text


def test_step_exports_an_older_checkpoint(two_tower_run, tmp_path):
    from safetensors.numpy import load_file

    assert rqa_export(["--workdir", two_tower_run, "--step", 3, "--output", tmp_path / "s3"]) == 0
    E.export_checkpoint(two_tower_run, tmp_path / "s4")
    old, new = (
        load_file(tmp_path / s / "passage_encoder" / "model.safetensors") for s in ("s3", "s4")
    )
    key = "encoder.layer.0.attention.self.query.weight"
    assert _max_diff(old[key], new[key]) > 1e-4
    saved = E.restore_params(two_tower_run / "checkpoints" / "3")  # the step-3 weights, exactly
    kernel = saved["passage_encoder"]["encoder"]["layer"]["0"]["attention"]["self"]["query"][
        "kernel"
    ]
    np.testing.assert_array_equal(old[key], kernel.T)
    card = (tmp_path / "s3" / "README.md").read_text()
    assert "checkpoint step **3**" in card
    assert "step 2 (the latest evaluation before step 3)" in card  # step 3 was not evaluated


def test_missing_workdir_or_step_is_named(two_tower_run, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert rqa_export(["--workdir", missing, "--output", tmp_path / "o"]) == 1
    assert f"workdir '{missing}' does not exist" in capsys.readouterr().err
    assert rqa_export(["--workdir", two_tower_run, "--step", 99, "--output", tmp_path / "o"]) == 1
    assert "has no step 99 (steps there: 1, 2, 3, 4)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(E.CheckpointNotFoundError, match="holds no checkpoint"):
        E.export_checkpoint(tmp_path / "empty", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert rqa_export(["--workdir", two_tower_run, "--output", tmp_path / "full"]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").is_file()
    assert rqa_export(["--workdir", two_tower_run, "--output", two_tower_run, "--overwrite"]) == 1
    assert "would replace the workdir" in capsys.readouterr().err


def test_cross_export_scores_like_rqa_in_crossencoder_and_torch(cross_run, tmp_path):
    from transformers import AutoModelForSequenceClassification

    work, _ = cross_run
    out = E.export_checkpoint(work, tmp_path / "out")
    model = _clean_load(out, AutoModelForSequenceClassification).eval()
    ce = _ce(out)
    assert ce.max_seq_length == 32 and ce.num_labels == 2
    queries = [QUERIES[0], QUERIES[1], QUERIES[0]]
    ours = load_cross_encoder(out).matching(queries, PASSAGES)
    st = ce.predict(list(zip(queries, PASSAGES, strict=True)), apply_softmax=True)[:, 1]
    tok = load_tokenizer(out)
    enc = tok(queries, PASSAGES, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    d_st, d_torch = _max_diff(st, ours), _max_diff(torch.softmax(logits, -1)[:, 1], ours)
    print(f"\ncross v1: max |CrossEncoder - rqa| {d_st:.2e}, |torch - rqa| {d_torch:.2e}")
    assert d_st <= ATOL and d_torch <= ATOL
    card = (out / "README.md").read_text()
    assert "apply_softmax=True)[:, 1]" in card and "head `v1`" in card


def test_a_vanished_model_dir_falls_back_to_the_runs_export_then_says_so(cross_run, tmp_path):
    work, init = cross_run
    moved = tmp_path / "moved"
    shutil.move(init, moved)
    try:
        out = E.export_checkpoint(work, tmp_path / "out")  # config + tokenizer from work/export
        assert load_cross_encoder(out).config.num_attention_heads == 4
        shutil.move(work / "export", tmp_path / "export_moved")
        try:
            with pytest.raises(hf.ModelDirError, match=rf"model_dir '{init}' no longer exists.*"
                               "num_attention_heads"):  # fmt: skip
                E.export_checkpoint(work, tmp_path / "out2")
        finally:
            shutil.move(tmp_path / "export_moved", work / "export")
    finally:
        shutil.move(moved, init)
    assert not (tmp_path / "out2").exists()
    assert not list(tmp_path.glob(".out2.*"))  # the half-written temporary dir is gone too


def test_joint_exports_retriever_and_reranker(joint_run, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification

    out = E.export_checkpoint(joint_run, tmp_path / "out")
    retriever, reranker = out / "retriever", out / "reranker"
    for tower in E.SEPARATE_TOWERS:
        _clean_load(retriever / tower, AutoModel)
    _clean_load(reranker, AutoModelForSequenceClassification)
    de = load_dual_encoder(retriever)
    d_query = _max_diff(_st(retriever / "query_encoder").encode(QUERIES), de.encode_query(QUERIES))
    st_para = _st(retriever / "passage_encoder").encode(PASSAGES)
    # title form "rocketqa": rqa encodes an untitled passage as [CLS] [SEP] p [SEP]; the
    # plain-text form ([CLS] p [SEP]) is rqa's title_form "hf", which ST matches
    d_para = _max_diff(st_para, load_dual_encoder(retriever, title_form="hf").encode_para(PASSAGES))
    assert _max_diff(st_para, de.encode_para(PASSAGES)) > 1e-4
    ce = _ce(reranker)
    assert ce.num_labels == 1 and ce.max_seq_length == 48
    queries = [QUERIES[0], QUERIES[1], QUERIES[0]]
    d_ce = _max_diff(ce.predict(list(zip(queries, PASSAGES, strict=True))),
                     load_cross_encoder(reranker).matching(queries, PASSAGES))  # fmt: skip
    print(f"\njoint: max |ST - rqa| queries {d_query:.2e}, passages (hf form) {d_para:.2e}, "
          f"re-ranker logit {d_ce:.2e}")  # fmt: skip
    assert d_query <= ATOL and d_para <= ATOL and d_ce <= ATOL
    index = (out / "README.md").read_text()
    assert "`retriever/query_encoder/`" in index and "`reranker/`" in index
    assert (
        "`[CLS] [SEP] passage [SEP]`" in (retriever / "passage_encoder" / "README.md").read_text()
    )
    assert "head `v2` (1 label)" in (reranker / "README.md").read_text()


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(
    two_tower_run, tmp_path, monkeypatch, capsys
):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    (tmp_path / "model").mkdir()
    url = E.push_to_hub(tmp_path / "model", "me/rqa-model", private=True, api=FakeApi())
    assert url == "https://huggingface.co/me/rqa-model"
    assert calls[0] == ("create_repo", "me/rqa-model",
                        {"repo_type": "model", "private": True, "exist_ok": True})  # fmt: skip
    assert calls[1][1]["folder_path"] == str(tmp_path / "model")
    assert calls[1][1]["repo_id"] == "me/rqa-model"
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)  # the default api is HfApi()
    E.push_to_hub(tmp_path / "model", "me/other")
    assert calls[-1][1]["repo_id"] == "me/other"
    with pytest.raises(FileNotFoundError, match="nothing to upload"):
        E.push_to_hub(tmp_path / "absent", "me/x", api=FakeApi())
    out = tmp_path / "out"  # and through the command
    argv = ["--workdir", two_tower_run, "--output", out, "--push-to-hub", "me/rqa-dual"]
    assert rqa_export([*argv, "--private"]) == 0
    assert calls[-2] == ("create_repo", "me/rqa-dual",
                         {"repo_type": "model", "private": True, "exist_ok": True})  # fmt: skip
    assert calls[-1][1]["folder_path"] == str(out) and "step 4" in calls[-1][1]["commit_message"]
    assert "uploaded to https://huggingface.co/me/rqa-dual" in capsys.readouterr().out
    card = (out / "query_encoder" / "README.md").read_text()
    assert 'SentenceTransformer(snapshot_download("me/rqa-dual") + "/query_encoder")' in card
    assert rqa_export(["--workdir", two_tower_run, "--output", tmp_path / "o2", "--private"]) == 1
    assert "--private only applies with --push-to-hub" in capsys.readouterr().err


def test_architecture_from_shapes_when_only_model_config_is_left(tmp_path):
    cfg = tiny_config(vocab_size=30, max_position_embeddings=40)
    params = hf.init_params(BertModel(cfg))
    fields = E.shape_fields(params)
    assert fields == E.shape_fields(stack_layer_params(params, cfg.num_hidden_layers))
    assert (fields["num_hidden_layers"], fields["intermediate_size"]) == (2, 64)
    view = common.get_dual_config()
    view.model_dir, view.tie_towers = str(tmp_path / "gone"), True
    view.model_config = {"num_attention_heads": 4}
    part = E.Part("", "dual", view, {"encoder": params}, tmp_path / "no_export")
    assert E.bert_config_of(part) == (cfg, "the parameter shapes")
    view.model_config = {
        "num_attention_heads": 4,
        "hidden_size": 64,
    }  # shapes win over a wrong size
    assert E.bert_config_of(part)[0].hidden_size == 32


def test_dev_metrics_are_the_latest_evaluation_at_or_before_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "dev_mrr@10": 0.1}, {"step": 5, "loss": 1.0},
             {"step": 10, "dev_mrr@10": 0.3, "loss": 0.5}, {"step": 20, "dev_mrr@10": 0.4}]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert E.dev_metrics(path, 5) == (0, {"dev_mrr@10": 0.1})
    assert E.dev_metrics(path, 19) == (10, {"dev_mrr@10": 0.3})
    assert E.dev_metrics(path, 20) == (20, {"dev_mrr@10": 0.4})
    assert E.dev_metrics(tmp_path / "absent.jsonl", 20) is None

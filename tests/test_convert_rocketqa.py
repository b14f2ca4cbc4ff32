"""`rqa convert rocketqa`: original RocketQA checkpoints (Paddle tensors) without Paddle.

Against the original's own outputs: the micro models of the ``rocketqa_original`` fixture
(written by rocketqa 1.1.0 on PaddlePaddle 2.6; ``RQA_ROCKETQA_FIXTURE`` or
``../shared/fixtures/rocketqa_original`` beside the checkout; skipped where absent, off CI), converted by the CLI, give
the original's token ids, embeddings and scores through ``rqa encode`` / ``rqa rerank`` and
through transformers (torch). Everywhere: the Paddle byte format, a shared-tower dual encoder
against an independent numpy ERNIE forward, and the errors.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_VOCAB
from transformers import AutoModel, AutoModelForSequenceClassification

import rqa_jax
from rqa_jax.cli import main as rqa
from rqa_jax.data import tokenize
from rqa_jax.models import paddle_format
from rqa_jax.models.rocketqa_convert import convert_rocketqa

# ../shared/ sits beside the checkout (CI too); elsewhere point RQA_ROCKETQA_FIXTURE at it.
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rocketqa_original"
FIXTURE = Path(os.environ.get("RQA_ROCKETQA_FIXTURE", str(_SHARED)))
EXPECTED = FIXTURE / "expected"
# Skipped only off CI: in CI the fixture must be there, so a wrong path fails loudly.
needs_fixture = pytest.mark.skipif(
    not (EXPECTED / "query_emb.npy").is_file() and not os.environ.get("CI"),
    reason=f"no rocketqa_original fixture at {FIXTURE}",
)
TOL = 1e-5


# ----------------------------------------------------------------------------- the fixture


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The three fixture models converted by the CLI."""
    out = tmp_path_factory.mktemp("converted")
    for name in ("de", "ce", "ce_v2"):
        assert rqa(["convert", "rocketqa", "--model", str(FIXTURE / name),
                    "--output", str(out / name)]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def texts():
    queries = (EXPECTED / "queries.tsv").read_text(encoding="utf-8").splitlines()
    rows = [
        line.split("\t") for line in (EXPECTED / "passages.tsv").read_text("utf-8").splitlines()
    ]
    return queries, [t for t, _ in rows], [p for _, p in rows]


def _inputs(name):
    return json.loads((EXPECTED / name).read_text(encoding="utf-8"))


def _assert_rows(enc, items):
    for i, item in enumerate(items):
        n = len(item["token_ids"])
        assert enc.lengths[i] == n, f"row {i}: {enc.lengths[i]} tokens, the original {n}"
        assert enc.input_ids[i, :n].tolist() == item["token_ids"], f"row {i}"
        assert enc.token_type_ids[i, :n].tolist() == item["sent_ids"], f"row {i}"


@needs_fixture
def test_layout_and_recorded_settings(converted):
    de = converted / "de"
    assert sorted(p.name for p in de.iterdir()) == [
        "passage_encoder",
        "query_encoder",
        "rqa_jax.json",
    ]
    settings = json.loads((de / "rqa_jax.json").read_text())
    assert settings | {"pooling": "cls", "normalize": False, "q_max_len": 32, "p_max_len": 128,
                       "title_form": "rocketqa_literal"} == settings  # fmt: skip
    for name, head in (("ce", "v1"), ("ce_v2", "v2")):
        saved = json.loads((converted / name / "rqa_jax.json").read_text())
        assert saved["trained_head"] == head and saved["max_length"] == 160
        assert (saved["pair_form"], saved["title_form"], saved["q_max_len"]) == (
            "v1", "rocketqa_literal", None)  # fmt: skip
    config = json.loads((de / "query_encoder" / "config.json").read_text())
    assert config["model_type"] == "ernie" and config["use_task_id"]
    assert (config["layer_norm_eps"], config["hidden_act"], config["intermediate_size"]) == (
        1e-5, "gelu", 128)  # fmt: skip


@needs_fixture
def test_token_ids_equal_the_originals(converted, texts):
    queries, titles, paras = texts
    de = rqa_jax.load_model(converted / "de")
    _assert_rows(de.tokenize_queries(queries), _inputs("de_inputs.json")["queries"])
    _assert_rows(de.tokenize_paras(paras, titles), _inputs("de_inputs.json")["passages"])
    for name, inputs in (("ce", "ce_inputs.json"), ("ce_v2", "ce_v2_inputs.json")):
        ce = rqa_jax.load_model(converted / name)
        enc = tokenize.encode_pairs(ce.tokenizer, queries, paras, titles, ce.max_len,
                                    ce.q_max_len, ce.pair_form, ce.title_form)  # fmt: skip
        _assert_rows(enc, _inputs(inputs)["pairs"])
    # the rocketqa package scores a v2 cross encoder with the v1 pair form (the 51-wordpiece
    # query is not cut to 30); RocketQAv2's training reader (pair_form v2) would cut it
    v2 = tokenize.encode_pairs(ce.tokenizer, queries, paras, titles, 160, pair_form="v2",
                               title_form="rocketqa_literal")  # fmt: skip
    assert (
        v2.lengths[6]
        == 1 + 30 + 1 + 125 + 1
        != len(_inputs("ce_v2_inputs.json")["pairs"][6]["token_ids"])
    )


def _write_tsv(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


@needs_fixture
def test_rqa_encode_reproduces_the_original_embeddings(converted, texts, tmp_path):
    queries, titles, paras = texts
    q_file = _write_tsv(tmp_path / "q.tsv", [(f"q{i}", q) for i, q in enumerate(queries)])
    # titles verbatim: "-" (one token) and "" (an empty first segment) differ, as in the original
    p_file = _write_tsv(
        tmp_path / "p.tsv",
        [(f"p{i}", t, p) for i, (t, p) in enumerate(zip(titles, paras, strict=True))],
    )
    assert titles[1] == "-" and titles[2] == ""
    model = str(converted / "de")
    for kind, path, ref in (
        ("query", q_file, "query_emb.npy"),
        ("passage", p_file, "para_emb.npy"),
    ):
        out = tmp_path / kind
        assert rqa(["encode", "--model", model, "--kind", kind, "--input", str(path), "--output", str(out),
                    "--format", "id_title_text", "--no-progress"]) == 0  # fmt: skip
        np.testing.assert_allclose(
            np.load(out / "embeddings.npy"), np.load(EXPECTED / ref), atol=TOL, rtol=0
        )
    de = rqa_jax.load_model(model)
    np.testing.assert_allclose(
        de.matching(queries, paras, titles), np.load(EXPECTED / "de_scores.npy"), atol=TOL, rtol=0
    )


@needs_fixture
@pytest.mark.parametrize("name", ["ce", "ce_v2"])
def test_rqa_rerank_reproduces_the_original_scores(converted, texts, tmp_path, name):
    from rqa_jax.data import formats

    queries, titles, paras = texts
    q_file = _write_tsv(tmp_path / "q.tsv", [(f"q{i}", q) for i, q in enumerate(queries)])
    c_file = _write_tsv(
        tmp_path / "c.tsv",
        [(f"p{i}", p, t) for i, (t, p) in enumerate(zip(titles, paras, strict=True))],
    )
    formats.write_run(tmp_path / "in.run", {f"q{i}": [(f"p{i}", 0.0)] for i in range(len(queries))})
    assert rqa(["rerank", "--model", str(converted / name), "--queries", str(q_file), "--corpus", str(c_file),
                "--run", str(tmp_path / "in.run"), "--output", str(tmp_path / "out.run"), "--no-progress"]) == 0  # fmt: skip
    run = formats.read_run(tmp_path / "out.run")
    got = np.array([run[f"q{i}"][0][1] for i in range(len(queries))], np.float32)
    ref = np.load(EXPECTED / f"{name}_scores.npy")
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)  # the run file keeps 6 decimals
    ce = rqa_jax.load_model(converted / name)
    np.testing.assert_allclose(ce.matching(queries, paras, titles), ref, atol=TOL, rtol=0)
    if name == "ce_v2":  # the raw v2 head back (what fine-tuning with cross_head v2 starts from)
        raw = rqa_jax.load_model(converted / name, head="v2")
        assert raw.head == "v2" and "pooler" not in raw.runner.params["bert"]
        np.testing.assert_allclose(raw.matching(queries, paras, titles), ref, atol=TOL, rtol=0)


def _padded(items):
    n = max(len(x["token_ids"]) for x in items)
    ids = np.zeros((len(items), n), np.int64)
    types, mask = np.zeros_like(ids), np.zeros_like(ids)
    for i, x in enumerate(items):
        k = len(x["token_ids"])
        ids[i, :k], types[i, :k], mask[i, :k] = x["token_ids"], x["sent_ids"], 1
    return {"input_ids": torch.tensor(ids), "token_type_ids": torch.tensor(types),
            "attention_mask": torch.tensor(mask), "task_type_ids": torch.zeros_like(torch.tensor(ids))}  # fmt: skip


@needs_fixture
def test_transformers_reproduces_the_original_embeddings(converted):
    inputs = _inputs("de_inputs.json")
    for tower, items, ref in (("query_encoder", inputs["queries"], "query_emb.npy"),
                              ("passage_encoder", inputs["passages"], "para_emb.npy")):  # fmt: skip
        model, info = AutoModel.from_pretrained(
            str(converted / "de" / tower), output_loading_info=True
        )
        assert not info["missing_keys"] and not info["unexpected_keys"]
        with torch.no_grad():
            cls = model.eval()(**_padded(items)).last_hidden_state[:, 0].numpy()
        np.testing.assert_allclose(cls, np.load(EXPECTED / ref), atol=TOL, rtol=0)


@needs_fixture
@pytest.mark.parametrize("name", ["ce", "ce_v2"])
def test_transformers_reproduces_the_original_scores(converted, name):
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(converted / name), output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        logits = model.eval()(**_padded(_inputs(f"{name}_inputs.json")["pairs"])).logits
    got = torch.softmax(logits, -1)[:, 1] if name == "ce" else logits[:, 0]
    np.testing.assert_allclose(
        got.numpy(), np.load(EXPECTED / f"{name}_scores.npy"), atol=TOL, rtol=0
    )


# ----------------------------------------------------------------------------- Paddle bytes


def test_tensor_file_bytes_as_documented(tmp_path):
    # FORMAT.md's worked example: ce/cross_params/_cls_out_b, float32 [2]
    raw = bytes.fromhex("000000000000000000000000000000000400000008051002f80a8d3ce092cdbc")
    (tmp_path / "b").write_bytes(raw)
    np.testing.assert_allclose(paddle_format.read_tensor(tmp_path / "b"),
                               np.array([0.01721714, -0.02509445], np.float32), rtol=1e-6)  # fmt: skip
    paddle_format.write_tensor(tmp_path / "c", paddle_format.read_tensor(tmp_path / "b"))
    assert (tmp_path / "c").read_bytes() == raw
    # multi-byte varints ([30522, 32] as 10 ba ee 01 10 20), float16 widened, packed dims
    assert paddle_format.parse_tensor_desc(bytes.fromhex("080510baee011020")).dims == (30522, 32)
    assert paddle_format.parse_tensor_desc(bytes.fromhex("0805120302ba01")).dims == (2, 186)
    paddle_format.write_tensor(tmp_path / "h", np.arange(6, dtype=np.float16).reshape(2, 3))
    got = paddle_format.read_tensor(tmp_path / "h")
    assert got.dtype == np.float32 and got.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_bad_tensor_files_name_the_file(tmp_path):
    paddle_format.write_tensor(tmp_path / "w", np.ones((4, 2), np.float32))
    good = (tmp_path / "w").read_bytes()
    (tmp_path / "short").write_bytes(good[:-4])
    with pytest.raises(paddle_format.PaddleFormatError, match=r"short: .*needs"):
        paddle_format.read_tensor(tmp_path / "short")
    (tmp_path / "pickle").write_bytes(b"\x80\x04\x95" + b"\0" * 40)  # a .pdparams pickle
    with pytest.raises(paddle_format.PaddleFormatError, match=r"pickle: not a Paddle LoDTensor"):
        paddle_format.read_tensor(tmp_path / "pickle")


# ----------------------------------------------------------------------------- synthetic models

ERNIE = {"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 17,
         "max_position_embeddings": 24, "type_vocab_size": 2, "use_task_id": True,
         "task_type_vocab_size": 3, "hidden_act": "gelu", "initializer_range": 0.02}  # fmt: skip
VOCAB = [*TINY_VOCAB, "-"]  # ids as in conftest; "-" is 16


def _encoder_shapes(prefix):
    h, f = ERNIE["hidden_size"], 4 * ERNIE["hidden_size"]
    shapes = {"word_embedding": (17, h), "pos_embedding": (24, h), "sent_embedding": (2, h),
              "task_embedding": (3, h), "pre_encoder_layer_norm_scale": (h,),
              "pre_encoder_layer_norm_bias": (h,)}  # fmt: skip
    for i in range(ERNIE["num_hidden_layers"]):
        for fc, (a, b) in {"multi_head_att_query_fc": (h, h), "multi_head_att_key_fc": (h, h),
                           "multi_head_att_value_fc": (h, h), "multi_head_att_output_fc": (h, h),
                           "ffn_fc_0": (h, f), "ffn_fc_1": (f, h)}.items():  # fmt: skip
            shapes[f"encoder_layer_{i}_{fc}.w_0"], shapes[f"encoder_layer_{i}_{fc}.b_0"] = (
                (a, b),
                (b,),
            )
        for ln in ("post_att_layer_norm", "post_ffn_layer_norm"):
            shapes[f"encoder_layer_{i}_{ln}_scale"] = shapes[f"encoder_layer_{i}_{ln}_bias"] = (h,)
    return {prefix + k: v for k, v in shapes.items()}


def _make_rocketqa_dir(
    root, model_type="dual_encoder", share=1, for_cn=False, prefixes=("titlepara_",)
):
    rng = np.random.default_rng(0)
    (root / "params").mkdir(parents=True)
    (root / "ernie.json").write_text(json.dumps(ERNIE))
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    cfg = {"model_type": model_type, "model_conf_path": "ernie.json", "model_vocab_path": "vocab.txt",
           "model_checkpoint_path": "params", "for_cn": for_cn, "q_max_seq_len": 6,
           "p_max_seq_len": 10, "max_seq_len": 12, "share_parameter": share, "joint_training": 0}  # fmt: skip
    (root / "config.json").write_text(json.dumps(cfg))
    params = {}
    for prefix in prefixes:
        for name, shape in _encoder_shapes(prefix).items():
            scale = 1.0 if name.endswith("_scale") else 0.0
            params[name] = (scale + rng.normal(0, 0.3, shape)).astype(np.float32)
            paddle_format.write_tensor(root / "params" / name, params[name])
    return params


def _ln(x, g, b):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * g + b


def _ernie_cls(params, prefix, ids, types):
    """An independent float64 ERNIE forward (FORMAT.md's description), one unpadded row."""
    from scipy.special import erf

    p = {k[len(prefix) :]: v.astype(np.float64) for k, v in params.items() if k.startswith(prefix)}
    n, heads, h = len(ids), ERNIE["num_attention_heads"], ERNIE["hidden_size"]
    x = (
        p["word_embedding"][ids]
        + p["pos_embedding"][:n]
        + p["sent_embedding"][types]
        + p["task_embedding"][0]
    )
    x = _ln(x, p["pre_encoder_layer_norm_scale"], p["pre_encoder_layer_norm_bias"])
    for i in range(ERNIE["num_hidden_layers"]):

        def fc(name, v, i=i):
            return v @ p[f"encoder_layer_{i}_{name}.w_0"] + p[f"encoder_layer_{i}_{name}.b_0"]

        q, k, v = (fc(f"multi_head_att_{t}_fc", x).reshape(n, heads, -1).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))  # fmt: skip
        s = (q * (h // heads) ** -0.5) @ k.transpose(0, 2, 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((a / a.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, h)
        x = _ln(x + fc("multi_head_att_output_fc", ctx), p[f"encoder_layer_{i}_post_att_layer_norm_scale"],
                p[f"encoder_layer_{i}_post_att_layer_norm_bias"])  # fmt: skip
        y = fc("ffn_fc_0", x)
        y = fc("ffn_fc_1", 0.5 * y * (1 + erf(y / np.sqrt(2))))
        x = _ln(x + y, p[f"encoder_layer_{i}_post_ffn_layer_norm_scale"],
                p[f"encoder_layer_{i}_post_ffn_layer_norm_bias"])  # fmt: skip
    return x[0]


def test_shared_tower_dual_encoder_is_one_dir_used_for_both(tmp_path):
    params = _make_rocketqa_dir(tmp_path / "src")
    result = convert_rocketqa(tmp_path / "src" / "config.json", tmp_path / "out")
    assert result["kind"] == "dual" and result["dirs"] == [str(tmp_path / "out")]
    assert not (tmp_path / "out" / "query_encoder").exists()
    de = rqa_jax.load_model(tmp_path / "out")
    assert (de.settings.q_max_len, de.settings.p_max_len, de.settings.title_form) == (
        6,
        10,
        "rocketqa_literal",
    )
    q = de.encode_query(["what is a dog", "cat"])
    p = de.encode_para(["a big dog", "the cat"], ["-", ""])
    # ids by hand (TINY_VOCAB): "-" is the literal token 16, an empty title gives [CLS] [SEP]
    rows = [([2, 5, 6, 7, 8, 3], [0] * 6), ([2, 9, 3], [0] * 3),
            ([2, 16, 3, 7, 13, 8, 3], [0, 0, 0, 1, 1, 1, 1]), ([2, 3, 10, 9, 3], [0, 0, 1, 1, 1])]  # fmt: skip
    ref = np.stack([_ernie_cls(params, "titlepara_", np.array(i), np.array(t)) for i, t in rows])
    np.testing.assert_allclose(np.concatenate([q, p]), ref, atol=1e-5, rtol=0)


def test_for_cn_deletes_spaces_in_the_saved_tokenizer(tmp_path):
    _make_rocketqa_dir(tmp_path / "src", for_cn=True)
    convert_rocketqa(tmp_path / "src", tmp_path / "out")
    tok = rqa_jax.api.load_tokenizer(tmp_path / "out")
    assert tok("big s", add_special_tokens=False)["input_ids"] == [13, 15]  # "bigs": big ##s
    assert tok.cls_token_id == 2 and tok.sep_token_id == 3 and tok.pad_token_id == 0


def _convert_error(src, out, capsys):
    capsys.readouterr()
    assert rqa(["convert", "rocketqa", "--model", str(src), "--output", str(out)]) == 1
    return capsys.readouterr().err


def test_missing_parameter_file_is_named(tmp_path, capsys):
    _make_rocketqa_dir(tmp_path / "src", share=0, prefixes=("query_", "titlepara_"))
    missing = tmp_path / "src" / "params" / "query_encoder_layer_1_ffn_fc_0.b_0"
    missing.unlink()
    err = _convert_error(tmp_path / "src", tmp_path / "out", capsys)
    assert f"{missing}: parameter file missing" in err


def test_shape_mismatch_names_the_file_and_the_config(tmp_path, capsys):
    _make_rocketqa_dir(tmp_path / "src")
    bad = tmp_path / "src" / "params" / "titlepara_encoder_layer_0_ffn_fc_0.w_0"
    paddle_format.write_tensor(bad, np.zeros((8, 16), np.float32))
    err = _convert_error(tmp_path / "src", tmp_path / "out", capsys)
    assert f"{bad}: shape [8, 16] does not match [8, 32]" in err and "ernie.json" in err


def test_unknown_layouts_name_the_file(tmp_path, capsys):
    src = tmp_path / "src"
    _make_rocketqa_dir(src)
    cfg = json.loads((src / "config.json").read_text())
    # separate towers expected, but the folder only has the shared tower's parameters
    (src / "config.json").write_text(json.dumps(cfg | {"share_parameter": 0}))
    err = _convert_error(src, tmp_path / "o1", capsys)
    assert (
        f"{src / 'params'}: unknown layout: no query_word_embedding" in err
        and "'titlepara_'" in err
    )
    # a cross encoder whose files carry a dual encoder's prefixes
    (src / "config.json").write_text(json.dumps(cfg | {"model_type": "cross_encoder"}))
    assert "unknown layout: no word_embedding" in _convert_error(src, tmp_path / "o2", capsys)
    # not a RocketQA model type
    (src / "config.json").write_text(json.dumps(cfg | {"model_type": "bert"}))
    err = _convert_error(src, tmp_path / "o3", capsys)
    assert f"{src / 'config.json'}: unknown layout: model_type 'bert'" in err
    # a combined parameter file instead of the folder
    shutil.rmtree(src / "params")
    (src / "params").write_bytes(b"\0" * 64)
    (src / "config.json").write_text(json.dumps(cfg))
    err = _convert_error(src, tmp_path / "o4", capsys)
    assert f"{src / 'params'}: unknown layout: a single file" in err
    # no config.json at all
    assert "no RocketQA config.json" in _convert_error(
        tmp_path / "nowhere", tmp_path / "o5", capsys
    )


def test_training_starts_each_tower_from_its_own_converted_weights(tmp_path):
    from configs import common
    from rqa_jax import parallel
    from rqa_jax.train import builders

    params = _make_rocketqa_dir(tmp_path / "src", share=0, prefixes=("query_", "titlepara_"))
    convert_rocketqa(tmp_path / "src", tmp_path / "out")
    config = common.get_dual_config()
    config.model_dir, config.tie_towers = str(tmp_path / "out"), False
    net = builders.dual_net(config, builders.bert_config_for(config))
    assert builders.tokenizer_for(config).cls_token_id == 2
    got, _ = builders.init_dual_params(config, net, parallel.make_mesh())
    for tower, prefix in (("query_encoder", "query_"), ("passage_encoder", "titlepara_")):
        np.testing.assert_array_equal(
            np.asarray(got[tower]["embeddings"]["word_embeddings"]["embedding"]),
            params[prefix + "word_embedding"],
        )
    config.tie_towers = True
    with pytest.raises(ValueError, match="separate query/passage towers"):
        builders.init_dual_params(
            config, builders.dual_net(config, net.config), parallel.make_mesh()
        )

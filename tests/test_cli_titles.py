"""`--titles FILE` (pid<TAB>title) for `rqa encode` and `rqa rerank`: the same inputs as a
3-column corpus, its titles winning over the corpus' own."""

import jax
import numpy as np
import pytest
from conftest import tiny_config

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats
from rqa_jax.index.search import read_embeddings
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel
from rqa_jax.models.towers import CrossEncoderNet

PARAS = {"p0": "a big dog", "p1": "the small cats", "p2": "dog para"}
TITLES = {"p0": "the title", "p1": "-", "p2": "cat"}


def dual_dir(path, tokenizer, **settings):
    cfg = tiny_config()
    params = hf.init_params(BertModel(cfg), seed=1)
    return hf.export_bert(path, cfg, params, tokenizer, "cls", False, 32, settings or None)


def cross_dir(path, tokenizer):
    cfg = tiny_config()
    net = CrossEncoderNet(cfg, "pooler_logit")
    ids = np.zeros((1, 8), np.int32)
    params = net.init(jax.random.PRNGKey(3), {"input_ids": ids, "attention_mask": ids + 1})[
        "params"
    ]
    # a larger head: score differences well above the run file's 6 decimals
    params = {**params, "classifier": {**params["classifier"], "kernel": params["classifier"]["kernel"] * 100}}  # fmt: skip
    return hf.export_cross_encoder(path, cfg, "pooler_logit", params, tokenizer, 32)


def _write(path, rows):
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    return {
        "plain": _write(tmp_path / "c2.tsv", [(p, t) for p, t in PARAS.items()]),
        "three": _write(tmp_path / "c3.tsv", [(p, t, TITLES[p]) for p, t in PARAS.items()]),
        "titles": _write(tmp_path / "titles.tsv", list(TITLES.items())),
    }


def _encode(model, inp, out, *extra):
    argv = ["encode", "--model", str(model), "--kind", "passage", "--input", str(inp)]
    assert rqa([*argv, "--output", str(out), "--no-progress", *extra]) == 0
    return np.load(out / "embeddings.npy")


def test_encode_titles_file_equals_three_column_corpus(tmp_path, tiny_tokenizer, files):
    model = dual_dir(tmp_path / "de", tiny_tokenizer)
    with_file = _encode(model, files["plain"], tmp_path / "a", "--titles", str(files["titles"]))
    with_column = _encode(model, files["three"], tmp_path / "b")
    without = _encode(model, files["plain"], tmp_path / "c")
    np.testing.assert_allclose(with_file, with_column, atol=1e-6)
    assert not np.allclose(with_file[0], without[0], atol=1e-4)  # p0 has a title
    np.testing.assert_allclose(with_file[1], without[1], atol=1e-6)  # '-': no title
    # sharded: the titles file is read once for every shard
    argv = ["--titles", str(files["titles"]), "--shard-size", "2"]
    enc = ["encode", "--model", str(model), "--kind", "passage", "--input", str(files["plain"])]
    assert rqa([*enc, "--output", str(tmp_path / "s"), "--no-progress", *argv]) == 0
    np.testing.assert_allclose(read_embeddings(tmp_path / "s")[0], with_column, atol=1e-6)


def test_encode_titles_file_wins_over_the_corpus_column(tmp_path, tiny_tokenizer, files):
    model = dual_dir(tmp_path / "de", tiny_tokenizer)
    other = _write(tmp_path / "other.tsv", [("p0", "big dog")])  # p1, p2: the column's
    got = _encode(model, files["three"], tmp_path / "a", "--titles", str(other))
    want = _encode(model, _write(tmp_path / "c3b.tsv", [("p0", PARAS["p0"], "big dog"),
                   ("p1", PARAS["p1"], "-"), ("p2", PARAS["p2"], "cat")]), tmp_path / "b")  # fmt: skip
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_encode_titles_verbatim_in_the_literal_title_form(tmp_path, tiny_tokenizer, files):
    """rocketqa_literal tells '' from '-': the file's titles go verbatim, as the column's do."""
    model = dual_dir(tmp_path / "de", tiny_tokenizer, title_form="rocketqa_literal")
    empty = _write(tmp_path / "t.tsv", [("p0", ""), ("p1", "-")])
    got = _encode(model, files["plain"], tmp_path / "a", "--titles", str(empty))
    want = _encode(model, _write(tmp_path / "c3.tsv", [("p0", PARAS["p0"], ""),
                   ("p1", PARAS["p1"], "-"), ("p2", PARAS["p2"], "-")]), tmp_path / "b")  # fmt: skip
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_encode_titles_refused_for_queries_and_validated_first(
    tmp_path, tiny_tokenizer, files, capsys, monkeypatch
):
    import rqa_jax.inference

    model = dual_dir(tmp_path / "de", tiny_tokenizer)
    monkeypatch.setattr(
        rqa_jax.inference, "load_dual_encoder", lambda *a, **k: pytest.fail("loaded")
    )
    argv = ["encode", "--model", str(model), "--input", str(files["plain"]), "--output", str(tmp_path / "o")]  # fmt: skip
    assert rqa([*argv, "--kind", "query", "--titles", str(files["titles"])]) == 1
    assert "--titles applies to --kind passage only" in capsys.readouterr().err
    bad = _write(tmp_path / "bad.tsv", [("p0", "t"), ("p1",)])
    assert rqa([*argv, "--kind", "passage", "--titles", str(bad)]) == 1
    assert f"{bad}:2: expected 2 tab-separated columns" in capsys.readouterr().err


def test_rerank_titles_file_equals_three_column_corpus(tmp_path, tiny_tokenizer, files):
    model = cross_dir(tmp_path / "ce", tiny_tokenizer)
    queries = _write(tmp_path / "q.tsv", [("q1", "what is a dog"), ("q2", "big cat")])
    run = tmp_path / "in.run"
    formats.write_run(run, {"q1": [("p0", 3.0), ("p1", 2.0), ("p2", 1.0)], "q2": [("p2", 1.0), ("p0", 0.5)]})  # fmt: skip

    def rerank(corpus, out, *extra):
        argv = ["rerank", "--model", str(model), "--queries", str(queries), "--run", str(run)]
        assert rqa([*argv, "--corpus", str(corpus), "--output", str(out), "--no-progress", *extra]) == 0  # fmt: skip
        return {(q, p): s for q, docs in formats.read_run(out).items() for p, s in docs}

    with_file = rerank(files["plain"], tmp_path / "a.run", "--titles", str(files["titles"]))
    with_column = rerank(files["three"], tmp_path / "b.run")
    without = rerank(files["plain"], tmp_path / "c.run")
    assert with_file.keys() == with_column.keys()
    for key, score in with_file.items():
        assert score == pytest.approx(with_column[key], abs=1e-5)
    assert with_file[("q1", "p0")] != pytest.approx(without[("q1", "p0")], abs=1e-5)
    assert with_file[("q1", "p1")] == pytest.approx(without[("q1", "p1")], abs=1e-5)

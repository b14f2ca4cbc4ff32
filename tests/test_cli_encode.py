"""`rqa encode`: parity with sentence-transformers, streaming in chunks, and bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats
from rqa_jax.data.sample import generate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small generated sample corpus (`id<TAB>text`)."""
    paths = generate(
        tmp_path_factory.mktemp("data"), entities_per_type=6, train_queries=8, dev_queries=8
    )
    rows = list(formats.iter_collection(paths["collection"]))
    return paths["collection"], [r.id for r in rows], [r.text for r in rows]


def test_encode_with_no_flags_equals_sentence_transformers(minilm_dir, corpus, tmp_path):
    from sentence_transformers import SentenceTransformer

    path, ids, texts = corpus
    out = tmp_path / "out"
    argv = ["encode", "--model", str(minilm_dir), "--kind", "passage", "--input", str(path)]
    assert rqa([*argv, "--output", str(out)]) == 0
    emb = np.load(out / "embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (len(texts), 384)
    assert (out / "ids.txt").read_text().split("\n")[:-1] == ids
    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["pooling"] == "mean" and meta["normalize"] and meta["max_length"] == 256
    assert not list(out.glob("*.partial"))


def test_chunked_streaming_gives_the_same_rows(minilm_dir, corpus, tmp_path):
    from rqa_jax.api import load_dual_encoder
    from rqa_jax.index.encode import encode_file

    path, _, _ = corpus
    model = load_dual_encoder(minilm_dir, batch_size=4)
    encode_file(model, "passage", path, tmp_path / "a", chunk_size=7, progress=False)
    encode_file(model, "passage", path, tmp_path / "b", chunk_size=1000, progress=False)
    np.testing.assert_allclose(
        np.load(tmp_path / "a" / "embeddings.npy"),
        np.load(tmp_path / "b" / "embeddings.npy"),
        atol=1e-6,
    )


def test_flags_override_the_model_dir(minilm_dir, corpus, tmp_path):
    path, _, _ = corpus
    out = tmp_path / "cls"
    argv = ["encode", "--model", str(minilm_dir), "--kind", "query", "--input", str(path)]
    assert (
        rqa(
            [
                *argv,
                "--output",
                str(out),
                "--pooling",
                "cls",
                "--no-normalize",
                "--max-length",
                "16",
            ]
        )
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["pooling"], meta["normalize"], meta["max_length"]) == ("cls", False, 16)
    assert np.linalg.norm(np.load(out / "embeddings.npy"), axis=1).max() > 1.5


def _bad(tmp_path, capsys, argv):
    out = tmp_path / "out"
    rc = rqa([*argv, "--output", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert not out.exists() or not any(out.iterdir())
    return err


def test_line_without_tab_names_file_and_line(minilm_dir, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("p1\tfine text\np2 has no tab\n")
    err = _bad(
        tmp_path,
        capsys,
        ["encode", "--model", str(minilm_dir), "--kind", "passage", "--input", str(bad)],
    )
    assert f"{bad}:2: expected 'id<TAB>text" in err


def test_empty_text_names_file_and_line(minilm_dir, tmp_path, capsys):
    bad = tmp_path / "empty.tsv"
    bad.write_text("q1\tfine\nq2\t   \n")
    err = _bad(
        tmp_path,
        capsys,
        ["encode", "--model", str(minilm_dir), "--kind", "query", "--input", str(bad)],
    )
    assert f"{bad}:2: empty text for id 'q2'" in err


def test_missing_model_dir_and_unsupported_architecture(corpus, tmp_path, capsys):
    path, _, _ = corpus
    err = _bad(
        tmp_path,
        capsys,
        ["encode", "--model", str(tmp_path / "nope"), "--kind", "query", "--input", str(path)],
    )
    assert "does not exist" in err
    weird = tmp_path / "gpt"
    weird.mkdir()
    (weird / "config.json").write_text('{"model_type": "gpt2"}')
    err = _bad(
        tmp_path, capsys, ["encode", "--model", str(weird), "--kind", "query", "--input", str(path)]
    )
    assert "model_type 'gpt2' is not supported" in err


def test_missing_input_file(minilm_dir, tmp_path, capsys):
    argv = [
        "encode",
        "--model",
        str(minilm_dir),
        "--kind",
        "query",
        "--input",
        str(tmp_path / "x.tsv"),
    ]
    assert "does not exist" in _bad(tmp_path, capsys, argv)


def test_failure_midway_keeps_earlier_complete_output(minilm_dir, corpus, tmp_path, capsys):
    path, _, _ = corpus
    out = tmp_path / "out"
    argv = ["encode", "--model", str(minilm_dir), "--kind", "passage", "--output", str(out)]
    assert rqa([*argv, "--input", str(path)]) == 0
    before = np.load(out / "embeddings.npy")
    bad = tmp_path / "bad.tsv"
    bad.write_text("p1\tok\np2\n")
    assert rqa([*argv, "--input", str(bad)]) != 0
    np.testing.assert_array_equal(np.load(out / "embeddings.npy"), before)


def test_console_script_exit_code(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rqa_jax.cli", "encode", "--model", str(tmp_path), "--kind", "query",
         "--input", str(bad), "--output", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"{bad}:1: expected" in proc.stderr


def test_interrupted_encoding_resumes_to_identical_output(minilm_dir, corpus, tmp_path):
    from rqa_jax.api import load_dual_encoder
    from rqa_jax.index.encode import encode_file

    path, ids, _ = corpus
    model = load_dual_encoder(minilm_dir, batch_size=8)
    encode_file(model, "passage", path, tmp_path / "whole", chunk_size=5, progress=False)

    class Interrupted(Exception):
        pass

    calls, fail_on_call = [], [3]
    real = model.encode_para

    def flaky(texts, titles=None):
        calls.append(len(texts))
        if len(calls) == fail_on_call[0]:
            raise Interrupted  # e.g. the job was killed during the third chunk
        return real(texts, titles)

    model.encode_para = flaky
    with pytest.raises(Interrupted):
        encode_file(model, "passage", path, tmp_path / "split", chunk_size=5, progress=False)
    assert not (tmp_path / "split" / "embeddings.npy").exists()  # nothing looks finished
    assert json.loads((tmp_path / "split" / "progress.json").read_text())["done"] == 10
    calls.clear()
    fail_on_call[0] = 0  # the re-run is not interrupted
    n = encode_file(model, "passage", path, tmp_path / "split", chunk_size=5, progress=False)
    assert sum(calls) == len(ids) - 10  # only the rows not yet done were encoded
    np.testing.assert_array_equal(
        np.load(tmp_path / "split" / "embeddings.npy"),
        np.load(tmp_path / "whole" / "embeddings.npy"),
    )
    assert (tmp_path / "split" / "ids.txt").read_text() == (
        tmp_path / "whole" / "ids.txt"
    ).read_text()
    assert not (tmp_path / "split" / "progress.json").exists() and n == len(ids)


def test_sharded_encoding_split_over_processes_equals_one_file(minilm_dir, corpus, tmp_path):
    from rqa_jax.api import load_dual_encoder
    from rqa_jax.index.encode import encode_file, encode_sharded
    from rqa_jax.index.search import read_embeddings

    path, ids, _ = corpus
    model = load_dual_encoder(minilm_dir, batch_size=16)
    encode_file(model, "passage", path, tmp_path / "one", progress=False)
    out = tmp_path / "sharded"
    # two "processes" of a multi-host job, each taking every other shard of 25 rows
    assert [
        p.name for p in encode_sharded(model, "passage", path, out, 25, 1, 2, progress=False)
    ] == [
        "shard-00001",
        "shard-00003",
    ]
    assert not (out / "shards.json").exists()
    with pytest.raises(FileNotFoundError, match="not finished"):
        read_embeddings(out)
    encode_sharded(model, "passage", path, out, 25, 0, 2, progress=False)
    emb, got_ids, _ = read_embeddings(out)
    np.testing.assert_allclose(emb, np.load(tmp_path / "one" / "embeddings.npy"), atol=1e-6)
    assert got_ids == ids
    # a re-run skips finished shards (no encoding at all)
    model.encode_para = lambda *a, **k: pytest.fail("finished shards must not be re-encoded")
    encode_sharded(model, "passage", path, out, 25, 0, 1, progress=False)


def test_float16_storage(minilm_dir, corpus, tmp_path):
    path, _, _ = corpus
    argv = [
        "encode",
        "--model",
        str(minilm_dir),
        "--kind",
        "passage",
        "--input",
        str(path),
        "--no-progress",
    ]
    assert rqa([*argv, "--output", str(tmp_path / "f32")]) == 0
    assert rqa([*argv, "--output", str(tmp_path / "f16"), "--storage-dtype", "float16"]) == 0
    f16 = np.load(tmp_path / "f16" / "embeddings.npy")
    assert f16.dtype == np.float16
    np.testing.assert_allclose(
        f16.astype(np.float32), np.load(tmp_path / "f32" / "embeddings.npy"), atol=1e-3
    )

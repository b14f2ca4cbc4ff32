"""Errors at the right time and of the right kind: user errors are the project's own types,
printed as one line (exit 1; --debug adds the traceback); anything else is a bug (traceback,
exit 70)."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import tiny_config

from rqa_jax import errors
from rqa_jax.cli import USER_ERRORS
from rqa_jax.cli import main as rqa
from rqa_jax.data import formats
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel, UnsupportedModelError
from rqa_jax.models.towers import CrossEncoderNet


def dual_dir(path, tokenizer):
    cfg = tiny_config()
    return hf.export_bert(path, cfg, hf.init_params(BertModel(cfg)), tokenizer, "cls", False, 32)


def cross_dir(path, tokenizer):
    cfg = tiny_config()
    net = CrossEncoderNet(cfg, "v1")
    ids = np.zeros((1, 8), np.int32)
    params = net.init(jax.random.PRNGKey(3), {"input_ids": ids, "attention_mask": ids + 1})
    return hf.export_cross_encoder(path, cfg, "v1", params["params"], tokenizer, 32)


def _run(capsys, argv):
    capsys.readouterr()
    rc = rqa([str(a) for a in argv])
    return rc, capsys.readouterr().err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a command loads its model (it should have refused its input first)."""
    import rqa_jax.inference as inference

    for name in ("load_dual_encoder", "load_cross_encoder"):
        monkeypatch.setattr(inference, name, lambda *a, **k: pytest.fail("the model was loaded"))


def test_error_types_are_the_projects_and_keep_their_builtin_bases():
    assert set(USER_ERRORS) == {errors.RqaError, FileNotFoundError}
    for cls, builtin in ((formats.FormatError, ValueError), (hf.ModelDirError, FileNotFoundError),
                         (hf.CheckpointMismatchError, ValueError), (UnsupportedModelError, ValueError),
                         (errors.MissingIdError, KeyError), (errors.ModelKindError, ValueError)):  # fmt: skip
        assert issubclass(cls, errors.RqaError) and issubclass(cls, builtin), cls
    assert str(errors.MissingIdError("passage 'p9' is missing")) == "passage 'p9' is missing"


def test_encode_refuses_duplicate_ids_before_loading_the_model(
    tmp_path, tiny_tokenizer, capsys, no_model_load
):
    model = dual_dir(tmp_path / "de", tiny_tokenizer)
    dup = tmp_path / "dup.tsv"
    dup.write_text("p1\ta dog\np2\ta cat\np3\tbig\np2\tsmall\n")
    argv = ["encode", "--model", model, "--kind", "passage", "--input", dup, "--output", tmp_path / "o"]  # fmt: skip
    rc, err = _run(capsys, argv)
    assert rc == 1
    assert f"{dup}:4: duplicate id 'p2' (first on line 2)" in err
    assert not (tmp_path / "o").exists()


def test_trailing_blank_lines_are_ignored_a_blank_line_inside_is_named(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("p1\ta dog\np2\ta cat\n\n  \n")
    assert [r.id for r in formats.iter_collection(path)] == ["p1", "p2"]
    run = tmp_path / "r.run"
    run.write_text("q1 Q0 p1 1 2.0 t\n\n")
    assert formats.read_run(run) == {"q1": [("p1", 2.0)]}
    (tmp_path / "qrels").write_text("q1\t0\tp1\t1\n\n")
    assert formats.read_qrels(tmp_path / "qrels") == {"q1": {"p1": 1}}
    path.write_text("p1\ta dog\n\np2\ta cat\n")
    with pytest.raises(formats.FormatError, match=r"c.tsv:2: blank line"):
        list(formats.iter_collection(path))
    dup = tmp_path / "d.tsv"  # duplicate-id line numbers are file lines
    dup.write_text("p1\ta\np2\tb\np1\tc\n\n")
    with pytest.raises(
        formats.FormatError, match=r"d.tsv:3: duplicate pid 'p1' \(first on line 1\)"
    ):
        list(formats.iter_collection(dup))


def test_encode_accepts_a_trailing_blank_line(tmp_path, tiny_tokenizer):
    model = dual_dir(tmp_path / "de", tiny_tokenizer)
    path = tmp_path / "q.tsv"
    path.write_text("q1\twhat is a dog\nq2\tbig cat\n\n")
    argv = ["encode", "--model", model, "--kind", "query", "--input", path, "--output", tmp_path / "o", "--no-progress"]  # fmt: skip
    assert rqa([str(a) for a in argv]) == 0
    assert (tmp_path / "o" / "ids.txt").read_text() == "q1\nq2\n"


def test_a_model_dir_of_the_wrong_kind_is_refused(tmp_path, tiny_tokenizer, capsys, no_model_load):
    dual, cross = (
        dual_dir(tmp_path / "de", tiny_tokenizer),
        cross_dir(tmp_path / "ce", tiny_tokenizer),
    )
    (tmp_path / "q.tsv").write_text("q1\twhat is a dog\n")
    (tmp_path / "c.tsv").write_text("p1\ta dog\n")
    formats.write_run(tmp_path / "r.run", {"q1": [("p1", 1.0)]})
    enc = ["encode", "--kind", "query", "--input", tmp_path / "q.tsv", "--output", tmp_path / "o"]
    rc, err = _run(capsys, [*enc, "--model", cross])
    assert rc == 1 and "is a re-ranker (BertForSequenceClassification), not a dual encoder" in err
    rerank = ["rerank", "--queries", tmp_path / "q.tsv", "--corpus", tmp_path / "c.tsv",
              "--run", tmp_path / "r.run", "--output", tmp_path / "x.run"]  # fmt: skip
    rc, err = _run(capsys, [*rerank, "--model", dual])
    assert rc == 1 and "is not a re-ranker: its config.json's architectures are BertModel" in err
    towers = tmp_path / "towers"  # rqa export's two-tower layout
    for name in ("query_encoder", "passage_encoder"):
        dual_dir(towers / name, tiny_tokenizer)
    rc, err = _run(capsys, [*rerank, "--model", towers])
    assert rc == 1 and "is a dual encoder (query_encoder/ + passage_encoder/)" in err


def test_user_error_is_one_line_and_debug_adds_the_traceback(tmp_path, capsys):
    run = tmp_path / "r.run"
    run.write_text("q1 Q0 p1 1 2.0 t\n")
    rc, err = _run(capsys, ["evaluate", "--run", run])
    assert rc == 1
    assert err == "rqa evaluate: error: nothing to evaluate: give --qrels and/or --answers\n"
    for argv in (["--debug", "evaluate", "--run", run], ["evaluate", "--run", run, "--debug"]):
        rc, err = _run(capsys, argv)
        assert rc == 1 and "Traceback (most recent call last)" in err
        assert "UserInputError: nothing to evaluate" in err
        assert err.endswith(
            "rqa evaluate: error: nothing to evaluate: give --qrels and/or --answers\n"
        )


def test_a_missing_id_is_a_missing_id_error_still_a_key_error():
    from rqa_jax.eval.answers import top_k_accuracy

    with pytest.raises(KeyError) as e:  # still a KeyError for library callers
        top_k_accuracy({"q1": [("p9", 1.0)]}, {"q1": ("dog",)}, {"p1": "a dog"})
    assert isinstance(e.value, errors.MissingIdError)
    assert str(e.value) == "run names passage 'p9' that is not in the corpus"


@pytest.mark.parametrize("bug", [ValueError, KeyError, TypeError])
def test_a_library_bug_is_not_reported_as_a_user_error(tmp_path, capsys, monkeypatch, bug):
    import rqa_jax.eval.metrics

    def broken(*args, **kwargs):
        raise bug("boom")

    monkeypatch.setattr(rqa_jax.eval.metrics, "evaluate", broken)
    run, qrels = tmp_path / "r.run", tmp_path / "qrels"
    run.write_text("q1 Q0 p1 1 2.0 t\n")
    qrels.write_text("q1\t0\tp1\t1\n")
    rc, err = _run(capsys, ["evaluate", "--run", run, "--qrels", qrels])
    assert rc == 70
    assert "Traceback (most recent call last)" in err and f"{bug.__name__}: " in err
    assert f"rqa evaluate: internal error ({bug.__name__}): this is a bug in rqa_jax" in err
    assert "rqa evaluate: error:" not in err


def test_a_lost_peer_process_exits_75_with_its_own_message_not_as_a_bug(
    tmp_path, capsys, monkeypatch
):
    """In a multi-process run, JAX's word that another process died or timed out (what a
    starved process meets under heavy load) is said as such, exit 75, not a bug's 70; the
    same error outside a multi-process run stays a bug."""
    import jax

    import rqa_jax.eval.metrics

    def lost(*args, **kwargs):
        raise jax.errors.JaxRuntimeError(
            "UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats): "
            "/job:jax_worker/replica:0/task:1\nanother task died"
        )

    monkeypatch.setattr(rqa_jax.eval.metrics, "evaluate", lost)
    monkeypatch.setenv("RQA_HEARTBEAT_TIMEOUT_S", "10")
    run, qrels = tmp_path / "r.run", tmp_path / "qrels"
    run.write_text("q1 Q0 p1 1 2.0 t\n")
    qrels.write_text("q1\t0\tp1\t1\n")
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    rc, err = _run(capsys, ["evaluate", "--run", run, "--qrels", qrels])
    assert rc == 75 and "Traceback" not in err
    assert "rqa evaluate: error: another process of this" in err
    assert "stopped sending heartbeats" in err and "raise RQA_HEARTBEAT_TIMEOUT_S (now 10 s)" in err
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    rc, err = _run(capsys, ["evaluate", "--run", run, "--qrels", qrels])
    assert rc == 70 and "internal error (JaxRuntimeError)" in err


def test_bad_config_values_are_config_errors(tmp_path, capsys):
    from rqa_jax.config_flags import config_with_overrides

    spec = "configs/demo_dual.py"
    for override, message in (("--config.nope=1", "unknown config key 'nope'"),
                              ("--config.num_train_steps=many", "is int; got 'many'"),
                              ("--config.data.nope=1", "unknown config key 'data.nope'"),
                              ("stray", "unexpected argument 'stray'")):  # fmt: skip
        with pytest.raises(errors.ConfigError, match=message):
            config_with_overrides(spec, [override])
    rc, err = _run(capsys, ["train", "--config", spec, "--workdir", tmp_path, "--config.nope=1"])
    assert rc == 2 and err == "rqa train: error: unknown config key 'nope'\n"


def test_console_script_exit_codes(tmp_path):
    run = tmp_path / "r.run"
    run.write_text("q1 Q0 p1 1 2.0 t\n")
    proc = subprocess.run([sys.executable, "-m", "rqa_jax.cli", "evaluate", "--run", str(run)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_library_loaders_refuse_the_wrong_kind(tmp_path, tiny_tokenizer):
    from rqa_jax.inference import load_cross_encoder, load_dual_encoder

    dual, cross = (
        dual_dir(tmp_path / "de", tiny_tokenizer),
        cross_dir(tmp_path / "ce", tiny_tokenizer),
    )
    with pytest.raises(errors.ModelKindError, match="is a re-ranker"):
        load_dual_encoder(cross)
    with pytest.raises(errors.ModelKindError, match="is not a re-ranker"):
        load_cross_encoder(dual)
    assert load_dual_encoder(dual).dim == 32 and load_cross_encoder(cross).head == "v1"

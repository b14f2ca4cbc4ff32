"""RocketQA's data stages as real multi-process runs (2 processes joined through
``jax.distributed``, each with its own CPU devices) against 1 process: `rqa search
--format binary`, `rqa score` and `rqa denoise` on binary runs split their chunks of queries
over the processes, and write the same files as one process does. A `rqa score` killed
mid-way (SIGKILL) and run again finishes with the same scores, keeping the chunks it had
finished."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from test_multiprocess import _launch, _logs, _wait, cpu_hog

from rqa_jax.cli import main as rqa
from rqa_jax.data import formats as F
from rqa_jax.data.binrun import BinaryRun
from rqa_jax.data.sample import generate
from rqa_jax.inference import load_tokenizer
from rqa_jax.models import hf
from rqa_jax.models.bert import BertModel
from rqa_jax.models.towers import CrossEncoderNet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    """The sample's files, a tiny random dual encoder and re-ranker (MiniLM's tokenizer),
    the corpus encoded and indexed exactly."""
    import jax

    tmp = tmp_path_factory.mktemp("stages")
    paths = generate(tmp / "data", entities_per_type=10, train_queries=120, dev_queries=8)
    tok = load_tokenizer(minilm_dir)
    cfg = tiny_config(vocab_size=tok.vocab_size, max_position_embeddings=128)
    dual = hf.export_bert(tmp / "dual", cfg, hf.init_params(BertModel(cfg)), tok, "cls", False, 32)
    net = CrossEncoderNet(cfg, "v1")
    ids = np.zeros((1, 8), np.int32)
    params = jax.jit(lambda r: net.init(r, {"input_ids": ids, "attention_mask": ids + 1}))(
        jax.random.PRNGKey(1)
    )
    ce = hf.export_cross_encoder(tmp / "ce", cfg, "v1", params["params"], tok, 64)
    corpus = paths["collection"]
    assert rqa(["encode", "--model", str(dual), "--kind", "passage", "--input", str(corpus),
                "--output", str(tmp / "emb"), "--no-progress"]) == 0  # fmt: skip
    assert (
        rqa(
            [
                "index",
                "--embeddings",
                str(tmp / "emb"),
                "--output",
                str(tmp / "idx"),
                "--backend",
                "exact",
            ]
        )
        == 0
    )
    return tmp, paths, dual, ce


def _rqa(args: list[str], processes: int, logs: Path, cache: Path) -> None:
    procs = _launch(args, processes, logs, RQA_CACHE_DIR=str(cache))
    assert _wait(procs, 600) == [0] * processes, _logs(logs)


def _steps(tmp: Path, paths: dict, dual: Path, ce: Path, processes: int) -> Path:
    out = tmp / f"p{processes}"
    cache = tmp / f"cache{processes}"
    common = ["--queries", str(paths["queries.train"]), "--corpus", str(paths["collection"])]
    _rqa(["search", "--model", str(dual), "--index", str(tmp / "idx"), "--queries", str(paths["queries.train"]),
          "--top-k", "60", "--format", "binary", "--chunk-queries", "16", "--output", str(out / "train.bin"),
          "--no-progress"], processes, out / "logs-search", cache)  # fmt: skip
    _rqa(["score", "--model", str(ce), "--run", str(out / "train.bin"), *common, "--top", "20",
          "--chunk-queries", "16", "--output", str(out / "ce.bin"), "--no-progress"],
         processes, out / "logs-score", cache)  # fmt: skip
    _rqa(["mine", "--run", str(out / "train.bin"), "--qrels", str(paths["qrels.train"]), "--depth", "40",
          "--corpus", str(paths["collection"]), "--output", str(out / "mined.bin")], 1, out / "logs-mine", cache)  # fmt: skip
    return out


def test_two_processes_write_what_one_process_writes(setup):
    tmp, paths, dual, ce = setup
    one = _steps(tmp, paths, dual, ce, 1)
    with cpu_hog(2):  # the 2-process run on a machine kept busy: its barriers must hold
        two = _steps(tmp, paths, dual, ce, 2)
    for name in ("train.bin", "ce.bin"):
        a, b = BinaryRun(one / name), BinaryRun(two / name)
        assert a.qids == b.qids and len(a) == 120
        np.testing.assert_array_equal(a.rows, b.rows)
        np.testing.assert_array_equal(a.scores, b.scores)
    # the scores run holds the search's top 20, re-scored
    np.testing.assert_array_equal(
        BinaryRun(one / "ce.bin").rows, BinaryRun(one / "train.bin").rows[:, :20]
    )
    # denoising split over 2 processes: the same TSV as 1 process (the judged queries are
    # those of the mined run)
    mined = BinaryRun(one / "mined.bin")
    assert 0 < len(mined) <= 120
    for out, processes in ((one, 1), (two, 2)):
        _rqa(["denoise", "--run", str(out / "train.bin"), "--qrels", str(paths["qrels.train"]), "--scores",
              str(out / "ce.bin"), "--queries", str(paths["queries.train"]), "--corpus", str(paths["collection"]),
              "--top", "20", "--depth", "60", "--per-positive", "2", "--tau-neg", "0.5", "--output",
              str(out / "train.tsv")], processes, out / "logs-denoise", tmp / f"cache{processes}")  # fmt: skip
    assert (one / "train.tsv").read_text() == (two / "train.tsv").read_text()
    assert len(list(F.iter_dual_train(one / "train.tsv"))) == 2 * sum(
        1 for q in F.read_qrels(paths["qrels.train"]).values() for rel in q.values() if rel > 0
    )


def test_a_killed_score_run_resumes_to_the_same_scores(setup):
    tmp, paths, dual, ce = setup
    out = tmp / "kill"
    cache = tmp / "cache_kill"
    _rqa(["search", "--model", str(dual), "--index", str(tmp / "idx"), "--queries", str(paths["queries.train"]),
          "--top-k", "60", "--format", "binary", "--output", str(out / "train.bin"), "--no-progress"],
         1, out / "logs-search", cache)  # fmt: skip
    args = ["score", "--model", str(ce), "--run", str(out / "train.bin"), "--queries", str(paths["queries.train"]),
            "--corpus", str(paths["collection"]), "--top", "50", "--chunk-queries", "4", "--no-progress"]  # fmt: skip
    _rqa([*args, "--output", str(out / "whole.bin")], 1, out / "logs-whole", cache)
    procs = _launch(
        [*args, "--output", str(out / "cut.bin")], 1, out / "logs-cut", RQA_CACHE_DIR=str(cache)
    )
    marks = out / "cut.bin" / "chunks.u8"
    deadline = time.time() + 300
    while time.time() < deadline and not (marks.is_file() and sum(marks.read_bytes()) >= 2):
        time.sleep(0.05)
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait()
    done_before = sum(marks.read_bytes())
    assert 2 <= done_before < 30, "the kill should land mid-way"
    _rqa([*args, "--output", str(out / "cut.bin")], 1, out / "logs-again", cache)
    np.testing.assert_array_equal(
        BinaryRun(out / "cut.bin").scores, BinaryRun(out / "whole.bin").scores
    )

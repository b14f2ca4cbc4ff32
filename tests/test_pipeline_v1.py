"""`rqa pipeline v1` end to end on the sample with a tiny model: killed mid-stage and run
again it finishes without redoing finished stages; a finished pipeline does no work; the
report has the paper's table shape; the denoised data loads with the RocketQA-TSV reader."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rqa_jax.config_flags import load_config
from rqa_jax.data import formats as F
from rqa_jax.eval.reranker_check import WeakRerankerError
from rqa_jax.pipelines.rocketqa_v1 import STAGES, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "configs" / "rocketqa_v1_pipeline_marco.py") + ":runlocal"


@pytest.mark.slow
def test_pipeline_killed_mid_stage_resumes_and_a_finished_one_does_no_work(tmp_path, capsys):
    work = tmp_path / "v1"
    overrides = ["--config.reranker.num_train_steps=40", "--config.reranker.checkpoint_every=2"]
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    cmd = [sys.executable, "-m", "rqa_jax.cli", "pipeline", "v1", "--config", CONFIG, "--workdir", str(work),
           "--no-progress", *overrides]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("[ce] running"):
            break
    deadline = time.time() + 300
    while not (work / "ce" / "train" / "checkpoints" / "2").is_dir() and time.time() < deadline:
        time.sleep(0.2)  # inside ce's training, after its first checkpoint
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (work / "de0" / "done.json").is_file() and not (work / "ce" / "done.json").exists(), (
        "".join(seen)
    )
    de0_done = (work / "de0" / "done.json").read_text()

    config = load_config(CONFIG)
    config.reranker.num_train_steps, config.reranker.checkpoint_every = 40, 2
    # the guard: a re-ranker short of the retriever + margin stops the pipeline after ce
    config.guard.allow_weak_reranker, config.guard.margin = False, 1.5  # MRR gains are < 1
    with pytest.raises(
        WeakRerankerError, match=r"does not beat the retriever.*allow_weak_reranker=True"
    ):
        run_pipeline(config, work, progress=False)
    assert "rqa train: resumed from step" in capsys.readouterr().out  # ce continued its training
    assert (work / "ce" / "done.json").is_file() and not (work / "denoise").exists()
    config.guard.allow_weak_reranker = True  # the override goes on, ce not trained again
    report = run_pipeline(config, work, progress=False)
    assert report["ran"] == ["denoise", "de1", "de1_undenoised", "augment", "de2"]
    check = report["reranker_check"]
    assert check["guard"] == {"margin": 1.5, "passed": False, "allowed_weak": True}
    assert check["reranker_mrr@10"] == pytest.approx(report["stages"]["ce"]["mrr@10"])
    assert check["retriever_mrr@10"] == pytest.approx(report["stages"]["de0"]["mrr@10"])
    assert "## The re-ranker against its retriever" in (work / "report.md").read_text()
    assert (work / "de0" / "done.json").read_text() == de0_done  # not redone
    again = run_pipeline(config, work, progress=False)
    assert again["ran"] == [] and again["stages"] == report["stages"]

    assert set(report["stages"]) == {"de0", "ce", "de1", "de1_undenoised", "de2"}
    for name, metrics in report["stages"].items():
        assert set(metrics) == (
            {"mrr@10"} if name == "ce" else {"mrr@10", "recall@50", "recall@1000"}
        )
    assert report["denoise"]["stats"]["negatives"] == 4 * report["denoise"]["stats"]["positives"]
    saved = json.loads((work / "report.json").read_text())
    assert saved["stages"] == report["stages"] and "ran" not in saved
    assert "| de1_undenoised |" in (work / "report.md").read_text()
    rows = list(F.iter_dual_train(work / "denoise" / "train.tsv"))
    assert len(rows) == report["denoise"]["lines"]
    for name in STAGES:
        assert (work / name / "done.json").is_file()

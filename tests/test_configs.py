"""Configs are locked data whose defaults agree with the library's."""

from pathlib import Path

import pytest

from configs import common
from rqa_jax.models.settings import EncoderSettings


def test_common_defaults_agree_with_encoder_settings():
    c, s = common.get_config(), EncoderSettings()
    assert (c.pooling, c.normalize, c.q_max_len, c.p_max_len, c.title_form) == (
        s.pooling,
        s.normalize,
        s.q_max_len,
        s.p_max_len,
        s.title_form,
    )


def test_unknown_keys_fail_loudly():
    c = common.get_config()
    with pytest.raises(AttributeError):
        c.q_max_length = 64  # typo of q_max_len
    assert common.get_runlocal_config().train_batch_size < c.train_batch_size


def test_paper_configs_carry_the_released_scripts_values():
    """The values RocketQA's released scripts train with (each line in configs/ names its file)."""
    from configs import cross_encoder_marco, cross_encoder_nq, rocketqa_v1_marco, rocketqa_v1_nq

    marco_ce, nq_ce = cross_encoder_marco.get_config(), cross_encoder_nq.get_config()
    for ce, batch, negatives in ((marco_ce, 256, 4), (nq_ce, 64, 1)):
        assert (ce.train_batch_size, ce.data.cross_negatives_per_query) == (batch, negatives)
        assert (ce.learning_rate, ce.warmup_proportion, ce.weight_decay, ce.num_epochs) == (
            1e-5,
            0.0,
            0.01,
            2,
        )
        assert (ce.adam_epsilon, ce.fgm_epsilon, ce.fgm_mode, ce.cross_max_len) == (
            1e-8,
            0.01,
            "rocketqa",
            160,
        )
    assert marco_ce.data.negative_depth == 1000
    for de, batch, epochs in (
        (rocketqa_v1_marco.get_config(), 4096, 40),
        (rocketqa_v1_nq.get_config(), 1024, 30),
    ):
        assert (de.train_batch_size, de.num_epochs, de.learning_rate, de.warmup_proportion) == (
            batch,
            epochs,
            3e-5,
            0.1,
        )
        assert (de.weight_decay, de.adam_epsilon) == (0.0, 1e-8)
    assert rocketqa_v1_marco.get_config().data.negatives == "random"
    for path in (
        "cross_encoder_marco.py",
        "cross_encoder_nq.py",
        "rocketqa_v1_marco.py",
        "rocketqa_v1_nq.py",
    ):
        text = (Path(__file__).resolve().parent.parent / "configs" / path).read_text()
        assert "run_cross_encoder_train.sh" in text or "run_dual_encoder_train.sh" in text


def test_pipeline_configs_have_paper_settings_and_a_runlocal_on_the_sample():
    from configs import demo_pipeline_v1, rocketqa_v1_pipeline_marco, rocketqa_v1_pipeline_nq

    marco, nq = rocketqa_v1_pipeline_marco.get_config(), rocketqa_v1_pipeline_nq.get_config()
    assert (
        marco.mine.depth,
        marco.denoise.top,
        marco.denoise.tau_neg,
        marco.denoise.per_positive,
    ) == (1000, 50, 0.1, 4)
    assert (marco.augment.tau_pos, marco.later_epochs, marco.retriever.num_epochs) == (0.9, 10, 40)
    assert (nq.mine.depth, nq.denoise.top, nq.denoise.per_positive, nq.later_epochs) == (
        100,
        100,
        1,
        30,
    )
    assert (nq.data.source, nq.retriever.data.source, nq.eval.depth) == ("nq", "dpr", 100)
    for module in (rocketqa_v1_pipeline_marco, rocketqa_v1_pipeline_nq, demo_pipeline_v1):
        small = module.get_config("runlocal")
        want = "nq_sample" if module is rocketqa_v1_pipeline_nq else "sample"
        assert small.data.source == want and small.retriever.num_train_steps <= 4
    demo = demo_pipeline_v1.get_config()
    assert demo.ablation_undenoised and demo.data.sample.false_negative_share > 0


def test_v2_configs_carry_the_released_values():
    """RocketQAv2: run_joint_model_train.sh and the paper's §4.1 (each line names its source)."""
    from configs import rocketqa_v2_marco, rocketqa_v2_nq

    marco, nq = rocketqa_v2_marco.get_config(), rocketqa_v2_nq.get_config()
    for c, m, lists, epochs in ((marco, 128, 96, 2), (nq, 32, 96, 3)):
        assert (c.task, c.list_size, c.train_batch_size, c.num_epochs) == (
            "joint",
            m,
            lists,
            epochs,
        )
        assert (c.learning_rate, c.warmup_proportion, c.weight_decay) == (1e-5, 0.0, 0.01)
        assert (c.pair_form, c.q_max_len, c.p_max_len, c.cross_q_max_len) == ("v2", 32, 128, 32)
        assert (c.kl_weight, c.temperature, c.cross_batch_weight) == (1.0, 1.0, 0.0)
        assert c.distillation == "released_code" and c.reranker.cross_head == "v2"
        assert (c.dtype, c.remat) == ("bfloat16", True)  # --use_mix_precision, --use_recompute
    # 384 passages per GPU = 3 lists of 128 (MS MARCO, 32 GPUs) = 12 lists of 32 (NQ, 8 GPUs)
    assert marco.train_batch_size * 128 // 32 == 384 == nq.train_batch_size * 32 // 8


def test_joint_config_has_no_keys_it_would_ignore():
    """One model's settings live under retriever/reranker; nothing at the top names a model."""
    c = common.get_joint_config()
    for key in ("model_dir", "pooling", "normalize", "tie_towers", "fgm_epsilon", "objective"):
        assert key not in c, key
    for key in ("negatives", "num_random_negatives", "cross_negatives_per_query"):
        assert key not in c.data, key


def test_the_configs_package_ships_in_the_wheel(tmp_path):
    """A user who pip-installs the project writes configs that import ``configs.common``."""
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("rqa_jax-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (root / "configs").glob("*.py")}
    assert {n.split("/", 1)[1] for n in names if n.startswith("configs/")} == shipped
    assert "rqa_jax/export.py" in names


def test_documented_v2_commands_continue_a_v1_reranker_as_its_log_odds():
    """The v2 configs' documented commands start from RocketQA's step-2 re-ranker (the v1
    head), which the project refuses to give a fresh v2 head: they pass pooler_logit."""
    import re

    root = Path(__file__).resolve().parent.parent
    for name in ("rocketqa_v2_marco.py", "rocketqa_v2_nq.py"):
        doc = (root / "configs" / name).read_text().split('"""')[1]
        command = re.search(r"rqa train .*?(?=\n\n|\Z)", doc, re.S).group(0)
        assert "--config.reranker.model_dir=" in command and "cross_head=pooler_logit" in command, (
            name
        )
    readme = (root / "README.md").read_text()
    for command in re.findall(
        r"rqa train --config configs/rocketqa_v2_marco.py.*?(?=\n[^ ])", readme, re.S
    ):
        assert "cross_head=pooler_logit" in command, command

"""Every experiment config has a ``runlocal`` variant that runs out of the box on a CPU: a
tiny random model with MiniLM's tokenizer (or MiniLM itself) on the generated sample. Task
configs train through the shared loop, pipeline configs run their pipeline; configs that
another test already runs end to end, exactly as ``:runlocal``, are skipped here (that test
is checked to still do so). A new config without a ``runlocal`` fails here."""

import math
from pathlib import Path

import pytest

from rqa_jax.config_flags import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.py") if p.name not in ("__init__.py", "common.py"))  # fmt: skip
# config -> (the test that runs its :runlocal end to end, the text that shows it does)
RUN_ELSEWHERE = {
    "demo_dual.py": ("test_train_dual.py", 'config = demo_dual.get_config("runlocal")\n    result = train(config, tmp_path)'),
    "rocketqa_v1_marco.py": ("test_multiprocess.py", '"configs/rocketqa_v1_marco.py:runlocal"'),
    "cross_encoder_marco.py": ("test_multiprocess.py", '"configs/cross_encoder_marco.py:runlocal"'),
    "rocketqa_v2_marco.py": ("test_multiprocess.py", '"configs/rocketqa_v2_marco.py:runlocal"'),
    "rocketqa_v1_pipeline_marco.py": ("test_pipeline_v1.py", '"rocketqa_v1_pipeline_marco.py") + ":runlocal"'),
    "rocketqa_v2_pipeline_marco.py": ("test_pipeline_v2.py", '"rocketqa_v2_pipeline_marco.py") + ":runlocal"'),
    # its runlocal writes the sample in DPR's form and reads it as "nq"; the test does the same
    # with files it writes (generate + write_dpr_form), and so this pipeline runs once in CI
    "rocketqa_v1_pipeline_nq.py": ("test_pipeline_nq.py", '"rocketqa_v1_pipeline_nq.py") + ":runlocal"'),
}  # fmt: skip
FAST = {"cross_encoder_nq.py", "demo_cross.py", "rocketqa_v1_nq.py"}  # under ~30 s each


def kind(config) -> str:
    """dual | cross | joint (a task through the loop) | pipeline_v1 | pipeline_v2."""
    if "task" in config:
        return config.task
    return "pipeline_v2" if "joint" in config and "init" in config else "pipeline_v1"


def config_of(name: str, arg: str = ""):
    return load_config(str(ROOT / "configs" / name) + (f":{arg}" if arg else ""))


def _source(config) -> str:
    return (config.v1 if kind(config) == "pipeline_v2" else config).data.source


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_a_runlocal_on_the_sample_and_refuses_other_variants(name):
    small, full = config_of(name, "runlocal"), config_of(name)
    assert small != full, f"configs/{name}: get_config('runlocal') is the full config"
    # the NQ recipe's sample is the same generator's, written in DPR's files with answers
    assert _source(small) in ("sample", "nq_sample"), (
        f"configs/{name}:runlocal must train on the sample"
    )
    with pytest.raises(ValueError, match=r"'' or 'runlocal', got 'runlocl'"):
        config_of(name, "runlocl")  # a typo must not train the full recipe


@pytest.mark.parametrize("name", sorted(RUN_ELSEWHERE))
def test_configs_skipped_here_are_run_elsewhere_as_runlocal(name):
    test_file, shown_by = RUN_ELSEWHERE[name]
    assert shown_by in (ROOT / "tests" / test_file).read_text(), (
        f"tests/{test_file} no longer runs configs/{name}:runlocal: run it in test_runlocal.py"
    )


def _finite(metrics: dict) -> bool:
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


def run_config(name: str, work: Path) -> None:
    config = config_of(name, "runlocal")
    k = kind(config)
    if k == "pipeline_v1":
        from rqa_jax.pipelines.rocketqa_v1 import run_pipeline

        report = run_pipeline(config, work, progress=False)
        assert report["ran"][0] == "data" and report["ran"][-1] == "de2"
        assert {"de0", "ce", "de1", "de2"} <= set(report["stages"]) and (
            work / "report.md"
        ).is_file()
    elif k == "pipeline_v2":
        from rqa_jax.pipelines.rocketqa_v2 import run_pipeline

        report = run_pipeline(config, work, progress=False)
        assert {"init_retriever", "joint_retriever", "joint_reranker"} <= set(report["stages"])
        assert (work / "report.md").is_file()
    else:
        from rqa_jax.train.loop import train

        result = train(config, work)
        assert result["status"] == "completed" and result["step"] == config.num_train_steps
        assert _finite(result["metrics"]) and Path(result["metrics"]["export"]).is_dir()


def _params():
    for name in CONFIGS:
        if name in RUN_ELSEWHERE:
            test_file = RUN_ELSEWHERE[name][0]
            marks = pytest.mark.skip(reason=f"tests/{test_file} runs configs/{name}:runlocal")
        else:
            marks = () if name in FAST else pytest.mark.slow
        yield pytest.param(name, marks=marks, id=name.removesuffix(".py"))


@pytest.mark.parametrize("name", list(_params()))
def test_runlocal_runs(name, tmp_path):
    run_config(name, tmp_path / "work")

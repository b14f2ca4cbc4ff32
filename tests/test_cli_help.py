"""Every option of every `rqa` command has help text with its default; `rqa train --help` and
`rqa pipeline --help` explain --config.KEY=VALUE and list the config files; `make clean`."""

import argparse
import subprocess
from pathlib import Path

import pytest

from rqa_jax.cli import build_parser, build_train_parser
from rqa_jax.cli import main as rqa
from rqa_jax.cli_pipeline import build_pipeline_parser

ROOT = Path(__file__).resolve().parent.parent


def _parsers(parser, name="rqa"):
    """(name, parser) of ``parser`` and every sub-command parser below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _all_parsers():
    yield from _parsers(build_parser())
    yield "rqa train", build_train_parser()
    yield "rqa pipeline", build_pipeline_parser()


def test_every_option_of_every_command_has_help_and_shows_its_default():
    missing, no_default = [], []
    for name, parser in _all_parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(label)
                continue
            if isinstance(action, argparse._SubParsersAction):  # each sub-command's one-liner
                missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
            shown = formatter._get_help_string(action) % {"default": action.default}
            has_default = not any(action.default is v for v in (None, False, argparse.SUPPRESS))
            shows = "default" in shown.lower()
            if action.option_strings and not action.required and has_default and not shows:
                no_default.append(label)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help does not show the default: {no_default}"


def test_defaults_appear_in_the_help_output(capsys):
    with pytest.raises(SystemExit) as e:
        rqa(["encode", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "rows per forward pass (default: 64)" in out
    assert "0 = one file (default: 0)" in out


@pytest.mark.parametrize(
    "command, listed, unlisted",
    [
        (["train"], ["configs/rocketqa_v2_marco.py[:runlocal]", "configs/demo_dual.py"], "demo_pipeline_v1.py"),
        (["pipeline"], ["configs/rocketqa_v1_pipeline_marco.py[:runlocal]", "configs/demo_pipeline_v2.py"], "rocketqa_v2_marco.py "),
    ],
)  # fmt: skip
def test_train_and_pipeline_help_explain_overrides_and_list_the_configs(
    capsys, monkeypatch, command, listed, unlisted
):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e:
        rqa([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--config.KEY=VALUE" in out and "--config.data.dir=" in out and "dotted" in out
    assert ":runlocal" in out
    for name in listed:
        assert name in out
    assert unlisted not in out and "common.py" not in out
    # each config with the first line of its docstring
    first = (ROOT / listed[0].split("[")[0]).read_text().split('"""')[1].splitlines()[0]
    assert first.strip() in out


def test_make_clean_removes_outputs_and_caches_but_keeps_the_venv():
    dry = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    for target in ("demo_out", "*.egg-info", ".pytest_cache", ".ruff_cache", "__pycache__"):
        assert target in dry
    assert "rm -rf .venv" not in dry and "-path ./.venv -prune" in dry
    phony = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY")
    )
    assert "clean" in phony.split()

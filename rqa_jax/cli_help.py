"""Help text shared by the ``rqa`` commands: the formatter that shows each option's default,
and the config-file listing and override rules of ``rqa train`` / ``rqa pipeline``."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import rqa_jax


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs of one line are wrapped, those of several lines kept as written
    (the config listings are tables); each option's help ends with ``(default: X)`` unless it
    already says its default, or there is none to say (a required option, a flag that is off,
    or None: the help then says what None means)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.required
            or not action.option_strings
            or any(action.default is v for v in (None, False, argparse.SUPPRESS))
        ):
            return text
        return f"{text} (default: %(default)s)"


def set_formatter(parser: argparse.ArgumentParser) -> None:
    """:class:`HelpFormatter` for ``parser`` and every sub-command parser below it."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                set_formatter(sub)


def configs_dir() -> Path | None:
    """The ``configs/`` folder: the working directory's, else the one beside the package
    (a source checkout); None when neither exists (an installed wheel has none)."""
    for candidate in (Path.cwd() / "configs", Path(rqa_jax.__file__).parent.parent / "configs"):
        if candidate.is_dir() and any(candidate.glob("*.py")):
            return candidate
    return None


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _first_doc_line(path: Path) -> tuple[str, bool]:
    """(first line of the module docstring, whether get_config takes "runlocal")."""
    try:
        source = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (OSError, SyntaxError, UnicodeDecodeError):
        return "", False
    return doc.strip().split("\n", 1)[0].strip(), '"runlocal"' in source


def list_configs(pipeline: bool) -> str:
    """One line per config file of ``rqa pipeline`` (``pipeline``) or ``rqa train``: its path,
    ``[:runlocal]`` where it has that variant, and the first line of its docstring."""
    root = configs_dir()
    if root is None:
        return "  (no configs/ folder found: run rqa from the repository root)"
    rows = []
    for path in sorted(root.glob("*.py")):
        if path.stem in ("__init__", "common") or ("pipeline" in path.stem) != pipeline:
            continue
        doc, runlocal = _first_doc_line(path)
        rows.append((_display(path) + ("[:runlocal]" if runlocal else ""), doc))
    if not rows:
        return f"  (no config files in {_display(root)})"
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {doc}" for name, doc in rows)


OVERRIDES = """\
Overrides: after the other options, --config.KEY=VALUE sets any key the config has; nested
keys are dotted, e.g. --config.data.dir=/data/msmarco --config.learning_rate=1e-5
--config.retriever.model_dir=DIR (joint and pipeline configs). VALUE is read as the key's
current type (a bool: true, false, 1 or 0; other types, e.g. lists or None, as Python
literals). A key the config does not have is an error, so a typo is never ignored.
FILE.py:runlocal (where listed) picks the config's few-minute CPU variant (a tiny model, the
generated sample data): a smoke test of the same recipe."""


def train_epilog() -> str:
    return (
        "Config files (--config FILE.py[:runlocal]):\n"
        f"{list_configs(pipeline=False)}\n\n{OVERRIDES}\n\n"
        "Examples:\n"
        "  rqa train --config configs/demo_dual.py --workdir demo_out/dual\n"
        "  rqa train --config configs/rocketqa_v1_marco.py --workdir /ckpt/de0 \\\n"
        "      --config.model_dir=/models/ernie-2.0-base-en --config.data.dir=/data/msmarco\n"
        "  rqa train --config configs/rocketqa_v1_marco.py:runlocal --workdir /tmp/de0 "
        "--config.num_train_steps=20"
    )


def pipeline_epilog() -> str:
    return (
        "Config files (--config FILE.py[:runlocal]):\n"
        f"{list_configs(pipeline=True)}\n\n{OVERRIDES}\n\n"
        "Examples:\n"
        "  rqa pipeline v1 --config configs/demo_pipeline_v1.py --workdir demo_out/v1\n"
        "  rqa pipeline v1 --config configs/rocketqa_v1_pipeline_marco.py --workdir /ckpt/v1 \\\n"
        "      --config.data.dir=/data/msmarco --config.retriever.model_dir=/models/ernie-base\n"
        "  rqa pipeline v2 --config configs/rocketqa_v2_pipeline_marco.py:runlocal --workdir /tmp/v2"
    )

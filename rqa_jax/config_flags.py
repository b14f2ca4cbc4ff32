"""Configs from the command line: ``configs/X.py[:arg]`` files and ``--config.key=value``
overrides (ml_collections' config_flags, without absl), shared by ``rqa train`` and
``rqa pipeline``."""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rqa_jax.errors import ConfigError, UserFileNotFoundError


def load_config(spec: str) -> Any:
    """``path/to/config.py[:arg]`` → its ``get_config([arg])`` (a locked ConfigDict)."""
    import importlib.util

    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise UserFileNotFoundError(f"config file {path!r} does not exist")
    # Experiment configs import their siblings (`from configs import common`): make the
    # folder holding configs/ importable wherever rqa runs from.
    root = str(Path(path).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"rqa_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path!r} has no get_config()")
    if arg:
        import inspect

        if not inspect.signature(module.get_config).parameters:
            raise ConfigError(f"config file {path!r}: get_config() takes no argument, got {arg!r}")
        return module.get_config(arg)
    return module.get_config()


def apply_override(config: Any, dotted: str, raw: str) -> None:
    """``--config.a.b=value``: the value is parsed as the type the key already has; a key
    the config does not have is an error (a typo must not be silently ignored)."""
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        node = getattr(node, name, None)
        if node is None:
            raise ConfigError(f"unknown config key {dotted!r}")
    if leaf not in node:
        raise ConfigError(f"unknown config key {dotted!r}")
    current = node[leaf]
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"config key {dotted!r} is a bool; got {raw!r}")
        value: Any = raw.lower() in ("true", "1")
    elif isinstance(current, int | float | str):
        try:
            value = type(current)(raw)
        except ValueError:
            raise ConfigError(
                f"config key {dotted!r} is {type(current).__name__}; got {raw!r}"
            ) from None
    else:
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise ConfigError(
                f"config key {dotted!r}: {raw!r} is not a Python literal (e.g. 1, 'a', [1, 2], None)"
            ) from None
    setattr(node, leaf, value)


def config_with_overrides(spec: str, overrides: Sequence[str]) -> Any:
    """``load_config(spec)`` with each ``--config.key=value`` of ``overrides`` applied; any
    other argument is an error."""
    config = load_config(spec)
    for item in overrides:
        key, eq, raw = item.partition("=")
        if not key.startswith("--config.") or not eq:
            raise ConfigError(
                f"unexpected argument {item!r} (overrides look like --config.key=value)"
            )
        apply_override(config, key[len("--config.") :], raw)
    return config

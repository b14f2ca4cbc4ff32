"""How a model dir wants to be used: pooling, normalisation and max lengths.

Precedence, highest first: explicit arguments/flags → the dir's ``rqa_jax.json`` →
its sentence-transformers metadata (``modules.json``, ``1_Pooling/config.json``, a
``Normalize`` module, ``sentence_bert_config.json``) → RocketQA's defaults below.
So the MiniLM package's model is used as its authors intended (mean pooling, normalised,
256 tokens) without flags, and a RocketQA-style model gets [CLS], 32/128 tokens.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rqa_jax.data.tokenize import TITLE_FORMS
from rqa_jax.errors import UserInputError
from rqa_jax.models.towers import POOLINGS

ST_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


@dataclasses.dataclass(frozen=True)
class EncoderSettings:
    """Inference-time choices for a dual encoder (RocketQA's defaults)."""

    pooling: str = "cls"
    normalize: bool = False
    q_max_len: int = 32
    p_max_len: int = 128
    # "hf": a passage without title encodes as a single text; "rocketqa": [CLS] [SEP] para [SEP];
    # "rocketqa_literal": titles verbatim, a missing one written "-" (the original's inputs).
    title_form: str = "hf"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.title_form not in TITLE_FORMS:
            raise UserInputError(
                f"title_form must be one of {TITLE_FORMS}, got {self.title_form!r}"
            )
        for name in ("q_max_len", "p_max_len"):
            if getattr(self, name) < 4:
                raise UserInputError(f"{name} must be at least 4, got {getattr(self, name)}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None


def sentence_transformers_settings(model_dir: str | Path) -> dict[str, Any]:
    """Pooling / normalize / max lengths declared by sentence-transformers files, if any."""
    path = Path(model_dir)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return {}
    found: dict[str, Any] = {"normalize": False}
    for module in _read_json(modules_file):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Pooling":
            pooling_cfg = _read_json(path / module.get("path", "") / "config.json")
            modes = [mode for key, mode in ST_POOLING_KEYS.items() if pooling_cfg.get(key)]
            others = [
                k for k, v in pooling_cfg.items()
                if k.startswith("pooling_mode_") and v and k not in ST_POOLING_KEYS
            ]  # fmt: skip
            if len(modes) != 1 or others:
                raise UserInputError(
                    f"{path / module.get('path', '')}: pooling {pooling_cfg} is not supported "
                    f"(one of {POOLINGS})"
                )
            found["pooling"] = modes[0]
        elif kind == "Normalize":
            found["normalize"] = True
    sbert_cfg = path / "sentence_bert_config.json"
    if sbert_cfg.is_file():
        max_len = _read_json(sbert_cfg).get("max_seq_length")
        if max_len:
            found["q_max_len"] = found["p_max_len"] = int(max_len)
    return found


def resolve_settings(model_dir: str | Path | None, **overrides: Any) -> EncoderSettings:
    """Settings for ``model_dir`` with ``overrides`` (None values are ignored) on top."""
    merged: dict[str, Any] = {}
    if model_dir is not None:
        merged.update(sentence_transformers_settings(model_dir))
        own = Path(model_dir) / "rqa_jax.json"
        if own.is_file():
            fields = {f.name for f in dataclasses.fields(EncoderSettings)}
            merged.update({k: v for k, v in _read_json(own).items() if k in fields})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return EncoderSettings(**merged)


def write_sentence_transformers_metadata(
    out_dir: Path, dim: int, pooling: str, normalize: bool, max_length: int
) -> None:
    """The files sentence-transformers (and :func:`resolve_settings`) read to use a tower."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    pooling_cfg = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (out_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg, indent=2) + "\n")
    sbert = {"max_seq_length": max_length, "do_lower_case": False}
    (out_dir / "sentence_bert_config.json").write_text(json.dumps(sbert, indent=2) + "\n")

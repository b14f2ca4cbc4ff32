"""Import a model directory as the original RocketQA (PaddlePaddle) releases it, without Paddle.

A RocketQA model dir holds ``config.json`` (``"model_type": "dual_encoder" | "cross_encoder"``)
whose ``model_conf_path`` / ``model_vocab_path`` / ``model_checkpoint_path`` name, relative to
the dir, the ERNIE architecture JSON, the WordPiece vocabulary and a folder with one Paddle
tensor file per parameter (read by :mod:`rqa_jax.models.paddle_format`). It converts to:

* dual encoder, separate towers (``share_parameter`` 0, parameters ``query_*`` and
  ``titlepara_*``) → ``OUT/query_encoder/`` and ``OUT/passage_encoder/`` HF dirs plus
  ``OUT/rqa_jax.json``, the layout ``rqa train`` exports; shared tower (``share_parameter`` 1:
  queries also go through ``titlepara_*``) → one HF dir ``OUT/``.
* cross encoder → an HF sequence-classification dir ``OUT/``: ``joint_training`` 0 is the v1
  head (``pooled_fc`` tanh pooler → ``_cls_out`` 2-way softmax, score P(relevant)),
  ``joint_training`` 1 the RocketQAv2 head (``qtp_*`` parameters, raw [CLS] →
  ``qtp__cls_out`` linear(1), score the logit).

The ERNIE config becomes a BERT config with ERNIE's numerics: LayerNorm epsilon 1e-5, exact
GELU (or ReLU for ERNIE 1.0), FFN 4 × hidden, and task-type embeddings where ``use_task_id``
(HF ``ErnieModel``; the original always feeds task id 0). Dual-encoder towers get a pooler
with identity kernel and zero bias so ``AutoModel`` loads them with no missing weights; it is
not part of the original and [CLS] pooling never uses it.

The original's input forms are recorded in each dir's ``rqa_jax.json``, so ``rqa encode``,
``rqa rerank`` and :func:`rqa_jax.load_model` use them with no flag: raw last-layer [CLS], no
normalisation, the config's max lengths, titles as the original reads them
(``title_form: rocketqa_literal``: ``-`` is a one-token title), and the ``v1`` pair form, which
the ``rocketqa`` package's ``matching`` uses for v1 and v2 cross encoders alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from rqa_jax.errors import UserInputError
from rqa_jax.models import hf
from rqa_jax.models.bert import BertConfig, BertModel
from rqa_jax.models.paddle_format import read_tensor

MODEL_TYPES = ("dual_encoder", "cross_encoder")
LAYER_NORM_EPS = 1e-5  # Paddle's layer_norm default, used by every ERNIE LayerNorm
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class RocketQALayoutError(UserInputError):
    """A RocketQA model dir does not have a layout this converter knows (names the file)."""


# ----------------------------------------------------------------------------- config files


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise hf.ModelDirError(f"{path}: {what} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RocketQALayoutError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise RocketQALayoutError(f"{path}: {what} must be a JSON object")
    return data


def find_config(model: str | Path) -> Path:
    """``config.json`` of a RocketQA model dir, or the config file itself if given one."""
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise hf.ModelDirError(
            f"{path}: no RocketQA config.json (give the model dir or its config file)"
        )
    return path


def read_rocketqa_config(config_path: Path) -> dict[str, Any]:
    """The model's ``config.json``, checked for the keys the original reads."""
    cfg = _read_json(config_path, "RocketQA config")
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        raise RocketQALayoutError(
            f"{config_path}: unknown layout: model_type {model_type!r} (a RocketQA config.json "
            f"has one of {', '.join(MODEL_TYPES)})"
        )
    lengths = (
        ("q_max_seq_len", "p_max_seq_len") if model_type == "dual_encoder" else ("max_seq_len",)
    )
    required = ("model_conf_path", "model_vocab_path", "model_checkpoint_path", *lengths)
    missing = [k for k in required if k not in cfg]
    if missing:
        raise RocketQALayoutError(
            f"{config_path}: unknown layout: {model_type} config lacks {', '.join(missing)}"
        )
    return cfg


def ernie_to_bert_config(ernie: Mapping[str, Any], source: str) -> BertConfig:
    """An ERNIE ``*_config.json`` dict → :class:`BertConfig` with ERNIE's numerics."""
    required = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                "max_position_embeddings")  # fmt: skip
    missing = [k for k in required if not ernie.get(k)]
    if missing:
        raise RocketQALayoutError(f"{source}: ERNIE config lacks {', '.join(missing)}")
    hidden_act = ernie.get("hidden_act") or "gelu"
    if hidden_act not in ("gelu", "relu"):
        raise RocketQALayoutError(f"{source}: hidden_act {hidden_act!r} is not gelu or relu")
    # ernie.py: sent_type_vocab_size, or type_vocab_size when that is absent or 0.
    type_vocab = ernie.get("sent_type_vocab_size") or ernie.get("type_vocab_size") or 2
    use_task_id = bool(ernie.get("use_task_id"))
    hidden = int(ernie["hidden_size"])
    return BertConfig(
        vocab_size=int(ernie["vocab_size"]),
        hidden_size=hidden,
        num_hidden_layers=int(ernie["num_hidden_layers"]),
        num_attention_heads=int(ernie["num_attention_heads"]),
        intermediate_size=4 * hidden,  # not a config key: the original always uses 4 x hidden
        hidden_act=hidden_act,  # "gelu" is exact (erf) GELU here, in HF and in Paddle
        hidden_dropout_prob=float(ernie.get("hidden_dropout_prob", 0.1)),
        attention_probs_dropout_prob=float(ernie.get("attention_probs_dropout_prob", 0.1)),
        max_position_embeddings=int(ernie["max_position_embeddings"]),
        type_vocab_size=int(type_vocab),
        layer_norm_eps=LAYER_NORM_EPS,
        initializer_range=float(ernie.get("initializer_range", 0.02)),
        model_type="ernie" if use_task_id else "bert",
        use_task_id=use_task_id,
        task_type_vocab_size=int(ernie.get("task_type_vocab_size") or 3),
    )


def read_vocab(path: Path) -> dict[str, int]:
    """RocketQA's ``load_vocab``: one token a line, id = line number, or ``token<TAB>id``."""
    if not path.is_file():
        raise hf.ModelDirError(f"{path}: vocabulary file does not exist")
    vocab: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for num, line in enumerate(f):
            items = line.strip().split("\t")
            if len(items) > 2:
                break
            vocab[items[0].strip()] = int(items[1]) if len(items) == 2 else num
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise RocketQALayoutError(f"{path}: token ids are not 0..{len(vocab) - 1} without gaps")
    absent = [t for t in SPECIAL_TOKENS if t not in vocab]
    if absent:
        raise RocketQALayoutError(f"{path}: vocabulary lacks {', '.join(absent)}")
    return vocab


def make_tokenizer(vocab: Mapping[str, int], for_cn: bool) -> Any:
    """The original's ``FullTokenizer`` (lower case, accents stripped, CJK split, WordPiece)
    as a fast HF tokenizer. ``for_cn``: the original deletes every space from the texts
    first; here a normalizer step does it, in a generic tokenizer whose saved tokenizer.json
    is loaded as it is (transformers rebuilds a ``BertTokenizer``'s normalizer on load)."""
    from tokenizers import normalizers
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    tokenizer = BertTokenizerFast(vocab=dict(vocab), do_lower_case=True)
    if not for_cn:
        return tokenizer
    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Replace(" ", ""), backend.normalizer])
    special = {f"{k}_token": f"[{k.upper()}]" for k in ("cls", "sep", "pad", "unk", "mask")}
    special = {k: v for k, v in special.items() if v in vocab}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


# ----------------------------------------------------------------------------- parameters


def _encoder_names(num_layers: int) -> dict[tuple[str, ...], str]:
    """Flax path of :class:`BertModel` (without pooler) → Paddle parameter name (no prefix)."""
    names = {
        ("embeddings", "word_embeddings", "embedding"): "word_embedding",
        ("embeddings", "position_embeddings", "embedding"): "pos_embedding",
        ("embeddings", "token_type_embeddings", "embedding"): "sent_embedding",
        ("embeddings", "task_type_embeddings", "embedding"): "task_embedding",
        ("embeddings", "LayerNorm", "scale"): "pre_encoder_layer_norm_scale",
        ("embeddings", "LayerNorm", "bias"): "pre_encoder_layer_norm_bias",
    }
    dense = {
        ("attention", "self", "query"): "multi_head_att_query_fc",
        ("attention", "self", "key"): "multi_head_att_key_fc",
        ("attention", "self", "value"): "multi_head_att_value_fc",
        ("attention", "output", "dense"): "multi_head_att_output_fc",
        ("intermediate", "dense"): "ffn_fc_0",
        ("output", "dense"): "ffn_fc_1",
    }
    norms = {("attention", "output", "LayerNorm"): "post_att_layer_norm",
             ("output", "LayerNorm"): "post_ffn_layer_norm"}  # fmt: skip
    for i in range(num_layers):
        layer = ("encoder", "layer", str(i))
        for path, name in dense.items():
            names[(*layer, *path, "kernel")] = f"encoder_layer_{i}_{name}.w_0"
            names[(*layer, *path, "bias")] = f"encoder_layer_{i}_{name}.b_0"
        for path, name in norms.items():
            names[(*layer, *path, "scale")] = f"encoder_layer_{i}_{name}_scale"
            names[(*layer, *path, "bias")] = f"encoder_layer_{i}_{name}_bias"
    return names


class ParamReader:
    """Reads named parameters from a Paddle parameter dir, checking each shape."""

    def __init__(self, param_dir: Path, conf_path: Path) -> None:
        if param_dir.is_file():
            raise RocketQALayoutError(
                f"{param_dir}: unknown layout: a single file, not RocketQA's folder of one file "
                "per parameter (a combined __params__ file or a .pdparams pickle cannot be read)"
            )
        if not param_dir.is_dir():
            raise hf.ModelDirError(f"{param_dir}: parameter directory does not exist")
        self.dir, self.conf_path = param_dir, conf_path

    def has(self, name: str) -> bool:
        return (self.dir / name).is_file()

    def read(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        path = self.dir / name
        if not path.is_file():
            raise hf.ModelDirError(f"{path}: parameter file missing")
        value = read_tensor(path)
        if value.shape != tuple(shape):
            raise hf.CheckpointMismatchError(
                f"{path}: shape {list(value.shape)} does not match {list(shape)} implied by "
                f"{self.conf_path}"
            )
        return value.astype(np.float32)

    def check_prefixes(self, expected: Iterable[str], config_path: Path, why: str) -> None:
        """Every expected parameter prefix has a word embedding, else an 'unknown layout'
        error naming the prefixes the dir does have."""
        found = sorted(p.name[: -len("word_embedding")] for p in self.dir.glob("*word_embedding"))
        absent = [p for p in expected if p not in found]
        if not absent:
            return
        shown = ", ".join(repr(p) for p in found) if found else "none"
        raise RocketQALayoutError(
            f"{self.dir}: unknown layout: no {absent[0]}word_embedding file; {config_path} "
            f"({why}) needs parameter prefix(es) {', '.join(repr(p) for p in expected)}, the "
            f"folder has {shown}"
        )


def read_tower(
    reader: ParamReader, prefix: str, config: BertConfig, with_pooler: bool = False
) -> dict[str, Any]:
    """One ERNIE encoder's parameters (``prefix`` + Paddle names) as a :class:`BertModel`
    per-layer param tree; ``with_pooler`` reads ``pooled_fc`` (unprefixed, as the original)."""
    model = BertModel(config, add_pooling_layer=with_pooler)
    abstract = traverse_util.flatten_dict(hf.abstract_params(model, jnp.zeros((1, 8), jnp.int32)))
    names = _encoder_names(config.num_hidden_layers)
    names[("pooler", "dense", "kernel")] = "pooled_fc.w_0"
    names[("pooler", "dense", "bias")] = "pooled_fc.b_0"
    flat = {}
    for path, leaf in abstract.items():
        name = names[path] if path[0] == "pooler" else prefix + names[path]
        flat[path] = reader.read(name, tuple(leaf.shape))
    return traverse_util.unflatten_dict(flat)


def identity_pooler(hidden: int) -> dict[str, Any]:
    """A placeholder pooler for towers the original built without one (never used)."""
    return {
        "dense": {"kernel": np.eye(hidden, dtype=np.float32), "bias": np.zeros(hidden, np.float32)}
    }


# ----------------------------------------------------------------------------- conversion


def convert_rocketqa(model: str | Path, output: str | Path) -> dict[str, Any]:
    """Converts a RocketQA model dir (or its ``config.json``) to HF dirs under ``output``;
    returns a summary: ``kind`` ("dual" | "cross"), ``dirs`` written, ``settings``."""
    config_path = find_config(model)
    root = config_path.parent
    cfg = read_rocketqa_config(config_path)
    conf_path = root / cfg["model_conf_path"]
    bert_config = ernie_to_bert_config(_read_json(conf_path, "ERNIE config"), str(conf_path))
    tokenizer = make_tokenizer(read_vocab(root / cfg["model_vocab_path"]), bool(cfg.get("for_cn")))
    reader = ParamReader(root / cfg["model_checkpoint_path"], conf_path)
    out = Path(output)
    if cfg["model_type"] == "dual_encoder":
        return _convert_dual(cfg, config_path, bert_config, tokenizer, reader, out)
    return _convert_cross(cfg, config_path, bert_config, tokenizer, reader, out)


def _convert_dual(cfg, config_path, bert_config, tokenizer, reader, out) -> dict[str, Any]:
    share = int(cfg.get("share_parameter") or 0)
    if share not in (0, 1):
        raise RocketQALayoutError(f"{config_path}: share_parameter must be 0 or 1, got {share}")
    q_max, p_max = int(cfg["q_max_seq_len"]), int(cfg["p_max_seq_len"])
    prefixes = ("titlepara_",) if share else ("query_", "titlepara_")
    reader.check_prefixes(prefixes, config_path, f"dual_encoder, share_parameter {share}")
    settings = {"pooling": "cls", "normalize": False, "q_max_len": q_max, "p_max_len": p_max,
                "title_form": "rocketqa_literal", "converted_from": "rocketqa",
                "share_parameter": share, "for_cn": bool(cfg.get("for_cn"))}  # fmt: skip
    towers = {}
    for name, prefix in (("query_encoder", "query_"), ("passage_encoder", "titlepara_")):
        if share and name == "query_encoder":
            continue
        tower = read_tower(reader, prefix, bert_config)
        towers[name] = {**tower, "pooler": identity_pooler(bert_config.hidden_size)}
    if share:
        dirs = [hf.export_bert(out, bert_config, towers["passage_encoder"], tokenizer, "cls",
                               False, p_max, settings)]  # fmt: skip
    else:
        dirs = [
            hf.export_bert(
                out / name, bert_config, towers[name], tokenizer, "cls", False, ml, settings
            )
            for name, ml in (("query_encoder", q_max), ("passage_encoder", p_max))
        ]
        (out / "rqa_jax.json").write_text(json.dumps(settings, indent=2) + "\n")
    return {"kind": "dual", "dirs": [str(d) for d in dirs], "settings": settings}


def _convert_cross(cfg, config_path, bert_config, tokenizer, reader, out) -> dict[str, Any]:
    joint = int(cfg.get("joint_training") or 0)
    if joint not in (0, 1):
        raise RocketQALayoutError(f"{config_path}: joint_training must be 0 or 1, got {joint}")
    prefix, head = ("qtp_", "v2") if joint else ("", "v1")
    reader.check_prefixes([prefix], config_path, f"cross_encoder, joint_training {joint}")
    n_out = 1 if joint else 2
    h = bert_config.hidden_size
    params = {
        "bert": read_tower(reader, prefix, bert_config, with_pooler=not joint),
        "classifier": {
            "kernel": reader.read(prefix + "_cls_out_w", (h, n_out)),
            "bias": reader.read(prefix + "_cls_out_b", (n_out,)),
        },
    }
    # The rocketqa package scores v1 and v2 cross encoders alike: query and title+para cut
    # jointly to max_seq_len, no separate query cut (checked against its outputs).
    settings = {"pair_form": "v1", "title_form": "rocketqa_literal", "q_max_len": None,
                "converted_from": "rocketqa", "joint_training": joint,
                "for_cn": bool(cfg.get("for_cn"))}  # fmt: skip
    max_len = int(cfg["max_seq_len"])
    path = hf.export_cross_encoder(out, bert_config, head, params, tokenizer, max_len, settings)
    return {"kind": "cross", "head": head, "dirs": [str(path)], "settings": settings}

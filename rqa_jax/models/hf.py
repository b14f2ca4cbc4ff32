"""Hugging Face checkpoint import and export for BERT / ERNIE towers.

Import reads ``config.json`` + ``model.safetensors`` with numpy only (no torch), or
``pytorch_model.bin`` where torch is installed. Keys may carry a ``bert.`` / ``ernie.``
prefix (sequence-classification and pre-training checkpoints) or none (``BertModel``).
Conversion is a rename: Flax path ``a/b/kernel`` ↔ HF key ``a.b.weight`` (kernels transposed).

Export writes an HF model dir that ``transformers.AutoModel.from_pretrained`` loads with
no missing or unexpected weights, plus the tokenizer files, sentence-transformers metadata
(pooling, normalisation, max length) and a short model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from rqa_jax.errors import UserFileNotFoundError, UserInputError
from rqa_jax.models.bert import BertConfig, BertModel, stack_layer_params, unstack_layer_params

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ENCODER_PREFIXES = ("bert.", "ernie.")
# The v2 head's export: pooler ε·I, classifier / ε (see export_cross_encoder).
V2_POOLER_EPS = 1e-4
# Buffers and pre-training heads that a tower legitimately has no use for.
IGNORED_KEY_PARTS = ("position_ids", "cls.", "lm_head.")


class ModelDirError(UserFileNotFoundError):
    """A model dir is missing, or lacks a file the loader needs."""


class CheckpointMismatchError(UserInputError):
    """The weights do not fit the architecture described by config.json."""


def check_model_dir(model_dir: str | Path) -> Path:
    """Returns the dir as a Path, or raises a clear error naming what is missing."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelDirError(f"model dir {str(path)!r} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise ModelDirError(f"model dir {str(path)!r} has no config.json")
    return path


def load_config(model_dir: str | Path) -> BertConfig:
    return BertConfig.from_json_file(check_model_dir(model_dir) / "config.json")


def read_state_dict(model_dir: str | Path) -> dict[str, np.ndarray]:
    """All tensors of an HF checkpoint as float32/int numpy arrays, keyed by HF names."""
    path = check_model_dir(model_dir)
    st = path / "model.safetensors"
    if st.is_file():
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(st)))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointMismatchError(f"{st}: cannot read safetensors file ({e})") from None
    pt = path / "pytorch_model.bin"
    if pt.is_file():
        try:
            import torch
        except ImportError:
            raise ModelDirError(
                f"{pt}: reading pytorch_model.bin needs torch; install torch or convert the "
                "checkpoint to model.safetensors"
            ) from None
        state = torch.load(str(pt), map_location="cpu", weights_only=True)
        return {
            k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()
        }
    raise ModelDirError(f"model dir {str(path)!r} has none of {', '.join(WEIGHT_FILES)}")


def flax_path_to_hf_key(path: tuple[str, ...]) -> tuple[str, bool]:
    """('encoder','layer','0',…,'kernel') → ('encoder.layer.0….weight', transpose?)."""
    *parents, leaf = path
    if leaf == "kernel":
        return ".".join([*parents, "weight"]), True
    if leaf in ("embedding", "scale"):
        return ".".join([*parents, "weight"]), False
    return ".".join(path), False


def _split_prefix(state: Mapping[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
    """Finds the encoder key prefix ('' for a bare BertModel checkpoint)."""
    for prefix in ENCODER_PREFIXES:
        if any(k.startswith(prefix + "embeddings.") for k in state):
            return prefix, dict(state)
    return "", dict(state)


def _lookup(state: Mapping[str, np.ndarray], key: str) -> np.ndarray | None:
    if key in state:
        return state[key]
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    if key.endswith("LayerNorm.weight"):
        return state.get(key[: -len("weight")] + "gamma")
    if key.endswith("LayerNorm.bias"):
        return state.get(key[: -len("bias")] + "beta")
    return None


def state_dict_to_params(
    state: Mapping[str, np.ndarray],
    abstract_params: Mapping[str, Any],
    prefix: str,
    source: str,
    init_fn: Callable[[], Mapping[str, Any]] | None = None,
    optional: tuple[str, ...] = ("pooler.",),
) -> tuple[dict[str, Any], set[str]]:
    """Fills a per-layer Flax param tree from HF tensors; returns (params, used HF keys).

    Keys starting with an ``optional`` prefix that the checkpoint lacks are taken from
    ``init_fn()`` (a fresh initialisation, only computed when needed) with a warning;
    anything else missing is an error.
    """
    flat = traverse_util.flatten_dict(abstract_params)
    init_flat: dict[tuple[str, ...], Any] | None = None
    out, used, missing, fresh = {}, set(), [], []
    for path, leaf in flat.items():
        key, transpose = flax_path_to_hf_key(path)
        value = _lookup(state, prefix + key)
        if value is None:
            if key.startswith(optional) and init_fn is not None:
                if init_flat is None:
                    init_flat = traverse_util.flatten_dict(init_fn())
                out[path] = np.asarray(init_flat[path])
                fresh.append(prefix + key)
                continue
            missing.append(prefix + key)
            continue
        used.add(prefix + key)
        value = np.asarray(value)
        if transpose:
            value = value.T
        if value.shape != tuple(leaf.shape):
            raise CheckpointMismatchError(
                f"{source}: {prefix + key} has shape {value.shape}, config.json implies "
                f"{tuple(leaf.shape)}"
            )
        out[path] = value.astype(leaf.dtype)
    if missing:
        shown = ", ".join(missing[:8]) + (" …" if len(missing) > 8 else "")
        raise CheckpointMismatchError(f"{source}: {len(missing)} weights missing: {shown}")
    if fresh:
        log.warning("%s: %d weights not in checkpoint, freshly initialised: %s", source,
                    len(fresh), ", ".join(fresh))  # fmt: skip
    return traverse_util.unflatten_dict(out), used


def load_bert(
    model_dir: str | Path,
    param_dtype: Any = jnp.float32,
    scan_layers: bool = False,
    seed: int = 0,
) -> tuple[BertConfig, dict[str, Any]]:
    """Reads an HF BERT/ERNIE dir → (config, params of :class:`BertModel`) as numpy arrays."""
    path = check_model_dir(model_dir)
    config = load_config(path)
    state = read_state_dict(path)
    prefix, state = _split_prefix(state)
    model = BertModel(config, param_dtype=param_dtype)
    abstract = abstract_params(model, jnp.zeros((1, 8), jnp.int32))
    params, used = state_dict_to_params(
        state, abstract, prefix, str(path), lambda: init_params(model, seed)
    )
    unexpected = [
        k
        for k in state
        if k not in used
        and k.startswith(prefix)
        and not any(part in k for part in IGNORED_KEY_PARTS)
    ]
    if unexpected:
        log.warning("%s: %d checkpoint weights unused: %s", path, len(unexpected),
                    ", ".join(unexpected[:8]))  # fmt: skip
    if scan_layers:
        params = stack_layer_params(params, config.num_hidden_layers)
    return config, params


def abstract_params(model: Any, *inputs: Any) -> dict[str, Any]:
    """Parameter shapes and dtypes of ``model`` without computing (or compiling) an init."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *inputs))
    return shapes["params"]


def init_params(model: BertModel, seed: int = 0, seq_len: int = 8) -> dict[str, Any]:
    """Random per-layer parameters for ``model`` (numpy), used for fresh heads and tests."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    variables = jax.jit(lambda r: model.init(r, ids))(jax.random.PRNGKey(seed))
    return jax.tree.map(np.asarray, variables["params"])


def params_to_state_dict(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Per-layer Flax params → HF-named float tensors (kernels transposed back)."""
    state = {}
    for path, value in traverse_util.flatten_dict(params).items():
        key, transpose = flax_path_to_hf_key(path)
        arr = np.asarray(jax.device_get(value), dtype=np.float32)
        state[prefix + key] = np.ascontiguousarray(arr.T if transpose else arr)
    return state


def _is_stacked(params: Mapping[str, Any]) -> bool:
    return "0" not in params["encoder"]["layer"]


def export_bert(
    out_dir: str | Path,
    config: BertConfig,
    params: Mapping[str, Any],
    tokenizer: Any,
    pooling: str,
    normalize: bool,
    max_length: int,
    extra_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Writes an HF model dir: config.json, model.safetensors, tokenizer, metadata, README.

    The sentence-transformers metadata records pooling / normalisation / max length so that
    both sentence-transformers and :func:`rqa_jax.load_model` use the tower as it was trained.
    """
    from safetensors.numpy import save_file

    from rqa_jax.models.settings import write_sentence_transformers_metadata

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = jax.device_get(params)
    if _is_stacked(params):
        params = unstack_layer_params(params, config.num_hidden_layers)
    state = params_to_state_dict(params)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
    tokenizer.save_pretrained(str(out))
    write_sentence_transformers_metadata(out, config.hidden_size, pooling, normalize, max_length)
    if extra_settings:
        (out / "rqa_jax.json").write_text(json.dumps(dict(extra_settings), indent=2) + "\n")
    (out / "README.md").write_text(
        _model_card(config, pooling, normalize, max_length, extra_settings)
    )
    return out


def _model_card(config, pooling, normalize, max_length, extra) -> str:
    lines = [
        "---",
        "library_name: transformers",
        "tags: [rqa_jax, dense-retrieval, sentence-similarity]",
        "---",
        "# Dense retrieval tower exported by rqa_jax",
        "",
        f"- architecture: {config.model_type} ({config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}, {config.num_attention_heads} heads)",
        f"- pooling: `{pooling}` ({'[CLS] vector' if pooling == 'cls' else 'mean of token vectors'})",
        f"- L2-normalised: {'yes' if normalize else 'no'}; relevance = inner product",
        f"- max length: {max_length} tokens",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    lines += [
        "",
        "Load with `rqa_jax.load_model(dir)`, `sentence_transformers.SentenceTransformer(dir)` "
        "or `transformers.AutoModel.from_pretrained(dir)` (then pool as above).",
        "",
    ]
    return "\n".join(lines)


def load_cross_encoder(
    model_dir: str | Path, head: str | None = None, param_dtype: Any = jnp.float32, seed: int = 0
) -> tuple[BertConfig, str, dict[str, Any]]:
    """Reads an HF ``BertForSequenceClassification`` / ``ErnieForSequenceClassification`` dir
    → (config, head, params of :class:`CrossEncoderNet`).

    2 labels → the ``v1`` head (HF's and RocketQA v1's pooler + 2-way classifier); 1 label →
    ``pooler_logit`` (HF's one-label classifier) unless ``head`` or the dir's ``rqa_jax.json``
    says ``v2`` (raw [CLS] → linear). ``head="v2"`` on a dir that :func:`export_cross_encoder`
    wrote from a v2 head undoes its near-identity pooler: the raw head comes back exactly.
    """
    from rqa_jax.models.towers import CROSS_HEADS, CrossEncoderNet

    path = check_model_dir(model_dir)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config = BertConfig.from_hf_dict(raw, source=str(path / "config.json"))
    own = path / "rqa_jax.json"
    saved = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else {}
    if head is None:
        head = saved.get("head")
    n_labels = len(raw.get("id2label") or {}) or int(raw.get("num_labels", 2))
    if head is None:
        head = {2: "v1", 1: "pooler_logit"}.get(n_labels)
    if head not in CROSS_HEADS or CROSS_HEADS[head][1] != n_labels:
        raise CheckpointMismatchError(
            f"{path / 'config.json'}: {n_labels} labels do not fit cross-encoder head {head!r} "
            f"(heads: {', '.join(f'{h}={n}' for h, (_, n) in CROSS_HEADS.items())} labels)"
        )
    state = read_state_dict(path)
    prefix, state = _split_prefix(state)
    if not prefix:
        raise CheckpointMismatchError(
            f"{path}: no 'bert.'/'ernie.' weights; expected a sequence-classification checkpoint"
        )
    if prefix != "bert.":  # our tree calls the tower 'bert' whatever its flavour
        state = {
            ("bert." + k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()
        }
    net = CrossEncoderNet(config, head, param_dtype=param_dtype)
    ids = jnp.zeros((1, 8), jnp.int32)
    abstract = abstract_params(net, {"input_ids": ids, "attention_mask": ids + 1})
    params, _ = state_dict_to_params(state, abstract, "", str(path), optional=())
    if head == "v2" and saved.get("trained_head") == "v2" and saved.get("head") == "pooler_logit":
        kernel = params["classifier"]["kernel"] * np.float32(V2_POOLER_EPS)
        params["classifier"] = {**params["classifier"], "kernel": kernel}
    return config, head, params


def load_cross_encoder_head(model_dir: str | Path) -> str | None:
    """The head a cross-encoder dir holds (what :func:`load_cross_encoder` picks by default)."""
    path = check_model_dir(model_dir)
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    own = path / "rqa_jax.json"
    saved = json.loads(own.read_text(encoding="utf-8")) if own.is_file() else {}
    n_labels = len(raw.get("id2label") or {}) or int(raw.get("num_labels", 2))
    return saved.get("head") or {2: "v1", 1: "pooler_logit"}.get(n_labels)


def v1_head_as_log_odds(params: dict[str, Any]) -> dict[str, Any]:
    """A v1 re-ranker (pooler → 2 logits, score P(relevant)) as a ``pooler_logit`` head whose
    one logit is the log-odds l1 − l0: the same ranking, on a scale a listwise softmax can
    use (probabilities in [0, 1] would make every list nearly uniform). Exact: the head is
    linear, so (W1 − W0)·x + (b1 − b0) = l1 − l0."""
    kernel, bias = (
        np.asarray(params["classifier"]["kernel"]),
        np.asarray(params["classifier"]["bias"]),
    )
    return {**params, "classifier": {"kernel": kernel[:, 1:] - kernel[:, :1],
                                     "bias": bias[1:] - bias[:1]}}  # fmt: skip


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over a model dir's config and weight files (recursively, sorted): equal for the
    same model wherever it is stored, different after any change to its weights."""
    import hashlib

    root = Path(model_dir)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.name == "config.json" or path.name in WEIGHT_FILES):
            h.update(str(path.relative_to(root)).encode() + b"\0")
            with path.open("rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
    return h.hexdigest()


def export_cross_encoder(
    out_dir: str | Path,
    config: BertConfig,
    head: str,
    params: Mapping[str, Any],
    tokenizer: Any,
    max_length: int,
    extra_settings: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a cross encoder as an HF ``BertForSequenceClassification`` /
    ``ErnieForSequenceClassification`` dir that ``AutoModelForSequenceClassification``
    scores identically: the ``v1`` head as 2 labels, ``pooler_logit`` as 1 label.
    ``extra_settings`` (e.g. ``pair_form``, ``title_form``, ``q_max_len``: how pairs are
    encoded) go into ``rqa_jax.json`` for :func:`rqa_jax.inference.load_cross_encoder`.

    RocketQAv2's ``v2`` head (raw [CLS] → linear) has no HF class: it is written as a 1-label
    classifier whose pooler is ε·I (ε = 1e-4, bias 0) and whose classifier is divided by ε,
    since tanh(ε·x)/ε = x·(1 − (ε·x)²/3 + …): the scores agree to ~1e-7 relative."""
    from safetensors.numpy import save_file

    if head not in ("v1", "v2", "pooler_logit"):
        raise UserInputError(f"unknown cross-encoder head {head!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = dict(jax.device_get(params))
    if head == "v2":
        eps, h = V2_POOLER_EPS, config.hidden_size
        near_identity = {
            "kernel": eps * np.eye(h, dtype=np.float32),
            "bias": np.zeros(h, np.float32),
        }
        params["bert"] = {**params["bert"], "pooler": {"dense": near_identity}}
        params["classifier"] = {
            "kernel": np.asarray(params["classifier"]["kernel"]) / eps,
            "bias": np.asarray(params["classifier"]["bias"]),
        }
    bert = params["bert"]
    if _is_stacked(bert):
        bert = unstack_layer_params(bert, config.num_hidden_layers)
    prefix = "bert." if config.model_type == "bert" else "ernie."
    state = params_to_state_dict(bert, prefix) | params_to_state_dict(
        {"classifier": params["classifier"]}
    )
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config = config.to_hf_dict()
    kind = "Bert" if config.model_type == "bert" else "Ernie"
    n_labels = 2 if head == "v1" else 1
    loaded_as = "pooler_logit" if head == "v2" else head  # what the written weights compute
    hf_config["architectures"] = [f"{kind}ForSequenceClassification"]
    hf_config["id2label"] = {str(i): f"LABEL_{i}" for i in range(n_labels)}
    hf_config["label2id"] = {f"LABEL_{i}": i for i in range(n_labels)}
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    own = {"head": loaded_as, "trained_head": head, "max_length": max_length}
    own.update(extra_settings or {})
    (out / "rqa_jax.json").write_text(json.dumps(own, indent=2) + "\n")
    tokenizer.save_pretrained(str(out))
    score = "P(relevant) = softmax(logits)[1]" if head == "v1" else "the logit"
    (out / "README.md").write_text(
        f"---\nlibrary_name: transformers\ntags: [rqa_jax, re-ranking, cross-encoder]\n---\n"
        f"# Cross-encoder re-ranker exported by rqa_jax\n\n- input: `[CLS] query [SEP] title passage [SEP]`, "
        f"max {max_length} tokens\n- score: {score}\n"
    )
    return out

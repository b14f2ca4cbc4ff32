"""Flax linen BERT / ERNIE encoder whose parameter tree mirrors Hugging Face's names.

ERNIE 2.0 (English) is BERT's architecture; ERNIE 1.0 uses ReLU and ERNIE may add
task-type embeddings. Everything is read from an HF ``config.json`` so a checkpoint
converts by renaming keys (``encoder.layer.3.attention.self.query.weight`` becomes
``params/encoder/layer/3/attention/self/query/kernel``, transposed), never by guessing shapes.

With ``scan_layers`` the transformer layers are one ``nn.scan`` over a stacked
``encoder/layer`` subtree (leading axis = layer), which compiles deep models in the time of
one layer; :func:`stack_layer_params` / :func:`unstack_layer_params` convert between forms.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from rqa_jax.errors import UserInputError
from rqa_jax.models.dropout import Dropout

SUPPORTED_MODEL_TYPES = ("bert", "ernie")

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


class UnsupportedModelError(UserInputError):
    """A model dir or config describes an architecture this encoder does not implement."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The subset of HF ``BertConfig`` / ``ErnieConfig`` fields the architecture depends on."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    model_type: str = "bert"
    use_task_id: bool = False
    task_type_vocab_size: int = 3

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model_type {self.model_type!r} is not supported (supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise UnsupportedModelError(
                f"hidden_act {self.hidden_act!r} is not supported (supported: {', '.join(ACTIVATIONS)})"
            )
        if self.hidden_size % self.num_attention_heads:
            raise UserInputError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any], source: str = "config") -> BertConfig:
        """Builds a config from an HF ``config.json`` dict; refuses other architectures."""
        model_type = d.get("model_type", "bert")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"{source}: model_type {model_type!r} is not supported; rqa_jax encodes "
                f"{'/'.join(SUPPORTED_MODEL_TYPES)} models"
            )
        pos_type = d.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise UnsupportedModelError(
                f"{source}: position_embedding_type {pos_type!r} is not supported (absolute only)"
            )
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise UnsupportedModelError(
                f"{source}: decoder / cross-attention models are not supported"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if model_type == "ernie" and "layer_norm_eps" not in d:
            # The original ERNIE normalises with 1e-5; BERT's 1e-12 default would shift every
            # hidden state of a converted ERNIE checkpoint.
            warnings.warn(f"{source}: ERNIE config without layer_norm_eps: using ERNIE's 1e-5",
                          stacklevel=2)  # fmt: skip
            kwargs["layer_norm_eps"] = 1e-5
        try:
            return cls(**kwargs)
        except UnsupportedModelError as e:
            raise UnsupportedModelError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> BertConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserInputError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(d, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """An HF config dict that ``AutoConfig`` reads back as BertConfig / ErnieConfig."""
        d = dataclasses.asdict(self)
        if self.model_type == "bert":
            d.pop("use_task_id")
            d.pop("task_type_vocab_size")
            d["architectures"] = ["BertModel"]
        else:
            d["architectures"] = ["ErnieModel"]
        d["position_embedding_type"] = "absolute"
        return d


class Embeddings(nn.Module):
    """Word + position + segment (+ task-type) embeddings, summed, LayerNorm, dropout."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, task_type_ids, deterministic: bool):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)

        def embed(name: str, n: int) -> nn.Embed:
            return nn.Embed(n, cfg.hidden_size, embedding_init=init, dtype=self.dtype,
                            param_dtype=self.param_dtype, name=name)  # fmt: skip

        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = embed("word_embeddings", cfg.vocab_size)(input_ids)
        x = x + embed("position_embeddings", cfg.max_position_embeddings)(positions)
        x = x + embed("token_type_embeddings", cfg.type_vocab_size)(token_type_ids)
        if cfg.use_task_id:
            if task_type_ids is None:
                task_type_ids = jnp.zeros_like(input_ids)
            x = x + embed("task_type_embeddings", cfg.task_type_vocab_size)(task_type_ids)
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype,
                         param_dtype=self.param_dtype, name="LayerNorm")(x)  # fmt: skip
        return Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


def _dense(features: int, cfg: BertConfig, dtype, param_dtype, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=nn.initializers.normal(cfg.initializer_range),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class SelfAttention(nn.Module):
    """Multi-head attention; HF's ``attention.self`` (query/key/value projections).

    Returns ``(context, heads_layout)``: the context is [B, T, N·H] from the fused path
    (no dropout) and per-head [B, N, T, H] from the training path, which the output
    projection contracts as it is (``Projection``); the flag says which."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, attention_bias, deterministic: bool):
        cfg = self.config
        heads = cfg.num_attention_heads
        head_dim = cfg.hidden_size // heads

        def project(name: str):
            y = _dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, name)(x)
            return y.reshape(*y.shape[:-1], heads, head_dim)

        q, k, v = project("query"), project("key"), project("value")
        if deterministic or cfg.attention_probs_dropout_prob == 0:
            # No dropout on the probabilities: jax.nn.dot_product_attention, [B, T, N, H]
            # layout (its XLA implementation on every backend: with implementation=None,
            # jax 0.10 does not pick cuDNN's kernel by itself).
            bias = jnp.broadcast_to(attention_bias, (q.shape[0], 1, q.shape[1], k.shape[1]))
            out = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype))
            return out.reshape(*out.shape[:-2], cfg.hidden_size), False
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        # Softmax in float32 whatever the compute dtype: bf16 logits lose the padding bias.
        probs = jax.nn.softmax(scores.astype(jnp.float32) + attention_bias, axis=-1)
        probs = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
        # Per-head context [B, N, T, H], left in the layout the einsum produces: the output
        # projection contracts (N, H) itself (see Projection), no transpose back.
        return jnp.einsum("bhqk,bkhd->bhqd", probs.astype(self.dtype), v), True


class Projection(nn.Module):
    """``nn.Dense``'s parameters and arithmetic (HF's ``*.dense``), also taking the attention's
    per-head context [B, N, T, H] as input: the kernel's rows are (head, head dim), so one
    einsum contracts both and the context needs no transpose back to [B, T, N·H] (XLA:CPU,
    MiniLM attention block fwd+bwd on 64 × 128 tokens: 270 → 230 ms)."""

    features: int
    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, heads_layout: bool = False) -> jax.Array:
        in_features = x.shape[-1] * (x.shape[1] if heads_layout else 1)
        init = nn.initializers.normal(self.config.initializer_range)
        kernel = self.param("kernel", init, (in_features, self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        if heads_layout:
            heads = kernel.reshape(x.shape[1], x.shape[-1], self.features)
            return jnp.einsum("bnth,nhd->btd", x, heads) + bias
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        return y + bias


class DenseResidualNorm(nn.Module):
    """HF's ``*.output`` block: dense → dropout → add residual → LayerNorm (post-LN)."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, residual, deterministic: bool, heads_layout: bool = False):
        cfg = self.config
        x = Projection(cfg.hidden_size, cfg, self.dtype, self.param_dtype, name="dense")(
            x, heads_layout
        )
        x = Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype,
                            param_dtype=self.param_dtype, name="LayerNorm")(x + residual)  # fmt: skip


class Attention(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, attention_bias, deterministic: bool):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        a, heads_layout = SelfAttention(**kw, name="self")(x, attention_bias, deterministic)
        return DenseResidualNorm(**kw, name="output")(a, x, deterministic, heads_layout)


class Intermediate(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        x = _dense(cfg.intermediate_size, cfg, self.dtype, self.param_dtype, "dense")(x)
        return ACTIVATIONS[cfg.hidden_act](x)


class Layer(nn.Module):
    """One post-LN transformer layer. The (carry, _) signature lets ``nn.scan`` stack it."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, attention_bias):
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        h = Attention(**kw, name="attention")(x, attention_bias, self.deterministic)
        y = Intermediate(**kw, name="intermediate")(h)
        return DenseResidualNorm(**kw, name="output")(y, h, self.deterministic), None


class LayerStack(nn.Module):
    """HF's ``encoder.layer.{i}`` list: children named "0", "1", ... so paths match HF keys."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    deterministic: bool = True
    remat: bool = False

    @nn.compact
    def __call__(self, x, attention_bias):
        layer_cls = nn.remat(Layer) if self.remat else Layer
        for i in range(self.config.num_hidden_layers):
            x, _ = layer_cls(self.config, self.dtype, self.param_dtype, self.deterministic,
                             name=str(i))(x, attention_bias)  # fmt: skip
        return x


class Encoder(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    scan_layers: bool = False

    @nn.compact
    def __call__(self, x, attention_bias, deterministic: bool):
        cfg = self.config
        if not self.scan_layers:
            return LayerStack(cfg, self.dtype, self.param_dtype, deterministic, self.remat,
                              name="layer")(x, attention_bias)  # fmt: skip
        layer_cls = nn.remat(Layer, prevent_cse=False) if self.remat else Layer
        stacked = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=nn.broadcast,
            length=cfg.num_hidden_layers,
        )
        x, _ = stacked(cfg, self.dtype, self.param_dtype, deterministic, name="layer")(
            x, attention_bias
        )
        return x


class Pooler(nn.Module):
    """BERT's pooler: tanh(dense([CLS])). Kept so HF export has every weight AutoModel expects."""

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        cfg = self.config
        x = _dense(cfg.hidden_size, cfg, self.dtype, self.param_dtype, "dense")(hidden[:, 0])
        return jnp.tanh(x)


class BertModel(nn.Module):
    """The encoder. Returns (last hidden states [B, L, H], pooled [B, H] or None).

    ``attention_mask`` is 1 for real tokens, 0 for padding; padded keys get a large negative
    bias (as HF does), so real positions never attend to padding.
    """

    config: BertConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    scan_layers: bool = False
    add_pooling_layer: bool = True

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        task_type_ids: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, jax.Array | None]:
        kw = dict(config=self.config, dtype=self.dtype, param_dtype=self.param_dtype)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = Embeddings(**kw, name="embeddings")(
            input_ids, token_type_ids, task_type_ids, deterministic
        )
        bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9).astype(jnp.float32)
        x = Encoder(**kw, remat=self.remat, scan_layers=self.scan_layers, name="encoder")(
            x, bias, deterministic
        )
        pooled = Pooler(**kw, name="pooler")(x) if self.add_pooling_layer else None
        return x, pooled


def stack_layer_params(params: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    """Per-layer tree (``encoder/layer/{i}``) → the stacked tree ``nn.scan`` uses."""
    params = dict(params)
    encoder = dict(params["encoder"])
    layers = [encoder["layer"][str(i)] for i in range(num_layers)]
    encoder["layer"] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
    params["encoder"] = encoder
    return params


def unstack_layer_params(params: Mapping[str, Any], num_layers: int) -> dict[str, Any]:
    """Stacked ``nn.scan`` tree → per-layer tree (``encoder/layer/{i}``), the HF layout."""
    params = dict(params)
    encoder = dict(params["encoder"])
    stacked = encoder["layer"]
    encoder["layer"] = {
        str(i): jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(num_layers)
    }
    params["encoder"] = encoder
    return params

"""Retriever and re-ranker networks built on :class:`~rqa_jax.models.bert.BertModel`.

* :class:`DualEncoderNet` — query and passage towers (tied or separate), pooled to one
  vector each; relevance is the inner product (optionally of L2-normalised vectors).
  RocketQA uses the raw last-layer [CLS]; sentence-transformers models use mean pooling.
* :class:`CrossEncoderNet` — one tower over the (query, passage) pair with RocketQA's heads:
  ``v1``: tanh pooler → dropout → 2-way softmax, score = P(relevant);
  ``v2``: raw [CLS] → dropout → linear(1), score = the logit; and ``pooler_logit`` (HF's
  one-label sequence classifier: pooler → linear(1)) so common HF re-rankers load as they are.

Parameter trees: a tied dual encoder is ``{"encoder": bert}``; separate towers are
``{"query_encoder": bert, "passage_encoder": bert}``; a cross encoder is
``{"bert": bert, "classifier": dense}`` — the names HF's sequence classifier uses.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rqa_jax.errors import UserInputError
from rqa_jax.models.bert import BertConfig, BertModel
from rqa_jax.models.dropout import Dropout

POOLINGS = ("cls", "mean")
# head -> (classify the tanh-pooled [CLS]?, number of logits)
CROSS_HEADS = {
    "v1": (True, 2),  # RocketQA v1: pooler -> 2-way softmax; HF BertForSequenceClassification(2)
    "v2": (False, 1),  # RocketQAv2: raw [CLS] -> linear(1)
    "pooler_logit": (True, 1),  # HF BertForSequenceClassification(num_labels=1), e.g. MS MARCO CEs
}


def pool(hidden: jax.Array, attention_mask: jax.Array, mode: str) -> jax.Array:
    """[B, L, H] hidden states → [B, H]: the [CLS] vector or the mask-weighted token mean."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        m = attention_mask.astype(jnp.float32)[..., None]
        summed = jnp.sum(hidden.astype(jnp.float32) * m, axis=1)
        return summed / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
    raise UserInputError(f"pooling must be one of {POOLINGS}, got {mode!r}")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """x / max(‖x‖, eps), the convention of torch's F.normalize and sentence-transformers."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class DualEncoderNet(nn.Module):
    """Query and passage towers → pooled vectors. Score = ⟨q, p⟩ (see :meth:`score`)."""

    config: BertConfig
    tie_towers: bool = True
    pooling: str = "cls"
    normalize: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    scan_layers: bool = False

    def setup(self) -> None:
        if self.pooling not in POOLINGS:
            raise UserInputError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        kw = dict(
            config=self.config,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            remat=self.remat,
            scan_layers=self.scan_layers,
        )
        if self.tie_towers:
            self.encoder = BertModel(**kw)
        else:
            self.query_encoder = BertModel(**kw)
            self.passage_encoder = BertModel(**kw)

    def _embed(self, tower: BertModel, batch: dict[str, jax.Array], deterministic: bool):
        hidden, _ = tower(
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("token_type_ids"),
            deterministic=deterministic,
        )
        vec = pool(hidden, batch["attention_mask"], self.pooling)
        return l2_normalize(vec) if self.normalize else vec.astype(jnp.float32)

    def encode_query(self, batch: dict[str, jax.Array], deterministic: bool = True) -> jax.Array:
        """Tokenized queries → [B, H] float32 vectors."""
        tower = self.encoder if self.tie_towers else self.query_encoder
        return self._embed(tower, batch, deterministic)

    def encode_passage(self, batch: dict[str, jax.Array], deterministic: bool = True) -> jax.Array:
        """Tokenized passages → [N, H] float32 vectors."""
        tower = self.encoder if self.tie_towers else self.passage_encoder
        return self._embed(tower, batch, deterministic)

    def __call__(self, queries, passages, deterministic: bool = True):
        """Both towers (initialises every parameter); returns (q [B, H], p [N, H])."""
        return self.encode_query(queries, deterministic), self.encode_passage(
            passages, deterministic
        )

    @staticmethod
    def score(q: jax.Array, p: jax.Array) -> jax.Array:
        """Row-wise inner product of paired vectors: [B, H] × [B, H] → [B]."""
        return jnp.sum(q * p, axis=-1)


class CrossEncoderNet(nn.Module):
    """Re-ranker over the pair encoding; returns per-pair logits [B, 2] or [B, 1] by head."""

    config: BertConfig
    head: str = "v1"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    remat: bool = False
    scan_layers: bool = False

    @nn.compact
    def __call__(self, batch: dict[str, jax.Array], deterministic: bool = True) -> jax.Array:
        if self.head not in CROSS_HEADS:
            raise UserInputError(f"head must be one of {list(CROSS_HEADS)}, got {self.head!r}")
        use_pooler, n_out = CROSS_HEADS[self.head]
        cfg = self.config
        hidden, pooled = BertModel(
            cfg,
            self.dtype,
            self.param_dtype,
            self.remat,
            self.scan_layers,
            add_pooling_layer=use_pooler,
            name="bert",
        )(
            batch["input_ids"],
            batch["attention_mask"],
            batch.get("token_type_ids"),
            deterministic=deterministic,
        )
        x = pooled if use_pooler else hidden[:, 0]
        x = Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        logits = nn.Dense(
            n_out,
            kernel_init=nn.initializers.normal(cfg.initializer_range),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="classifier",
        )(x)
        return logits.astype(jnp.float32)

    @staticmethod
    def score(logits: jax.Array) -> jax.Array:
        """Logits → relevance score: P(relevant) for v1 (2 logits), the logit for v2."""
        if logits.shape[-1] == 2:
            return jax.nn.softmax(logits, axis=-1)[:, 1]
        return logits[:, 0]

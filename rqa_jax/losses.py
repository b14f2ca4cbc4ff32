"""Losses: pure functions of arrays. Shapes: B queries, k hard negatives, H hidden, W devices.

Dual-encoder passages come grouped per query, ``[B, 1+k, H]``, the positive at index 0, and
are flattened row-major to ``[B·(1+k), H]`` so that query i's positive is row ``i·(1+k)``.

* :func:`contrastive_loss` — in-batch negatives: each query against every passage of the
  batch it is given.
* :func:`cross_batch_contrastive_loss` — RocketQA's cross-batch negatives: inside
  ``shard_map`` every device all-gathers the passages of all W devices, scores its local
  queries against all W·B·(1+k) of them, and offsets each label by its position. The value
  and the gradients equal :func:`contrastive_loss` on the global batch (the all-gather's
  transpose, a reduce-scatter, returns each passage's gradient to its owner).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from rqa_jax.errors import UserInputError
from rqa_jax.parallel import DATA


def _flatten_passages(p: jax.Array) -> tuple[jax.Array, int]:
    """[B, 1+k, H] → ([B·(1+k), H], 1+k)."""
    b, group, h = p.shape
    return p.reshape(b * group, h), group


def _contrastive(
    q: jax.Array, p_flat: jax.Array, labels: jax.Array, scale: float
) -> tuple[jax.Array, dict]:
    """Per-query softmax cross-entropy of q [b, H] against p_flat [N, H]; labels [b] index p_flat."""
    logits = scale * jnp.einsum("bh,nh->bn", q.astype(jnp.float32), p_flat.astype(jnp.float32))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    positive = jnp.take_along_axis(logits, labels[:, None], axis=1)
    rank = jnp.sum(
        logits >= positive, axis=1
    )  # 1-based rank of the positive; ties count against it
    metrics = {
        "accuracy": jnp.mean(rank == 1),
        "mean_positive_rank": jnp.mean(rank.astype(jnp.float32)),
    }
    return jnp.mean(losses), metrics


def contrastive_loss(q: jax.Array, p: jax.Array, scale: float = 1.0) -> tuple[jax.Array, dict]:
    """In-batch negatives. q [B, H], p [B, 1+k, H] → (mean loss, metrics).

    Query i's label is its own positive, row i·(1+k) of the flattened passages; every other
    passage of the batch (B·(1+k) − 1 of them) is a negative. ``scale`` multiplies the logits
    (1/temperature).
    """
    p_flat, group = _flatten_passages(p)
    labels = jnp.arange(q.shape[0]) * group
    return _contrastive(q, p_flat, labels, scale)


def cross_batch_contrastive_loss(
    q: jax.Array, p: jax.Array, mesh: Mesh, scale: float = 1.0, cross_batch: bool = True
) -> tuple[jax.Array, dict]:
    """RocketQA's cross-batch negatives over the mesh's 'data' axis.

    q [B, H] and p [B, 1+k, H] are global arrays sharded on B over 'data' (W devices, b = B/W
    each). With ``cross_batch`` each device scores its b queries against the all-gathered
    W·b·(1+k) passages, label of local query i on device w = w·b·(1+k) + i·(1+k): the result
    equals :func:`contrastive_loss` on the global batch. Without it each query sees only its
    own device's b·(1+k) passages (plain in-batch negatives, per device). Returns the mean
    over all B queries.
    """
    spec = PartitionSpec(DATA)

    @functools.partial(
        jax.shard_map,
        mesh=mesh,
        in_specs=(spec, spec),
        out_specs=(PartitionSpec(), PartitionSpec()),
    )
    def per_device(q_local, p_local):
        p_flat, group = _flatten_passages(p_local)
        labels = jnp.arange(q_local.shape[0]) * group
        if cross_batch:
            labels = labels + jax.lax.axis_index(DATA) * p_flat.shape[0]
            p_flat = jax.lax.all_gather(p_flat, DATA, tiled=True)
        loss, metrics = _contrastive(q_local, p_flat, labels, scale)
        # Equal query counts per device: the global mean is the mean of the device means.
        return jax.lax.pmean((loss, metrics), DATA)

    return per_device(q, p)


def pointwise_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
    """RocketQA v1 cross encoder: logits [B, 2], labels [B] in {0, 1} → mean softmax CE;
    the score is P(relevant) = softmax(logits)[:, 1]."""
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels
    ).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"accuracy": accuracy}


def listwise_cross_entropy(logits: jax.Array) -> tuple[jax.Array, dict]:
    """Listwise softmax CE over each query's list, the positive at index 0: logits [B, m]
    (one score per passage) → mean over queries of −log softmax(logits)[:, 0]."""
    logits = logits.astype(jnp.float32)
    loss = -jax.nn.log_softmax(logits, axis=-1)[:, 0].mean()
    rank = jnp.sum(logits >= logits[:, :1], axis=-1)  # 1-based, ties count against
    return loss, {
        "accuracy": jnp.mean(rank == 1),
        "mean_positive_rank": jnp.mean(rank.astype(jnp.float32)),
    }


DISTILLATION_VARIANTS = ("paper", "released_code")


def listwise_distillation_loss(
    retriever_scores: jax.Array,
    reranker_scores: jax.Array,
    variant: str = "paper",
    temperature: float = 1.0,
) -> tuple[jax.Array, dict]:
    """RocketQAv2's dynamic listwise distillation on each query's list of m passages.

    ``retriever_scores`` and ``reranker_scores`` are [B, m] (query i's passages in the same
    order in both); s̃ = softmax(scores / temperature) over each list.

    * ``"paper"``: KL(s̃_de ‖ s̃_ce) = Σ_j s̃_de log(s̃_de / s̃_ce), mean over the B queries;
      gradients reach both models (the re-ranker is "dynamically" pulled too).
    * ``"released_code"``: KL(s̃_ce ‖ s̃_de), summed per element and averaged over all B·m
      elements (so 1/m of the paper's scale per query), the re-ranker's distribution held
      constant: it learns only from its own listwise loss.

    Returns (loss, {"kl_per_query": the KL's mean over queries, whatever the variant}).
    """
    if variant not in DISTILLATION_VARIANTS:
        raise UserInputError(f"variant must be one of {DISTILLATION_VARIANTS}, got {variant!r}")
    if retriever_scores.shape != reranker_scores.shape or retriever_scores.ndim != 2:
        raise ValueError(
            f"scores must both be [B, m], got {retriever_scores.shape} and {reranker_scores.shape}"
        )
    log_de = jax.nn.log_softmax(retriever_scores.astype(jnp.float32) / temperature, axis=-1)
    log_ce = jax.nn.log_softmax(reranker_scores.astype(jnp.float32) / temperature, axis=-1)
    if variant == "paper":
        per_element = jnp.exp(log_de) * (log_de - log_ce)
        loss = per_element.sum(-1).mean()
    else:
        log_ce = jax.lax.stop_gradient(log_ce)
        per_element = jnp.exp(log_ce) * (log_ce - log_de)
        loss = per_element.mean()
    return loss, {"kl_per_query": per_element.sum(-1).mean()}


def joint_loss(
    retriever_scores: jax.Array,
    reranker_scores: jax.Array,
    variant: str = "paper",
    weight: float = 1.0,
    temperature: float = 1.0,
) -> tuple[jax.Array, dict]:
    """RocketQAv2's objective on [B, m] lists, positive at index 0: the re-ranker's listwise
    cross-entropy + ``weight`` · :func:`listwise_distillation_loss` (1:1 in the paper)."""
    supervised, ce_metrics = listwise_cross_entropy(reranker_scores)
    kl, kl_metrics = listwise_distillation_loss(
        retriever_scores, reranker_scores, variant, temperature
    )
    return supervised + weight * kl, {
        "reranker_loss": supervised,
        "distillation_loss": kl,
        "reranker_accuracy": ce_metrics["accuracy"],
        **kl_metrics,
    }

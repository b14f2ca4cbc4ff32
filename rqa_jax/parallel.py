"""Device mesh and shardings: one Mesh(('data', 'model')).

Batches are split on 'data'. Parameters follow regex partition rules over their '/'-joined
paths (first match wins): replicated by default (pure data parallelism, what RocketQA
needs for base-size towers), or :data:`MODEL_PARALLEL_RULES` to split the large matrices over
'model' as well (Megatron-style: column-split in, row-split out).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rqa_jax.errors import UserInputError

DATA, MODEL = "data", "model"

Rules = Sequence[tuple[str, PartitionSpec]]
REPLICATED_RULES: Rules = ((".*", PartitionSpec()),)
MODEL_PARALLEL_RULES: Rules = (
    (r"attention/self/(query|key|value)/kernel$", PartitionSpec(None, MODEL)),
    (r"attention/self/(query|key|value)/bias$", PartitionSpec(MODEL)),
    (r"intermediate/dense/kernel$", PartitionSpec(None, MODEL)),
    (r"intermediate/dense/bias$", PartitionSpec(MODEL)),
    (r"(attention/)?output/dense/kernel$", PartitionSpec(MODEL, None)),
    (r"word_embeddings/embedding$", PartitionSpec(MODEL, None)),
    (".*", PartitionSpec()),
)
RULE_SETS = {"replicated": REPLICATED_RULES, "model_parallel": MODEL_PARALLEL_RULES}


def make_mesh(model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'model') mesh over ``devices`` (default: all), ``model`` devices per replica."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) % model:
        raise UserInputError(
            f"{len(devices)} devices do not split into model-parallel groups of {model}"
        )
    return Mesh(np.asarray(devices).reshape(-1, model), (DATA, MODEL))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over 'data'; every other axis whole."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def data_size(mesh: Mesh) -> int:
    return mesh.shape[DATA]


def _spec_for(path: str, shape: tuple[int, ...], rules: Rules, mesh: Mesh) -> PartitionSpec:
    for pattern, spec in rules:
        if not re.search(pattern, path):
            continue
        if 0 < len(spec) < len(shape):  # a stacked-layer axis (nn.scan) in front: never split
            spec = PartitionSpec(*([None] * (len(shape) - len(spec))), *spec)
        for dim, axis in zip(shape, spec, strict=False):
            if axis is not None and dim % mesh.shape[axis]:
                raise UserInputError(
                    f"{path}: dimension {dim} does not split over {mesh.shape[axis]} '{axis}' devices"
                )
        return spec
    raise ValueError(f"no partition rule matches parameter {path!r}")


def param_shardings(abstract_params: Any, mesh: Mesh, rules: Rules = REPLICATED_RULES) -> Any:
    """A NamedSharding per parameter, from the first rule whose regex matches its path."""
    flat = traverse_util.flatten_dict(abstract_params, sep="/")
    specs = {
        path: NamedSharding(mesh, _spec_for(path, tuple(x.shape), rules, mesh))
        for path, x in flat.items()
    }
    return traverse_util.unflatten_dict(specs, sep="/")


def sharded_init(init_fn: Callable[[], Any], shardings: Any) -> Any:
    """Runs ``init_fn`` under jit with ``out_shardings``: each device materialises only its
    own shard (a large model never exists whole on one host)."""
    return jax.jit(init_fn, out_shardings=shardings)()


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Each process's rows → one global array per leaf, split over 'data' (multi-host safe:
    every process passes only the rows it read; the global batch is their concatenation
    in process order)."""
    sharding = data_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def on_process_0(fn: Callable[[], Any], what: str) -> None:
    """Runs ``fn`` (writing shared files) on process 0 alone; every process continues once
    it is done."""
    if jax.process_index() == 0:
        fn()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"rqa_jax: {what}")

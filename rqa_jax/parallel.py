"""Device mesh and shardings: one Mesh(('data', 'model')), batches split on 'data'."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA, MODEL = "data", "model"


def make_mesh(model: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'model') mesh over ``devices`` (default: all), ``model`` devices per replica."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) % model:
        raise ValueError(
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


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Each process's rows → one global array per leaf, split over 'data' (multi-host safe:
    every process passes only the rows it read; the global batch is their concatenation
    in process order)."""
    sharding = data_sharded(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )

"""Batched, length-bucketed forward passes over every local device.

Rows are sorted by length and cut into batches padded to a few fixed bucket shapes, so a
corpus compiles a handful of programs, not one per length. Each batch is split over the
mesh's 'data' axis with parameters replicated; batches are dispatched ahead of the
results being read back, so the host prepares the next batch while the devices compute.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from rqa_jax import parallel
from rqa_jax.data.tokenize import Encoded, bucketed_batches, length_buckets

# (params, batch dict of [B, L] int32 arrays) -> [B, ...] float32
ApplyFn = Callable[[Any, dict[str, jax.Array]], jax.Array]


class BatchRunner:
    """Holds parameters on the devices once and runs named per-batch functions over
    :class:`Encoded` rows; results come back in input order."""

    def __init__(
        self,
        params: Any,
        fns: Mapping[str, ApplyFn],
        batch_size: int = 64,
        mesh: jax.sharding.Mesh | None = None,
        in_flight: int = 2,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.mesh = mesh or parallel.make_mesh(devices=jax.local_devices())
        n_data = parallel.data_size(self.mesh)
        # Every batch has the same row count, a multiple of the data-parallel size.
        self.batch_size = -(-batch_size // n_data) * n_data
        self.params = jax.device_put(params, parallel.replicated(self.mesh))
        self._batch_sharding = parallel.data_sharded(self.mesh)
        out = parallel.replicated(self.mesh)
        self._fns = {name: jax.jit(fn, out_shardings=out) for name, fn in fns.items()}
        self.in_flight = in_flight

    def _device_batch(self, enc: Encoded, rows: np.ndarray, length: int) -> dict[str, jax.Array]:
        part = enc.take(rows, length).as_dict()
        pad = self.batch_size - len(rows)
        if pad:
            part = {k: np.pad(v, ((0, pad), (0, 0))) for k, v in part.items()}
        return jax.device_put(part, self._batch_sharding)

    def run(self, fn: str, enc: Encoded) -> np.ndarray:
        """All rows of ``enc`` through ``fns[fn]``; output row i belongs to input row i."""
        if len(enc) == 0:
            raise ValueError("nothing to encode: the input has no rows")
        out: np.ndarray | None = None
        for rows, result in self._pipelined(self._fns[fn], enc):
            if out is None:
                out = np.empty((len(enc), *result.shape[1:]), result.dtype)
            out[rows] = result[: len(rows)]
        assert out is not None
        return out

    def _pipelined(self, fn, enc: Encoded) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        buckets = length_buckets(enc.input_ids.shape[1])
        pending: deque[tuple[np.ndarray, jax.Array]] = deque()
        for rows, length in bucketed_batches(enc.lengths, self.batch_size, buckets):
            pending.append((rows, fn(self.params, self._device_batch(enc, rows, length))))
            if len(pending) > self.in_flight:
                rows_done, result = pending.popleft()
                yield rows_done, np.asarray(result)
        while pending:
            rows_done, result = pending.popleft()
            yield rows_done, np.asarray(result)

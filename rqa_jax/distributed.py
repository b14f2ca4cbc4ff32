"""Joining a multi-process JAX run (``jax.distributed``), before anything touches a device.

One ``rqa`` process runs per host (a TPU VM worker, a GPU host, a SLURM task). They join
when, in this order:

* ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0) is set, with ``JAX_NUM_PROCESSES``
  and ``JAX_PROCESS_ID``: any cluster (SLURM, Kubernetes, several GPU hosts, or processes on
  one machine in the tests);
* on a Cloud TPU VM pod slice (``TPU_WORKER_HOSTNAMES`` lists more than one worker) or in a
  SLURM job of several tasks: JAX finds the coordinator itself.

Otherwise the run is one process and nothing happens. CPU processes exchange collectives
through gloo. A process that stops sending heartbeats (it died) makes the others fail after
``RQA_HEARTBEAT_TIMEOUT_S`` seconds (default 100) instead of waiting forever; joining gives
up after ``RQA_INIT_TIMEOUT_S`` (default 300).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax

from rqa_jax.errors import UserInputError

COORDINATOR, NUM_PROCESSES, PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
)


def _int_env(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise UserInputError(
                f"{COORDINATOR} is set, so this is one process of several: set {name} too "
                f"({NUM_PROCESSES} = how many processes, {PROCESS_ID} = this one's 0-based index)"
            )
        return default
    try:
        return int(value)
    except ValueError:
        raise UserInputError(f"{name} must be an integer, got {value!r}") from None


def _auto_detected(env: Mapping[str, str]) -> bool:
    """A TPU pod slice or a multi-task SLURM job, where JAX finds its peers itself."""
    tpu_workers = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    return len(tpu_workers) > 1 or int(env.get("SLURM_NTASKS", "1") or 1) > 1


def join(env: Mapping[str, str] | None = None) -> bool:
    """Joins the multi-process run this process belongs to, if any; returns whether it is
    one. Call before any other JAX use (``rqa`` does, first thing)."""
    env = os.environ if env is None else env
    if jax.distributed.is_initialized():
        return True
    timeouts = {
        "initialization_timeout": _int_env(env, "RQA_INIT_TIMEOUT_S", 300),
        "heartbeat_timeout_seconds": _int_env(env, "RQA_HEARTBEAT_TIMEOUT_S", 100),
    }
    if env.get(COORDINATOR):
        n, index = _int_env(env, NUM_PROCESSES), _int_env(env, PROCESS_ID)
        if not 0 <= index < n:
            raise UserInputError(f"{PROCESS_ID}={index} is not in 0..{n - 1} ({NUM_PROCESSES}={n})")
        if n == 1:
            return False
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(env[COORDINATOR], n, index, **timeouts)
        return True
    if _auto_detected(env):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**timeouts)
        return True
    return False


# What JAX's coordination service and collectives say when a peer process is gone or too
# slow to answer (killed, crashed, or starved of CPU past the heartbeat timeout).
PEER_LOST_MARKERS = ("another task died", "heartbeat", "DEADLINE_EXCEEDED", "Barrier timed out",
                     "coordination service", "UNAVAILABLE", "has been restarted")  # fmt: skip
EXIT_PEER_LOST = 75  # EX_TEMPFAIL: not a bug in rqa_jax nor in the input; run the command again


def peer_lost(error: BaseException, env: Mapping[str, str] | None = None) -> str | None:
    """A clear message when ``error`` says another process of a multi-process run was lost
    (or timed out), else None."""
    if not jax.distributed.is_initialized() or not isinstance(error, jax.errors.JaxRuntimeError):
        return None
    text = str(error)
    if not any(m.lower() in text.lower() for m in PEER_LOST_MARKERS):
        return None
    env = os.environ if env is None else env
    heartbeat = env.get("RQA_HEARTBEAT_TIMEOUT_S", "100")
    first = text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__
    return (f"another process of this {jax.process_count()}-process run stopped answering or timed out "
            f"(JAX: {first}). If every process is still alive, they missed heartbeats under load: raise "
            f"RQA_HEARTBEAT_TIMEOUT_S (now {heartbeat} s) or RQA_INIT_TIMEOUT_S; otherwise see the other "
            "processes' logs. Running the same command again resumes from the last checkpoint or chunk.")  # fmt: skip

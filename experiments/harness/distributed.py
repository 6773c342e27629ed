"""Multi-host runs on JAX's multi-controller runtime.

Every host runs the same command; `jax.distributed.initialize` connects the processes through a
coordinator (process 0's host:port) and from then on `jax.devices()` lists the devices of all
hosts, so the (data, fsdp) mesh of `config.parallel = "jit_sharded"` spans them unchanged. Each
process feeds only its own rows of every batch (`parallel.global_batch`), orbax checkpoints are
written by all processes together (one checkpoint, each process its shards) into a workdir that
all hosts share, and only process 0 writes logs, summaries and plots (`is_main_process`).

Config keys (configs/common.py): `distributed` (off by default), `coordinator_address`,
`num_processes`, `process_id`; an empty / 0 / -1 value is read from the environment
(`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`) or, when those are unset
too, left to JAX's cluster auto-detection (Cloud TPU, SLURM, Open MPI, Kubernetes).
"""
from __future__ import annotations

import os

import jax


def settings(config) -> dict:
    """The keyword arguments for `jax.distributed.initialize` from config and environment (None
    = let JAX detect it)."""

    def from_env(value, unset, name, cast):
        if value != unset:
            return value
        raw = os.environ.get(name, "")
        return cast(raw) if raw else None

    return {
        "coordinator_address": from_env(config.coordinator_address, "", "JAX_COORDINATOR_ADDRESS", str),
        "num_processes": from_env(config.num_processes, 0, "JAX_NUM_PROCESSES", int),
        "process_id": from_env(config.process_id, -1, "JAX_PROCESS_ID", int),
    }


def initialize_distributed(config) -> None:
    """Join the multi-controller runtime when `config.distributed`; a no-op otherwise (and when
    this process already joined). Must run before anything touches a JAX device. On CPU the
    cross-process collectives go through gloo."""
    if not config.distributed or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**settings(config))


def is_main_process() -> bool:
    """True on the process that writes logs, summaries and plots (process 0)."""
    return jax.process_index() == 0

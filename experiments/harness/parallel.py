"""One train step, compiled for the chosen parallelism (`config.parallel`).

- "none": `jax.jit` on the default device.
- "jit_sharded": `jax.jit` with in/out shardings over a (data, fsdp) mesh: the batch is split
  over all devices, the train state FSDP-sharded over `fsdp` (replicated when fsdp = 1, i.e.
  pure data parallelism); XLA inserts the collectives. The mesh holds every process's devices,
  so under jax.distributed (harness/distributed.py) the same step spans hosts, each process
  feeding its own rows of the batch.
- "pmap": classic data parallelism; state replicated per device, gradients `pmean`-ed.

A train state is a dict {"params": ..., "opt_state": ...}; `loss_fn(params, batch)` returns
(mean loss, dict of auxiliary scalar means).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import optax

from manifold_opt import parallel


class CompiledStep(NamedTuple):
    step: Callable  # (placed state, placed batch) -> (placed state, metrics)
    place_state: Callable  # logical state -> placed state
    place_batch: Callable  # host batch -> placed batch
    to_logical: Callable  # placed state -> logical state (one copy, as checkpointed)
    num_devices: int


def check_parallel(config) -> None:
    """ValueError naming the key unless `config.mesh_shape` fits the devices (for the parallel
    modes) and `config.batch_size` splits evenly over them."""
    if config.parallel == "none":
        return
    try:
        mesh = parallel.make_mesh(config.mesh_shape)
    except ValueError as e:
        raise ValueError(f"config.mesh_shape: {e}") from None
    if config.batch_size % mesh.size:
        raise ValueError(
            f"config.batch_size: {config.batch_size} does not split over the {mesh.size} devices of mesh_shape "
            f"{tuple(config.mesh_shape)}"
        )


def make_update(loss_fn, optimizer: optax.GradientTransformation, axis_name: str | None = None):
    """The un-compiled step: gradient, optional cross-device mean, optimizer update."""

    def update(state, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
        metrics = {"loss": loss, **aux}
        if axis_name is not None:
            grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, metrics

    return update


def compile_step(loss_fn, optimizer, mode: str, mesh_shape, state) -> CompiledStep:
    """The step for `mode`; `state` (logical) fixes the train-state structure and shardings."""
    identity = lambda x: x  # noqa: E731
    if mode == "none":
        return CompiledStep(jax.jit(make_update(loss_fn, optimizer)), jax.device_put, jax.device_put, identity, 1)
    mesh = parallel.make_mesh(mesh_shape)
    if mode == "jit_sharded":
        state_shardings = parallel.fsdp_shardings(state, mesh)
        batch_sharding = parallel.batch_sharding(mesh)
        step = jax.jit(
            make_update(loss_fn, optimizer),
            in_shardings=(state_shardings, batch_sharding),
            out_shardings=(state_shardings, parallel.replicated(mesh)),
        )
        return CompiledStep(
            step,
            lambda s: jax.device_put(s, state_shardings),
            lambda b: parallel.global_batch(b, batch_sharding),
            identity,
            mesh.size,
        )
    if mode == "pmap":
        devices = mesh.devices.ravel().tolist()
        pmapped = jax.pmap(make_update(loss_fn, optimizer, parallel.PMAP_AXIS), axis_name=parallel.PMAP_AXIS, devices=devices)

        def step(state, batch):  # metrics are equal on every device after pmean: keep one copy
            state, metrics = pmapped(state, batch)
            return state, parallel.unreplicate(metrics)

        return CompiledStep(
            step,
            lambda s: parallel.replicate(s, devices),
            lambda b: parallel.split_batch(b, len(devices)),
            parallel.unreplicate,
            len(devices),
        )
    raise ValueError(f"compile_step: unknown mode {mode!r}; expected one of ['none', 'jit_sharded', 'pmap']")

"""Device meshes and sharding specs for data-parallel and FSDP training (core: no Flax).

A mesh has two named axes, `data` and `fsdp`. A batch is split along its leading axis over
both (every device sees a distinct slice); parameters and optimizer state are either
replicated (pure data parallel) or, FSDP/ZeRO-3 style, each array is split along its largest
axis divisible by the `fsdp` size, so a device holds ~1/size of every large array. Under
`jax.jit` with these in/out shardings XLA's SPMD partitioner inserts the all-gathers and
reduce-scatters (the pjit semantics of Xu et al. 2021, "GSPMD").
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
AXES = (DATA_AXIS, FSDP_AXIS)


def make_mesh(shape=(1, -1), devices=None) -> Mesh:
    """A (data, fsdp) mesh of `shape`; one entry may be -1 for "all remaining devices"."""
    devices = list(jax.devices() if devices is None else devices)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(
            f"make_mesh: shape must be (data, fsdp) of positive ints with at most one -1, got {shape}"
        )
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if len(devices) % known:
            raise ValueError(f"make_mesh: shape {shape} does not divide {len(devices)} devices")
        shape = tuple(len(devices) // known if s == -1 else s for s in shape)
    if math.prod(shape) != len(devices):
        raise ValueError(f"make_mesh: shape {shape} needs {math.prod(shape)} devices, have {len(devices)}")
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * 2)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over all devices of the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(AXES))


def fsdp_spec(shape, size: int) -> PartitionSpec:
    """Split the largest axis divisible by `size` over `fsdp` (the first such on ties);
    replicate when no axis divides or size is 1."""
    candidates = [(-d, i) for i, d in enumerate(shape) if d % size == 0 and d >= size]
    if size == 1 or not candidates:
        return PartitionSpec()
    axis = min(candidates)[1]
    return PartitionSpec(*([None] * axis + [FSDP_AXIS]))


def fsdp_shardings(tree, mesh: Mesh):
    """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs) by `fsdp_spec`.

    Applied to a whole train state, optimizer moments get the spec of their parameter (same
    shape) and scalar counters are replicated."""
    size = mesh.shape[FSDP_AXIS]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), size)), tree)


def replicated_shardings(tree, mesh: Mesh):
    """The replicated sharding for every leaf of `tree`."""
    return jax.tree.map(lambda _: replicated(mesh), tree)


def process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows of a global batch of `batch_size` (leading axis split by `sharding`) that this
    process's devices hold; with `batch_sharding` they are contiguous: one slice per process."""
    starts = {idx[0].indices(batch_size)[:2] for idx in sharding.addressable_devices_indices_map((batch_size,)).values()}
    lo, hi = min(a for a, _ in starts), max(b for _, b in starts)
    if sum(b - a for a, b in starts) != hi - lo:
        raise ValueError(f"process_rows: this process's rows of the batch are not contiguous under {sharding}")
    return slice(lo, hi)


def global_batch(batch, sharding: NamedSharding):
    """One global jax.Array per leaf of a host `batch`, split along its leading axis by
    `sharding`, each process contributing only its own rows (`process_rows`): on one host the
    whole batch, on many hosts (jax.distributed) each host's share. Every process passes the same
    global batch here (a deterministic function of the step); a data pipeline that loads only
    its own rows can call `jax.make_array_from_process_local_data` with them directly."""

    def put(x):
        x = np.asarray(x)
        local = x[process_rows(sharding, x.shape[0])]
        return jax.make_array_from_process_local_data(sharding, local, x.shape)

    return jax.tree.map(put, batch)


def per_device_bytes(tree, device=None) -> int:
    """Bytes of `tree`'s arrays resident on `device` (default: this process's first device)."""
    device = jax.local_devices()[0] if device is None else device
    return sum(
        shard.data.nbytes
        for leaf in jax.tree.leaves(tree)
        for shard in leaf.addressable_shards
        if shard.device == device
    )

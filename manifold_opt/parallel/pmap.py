"""Helpers for the classic `jax.pmap` data-parallel path (core: no Flax).

State is replicated with a leading device axis, a batch of size B becomes (n, B / n, ...),
and the step averages gradients with `lax.pmean` over the named axis.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PMAP_AXIS = "batch"


def replicate(tree, devices=None):
    """Copy every leaf to each device, adding a leading device axis (one slice per device)."""
    devices = jax.local_devices() if devices is None else list(devices)
    sharding = NamedSharding(Mesh(np.asarray(devices), (PMAP_AXIS,)), PartitionSpec(PMAP_AXIS))
    stack = lambda x: jnp.broadcast_to(x, (len(devices),) + jnp.shape(x))
    return jax.device_put(jax.tree.map(stack, tree), sharding)


def unreplicate(tree):
    """The copy on the first device of a replicated tree."""
    return jax.tree.map(lambda x: x[0], tree)


def split_batch(batch, num_devices: int):
    """Reshape each leaf's leading axis B into (num_devices, B / num_devices)."""

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % num_devices:
            raise ValueError(
                f"split_batch: batch size {x.shape[0]} is not divisible by {num_devices} devices"
            )
        return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

    return jax.tree.map(split, batch)

"""Distributed orthogonalization: whole matrices spread over a device mesh axis.

Newton-Schulz on a matrix is cheap to run locally but awkward to shard (every step needs the
whole X X^T). As in NorMuon / distributed Muon, instead of sharding each matrix we give each
device whole matrices: group the matrices by shape (tall ones transposed to wide, since a
polar-type map f satisfies f(X^T) = f(X)^T), stack each group, pad it to a multiple of the
axis size, constrain the stack's leading axis to be sharded over the mesh axis (XLA moves the
data, an all-to-all when the parameters were sharded), run f on the local matrices, and gather
the result back (replicated). Same numbers as the single-device path.

    tx = mo.muon(orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh, "data"))
"""
from __future__ import annotations

import math
from collections import defaultdict

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def sharded_orthogonalizer(mesh: Mesh, axis_name: str | tuple[str, ...] | None = None):
    """An orthogonalizer(fn, matrices) for the optimizers' `orthogonalizer=` option.

    `matrices` is a list of (batch, m, n) stacks; returns [fn(x) for x in matrices], computed
    with whole matrices spread over `axis_name` of `mesh` (default: its first axis; a tuple of
    axes spreads over their product, e.g. `mesh.axis_names` for every device of a multi-host mesh).
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"sharded_orthogonalizer: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    axis_name = mesh.axis_names[0] if axis_name is None else axis_name
    axes = (axis_name,) if isinstance(axis_name, str) else tuple(axis_name)
    if not axes or any(a not in mesh.axis_names for a in axes):
        raise ValueError(f"sharded_orthogonalizer: axis_name {axis_name!r} not in mesh axes {mesh.axis_names}")
    n_dev = math.prod(mesh.shape[a] for a in axes)
    spread = NamedSharding(mesh, PartitionSpec(axes))
    replicated = NamedSharding(mesh, PartitionSpec())

    def orthogonalize(fn, matrices):
        groups = defaultdict(list)  # (wide shape, dtype) -> [(index, transposed)]
        for i, x in enumerate(matrices):
            if x.ndim != 3:
                raise ValueError(f"sharded_orthogonalizer: expected (batch, m, n) stacks, got shape {x.shape}")
            tall = x.shape[1] > x.shape[2]
            groups[(min(x.shape[1:]), max(x.shape[1:]), x.dtype)].append((i, tall))
        outs = [None] * len(matrices)
        for (m, n, _), members in groups.items():
            wide = [jnp.swapaxes(matrices[i], 1, 2) if tall else matrices[i] for i, tall in members]
            stack = jnp.concatenate(wide, axis=0)
            total = stack.shape[0]
            pad = -total % n_dev
            if pad:
                stack = jnp.concatenate([stack, jnp.zeros((pad, m, n), stack.dtype)], axis=0)
            stack = jax.lax.with_sharding_constraint(stack, spread)
            result = jax.lax.with_sharding_constraint(fn(stack)[:total], replicated)
            start = 0
            for i, tall in members:
                size = matrices[i].shape[0]
                piece = result[start:start + size]
                outs[i] = jnp.swapaxes(piece, 1, 2) if tall else piece
                start += size
        return outs

    return orthogonalize

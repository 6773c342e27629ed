"""Distributed orthogonalization: whole matrices spread over a device mesh axis.

Newton-Schulz on a matrix is cheap to run locally but awkward to shard (every step needs the
whole X X^T). As in NorMuon / distributed Muon, instead of sharding each matrix we give each
device whole matrices: group the matrices by shape (tall ones transposed to wide, since a
polar-type map f satisfies f(X^T) = f(X)^T), stack each group, pad it to a multiple of the
axis size, constrain the stack's leading axis to be sharded over the mesh axis (XLA moves the
data, an all-to-all when the parameters were sharded) and run f on the local matrices. Same
numbers as the single-device path. Where the results go is the `mode`:

- `"owner"` (default; the owner-based scheme of Megatron-LM / torchtitan / Dion): each result
  returns to its input's own sharding (`shard_alike`), so a sharded parameter's update comes
  back sharded like the parameter: an all-to-all in and an all-to-all out, about twice the
  matrix bytes in all, whatever the device count.
- `"replicated"`: the results are gathered onto every device (an all-gather of every matrix to
  every device, about `devices` times the matrix bytes).

    tx = mo.muon(orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh, "data"))

`collective_bytes(compiled)` reads the bytes each collective moves from compiled HLO
(experiments/benchmarks/sharded_orthogonalize.py prints both modes side by side).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.shard_alike import shard_alike
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODES = ("owner", "replicated")


def sharded_orthogonalizer(mesh: Mesh, axis_name: str | tuple[str, ...] | None = None, mode: str = "owner"):
    """An orthogonalizer(fn, matrices) for the optimizers' `orthogonalizer=` option.

    `matrices` is a list of (batch, m, n) stacks; returns [fn(x) for x in matrices], computed
    with whole matrices spread over `axis_name` of `mesh` (default: its first axis; a tuple of
    axes spreads over their product, e.g. `mesh.axis_names` for every device of a multi-host mesh).
    `mode="owner"` returns each result in its input's sharding, `"replicated"` on every device.
    """
    if mode not in MODES:
        raise ValueError(f"sharded_orthogonalizer: mode must be one of {MODES}, got {mode!r}")
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
        # Replicated mode stacks tall matrices transposed with wide ones of the same shape (fewer,
        # fuller stacks). Owner mode keeps exact shapes: a transposed shard would be resharded
        # before the all-to-all and again after it, doubling its traffic.
        groups = defaultdict(list)  # (wide shape, dtype) -> [(index, transposed)]
        for i, x in enumerate(matrices):
            if x.ndim != 3:
                raise ValueError(f"sharded_orthogonalizer: expected (batch, m, n) stacks, got shape {x.shape}")
            tall = mode == "replicated" and x.shape[1] > x.shape[2]
            groups[(*(x.shape[:0:-1] if tall else x.shape[1:]), x.dtype)].append((i, tall))
        outs = [None] * len(matrices)
        for (m, n, _), members in groups.items():
            wide = [jnp.swapaxes(matrices[i], 1, 2) if tall else matrices[i] for i, tall in members]
            stack = jnp.concatenate(wide, axis=0)
            total = stack.shape[0]
            pad = -total % n_dev
            if pad:
                stack = jnp.concatenate([stack, jnp.zeros((pad, m, n), stack.dtype)], axis=0)
            stack = jax.lax.with_sharding_constraint(stack, spread)
            result = jax.lax.with_sharding_constraint(fn(stack), spread)[:total]  # computed where it lives
            if mode == "replicated":
                result = jax.lax.with_sharding_constraint(result, replicated)
            start = 0
            for i, tall in members:
                size = matrices[i].shape[0]
                piece = result[start:start + size]
                piece = jnp.swapaxes(piece, 1, 2) if tall else piece
                outs[i] = shard_alike(matrices[i], piece)[1] if mode == "owner" else piece
                start += size
        return outs

    return orthogonalize


COLLECTIVES = ("all-to-all", "all-gather", "all-reduce", "reduce-scatter", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4,
                "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
_SHAPE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([0-9,]*)\]")


def collective_bytes(compiled) -> dict[str, int]:
    """Bytes of the results of each collective in compiled HLO (a `jax.stages.Compiled` or its
    `as_text()`), summed per collective kind over the whole program, as one device sees them:
    {"all-to-all": ..., "all-gather": ..., ..., "total": ...}. Async pairs count once (at -start)."""
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    out = dict.fromkeys(COLLECTIVES, 0)
    for line in text.splitlines():
        if "=" not in line:
            continue
        lhs, rhs = line.split("=", 1)
        op = re.match(r"\s*(?:\([^)]*\)|[\w\[\],{}:. ]*?)\s*([a-z-]+)\(", rhs)
        if op is None:
            continue
        name = op.group(1)
        kind = name[:-len("-start")] if name.endswith("-start") else name
        if kind not in out or name.endswith("-done"):
            continue
        shapes = _SHAPE.findall(rhs[:op.start(1)])
        if name.endswith("-start") and len(shapes) > 1:
            shapes = shapes[len(shapes) // 2:]  # (operands, results) tuple of an async start
        out[kind] += sum(_DTYPE_BYTES[t] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                         for t, dims in shapes)
    out["total"] = sum(out[k] for k in COLLECTIVES)
    return out

"""ARO, Adaptively Rotated Optimization ("A New Lens On Matrix Optimization For Large Models",
arXiv 2602.09006; microsoft/dion's `ARO`): normed steepest descent in a rotated frame whose
rotation is chosen by the base optimizer itself.

On each matrix M (viewed as (fan_out, fan_in), the paper's m x n), with a rotation R (m x m,
R_0 = I) and a base map f (row normalization f(X) = sqrt(n) X / ||x_i||, or sign):

    M <- mu M + (1 - mu) G
    R <- Q of the QR factorization of M f(R^T M)^T       (the rotation policy)
    U = R f(R^T M)
    p <- (1 - lr wd) p - lr 0.2 sqrt(max(m, n)) U        (RMS-matched scale, as the reference)

U does not depend on the signs QR gives the columns of R (f is odd row by row). One deviation
from the reference code: row normalization floors row norms relative to the largest row
(row_normalize: rows below it are zero), not at an absolute 1e-8.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.manifolds.base import check_option
from manifold_opt.transforms.arguments import checked_keywords, hyper, optimizer_constructor
from manifold_opt.transforms.matrix_params import from_matrices, resolve_dimension_numbers, scale_by_shape, to_matrices
from manifold_opt.transforms.momentum import check_beta
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


class AroState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    rotation: optax.Updates  # per leaf: (batch, fan_out, fan_out), at least float32


def row_normalize(x):
    """sqrt(n) x / ||x_i|| row by row (rows of norm sqrt(n), entries of RMS 1). Rows shorter than
    sqrt(eps) times the longest are the zero rows they are in exact arithmetic (R^T M has
    m - n of them when m > n) and are set to zero: the reference's absolute floor 1e-8 would blow
    their float32 rounding noise up to full-size rows of the update."""
    norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
    floor = jnp.maximum(math.sqrt(jnp.finfo(x.dtype).eps) * jnp.max(norms, axis=-2, keepdims=True), 1e-8)
    return jnp.where(norms > floor, math.sqrt(x.shape[-1]) * x / jnp.maximum(norms, floor), 0)


BASE_MAPS = {"row_norm": row_normalize, "sign": jnp.sign}


def aro_direction(m, rotation, base):
    """(U, new rotation) for momentum m (..., fan_out, fan_in) and rotation (..., fan_out, fan_out)."""
    rt = jnp.swapaxes(rotation, -1, -2)
    q, _ = jnp.linalg.qr(m @ jnp.swapaxes(base(rt @ m), -1, -2))
    return q @ base(jnp.swapaxes(q, -1, -2) @ m), q


@checked_keywords("mo.scale_by_aro")
def scale_by_aro(beta: float = 0.95, *, base: str = "row_norm", weight_dimension_numbers=None):
    """ARO's core (module doc): momentum, rotation policy, rotated base step; no shape scale or lr."""
    check_beta("scale_by_aro: beta", beta)
    check_option("mo.scale_by_aro", "base", base, tuple(BASE_MAPS))
    base_map = BASE_MAPS[base]

    def transposed(x, d):  # (batch, fan_out, fan_in), the paper's m x n
        return jnp.swapaxes(to_matrices(x, d), -1, -2)

    def init_fn(params):
        dims = resolve_dimension_numbers(params, weight_dimension_numbers)

        def eye(x, d):
            if d is None:
                raise ValueError(f"mo.scale_by_aro: got a non-matrix leaf of shape {x.shape}")
            batch, _, fan_out = to_matrices(x, d).shape
            dtype = jnp.promote_types(x.dtype, jnp.float32)
            return jnp.broadcast_to(jnp.eye(fan_out, dtype=dtype), (batch, fan_out, fan_out))

        return AroState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params), jax.tree.map(eye, params, dims))

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: m + (1 - hyper(beta, m)) * (g.astype(m.dtype) - m), state.mu, updates)
        dims = resolve_dimension_numbers(mu, weight_dimension_numbers)

        def one(m, r, d):
            u, q = aro_direction(transposed(m, d).astype(r.dtype), r, base_map)
            return from_matrices(jnp.swapaxes(u, -1, -2).astype(m.dtype), m, d), q

        pairs = jax.tree.map(one, mu, state.rotation, dims)
        out = jax.tree.map(lambda _, pair: pair[0], mu, pairs)
        rotation = jax.tree.map(lambda _, pair: pair[1], mu, pairs)
        return out, AroState(optax.safe_increment(state.count), mu, rotation)

    return optax.GradientTransformation(init_fn, update_fn)


@optimizer_constructor("mo.aro")
def aro(
    learning_rate=0.01,
    beta: float = 0.95,
    weight_decay: float = 0.0,
    *,
    base: str = "row_norm",
    weight_dimension_numbers=None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """ARO on matrix params (scale 0.2 sqrt(max(fan_in, fan_out))), AdamW (adam_* keywords, see
    mo.muon) on the rest."""
    core = scale_by_aro(beta, base=base, weight_dimension_numbers=weight_dimension_numbers)
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(weight_dimension_numbers, consistent_rms=0.2),
        weight_dimension_numbers=weight_dimension_numbers, guard_nonfinite=guard_nonfinite, **adamw,
    )

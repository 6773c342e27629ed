"""Conda (2025): column-normalized Adam in a periodically refreshed singular basis.

In the reference's (out, in) layout W (rows = fan_out, cols = fan_in), per matrix:

    m <- b1 m + (1 - b1) g
    every `update_proj_gap` steps (and at the first): m = U S Vh (fp32 SVD);
        rows >= cols: P(x) = x Vh^T, P^-1(y) = y Vh;   else P(x) = U^T x, P^-1(y) = U y
    v <- b2 v + (1 - b2) P(g)^2      (elementwise in projected coordinates; v is NOT rotated when
                                      the basis changes, as in the reference)
    update = -lr sqrt(1 - b2^t) / (1 - b1^t) * scale * P^-1(P(m) / (sqrt(v) + eps)) - lr wd p

The basis is refreshed with `lax.cond` on the step counter, so the update jits once.
Defaults: lr 0.01 (the paper also uses 0.006), betas (0.9, 0.99), eps 1e-8, scale 0.25,
update_proj_gap 2000 (reference default; its CLI examples use 50), weight decay 0. Non-matrix
params: AdamW with the same lr and betas unless adam_* keywords say otherwise.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.manifolds.base import check_positive_int
from manifold_opt.transforms.arguments import checked_keywords, hyper, is_python_number, optimizer_constructor
from manifold_opt.transforms.matrix_params import (
    from_matrices,
    resolve_dimension_numbers,
    to_matrices,
)
from manifold_opt.transforms.momentum import check_beta
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


class CondaState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates  # per leaf: (batch, fan_out, fan_in), projected coordinates
    basis: optax.Updates  # per leaf: (batch, k, k), k = min(fan_in, fan_out)


def _at_least_f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _rows_ge_cols(w: jax.Array) -> bool:
    return w.shape[-2] >= w.shape[-1]


def singular_basis(w: jax.Array) -> jax.Array:
    """Vh^T (cols x cols) if w (..., rows, cols) has rows >= cols, else U (rows x rows); SVD in
    at least float32."""
    u, _, vh = jnp.linalg.svd(_at_least_f32(w), full_matrices=False)
    return jnp.swapaxes(vh, -1, -2) if _rows_ge_cols(w) else u


def project(x: jax.Array, q: jax.Array) -> jax.Array:
    return x @ q if _rows_ge_cols(x) else jnp.swapaxes(q, -1, -2) @ x


def back_project(y: jax.Array, q: jax.Array) -> jax.Array:
    return y @ jnp.swapaxes(q, -1, -2) if _rows_ge_cols(y) else q @ y


@checked_keywords("mo.scale_by_conda")
def scale_by_conda(
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-8,
    *,
    scale: float = 0.25,
    update_proj_gap: int = 2000,
    weight_dimension_numbers=None,
) -> optax.GradientTransformation:
    """Conda's core (see module doc), including its bias-corrected step factor; no lr."""
    check_beta("scale_by_conda: b1", b1)
    check_beta("scale_by_conda: b2", b2)
    gap = update_proj_gap  # may be traced (it only enters `count % gap`)
    if is_python_number(gap) or isinstance(gap, bool):
        gap = check_positive_int("scale_by_conda", "update_proj_gap", gap)

    def reference_layout(x, d):
        if d is None:
            raise ValueError(f"scale_by_conda: got a non-matrix leaf of shape {x.shape}")
        return jnp.swapaxes(to_matrices(x, d), -1, -2)

    def init_fn(params):
        dims = resolve_dimension_numbers(params, weight_dimension_numbers)
        nu = jax.tree.map(lambda x, d: _at_least_f32(jnp.zeros_like(reference_layout(x, d))), params, dims)

        def basis(x, d):
            w = reference_layout(x, d)
            k = min(w.shape[-2:])
            return _at_least_f32(jnp.zeros(w.shape[:-2] + (k, k), w.dtype))

        return CondaState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params), nu,
                          jax.tree.map(basis, params, dims))

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)
        mu = jax.tree.map(lambda m, g: m + (1 - hyper(b1, m)) * (g.astype(m.dtype) - m), state.mu, updates)
        basis = jax.lax.cond(
            state.count % gap == 0,
            lambda: jax.tree.map(lambda m, d: singular_basis(reference_layout(m, d)), mu, dims),
            lambda: state.basis,
        )
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.result_type(float))
        step = scale * jnp.sqrt(1 - b2**t) / (1 - b1**t)

        def second_moment(g, d, v, q):
            return v + (1 - hyper(b2, v)) * (project(_at_least_f32(reference_layout(g, d)), q) ** 2 - v)

        nu = jax.tree.map(second_moment, updates, dims, state.nu, basis)

        def direction(m, d, v, q):
            m_tilde = project(_at_least_f32(reference_layout(m, d)), q)
            u = back_project(m_tilde / (jnp.sqrt(v) + hyper(eps, v)), q) * step.astype(v.dtype)
            return from_matrices(jnp.swapaxes(u, -1, -2), m, d).astype(m.dtype)

        out = jax.tree.map(direction, mu, dims, nu, basis)
        return out, CondaState(count, mu, nu, basis)

    return optax.GradientTransformation(init_fn, update_fn)


@optimizer_constructor("mo.conda", adam_learning_rate=None, adam_b1=None, adam_b2=None, adam_eps=None)
def conda(
    learning_rate=0.01,
    b1: float = 0.9,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    scale: float = 0.25,
    update_proj_gap: int = 2000,
    weight_dimension_numbers=None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """Conda on matrix params, AdamW (adam_* keywords, see mo.muon; those left at None take
    Conda's learning_rate, b1, b2, eps) on the rest."""
    core = scale_by_conda(b1, b2, eps, scale=scale, update_proj_gap=update_proj_gap,
                          weight_dimension_numbers=weight_dimension_numbers)

    own = {"adam_learning_rate": learning_rate, "adam_b1": b1, "adam_b2": b2, "adam_eps": eps}
    adamw = {k: own[k] if v is None else v for k, v in adamw.items()}
    return orthogonalized_optimizer(core, learning_rate=learning_rate, weight_decay=weight_decay,
                                    weight_dimension_numbers=weight_dimension_numbers,
                                    guard_nonfinite=guard_nonfinite, **adamw)

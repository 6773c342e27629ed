"""FISMO, Fisher-Structured Momentum-Orthogonalized (Xu, Yan & Zhang, arXiv 2601.21750): Muon in
the geometry of a Kronecker-factored Fisher metric P (x) Q.

On each matrix G (viewed as (fan_out, fan_in), the paper's m x n), with P_0 = I_m, Q_0 = I_n:

    L = G Q^-1 G^T / n + damping tr(P) / m I,    P <- sym(m P~ / tr(P~)),  P~ = g P + (1 - g) L
    R = G^T P^-1 G / m + damping tr(Q) / n I,    Q <- sym(n Q~ / tr(Q~)),  Q~ = g Q + (1 - g) R
    M <- beta M + (1 - beta) P^-1/2 G Q^-1/2                 (momentum in the whitened frame)
    p <- (1 - lr wd) p - lr P^-1/2 NS(M) Q^-1/2              (g = fisher_decay; P updated first)

Inverse roots by eigendecomposition (both factors are SPD with trace m, n). The hyperparameter
defaults (fisher_decay 0.95, damping 1e-3) are ours; the paper tunes them per task.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.transforms.arguments import checked_keywords, hyper, optimizer_constructor, static_int
from manifold_opt.transforms.matrix_params import from_matrices, resolve_dimension_numbers, to_matrices
from manifold_opt.transforms.momentum import check_beta
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


class FismoState(NamedTuple):
    count: jax.Array
    mu: optax.Updates  # whitened momentum, in the params' layout
    left: optax.Updates  # P per leaf: (batch, fan_out, fan_out), at least float32
    right: optax.Updates  # Q per leaf: (batch, fan_in, fan_in)


def _sym(a):
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def spd_power(a, power: float):
    """a^power for symmetric positive definite a (..., n, n), by eigendecomposition."""
    w, v = jnp.linalg.eigh(_sym(a))
    w = jnp.maximum(w, jnp.finfo(a.dtype).tiny)
    return (v * w[..., None, :] ** power) @ jnp.swapaxes(v, -1, -2)


def _trace(a):
    return jnp.trace(a, axis1=-2, axis2=-1)[..., None, None]


def fisher_factors(g, left, right, decay, damping):
    """The updated Kronecker factors (P, Q) (module doc) for g (..., m, n)."""
    m, n = g.shape[-2:]
    gt = jnp.swapaxes(g, -1, -2)
    eye_m, eye_n = jnp.eye(m, dtype=g.dtype), jnp.eye(n, dtype=g.dtype)
    new_left = g @ spd_power(right, -1.0) @ gt / n + damping * _trace(left) / m * eye_m
    left = decay * left + (1 - decay) * new_left
    left = _sym(m * left / _trace(left))
    new_right = gt @ spd_power(left, -1.0) @ g / m + damping * _trace(right) / n * eye_n
    right = decay * right + (1 - decay) * new_right
    return left, _sym(n * right / _trace(right))


@checked_keywords("mo.scale_by_fismo")
def scale_by_fismo(
    beta: float = 0.95,
    fisher_decay: float = 0.95,
    damping: float = 1e-3,
    *,
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    weight_dimension_numbers=None,
) -> optax.GradientTransformation:
    """FISMO's core (module doc); no learning rate."""
    check_beta("scale_by_fismo: beta", beta)
    check_beta("scale_by_fismo: fisher_decay", fisher_decay)
    ns_steps = static_int("mo.scale_by_fismo", "ns_steps", ns_steps, 5)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps)

    def view(x, d):  # (batch, fan_out, fan_in): the paper's m x n
        return jnp.swapaxes(to_matrices(x, d), -1, -2)

    def unview(m, like, d):
        return from_matrices(jnp.swapaxes(m, -1, -2), like, d).astype(like.dtype)

    def init_fn(params):
        dims = resolve_dimension_numbers(params, weight_dimension_numbers)

        def eyes(x, d, axis):
            if d is None:
                raise ValueError(f"mo.scale_by_fismo: got a non-matrix leaf of shape {x.shape}")
            shape = view(x, d).shape
            dtype = jnp.promote_types(x.dtype, jnp.float32)
            return jnp.broadcast_to(jnp.eye(shape[axis], dtype=dtype), (shape[0], shape[axis], shape[axis]))

        return FismoState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params),
                          jax.tree.map(lambda x, d: eyes(x, d, 1), params, dims),
                          jax.tree.map(lambda x, d: eyes(x, d, 2), params, dims))

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def one(g, mu, left, right, d):
            g32 = view(g, d).astype(left.dtype)
            left, right = fisher_factors(g32, left, right, hyper(fisher_decay, left), hyper(damping, left))
            p_half, q_half = spd_power(left, -0.5), spd_power(right, -0.5)
            m = view(mu, d).astype(left.dtype)
            m = m + (1 - hyper(beta, m)) * (p_half @ g32 @ q_half - m)
            return unview(p_half @ ns(m) @ q_half, g, d), unview(m, mu, d), left, right

        out = jax.tree.map(one, updates, state.mu, state.left, state.right, dims)
        pick = lambda i: jax.tree.map(lambda _, t: t[i], updates, out)  # noqa: E731
        return pick(0), FismoState(optax.safe_increment(state.count), pick(1), pick(2), pick(3))

    return optax.GradientTransformation(init_fn, update_fn)


@optimizer_constructor("mo.fismo")
def fismo(
    learning_rate=0.02,
    beta: float = 0.95,
    fisher_decay: float = 0.95,
    damping: float = 1e-3,
    weight_decay: float = 0.0,
    *,
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    weight_dimension_numbers=None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """FISMO on matrix params, AdamW (adam_* keywords, see mo.muon) on the rest."""
    core = scale_by_fismo(beta, fisher_decay, damping, ns_steps=ns_steps, ns_coeffs=ns_coeffs, ns_eps=ns_eps,
                          weight_dimension_numbers=weight_dimension_numbers)
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay, weight_dimension_numbers=weight_dimension_numbers,
        guard_nonfinite=guard_nonfinite, **adamw,
    )

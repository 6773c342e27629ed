"""Dion2 (Ahn et al., microsoft/dion): orthonormalize only a fraction of each momentum matrix.

With the momentum viewed as (batch, fan_in, fan_out) and slices taken along its shorter side
(rows if fan_in <= fan_out, else columns), per matrix:

    M <- M + G                                  (momentum accumulates the gradient)
    S = the k = ceil(fraction * n) slices of M with the largest L1 norms
    M[S] <- ef_decay * M[S]                     (error feedback: the rest keeps accumulating)
    U = 0 except U[S] = NS(M[S])               (Newton-Schulz on the k-slice submatrix only)
    p <- (1 - lr wd) p - lr sqrt(max(1, fan_out / fan_in)) U

Defaults follow the reference: fraction 0.25, ef_decay 0.95, Polar Express coefficients
(the reference's width scale is sqrt(fan_out / fan_in); ours is Muon's, as in the whole family).
A SplitMatrix leaf is treated whole.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.transforms.arguments import checked_keywords, hyper, is_python_number, optimizer_constructor, static_int
from manifold_opt.transforms.matrix_params import from_matrices, resolve_dimension_numbers, scale_by_shape, to_matrices
from manifold_opt.transforms.momentum import MomentumState, init_momentum
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


def dion2_step(m, fraction: float, ef_decay, orthogonalize):
    """(update, decayed momentum) for a (batch, r, c) momentum stack m (module doc)."""
    if m.shape[-2] > m.shape[-1]:
        u, m = dion2_step(jnp.swapaxes(m, -1, -2), fraction, ef_decay, orthogonalize)
        return jnp.swapaxes(u, -1, -2), jnp.swapaxes(m, -1, -2)
    n = m.shape[-2]
    _, rows = jax.lax.top_k(jnp.sum(jnp.abs(m), axis=-1), max(1, math.ceil(fraction * n)))
    pick = jax.nn.one_hot(rows, n, dtype=m.dtype)  # (batch, k, n)
    update = jnp.swapaxes(pick, -1, -2) @ orthogonalize(pick @ m)
    chosen = jnp.sum(pick, axis=-2)[..., None]
    return update, m * (1 - (1 - hyper(ef_decay, m)) * chosen)


def _checked_fraction(name: str, fraction, ef_decay) -> float:
    """`fraction` (None: 0.25) as a Python number in (0, 1]: it fixes how many slices are taken,
    so it stays static (None by default, so optax.inject_hyperparams leaves it alone)."""
    if is_python_number(ef_decay) and not 0 <= ef_decay <= 1:
        raise ValueError(f"{name}: ef_decay must be in [0, 1], got {ef_decay!r}")
    if fraction is None:
        return 0.25
    if not is_python_number(fraction):
        raise TypeError(f"{name}: fraction must be a Python number (it fixes the number of slices), got "
                        f"{type(fraction).__name__}; under optax.inject_hyperparams pass static_args=('fraction',)")
    if not 0 < fraction <= 1:
        raise ValueError(f"{name}: fraction must be in (0, 1], got {fraction!r}")
    return fraction


@checked_keywords("mo.scale_by_dion2")
def scale_by_dion2(
    fraction: float | None = None,
    ef_decay: float = 0.95,
    *,
    ns_steps: int | None = None,
    ns_coeffs="polar_express",
    ns_eps: float = 1e-7,
    weight_dimension_numbers=None,
) -> optax.GradientTransformation:
    """Dion2's core (module doc): accumulated momentum, top-fraction slices orthogonalized, error
    feedback; no shape scale, no learning rate. `fraction` (None: 0.25) is static."""
    fraction = _checked_fraction("mo.scale_by_dion2", fraction, ef_decay)
    ns_steps = static_int("mo.scale_by_dion2", "ns_steps", ns_steps, 5)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps)

    def update_fn(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: m + g.astype(m.dtype), state.mu, updates)
        dims = resolve_dimension_numbers(mu, weight_dimension_numbers)

        def one(m, d):
            u, m_new = dion2_step(to_matrices(m, d), fraction, ef_decay, ns)
            return from_matrices(u, m, d), from_matrices(m_new, m, d)

        pairs = jax.tree.map(one, mu, dims)
        out = jax.tree.map(lambda _, pair: pair[0], mu, pairs)
        mu = jax.tree.map(lambda _, pair: pair[1], mu, pairs)
        return out, MomentumState(optax.safe_increment(state.count), mu)

    return optax.GradientTransformation(init_momentum, update_fn)


@optimizer_constructor("mo.dion2")
def dion2(
    learning_rate=0.01,
    fraction: float | None = None,
    ef_decay: float = 0.95,
    weight_decay: float = 0.0,
    *,
    ns_steps: int | None = None,
    ns_coeffs="polar_express",
    ns_eps: float = 1e-7,
    weight_dimension_numbers=None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """Dion2 on matrix params, AdamW (adam_* keywords, see mo.muon) on the rest; `fraction`
    (None: 0.25) is static."""
    core = scale_by_dion2(fraction, ef_decay, ns_steps=ns_steps, ns_coeffs=ns_coeffs, ns_eps=ns_eps,
                          weight_dimension_numbers=weight_dimension_numbers)
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(weight_dimension_numbers), weight_dimension_numbers=weight_dimension_numbers,
        guard_nonfinite=guard_nonfinite, **adamw,
    )

"""Manifold Muon (Bernstein 2025, "Modular Manifolds", Thinking Machines): Muon whose weights stay
on the Stiefel manifold {W : W^T W = I} (O(n) when square).

At W (m x n, m >= n; wide matrices are handled transposed) with momentum G, the step direction
is the spectral-norm steepest direction in the tangent space,

    A* = argmax <G, A>  subject to  ||A||_2 <= 1,  W^T A + A^T W = 0,

found by dual ascent on the symmetric multiplier Lambda (the dual function is ||G + 2 W Lambda||_*):

    Lambda_0 = -(W^T G + G^T W) / 4,   A = msign(G + 2 W Lambda),
    Lambda <- Lambda - alpha (1 - k / K) (W^T A + A^T W),   k = 0..K-1 (until RMS(W^T A + A^T W) <= tol),

then W <- msign(W - lr A) (the polar retraction). G is first scaled to RMS singular value 1
(G sqrt(n) / ||G||_F), which leaves A* unchanged and makes alpha independent of the matrix size.
For O(n) Lambda_0 is already optimal: A* = W msign(skew(W^T G)). Dual ascent is a subgradient
method: a few tens of steps solve small matrices to ~1e-4; large ones converge more slowly.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients, polar
from manifold_opt.manifolds.base import check_option
from manifold_opt.manifolds.orthogonal import OrthogonalGroup
from manifold_opt.manifolds.stiefel import Stiefel
from manifold_opt.manifolds.tree import UNCONSTRAINED, map_manifold_tree
from manifold_opt.transforms.arguments import checked_keywords, is_python_number, optimizer_constructor, static_int
from manifold_opt.transforms.matrix_params import DimensionNumbers, from_matrices, resolve_dimension_numbers, to_matrices
from manifold_opt.transforms.momentum import MomentumState, check_beta, ema_momentum, init_momentum
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


def _tall(fn):
    """fn on tall (..., m, n), m >= n, applied to a wide input through its transpose."""

    def wrapped(*mats):
        if mats[0].shape[-2] >= mats[0].shape[-1]:
            return fn(*mats)
        return jnp.swapaxes(fn(*(jnp.swapaxes(x, -1, -2) for x in mats)), -1, -2)

    return wrapped


def manifold_muon_direction(w, g, *, dual_steps: int = 100, dual_learning_rate=0.1, tol: float = 1e-6, msign=polar):
    """The dual-ascent direction A (module doc) at w (..., m, n) with orthonormal columns (rows
    when wide) for the momentum g; stops early once the tangent residual W^T A + A^T W has RMS
    <= tol (in every matrix of the batch). `msign` is the polar map (exact or Newton-Schulz)."""

    @_tall
    def direction(w, g):
        wt = jnp.swapaxes(w, -1, -2)
        g = g * (jnp.sqrt(jnp.asarray(g.shape[-1], g.dtype))
                 / jnp.maximum(jnp.linalg.norm(g, axis=(-2, -1), keepdims=True), jnp.finfo(g.dtype).tiny))

        def body(carry):
            k, lam, _ = carry
            a = msign(g + 2 * w @ lam)
            h = wt @ a
            h = h + jnp.swapaxes(h, -1, -2)
            residual = jnp.sqrt(jnp.max(jnp.mean(h**2, axis=(-2, -1))))
            step = jnp.asarray(dual_learning_rate, g.dtype) * (1 - k / dual_steps)
            return k + 1, jnp.where(residual > tol, lam - step * h, lam), residual

        def cond(carry):
            k, _, residual = carry
            return (k < dual_steps) & (residual > tol)

        lam0 = -0.25 * (wt @ g + jnp.swapaxes(g, -1, -2) @ w)
        _, lam, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, g.dtype), lam0, jnp.asarray(jnp.inf, g.dtype)))
        return msign(g + 2 * w @ lam)

    return direction(w, g)


def _msign(msign: str, ns_steps: int, ns_coeffs):
    if msign == "svd":
        return polar
    return functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=1e-12)


@checked_keywords("mo.scale_by_manifold_muon")
def scale_by_manifold_muon(
    beta: float = 0.95,
    *,
    nesterov: bool = True,
    dual_steps: int | None = None,
    dual_learning_rate: float = 0.1,
    dual_tol: float = 1e-6,
    msign: str = "newton_schulz",
    ns_steps: int | None = None,
    ns_coeffs="polar_express",
    weight_dimension_numbers=None,
) -> optax.GradientTransformation:
    """Momentum, then the manifold Muon direction A at the params (no learning rate)."""
    check_beta("scale_by_manifold_muon: beta", beta)
    check_option("mo.scale_by_manifold_muon", "msign", msign, ("newton_schulz", "svd"))
    dual_steps = static_int("mo.scale_by_manifold_muon", "dual_steps", dual_steps, 100)
    ns_steps = static_int("mo.scale_by_manifold_muon", "ns_steps", ns_steps, 10)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    if is_python_number(dual_learning_rate) and dual_learning_rate <= 0:
        raise ValueError(f"mo.scale_by_manifold_muon: dual_learning_rate must be positive, got {dual_learning_rate!r}")
    sign = _msign(msign, ns_steps, ns_coeffs)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("mo.scale_by_manifold_muon: needs params: call update(grads, state, params)")
        mu, u = ema_momentum(updates, state.mu, beta, nesterov)
        dims = resolve_dimension_numbers(u, weight_dimension_numbers)

        def one(g, p, d):
            a = manifold_muon_direction(to_matrices(p, d).astype(g.dtype), to_matrices(g, d), dual_steps=dual_steps,
                                        dual_learning_rate=dual_learning_rate, tol=dual_tol, msign=sign)
            return from_matrices(a, g, d)

        return jax.tree.map(one, u, params, dims), MomentumState(optax.safe_increment(state.count), mu)

    return optax.GradientTransformation(init_momentum, update_fn)


def stiefel_retraction(weight_dimension_numbers=None, msign=polar) -> optax.GradientTransformation:
    """Last in a chain: the update u becomes msign(W + u) - W for each matrix W."""

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("stiefel_retraction needs params: call update(grads, state, params)")
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def one(u, p, d):
            new = msign(to_matrices(p + u, d))
            return (from_matrices(new, p, d) - p).astype(u.dtype)

        return jax.tree.map(one, updates, params, dims), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _dims_from_manifolds(manifolds):
    """weight_dimension_numbers for a manifold tree: each Stiefel / O(n) leaf is one matrix (its
    last two axes; leading axes are a batch), None leaves go to AdamW."""

    def one(manifold, x):
        if manifold is UNCONSTRAINED:
            return None
        if not isinstance(manifold, (Stiefel, OrthogonalGroup)):
            raise ValueError(
                f"mo.manifold_muon: manifolds must hold Stiefel, OrthogonalGroup or None leaves, got {manifold!r}"
            )
        return DimensionNumbers(x.ndim - 2, x.ndim - 1)

    return lambda params: map_manifold_tree(one, manifolds, params)


@optimizer_constructor("mo.manifold_muon")
def manifold_muon(
    learning_rate=0.02,
    manifolds=None,
    beta: float = 0.95,
    *,
    nesterov: bool = True,
    dual_steps: int | None = None,
    dual_learning_rate: float = 0.1,
    dual_tol: float = 1e-6,
    msign: str = "newton_schulz",
    ns_steps: int | None = None,
    ns_coeffs="polar_express",
    weight_dimension_numbers=None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """Manifold Muon (module doc) on the matrices, AdamW (adam_* keywords) on the rest.

    `manifolds`: a manifold tree (Stiefel / OrthogonalGroup leaves on the params' last two axes,
    None to AdamW), or None: every matrix chosen by `weight_dimension_numbers` (see mo.muon) is
    kept semi-orthogonal (orthonormal columns when fan_in >= fan_out, rows otherwise). Start from
    params on the manifold (mo.project_params); each step retracts onto it by msign(W - lr A).
    `msign`: "newton_schulz" (`ns_steps`, default 10, of `ns_coeffs`) or "svd" (exact polar).
    `dual_steps` (default 100), `dual_learning_rate` and `dual_tol` (RMS of the tangent residual at
    which it stops) set the dual ascent.
    """
    if adamw["hyperball"]:
        raise ValueError("mo.manifold_muon: hyperball does not apply (the Stiefel constraint fixes each norm)")
    if manifolds is not None and weight_dimension_numbers is not None:
        raise ValueError("mo.manifold_muon: pass manifolds or weight_dimension_numbers, not both")
    dims = _dims_from_manifolds(manifolds) if manifolds is not None else weight_dimension_numbers
    check_option("mo.manifold_muon", "msign", msign, ("newton_schulz", "svd"))
    ns_steps = static_int("mo.manifold_muon", "ns_steps", ns_steps, 10)
    core = scale_by_manifold_muon(
        beta, nesterov=nesterov, dual_steps=dual_steps, dual_learning_rate=dual_learning_rate, dual_tol=dual_tol,
        msign=msign, ns_steps=ns_steps, ns_coeffs=ns_coeffs, weight_dimension_numbers=dims,
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_dimension_numbers=dims, guard_nonfinite=guard_nonfinite,
        after_step=stiefel_retraction(dims, _msign(msign, ns_steps, ns_coeffs)), **adamw,
    )

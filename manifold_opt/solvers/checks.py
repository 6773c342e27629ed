"""Taylor-slope checks of a cost's Riemannian gradient and Hessian (as Manopt's checkgradient /
checkhessian and Pymanopt's check_gradient / check_hessian).

Along a random unit tangent u at x, with y(t) = R_x(t u) (for the Hessian the exponential map
where the manifold has one, as the second-order model needs a second-order retraction),

    gradient:  E_1(t) = |f(y(t)) - f(x) - t <grad f(x), u>|                        = O(t^2)
    Hessian:   E_2(t) = |f(y(t)) - f(x) - t <grad f(x), u> - t^2/2 <Hess f(x)[u], u>| = O(t^3)

so log E against log t has slope 2 (3) where the derivative is right and 1 (2) where it is
wrong. The slope is read on the smallest steps whose error stands above the cost's rounding
(errors below it everywhere: the model is exact, say a linear cost). The gradient must also be
tangent, and the Hessian tangent and symmetric (<H u, v> = <u, H v>).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.solvers import common
from manifold_opt.solvers.implicit import bind_args

STEPS = np.logspace(-8, 0, 41)


class DerivativeCheck(NamedTuple):
    """ok: the slope is within 0.5 of the expected one (or the model is exact) and the
    tangency/symmetry residuals are within sqrt(eps); slope: the measured log-log slope (nan when
    no error stood above rounding); steps, errors: the Taylor errors E(t) per step t."""

    ok: bool
    slope: float
    expected_slope: int
    steps: np.ndarray
    errors: np.ndarray
    tangent_residual: float
    symmetry_residual: float = 0.0


def _slope(steps, errors, floor, window=4):
    """Median log-log slope over the `window` smallest consecutive steps with errors above floor."""
    above = np.flatnonzero(errors > floor)
    if above.size < 2:
        return float("nan")
    first = above[0]
    last = min(first + window, above[-1])
    piece = np.arange(first, last + 1)
    piece = piece[errors[piece] > floor]
    slopes = np.diff(np.log(errors[piece])) / np.diff(np.log(steps[piece]))
    return float(np.median(slopes))


def _check(owner, cost, manifold, x, key, args, order):
    common.check_geometry(owner, manifold, "manifold")
    if order == 2:
        common.check_hessian(owner, manifold, "there is nothing to check")
    if args is not None:
        cost = bind_args(cost, args)
    x = jax.tree_util.tree_map(jnp.asarray, x)
    key = jax.random.key(0) if key is None else key
    curve = manifold.exp if order == 2 and _has_exp(manifold) else manifold.retract
    value, terms, residual, symmetry, trials = jax.jit(
        lambda x, key, steps: _taylor_terms(cost, manifold, curve, x, key, steps, order))(x, key, STEPS)
    steps = np.asarray(STEPS, np.dtype(value.dtype))
    errors = np.abs(np.asarray(trials) - float(value) - steps * float(terms[0]) - 0.5 * steps**2 * float(terms[1]))
    eps = float(jnp.finfo(value.dtype).eps)
    measured = _slope(steps, errors, floor=1e2 * eps * max(1.0, abs(float(value))))
    expected = order + 1
    limit = np.sqrt(eps)
    residual, symmetry = float(residual), float(symmetry)
    ok = bool((np.isnan(measured) or measured > expected - 0.5) and residual <= limit and symmetry <= limit)
    return DerivativeCheck(ok, measured, expected, steps, errors, residual, symmetry)


def _taylor_terms(cost, manifold, curve, x, key, steps, order):
    """f(x), (<grad f, u>, <Hess f[u], u> or 0), the relative off-tangent part of grad f (or of
    Hess f[u]), the relative asymmetry |<H u, v> - <u, H v>| / ||H u|| and f(curve(x, t u))."""
    from manifold_opt.solvers.trust_regions import riemannian_hvp

    keys = jax.random.split(key)
    u = manifold.random_tangent(keys[0], x)
    value, grad = common.value_and_rgrad(cost, manifold, x)
    tiny = jnp.finfo(value.dtype).tiny
    tangent, curvature, symmetry = grad, jnp.zeros_like(value), jnp.zeros_like(value)
    if order == 2:
        _, hess = riemannian_hvp(cost, manifold, x)
        tangent = hess(u)
        curvature = common.inner(manifold, x, tangent, u)
        v = manifold.random_tangent(keys[1], x)
        symmetry = jnp.abs(common.inner(manifold, x, tangent, v) - common.inner(manifold, x, u, hess(v)))
        symmetry = symmetry / jnp.maximum(common.norm(manifold, x, tangent), tiny)
    off = jax.tree_util.tree_map(jnp.subtract, tangent, manifold.proj(x, tangent))
    residual = common.norm(manifold, x, off) / jnp.maximum(common.norm(manifold, x, tangent), tiny)
    trials = jax.lax.map(lambda t: cost(curve(x, common.scale(t, u))), steps.astype(value.dtype))
    return value, (common.inner(manifold, x, grad, u), curvature), residual, symmetry, trials


def _has_exp(manifold) -> bool:
    try:
        jax.eval_shape(manifold.exp, *(jax.ShapeDtypeStruct(manifold.shape, jnp.float32),) * 2)
        return True
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return False


def check_gradient(cost, manifold, x, *, key=None, args=None) -> DerivativeCheck:
    """Taylor-slope check of the Riemannian gradient of `cost` (a function, or a `Cost` with a
    hand-written `egrad`) at x on `manifold`: `.ok` says it is right (see the module docstring)."""
    return _check("check_gradient", cost, manifold, x, key, args, order=1)


def check_hessian(cost, manifold, x, *, key=None, args=None) -> DerivativeCheck:
    """Taylor-slope check of the Riemannian Hessian of `cost` (autodiff, or a `Cost`'s `ehvp`)
    at x, plus its tangency and symmetry; the gradient should pass `check_gradient` first."""
    return _check("check_hessian", cost, manifold, x, key, args, order=2)

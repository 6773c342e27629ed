"""Pieces shared by the Riemannian solvers: tangent-vector algebra over points that may be
pytrees (Product manifolds) or batches of points (a product of copies), the Riemannian gradient
(autodiff, or the cost's own derivatives), the stopping test and the optional per-iteration log."""
from __future__ import annotations

import functools
import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from manifold_opt.manifolds.base import feasibility_tolerance
from manifold_opt.solvers.cost import euclidean_value_and_grad
from manifold_opt.solvers.result import SolverLog, SolverResult, StopReason


class Iterate(NamedTuple):
    """The loop state every solver shares; solvers carry their own extras beside it."""

    x: jax.Array
    value: jax.Array
    grad: jax.Array
    grad_norm: jax.Array
    previous_value: jax.Array  # cost before the last accepted step (inf at the start)
    iteration: jax.Array
    stuck: jax.Array  # the last step made no progress (failed line search, collapsed trust region)
    log: SolverLog | None


def jitted_solver(static_argnames: tuple[str, ...], geometry: str = "manifold"):
    """jax.jit a solver with `cost`, its `geometry` argument (the manifold, or Frank-Wolfe's set),
    `project_x0` and `static_argnames` static, always passing every keyword (defaults filled in)
    so that the compilation cache is keyed the same way on every call with the same cost function,
    manifold, static options and shapes. Concrete arguments are checked before jit
    (`check_concrete_args`)."""

    def wrap(fn):
        signature = inspect.signature(fn)
        static = ("cost", geometry) + tuple(static_argnames)
        static += ("project_x0",) if "project_x0" in signature.parameters else ()
        jitted = jax.jit(fn, static_argnames=static)

        @functools.wraps(fn)
        def solver(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{fn.__name__}: {error}") from None
            bound.apply_defaults()
            check_concrete_args(fn.__name__, bound.arguments, geometry)
            return jitted(*bound.args, **bound.kwargs)

        return solver

    return wrap


def _is_concrete(tree) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def check_concrete_args(owner: str, arguments: dict, geometry: str = "manifold") -> None:
    """ValueError, before jit, for a negative tolerance or an x0 off the manifold, or outside
    Frank-Wolfe's set (unless `project_x0`). Values that are tracers (the solver called under jit
    or vmap) are not checked; arguments the solver does not have are skipped."""
    for name in ("tolerance", "cost_tolerance"):
        value = arguments.get(name, 0.0)
        if _is_concrete(value) and not np.all(np.asarray(value) >= 0):
            raise ValueError(f"{owner}: {name} must be a nonnegative number, got {value!r}")
    manifold, x0 = arguments.get(geometry), arguments.get("x0")
    if arguments.get("project_x0") or not _is_concrete(x0) or not hasattr(manifold, "feasibility"):
        return
    variant = arguments.get("variant", "vanilla")
    if variant not in ("vanilla", "block_coordinate") and (variant is not None or getattr(manifold, "has_atoms", False)):
        return  # Frank-Wolfe's active-set variants (the default on sets with vertex codes) start from a vertex
    leaves = jax.tree_util.tree_leaves(x0)
    try:
        residual = float(np.max(np.asarray(manifold.feasibility(x0))))
    except (TypeError, ValueError, NotImplementedError):
        return  # a shape error is reported by check_solver_args at trace time
    limit = feasibility_tolerance(jnp.result_type(*leaves))
    if not residual <= limit:
        raise ValueError(
            f"{owner}: x0 is not {'on' if geometry == 'manifold' else 'in'} the {geometry} {manifold!r}: feasibility(x0) = {residual:.3g} > {limit:.2g}; "
            f"start from {geometry}.project(x0)" + (", or pass project_x0=True to project it" if geometry == "manifold" else "")
        )


def value_and_rgrad(cost, manifold, x):
    """(f(x), egrad_to_rgrad(x, grad f(x))) with the Euclidean gradient hand-written where the
    cost is a `Cost` that has one, by reverse-mode autodiff otherwise."""
    value, egrad = euclidean_value_and_grad(cost, x)
    return value, manifold.egrad_to_rgrad(x, egrad)


def inner(manifold, x, u, v):
    """<u, v>_x summed over all points of a batched x (a scalar)."""
    return jnp.sum(manifold.inner(x, u, v))


def norm(manifold, x, u):
    return jnp.sqrt(jnp.maximum(inner(manifold, x, u, u), 0.0))


def scale(a, u):
    return jax.tree_util.tree_map(lambda t: (a * t).astype(t.dtype), u)


def axpy(a, u, v):
    """a * u + v for tangent vectors (pytrees)."""
    return jax.tree_util.tree_map(lambda s, t: (a * s + t).astype(t.dtype), u, v)


def select(pred, on_true, on_false):
    """`pred ? on_true : on_false` over two pytrees of the same structure."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def check_solver_args(owner: str, cost, manifold, x0, max_iterations) -> None:
    """TypeError/ValueError at trace time for a non-callable cost or a point of the wrong shape."""
    if not callable(cost):
        raise TypeError(f"{owner}: cost must be a callable x -> scalar, got {type(cost).__name__}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"{owner}: max_iterations must be an int >= 1, got {max_iterations!r}")
    if hasattr(manifold, "check_point") and not isinstance(x0, (tuple, list)):
        manifold.check_point(x0, name="x0")
    value = jax.eval_shape(cost, x0)
    if value.shape != ():
        raise ValueError(f"{owner}: cost must return a scalar, got shape {value.shape}")


def start(cost, manifold, x0, log: bool, max_iterations: int, project_x0: bool = False) -> Iterate:
    """Iterate 0 at x0 (at manifold.project(x0) when `project_x0`)."""
    if project_x0:
        x0 = manifold.project(x0)
    value, grad = value_and_rgrad(cost, manifold, x0)
    grad_norm = norm(manifold, x0, grad)
    return Iterate(
        x0, value, grad, grad_norm, jnp.full_like(value, jnp.inf), jnp.zeros([], jnp.int32), jnp.array(False),
        new_log(log, max_iterations, value, grad_norm),
    )


def advance(manifold, it: Iterate, x, value, grad, accepted=True, stuck=False) -> Iterate:
    """The next iterate; a rejected step (trust regions, a failed line search) keeps the last
    accepted cost change; `stuck` says the solver cannot make progress from here."""
    grad_norm = norm(manifold, x, grad)
    k = it.iteration + 1
    previous = jnp.where(accepted, it.value, it.previous_value)
    return Iterate(x, value, grad, grad_norm, previous, k, jnp.asarray(stuck),
                   write_log(it.log, k, value, grad_norm))


def stop_reason(it: Iterate, tolerance, cost_tolerance, max_iterations):
    """The StopReason code of `it` (RUNNING while no stopping test holds), checked in order:
    a NaN/inf cost or gradient, the gradient tolerance, a step that made no progress (`stuck`),
    a stalled cost change |f_prev - f| <= cost_tolerance (1 + |f|), the iteration budget."""
    non_finite = ~(jnp.isfinite(it.value) & jnp.isfinite(it.grad_norm))
    small_gradient = it.grad_norm <= tolerance
    stalled = jnp.abs(it.previous_value - it.value) <= cost_tolerance * (1.0 + jnp.abs(it.value))
    reason = jnp.select(
        [non_finite, small_gradient, it.stuck, stalled, it.iteration >= max_iterations],
        [StopReason.NON_FINITE, StopReason.GRADIENT_TOLERANCE, StopReason.STEP_TOO_SMALL, StopReason.COST_STALLED,
         StopReason.MAX_ITERATIONS],
        StopReason.RUNNING,
    )
    return reason.astype(jnp.int32)


def run(step, it: Iterate, extras, max_iterations, tolerance, cost_tolerance) -> tuple[SolverResult, object]:
    """`(it, extras) <- step(it, extras)` in one lax.while_loop until a stopping test holds."""

    def cond(carry):
        it, _ = carry
        return stop_reason(it, tolerance, cost_tolerance, max_iterations) == StopReason.RUNNING

    it, extras = lax.while_loop(cond, lambda carry: step(*carry), (it, extras))
    reason = stop_reason(it, tolerance, cost_tolerance, max_iterations)
    result = SolverResult(
        it.x, it.value, it.grad_norm, it.iteration, reason == StopReason.GRADIENT_TOLERANCE, reason, it.log
    )
    return result, extras


def new_log(enabled: bool, max_iterations: int, value, gradient_norm):
    """A SolverLog of NaNs with entry 0 filled, or None when logging is off."""
    if not enabled:
        return None
    fill = jnp.full((max_iterations + 1,), jnp.nan, jnp.result_type(value))
    return SolverLog(fill.at[0].set(value), fill.at[0].set(gradient_norm.astype(fill.dtype)))


def write_log(log, iteration, value, gradient_norm):
    if log is None:
        return None
    return SolverLog(log.cost.at[iteration].set(value), log.gradient_norm.at[iteration].set(gradient_norm))

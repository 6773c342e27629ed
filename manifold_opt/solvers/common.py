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


ARGS_DOC = """

    args: None, or a pytree handed to the cost as cost(x, args) (a `Cost`'s egrad(x, args),
    ehvp(x, u, args)); jax.grad with respect to args of anything computed from result.x (and
    result.value) is then the implicit gradient at the solution (solvers/implicit.py), exact
    to the accuracy of the solve."""


def jitted_solver(static_argnames: tuple[str, ...], geometry: str = "manifold", implicit_rule: str | None = None):
    """jax.jit a solver with `cost`, its `geometry` argument (the manifold, or Frank-Wolfe's set),
    `project_x0` and `static_argnames` static, always passing every keyword (defaults filled in)
    so that the compilation cache is keyed the same way on every call with the same cost function,
    manifold, static options and shapes. Adds the keyword `args=None` to every solver: the cost is
    then called as cost(x, args) and `result.x` carries the implicit derivative in `args`
    (`implicit.py`: `implicit_rule` "riemannian" (the default on a manifold), "fixed_point" (the
    default on a set), or "none": differentiating then raises). Before jit: keyword typos get a "did you mean", a class passed for the
    geometry, a non-float x0 or a cost whose dtype x0 cannot take are errors naming the solver,
    a narrower float x0 is cast to the cost's dtype (`check_x0_dtype`), and concrete arguments
    are checked (`check_concrete_args`)."""

    def wrap(fn):
        name = fn.__name__
        signature = inspect.signature(fn)
        public = signature.replace(parameters=[
            *signature.parameters.values(), inspect.Parameter("args", inspect.Parameter.KEYWORD_ONLY, default=None)])
        static = ("cost", geometry) + tuple(static_argnames)
        static += ("project_x0",) if "project_x0" in signature.parameters else ()

        def solve(**arguments):
            args = arguments.pop("args")
            if args is None:
                return fn(**arguments)
            from manifold_opt.solvers import implicit

            cost, where = arguments["cost"], arguments[geometry]
            frozen = jax.tree_util.tree_map(lax.stop_gradient, args)
            arguments.update(cost=implicit.bind_args(cost, frozen), x0=lax.stop_gradient(arguments["x0"]))
            result = fn(**arguments)
            attach = implicit.RULES[implicit_rule or ("riemannian" if geometry == "manifold" else "fixed_point")]
            x = attach(cost, where, result.x, args, owner=name)
            return result._replace(x=x, value=implicit.bind_args(cost, args)(x).astype(result.value.dtype))

        solve.__signature__ = public
        jitted = jax.jit(solve, static_argnames=static)

        @functools.wraps(fn)
        def solver(*args, **kwargs):
            try:
                bound = public.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{name}: {error}{keyword_hint(kwargs, public.parameters)}") from None
            bound.apply_defaults()
            arguments = bound.arguments
            check_geometry(name, arguments[geometry], geometry)
            x0 = check_x0_dtype(name, arguments["cost"], arguments["x0"], arguments["args"])
            check_concrete_args(name, arguments, geometry)  # on x0 as given, to its dtype's tolerance
            if x0 is not arguments["x0"]:  # cast up: back onto the manifold in the new precision
                arguments.update(x0=x0, project_x0=True) if "project_x0" in arguments else arguments.update(x0=x0)
            return jitted(**arguments)

        solver.__signature__ = public
        solver.__doc__ = (fn.__doc__ or "").rstrip() + ARGS_DOC
        return solver

    return wrap


def keyword_hint(kwargs, names) -> str:
    """"; did you mean 'x'?" for the first keyword in kwargs that is not in names (else "")."""
    from manifold_opt.transforms.arguments import keyword_suggestions

    for key in kwargs:
        if key not in names:
            hints = keyword_suggestions(key, names)
            return f"; did you mean {' or '.join(map(repr, hints))}?" if hints else ""
    return ""


def check_geometry(owner: str, value, geometry: str) -> None:
    """TypeError naming the solver when a class (Stiefel rather than Stiefel(n, p)) is passed."""
    if isinstance(value, type):
        raise TypeError(
            f"{owner}: {geometry} must be an instance, got the class {value.__name__}; "
            f"construct it first, e.g. {value.__name__}(...)"
        )


def check_x0_dtype(owner: str, cost, x0, args=None):
    """x0 with every leaf a float array of the cost's dtype: a float x0 narrower than the value
    cost(x0) (float32 x0, float64 data) is cast up (and a Riemannian solver then starts from
    manifold.project of it), since the solver's arithmetic and tolerances follow x0's dtype; a non-float x0, or a float64 x0 whose cost computes in float32, is a
    TypeError naming both dtypes."""
    leaves = jax.tree_util.tree_leaves(x0)
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None) or np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(f"{owner}: x0 must be a floating-point array (pytree), got dtype {dtype}; "
                            f"pass e.g. jnp.asarray(x0, float)")
    if not callable(cost):
        return x0
    x_dtype = jnp.result_type(*leaves)
    try:
        from manifold_opt.solvers.implicit import bind_args

        value = jax.eval_shape(cost if args is None else bind_args(cost, args), x0)
    except Exception:  # noqa: BLE001 - a malformed cost is reported by check_solver_args at trace time
        return x0
    value_dtype = getattr(value, "dtype", None)
    x_real = jnp.finfo(x_dtype).dtype  # the precision of x (float64 for a complex128 x)
    if value_dtype is None or not jnp.issubdtype(value_dtype, jnp.floating) or value_dtype == x_real:
        return x0
    if jnp.promote_types(value_dtype, x_real) == value_dtype:  # cast up (complex x stays complex)
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.promote_types(value_dtype, a.dtype)), x0)
    raise TypeError(f"{owner}: x0 is {x_dtype} but the cost returns {value_dtype}; pass x0 in {value_dtype} "
                    f"(or make the cost compute in {x_dtype})")


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


def check_hessian(owner: str, manifold,
                  remedy: str = "use a first-order solver (steepest_descent, conjugate_gradient or lbfgs)") -> None:
    """ValueError naming `owner` (a second-order solver, an implicit gradient) when the manifold
    has no Riemannian Hessian."""
    if not getattr(manifold, "has_hessian", True):
        raise ValueError(f"{owner}: {type(manifold).__name__} has no Riemannian Hessian (ehess_to_rhess); {remedy}")


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


def stop_reason(it: Iterate, tolerance, cost_tolerance, max_iterations, may_converge=True):
    """The StopReason code of `it` (RUNNING while no stopping test holds), checked in order:
    a NaN/inf cost or gradient, the gradient tolerance (where `may_converge`), a step that made no progress (`stuck`),
    a stalled cost change |f_prev - f| <= cost_tolerance (1 + |f|) (off at cost_tolerance = 0: near
    the optimum an accepted step can leave f unchanged to the last bit while the gradient still
    falls), the iteration budget."""
    non_finite = ~(jnp.isfinite(it.value) & jnp.isfinite(it.grad_norm))
    small_gradient = (it.grad_norm <= tolerance) & may_converge
    stalled = (jnp.abs(it.previous_value - it.value) <= cost_tolerance * (1.0 + jnp.abs(it.value))) & (cost_tolerance > 0)
    reason = jnp.select(
        [non_finite, small_gradient, it.stuck, stalled, it.iteration >= max_iterations],
        [StopReason.NON_FINITE, StopReason.GRADIENT_TOLERANCE, StopReason.STEP_TOO_SMALL, StopReason.COST_STALLED,
         StopReason.MAX_ITERATIONS],
        StopReason.RUNNING,
    )
    return reason.astype(jnp.int32)


def no_worse(value, best_value):
    """value is no worse than best_value: lower, or above by at most rounding, 32 eps (1 + |best|)
    (near an optimum the costs of successive iterates tie to the last bits while the gradient or
    gap keeps falling). The rule every solver's best-iterate bookkeeping uses."""
    eps = jnp.finfo(jnp.result_type(value)).eps
    return value <= best_value + 32 * eps * (1 + jnp.abs(best_value))


def run(step, it: Iterate, extras, max_iterations, tolerance, cost_tolerance) -> tuple[SolverResult, object]:
    """`(it, extras) <- step(it, extras)` in one lax.while_loop until a stopping test holds.

    The lowest-cost iterate is kept beside the loop and returned when the last one is worse (a
    trust-region or ARC step accepted on its rounding-regularized ratio can raise the cost):
    no solver returns a point worse than the best it accepted (ties within rounding count as no
    worse, `no_worse`). The gradient tolerance stops the loop only at an iterate no worse than
    the best (else the loop goes on: a convergence claim is never carried over to another point).
    The returned iterate's stop reason is its own where a stopping test holds there, else the
    loop's."""

    def loop_reason_of(it, best):
        return stop_reason(it, tolerance, cost_tolerance, max_iterations, may_converge=no_worse(it.value, best[1]))

    def cond(carry):
        it, _, best = carry
        return loop_reason_of(it, best) == StopReason.RUNNING

    def body(carry):
        it, extras, best = carry
        it, extras = step(it, extras)
        return it, extras, select(no_worse(it.value, best[1]), (it.x, it.value, it.grad_norm), best)

    it, extras, best = lax.while_loop(cond, body, (it, extras, (it.x, it.value, it.grad_norm)))
    loop_reason = loop_reason_of(it, best)
    worse = ~no_worse(it.value, best[1])
    it = select(worse, it._replace(x=best[0], value=best[1], grad_norm=best[2]), it)
    reason = stop_reason(it, tolerance, cost_tolerance, max_iterations)
    reason = jnp.where(reason == StopReason.RUNNING, loop_reason, reason)
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

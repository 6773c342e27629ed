"""Constraints on top of a manifold: min f(x) over x in M with h(x) = 0 and g(x) <= 0
(Liu & Boumal 2019, "Simple algorithms for optimization on Riemannian manifolds with
constraints": RALM and REPMS). Each outer iteration is one run of a Riemannian solver of ours
(`inner_solver`, warm-started) on a smooth function of x whose parameters change between runs.

Augmented Lagrangian (RALM), with multipliers lambda (eq) and gamma >= 0 (ineq), penalty rho:

    L_rho(x) = f + <lambda, h> + rho/2 ||h||^2 + rho/2 ||max(0, gamma/rho + g)||^2,
    lambda <- clip(lambda + rho h, -B, B),   gamma <- clip(gamma + rho g, 0, B),
    sigma = max(||h||_inf, ||max(g, -gamma/rho)||_inf);  rho <- growth rho when sigma > tau sigma_prev
    (and sigma > constraint_tolerance: a penalty grown past need only ill-conditions the inner solves).

Exact penalty (REPMS), smoothing parameter u shrinking to `min_smoothing`:

    Q(x) = f + rho (sum_j s_u(h_j) + sum_i m_u(g_i)),
    "lse":          s_u(h) = u log(e^{h/u} + e^{-h/u}),  m_u(g) = u log(1 + e^{g/u})
    "pseudo_huber": s_u(h) = sqrt(h^2 + u^2) - u,       m_u(g) = (g + sqrt(g^2 + u^2)) / 2
    with multiplier estimates lambda = rho s_u'(h), gamma = rho m_u'(g); rho grows as above.

The inner tolerance shrinks geometrically to `tolerance`. Stop reasons: GRADIENT_TOLERANCE
(`converged`): the KKT conditions hold, ||grad_x (f + <lambda, h> + <gamma, g>)|| <= tolerance,
max(||h||_inf, ||max(g, 0)||_inf) <= constraint_tolerance and max |gamma_i g_i| <=
constraint_tolerance; STEP_TOO_SMALL: the penalty passed max_penalty without that (an
infeasible or degenerate problem); NON_FINITE; MAX_ITERATIONS (outer iterations). The result
reports `violation`, `complementarity`, the multipliers and the penalty, whatever the reason.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.manifolds.base import check_option, check_positive_int
from manifold_opt.solvers import common
from manifold_opt.solvers.cost import Cost, euclidean_value_and_grad
from manifold_opt.solvers.result import StopReason
from manifold_opt.solvers.trust_regions import trust_regions

SMOOTHINGS = ("lse", "pseudo_huber")


class ConstrainedResult(NamedTuple):
    """SolverResult's fields (gradient_norm: of the Lagrangian; iterations: outer iterations),
    then violation (max(||h||_inf, ||max(g, 0)||_inf)), complementarity (max |gamma_i g_i|), the
    multipliers (flat arrays), the final penalty and the inner solvers' iterations in total."""

    x: jax.Array
    value: jax.Array
    gradient_norm: jax.Array
    iterations: jax.Array
    converged: jax.Array
    stop_reason: jax.Array
    log: None = None
    gap: None = None
    violation: jax.Array | None = None
    complementarity: jax.Array | None = None
    eq_multipliers: jax.Array | None = None
    ineq_multipliers: jax.Array | None = None
    penalty: jax.Array | None = None
    inner_iterations: jax.Array | None = None


def _constraint(fn, x, dtype):
    """fn(x) flattened (an empty array for fn=None)."""
    return jnp.zeros((0,), dtype) if fn is None else jnp.ravel(fn(x)).astype(dtype)


def _check(owner, cost, manifold, x0, eq, ineq, max_iterations, max_inner_iterations):
    common.check_solver_args(owner, cost, manifold, x0, max_iterations)
    check_positive_int(owner, "max_inner_iterations", max_inner_iterations)
    for name, fn in (("eq", eq), ("ineq", ineq)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{owner}: {name} must be None or a callable x -> array, got {type(fn).__name__}")


def _outer_loop(owner, cost, manifold, x0, eq, ineq, merit, multipliers, inner_solver, *, max_iterations,
                max_inner_iterations, tolerance, constraint_tolerance, initial_penalty, penalty_growth,
                violation_decrease, max_penalty, initial_inner_tolerance, inner_tolerance_decrease, smoothing_start,
                smoothing_decrease, min_smoothing, project_x0):
    """The loop both methods share. `merit(x, (lam, gam, rho, u))` is the inner cost;
    `multipliers(x, lam, gam, rho, u)` the (lam, gam) after an inner solve at x."""
    if project_x0:
        x0 = manifold.project(x0)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(x0))
    h0, g0 = _constraint(eq, x0, dtype), _constraint(ineq, x0, dtype)

    def kkt(x, lam, gam):
        """(f(x), ||grad Lagrangian||, violation, complementarity) at x."""
        h, g = _constraint(eq, x, dtype), _constraint(ineq, x, dtype)
        value, egrad = euclidean_value_and_grad(cost, x)
        terms = jax.grad(lambda y: jnp.vdot(lam, _constraint(eq, y, dtype)) + jnp.vdot(gam, _constraint(ineq, y, dtype)))(x)
        grad = manifold.egrad_to_rgrad(x, jax.tree_util.tree_map(jnp.add, egrad, terms))
        violation = jnp.maximum(jnp.max(jnp.abs(h), initial=0.0), jnp.max(jnp.maximum(g, 0.0), initial=0.0))
        return value, common.norm(manifold, x, grad), violation, jnp.max(jnp.abs(gam * g), initial=0.0)

    def reason_of(state):
        x, lam, gam, rho, eps, u, sigma, k, _, value, grad_norm, violation, complementarity = state
        done = (grad_norm <= tolerance) & (violation <= constraint_tolerance) & (complementarity <= constraint_tolerance)
        finite = jnp.isfinite(value) & jnp.isfinite(grad_norm) & jnp.isfinite(violation)
        return jnp.select(
            [~finite, done, rho > max_penalty, k >= max_iterations],
            [StopReason.NON_FINITE, StopReason.GRADIENT_TOLERANCE, StopReason.STEP_TOO_SMALL, StopReason.MAX_ITERATIONS],
            StopReason.RUNNING,
        ).astype(jnp.int32)

    def body(state):
        x, lam, gam, rho, eps, u, sigma, k, inner_total, *_ = state
        inner = inner_solver(merit, manifold, x, args=(lam, gam, rho, u), tolerance=eps,
                             max_iterations=max_inner_iterations)
        y = inner.x
        h, g = _constraint(eq, y, dtype), _constraint(ineq, y, dtype)
        new_sigma = jnp.maximum(jnp.max(jnp.abs(h), initial=0.0),
                                jnp.max(jnp.maximum(g, -gam / rho), initial=0.0))
        lam, gam = multipliers(y, lam, gam, rho, u)
        stalled = (k > 0) & (new_sigma > violation_decrease * sigma) & (new_sigma > constraint_tolerance)
        rho = jnp.where(stalled, penalty_growth * rho, rho)
        eps = jnp.maximum(tolerance, inner_tolerance_decrease * eps)
        u = jnp.maximum(min_smoothing, smoothing_decrease * u)
        return (y, lam, gam, rho, eps, u, new_sigma, k + 1, inner_total + inner.iterations) + kkt(y, lam, gam)

    lam0, gam0 = jnp.zeros_like(h0), jnp.zeros_like(g0)
    start = (x0, lam0, gam0, jnp.asarray(initial_penalty, dtype), jnp.asarray(initial_inner_tolerance, dtype),
             jnp.asarray(smoothing_start, dtype), jnp.asarray(jnp.inf, dtype), jnp.int32(0), jnp.int32(0))
    state = lax.while_loop(lambda s: reason_of(s) == StopReason.RUNNING, body, start + kkt(x0, lam0, gam0))
    x, lam, gam, rho, _, _, _, k, inner_total, value, grad_norm, violation, complementarity = state
    reason = reason_of(state)
    return ConstrainedResult(x, value, grad_norm, k, reason == StopReason.GRADIENT_TOLERANCE, reason, None, None,
                             violation, complementarity, lam, gam, rho, inner_total)


def _merit(cost, penalty_terms):
    """x, params -> f(x) + penalty_terms(x, params), hand-written derivatives of f kept."""

    def value_and_egrad(x, params):
        value, egrad = euclidean_value_and_grad(cost, x)
        extra, extra_grad = jax.value_and_grad(penalty_terms)(x, params)
        return value + extra.astype(value.dtype), jax.tree_util.tree_map(jnp.add, egrad, extra_grad)

    return Cost(lambda x, params: value_and_egrad(x, params)[0], value_and_egrad=value_and_egrad)


@common.jitted_solver(
    static_argnames=("eq", "ineq", "inner_solver", "max_iterations", "max_inner_iterations"), implicit_rule="none"
)
def augmented_lagrangian(
    cost,
    manifold,
    x0,
    eq=None,
    ineq=None,
    *,
    inner_solver=trust_regions,
    max_iterations: int = 100,
    max_inner_iterations: int = 200,
    tolerance=1e-6,
    constraint_tolerance=1e-6,
    initial_penalty=1.0,
    penalty_growth=3.3,
    violation_decrease=0.8,
    max_penalty=1e10,
    multiplier_bound=1e6,
    initial_inner_tolerance=1e-2,
    inner_tolerance_decrease=0.5,
    project_x0: bool = False,
) -> ConstrainedResult:
    """Minimize `cost` on `manifold` subject to eq(x) = 0 and ineq(x) <= 0 (each None or a
    function returning an array) by the Riemannian augmented Lagrangian method (module
    docstring), each subproblem solved by `inner_solver` (one of mo.solvers' Riemannian solvers)
    from the last point for at most max_inner_iterations. Multipliers are clipped to
    [-multiplier_bound, multiplier_bound] (gamma to [0, multiplier_bound]). Returns a
    ConstrainedResult; `args=` reaches the cost (not eq/ineq), and differentiating through the
    solution raises (no implicit rule for constrained problems yet)."""
    owner = "augmented_lagrangian"
    _check(owner, cost, manifold, x0, eq, ineq, max_iterations, max_inner_iterations)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(x0))

    def terms(x, params):
        lam, gam, rho, _ = params
        h, g = _constraint(eq, x, dtype), _constraint(ineq, x, dtype)
        return jnp.vdot(lam, h) + rho / 2 * (jnp.sum(h**2) + jnp.sum(jnp.maximum(0.0, gam / rho + g) ** 2))

    def multipliers(x, lam, gam, rho, u):
        h, g = _constraint(eq, x, dtype), _constraint(ineq, x, dtype)
        return (jnp.clip(lam + rho * h, -multiplier_bound, multiplier_bound),
                jnp.clip(gam + rho * g, 0.0, multiplier_bound))

    return _outer_loop(
        owner, cost, manifold, x0, eq, ineq, _merit(cost, terms), multipliers, inner_solver,
        max_iterations=max_iterations, max_inner_iterations=max_inner_iterations, tolerance=tolerance,
        constraint_tolerance=constraint_tolerance, initial_penalty=initial_penalty, penalty_growth=penalty_growth,
        violation_decrease=violation_decrease, max_penalty=max_penalty, initial_inner_tolerance=initial_inner_tolerance,
        inner_tolerance_decrease=inner_tolerance_decrease, smoothing_start=0.0, smoothing_decrease=1.0,
        min_smoothing=0.0, project_x0=project_x0,
    )


def _smooth_abs(h, u, smoothing):
    if smoothing == "lse":
        return u * jnp.logaddexp(h / u, -h / u)
    return jnp.sqrt(h**2 + u**2) - u


def _smooth_positive(g, u, smoothing):
    if smoothing == "lse":
        return u * jnp.logaddexp(0.0, g / u)
    return (g + jnp.sqrt(g**2 + u**2)) / 2


@common.jitted_solver(
    static_argnames=("eq", "ineq", "inner_solver", "smoothing", "max_iterations", "max_inner_iterations"),
    implicit_rule="none",
)
def exact_penalty(
    cost,
    manifold,
    x0,
    eq=None,
    ineq=None,
    *,
    smoothing: str = "lse",
    inner_solver=trust_regions,
    max_iterations: int = 100,
    max_inner_iterations: int = 200,
    tolerance=1e-6,
    constraint_tolerance=1e-6,
    initial_penalty=1.0,
    penalty_growth=3.3,
    violation_decrease=0.8,
    max_penalty=1e10,
    initial_smoothing=1e-1,
    smoothing_decrease=0.5,
    min_smoothing=1e-8,
    initial_inner_tolerance=1e-2,
    inner_tolerance_decrease=0.5,
    project_x0: bool = False,
) -> ConstrainedResult:
    """Minimize `cost` on `manifold` subject to eq(x) = 0 and ineq(x) <= 0 by the smoothed exact
    penalty method (REPMS; `smoothing` "lse" or "pseudo_huber", module docstring), each
    subproblem solved by `inner_solver` (trust regions: the smoothed penalty's curvature grows
    like rho / u, which L-BFGS's line search does not get through). Stopping, result and `args=` as in
    `augmented_lagrangian`."""
    owner = "exact_penalty"
    check_option(owner, "smoothing", smoothing, SMOOTHINGS)
    _check(owner, cost, manifold, x0, eq, ineq, max_iterations, max_inner_iterations)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(x0))

    def terms(x, params):
        _, _, rho, u = params
        h, g = _constraint(eq, x, dtype), _constraint(ineq, x, dtype)
        return rho * (jnp.sum(_smooth_abs(h, u, smoothing)) + jnp.sum(_smooth_positive(g, u, smoothing)))

    def multipliers(x, lam, gam, rho, u):
        h, g = _constraint(eq, x, dtype), _constraint(ineq, x, dtype)
        slope_abs = jax.vmap(jax.grad(lambda a: _smooth_abs(a, u, smoothing)))
        slope_positive = jax.vmap(jax.grad(lambda a: _smooth_positive(a, u, smoothing)))
        return rho * slope_abs(h), rho * slope_positive(g)

    return _outer_loop(
        owner, cost, manifold, x0, eq, ineq, _merit(cost, terms), multipliers, inner_solver,
        max_iterations=max_iterations, max_inner_iterations=max_inner_iterations, tolerance=tolerance,
        constraint_tolerance=constraint_tolerance, initial_penalty=initial_penalty, penalty_growth=penalty_growth,
        violation_decrease=violation_decrease, max_penalty=max_penalty, initial_inner_tolerance=initial_inner_tolerance,
        inner_tolerance_decrease=inner_tolerance_decrease, smoothing_start=initial_smoothing,
        smoothing_decrease=smoothing_decrease, min_smoothing=min_smoothing, project_x0=project_x0,
    )

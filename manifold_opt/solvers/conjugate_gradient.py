"""Riemannian nonlinear conjugate gradient (Absil et al. 2008, §8.3; Sato 2021, "Riemannian
Optimization and Its Applications", ch. 4).

d_0 = -g_0;  x_{k+1} = R_{x_k}(t_k d_k) (`line_search.backtracking`);  d_{k+1} = -g_{k+1} + beta_k T(d_k), where T is
the vector transport to x_{k+1} and, with y = g_{k+1} - T(g_k):
  hestenes_stiefel (HS+):  beta = max(0, <g_{k+1}, y> / <T(d_k), y>)
  polak_ribiere (PR+):     beta = max(0, <g_{k+1}, y> / ||g_k||^2)
  fletcher_reeves:         beta = ||g_{k+1}||^2 / ||g_k||^2
  hager_zhang:             beta = <y - 2 T(d_k) ||y||^2 / <T(d_k), y>, g_{k+1}> / <T(d_k), y>,
                           bounded below by -1 / (||T(d_k)|| min(0.01, ||g_k||)) (Hager & Zhang 2005)
Restarts: d = -g whenever d is not a descent direction (and beta = 0 through the clamps), and
after a failed line search along a CG direction; a failed search along -g ends the run
(STEP_TOO_SMALL).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import check_option
from manifold_opt.solvers import common
from manifold_opt.solvers.line_search import STEP_RULES, first_search_memory, search
from manifold_opt.solvers.result import SolverResult

BETA_RULES = ("hestenes_stiefel", "polak_ribiere", "fletcher_reeves", "hager_zhang")


def _safe_div(a, b):
    return jnp.where(b != 0, a / jnp.where(b != 0, b, 1.0), 0.0)


def _beta(rule, manifold, y, g_new, g_old_t, d_t, g_old_norm):
    ip = functools.partial(common.inner, manifold, y)
    diff = jax.tree_util.tree_map(jnp.subtract, g_new, g_old_t)
    if rule == "hestenes_stiefel":
        return jnp.maximum(0.0, _safe_div(ip(g_new, diff), ip(d_t, diff)))
    if rule == "polak_ribiere":
        return jnp.maximum(0.0, _safe_div(ip(g_new, diff), g_old_norm**2))
    if rule == "fletcher_reeves":
        return _safe_div(ip(g_new, g_new), g_old_norm**2)
    denom = ip(d_t, diff)
    corrected = common.axpy(-2.0 * _safe_div(ip(diff, diff), denom), d_t, diff)
    beta = _safe_div(ip(corrected, g_new), denom)
    lower = _safe_div(-1.0, common.norm(manifold, y, d_t) * jnp.minimum(0.01, g_old_norm))
    return jnp.maximum(beta, lower)


@common.jitted_solver(static_argnames=("max_iterations", "log", "beta_rule", "initial_step_rule", "max_line_search_steps"))
def conjugate_gradient(
    cost,
    manifold,
    x0,
    *,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    beta_rule: str = "hestenes_stiefel",
    log: bool = False,
    initial_step_rule: str = "quadratic",
    sufficient_decrease=1e-4,
    contraction=0.5,
    max_line_search_steps: int = 25,
    project_x0: bool = False,
) -> SolverResult:
    """Minimize `cost` on `manifold` by nonlinear CG (`beta_rule` one of BETA_RULES).

    Line search, x0 check, compilation and stop reasons as in `steepest_descent` (why did it stop?
    `stop_reason_name(result.stop_reason)`); STEP_TOO_SMALL means the line search failed along
    the steepest-descent direction (a failure along a CG direction restarts with -grad)."""
    check_option("conjugate_gradient", "beta_rule", beta_rule, BETA_RULES)
    check_option("conjugate_gradient", "initial_step_rule", initial_step_rule, STEP_RULES)
    common.check_solver_args("conjugate_gradient", cost, manifold, x0, max_iterations)

    def step(it, extras):
        direction, memory, steepest = extras  # steepest: direction is -grad (start, after a failed search)
        slope = common.inner(manifold, it.x, it.grad, direction)
        restart = ~(slope < 0)
        steepest = steepest | restart
        direction = common.select(restart, common.scale(-1.0, it.grad), direction)
        slope = jnp.where(restart, -it.grad_norm**2, slope)
        y, fy, gy, memory = search(
            cost, manifold, it, direction, slope, memory, initial_step_rule,
            sufficient_decrease=sufficient_decrease, contraction=contraction, max_steps=max_line_search_steps,
        )
        g_old_t = manifold.transport(it.x, y, it.grad)
        d_t = manifold.transport(it.x, y, direction)
        beta = _beta(beta_rule, manifold, y, gy, g_old_t, d_t, it.grad_norm)
        failed = memory[0] == 0
        new_direction = common.select(failed, common.scale(-1.0, gy), common.axpy(beta, d_t, common.scale(-1.0, gy)))
        advanced = common.advance(manifold, it, y, fy, gy, accepted=~failed, stuck=failed & steepest)
        return advanced, (new_direction, memory, failed)

    it = common.start(cost, manifold, x0, log, max_iterations, project_x0)
    extras = (common.scale(-1.0, it.grad), first_search_memory(it.grad_norm.dtype), jnp.array(True))
    result, _ = common.run(step, it, extras, max_iterations, tolerance, cost_tolerance)
    return result

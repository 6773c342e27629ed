"""Riemannian steepest descent with backtracking (Absil, Mahony & Sepulchre 2008, §4.2; Armijo,
and approximate Wolfe at rounding level: `line_search.backtracking`)."""
from __future__ import annotations

from manifold_opt.manifolds.base import check_option
from manifold_opt.solvers import common
from manifold_opt.solvers.line_search import STEP_RULES, first_search_memory, search
from manifold_opt.solvers.result import SolverResult


@common.jitted_solver(static_argnames=("max_iterations", "log", "initial_step_rule", "max_line_search_steps"))
def steepest_descent(
    cost,
    manifold,
    x0,
    *,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    log: bool = False,
    initial_step_rule: str = "quadratic",
    sufficient_decrease=1e-4,
    contraction=0.5,
    max_line_search_steps: int = 25,
    project_x0: bool = False,
) -> SolverResult:
    """Minimize `cost` (a JAX function x -> scalar, differentiated by autodiff) on `manifold`.

    x_{k+1} = R_{x_k}(-t_k grad f(x_k)), t_k from `line_search.backtracking` started by
    `initial_step_rule` (line_search.STEP_RULES: the Nocedal-Wright "quadratic" guess, or
    Manopt's "adaptive" rule). One jitted lax.while_loop; `cost` and `manifold` are static (the
    compilation is cached per cost function and shapes).

    Why did it stop? `result.stop_reason` (`stop_reason_name` reads it), tested in this order:
    NON_FINITE (the cost or gradient became NaN/inf; the run ends at once), GRADIENT_TOLERANCE
    (||grad f|| <= tolerance: the only one with `converged=True`), STEP_TOO_SMALL (no trial among
    max_line_search_steps passed the Armijo test, or where the cost's change is rounding the
    approximate Wolfe test), COST_STALLED (|f_{k-1} - f_k| <=
    cost_tolerance (1 + |f_k|)), MAX_ITERATIONS. x0 must lie on the manifold (ValueError
    otherwise, checked before jit on concrete inputs); `project_x0=True` starts from
    manifold.project(x0) instead.
    """
    check_option("steepest_descent", "initial_step_rule", initial_step_rule, STEP_RULES)
    common.check_solver_args("steepest_descent", cost, manifold, x0, max_iterations)

    def step(it, memory):
        direction = common.scale(-1.0, it.grad)
        y, fy, gy, memory = search(
            cost, manifold, it, direction, -it.grad_norm**2, memory, initial_step_rule,
            sufficient_decrease=sufficient_decrease, contraction=contraction, max_steps=max_line_search_steps,
        )
        failed = memory[0] == 0
        return common.advance(manifold, it, y, fy, gy, accepted=~failed, stuck=failed), memory

    it = common.start(cost, manifold, x0, log, max_iterations, project_x0)
    memory = first_search_memory(it.grad_norm.dtype)
    result, _ = common.run(step, it, memory, max_iterations, tolerance, cost_tolerance)
    return result

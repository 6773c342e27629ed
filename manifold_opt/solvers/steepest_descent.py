"""Riemannian steepest descent with Armijo backtracking (Absil, Mahony & Sepulchre 2008, §4.2)."""
from __future__ import annotations



from manifold_opt.solvers import common
from manifold_opt.solvers.line_search import armijo_backtracking, initial_step
from manifold_opt.solvers.result import SolverResult


@common.jitted_solver(static_argnames=("max_iterations", "log", "max_line_search_steps"))
def steepest_descent(
    cost,
    manifold,
    x0,
    *,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    log: bool = False,
    sufficient_decrease=1e-4,
    contraction=0.5,
    max_line_search_steps: int = 25,
) -> SolverResult:
    """Minimize `cost` (a JAX function x -> scalar, differentiated by autodiff) on `manifold`.

    x_{k+1} = R_{x_k}(-t_k grad f(x_k)), t_k from Armijo backtracking started at the
    Nocedal-Wright guess. Stops when ||grad f|| <= tolerance, when |f_{k-1} - f_k| <=
    cost_tolerance (1 + |f_k|), or after max_iterations. One jitted lax.while_loop; `cost` and
    `manifold` are static (the compilation is cached per cost function and shapes).
    """
    common.check_solver_args("steepest_descent", cost, manifold, x0, max_iterations)

    def step(it, _):
        direction = common.scale(-1.0, it.grad)
        slope = -it.grad_norm**2
        t0 = initial_step(manifold, it.x, direction, it.value, it.previous_value, slope, it.iteration)
        _, y, fy = armijo_backtracking(
            cost, manifold, it.x, it.value, direction, slope, t0,
            sufficient_decrease=sufficient_decrease, contraction=contraction, max_steps=max_line_search_steps,
        )
        _, gy = common.value_and_rgrad(cost, manifold, y)
        return common.advance(manifold, it, y, fy, gy), ()

    it = common.start(cost, manifold, x0, log, max_iterations)
    result, _ = common.run(step, it, (), max_iterations, tolerance, cost_tolerance)
    return result

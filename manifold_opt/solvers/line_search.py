"""Backtracking along a retraction (Armijo, and Hager-Zhang's approximate Wolfe test where the
cost's change is at rounding level), and the initial step guesses it starts from."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers.common import inner, no_worse, norm, scale, select
from manifold_opt.solvers.cost import euclidean_value_and_grad

CURVATURE = 0.9  # sigma of the approximate Wolfe curvature test (Hager & Zhang 2005)
GRADIENT_ROUNDING = 32  # |phi'(0)| <= this eps ||egrad f|| ||d||: the slope is rounding, no derivative test


def initial_step(manifold, x, direction, value, previous_value, slope, iteration, previous=None):
    """First trial step: 2 (f_k - f_{k-1}) / <grad f, d> doubled for optimism (Nocedal & Wright
    2006, eq. 3.60). Where f_k - f_{k-1} is at rounding level (`no_worse` both ways) that guess is
    noise, and the first-order one t_{k-1} <grad f_{k-1}, d_{k-1}> / <grad f_k, d_k> (their
    eq. 3.59; `previous` = (t_{k-1}, slope_{k-1})) is used; 1 / ||d|| at the first iteration or
    when neither is usable."""
    guess = 4.0 * (value - previous_value) / slope
    fallback = 1.0 / jnp.maximum(norm(manifold, x, direction), jnp.finfo(jnp.result_type(value)).tiny)
    usable = (iteration > 0) & jnp.isfinite(guess) & (guess > 0)
    if previous is not None:
        first_order = previous[0] * previous[1] / slope
        tie = no_worse(value, previous_value) & no_worse(previous_value, value)
        use_first_order = (iteration > 0) & (tie | ~usable) & (first_order > 0) & jnp.isfinite(first_order)
        return jnp.where(use_first_order, first_order, jnp.where(usable, guess, fallback))
    return jnp.where(usable, guess, fallback)


def adaptive_initial_step(manifold, x, direction, previous_step, previous_trials, iteration):
    """First trial step of the adaptive rule (Manopt's linesearch_adaptive): the last accepted step
    when it took exactly one backtrack, twice it otherwise (aiming at one backtrack per search);
    1 / ||d|| at the first iteration or after a failed search."""
    fallback = 1.0 / jnp.maximum(norm(manifold, x, direction), jnp.finfo(previous_step.dtype).tiny)
    guess = jnp.where(previous_trials == 2, previous_step, 2.0 * previous_step)
    return jnp.where((iteration > 0) & (previous_step > 0), guess, fallback)


def backtracking(
    cost, manifold, x, value, direction, slope, step, *, sufficient_decrease=1e-4, contraction=0.5, max_steps=25,
):
    """Largest t = step * contraction^i (i < max_steps) whose trial y = R_x(t d) passes

    - Armijo: f(y) <= f(x) + c t phi'(0) and f(y) < f(x) (a strict decrease: once c t phi'(0) is
      below the rounding of f(x), an unchanged cost would pass the first test without progress), or
    - where f(y) - f(x) is at rounding level (`no_worse`), Hager & Zhang's (2005, "A new conjugate
      gradient method with guaranteed descent and an efficient line search", eq. 23) approximate
      Wolfe test on derivatives, which stay accurate there:
      sigma phi'(0) <= phi'(t) <= (1 - 2c) |phi'(0)|, the first half Armijo's test for a quadratic
      phi (f(y) - f(x) = t (phi'(0) + phi'(t)) / 2), the second that the step is not too short. It
      needs a slope above the rounding of the derivatives, |phi'(0)| > 32 eps ||egrad f(y)|| ||d||:
      below that phi' is noise and the search fails (the run ends STEP_TOO_SMALL).

    The next trial is contraction * t, or, where the cost is at rounding level and the gradient
    resolved, the secant step t phi'(0) / (phi'(0) - phi'(t)) (the minimizer of the quadratic
    through phi'(0) and phi'(t)) clipped to [t / 10, 10 t]: there the cost cannot say whether t
    was too long or too short, the derivatives can.

    phi(t) = f(R_x(t d)), phi'(0) = `slope` = <grad f(x), d>_x < 0, phi'(t) read as
    <grad f(y), T_{x->y} d>_y with the manifold's vector transport. Every trial is evaluated with
    its gradient (one value_and_grad). Returns (t, y, f(y), grad f(y), number of trials), with
    t = 0, the point x and f(x) when no trial passes (NaN costs never pass; the gradient is then
    the last trial's, unused)."""
    eps = jnp.finfo(jnp.result_type(value)).eps
    direction_norm = norm(manifold, x, direction)

    def trial(t):
        y = manifold.retract(x, scale(t, direction))
        fy, egrad = euclidean_value_and_grad(cost, y)
        gy = manifold.egrad_to_rgrad(y, egrad)
        egrad_norm = jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(egrad)))
        slope_t = inner(manifold, y, gy, manifold.transport(x, y, direction))
        armijo = (fy <= value + sufficient_decrease * t * slope) & (fy < value)
        resolved = -slope > GRADIENT_ROUNDING * eps * egrad_norm * direction_norm
        wolfe = ((slope_t <= (2 * sufficient_decrease - 1) * slope) & (slope_t >= CURVATURE * slope)
                 & no_worse(fy, value) & resolved)
        secant = t * slope / (slope - slope_t)  # the zero of phi' interpolated linearly
        derivative_step = no_worse(fy, value) & resolved & (slope_t > slope) & jnp.isfinite(secant)
        return y, fy, gy, armijo | wolfe, jnp.where(derivative_step, jnp.clip(secant, 0.1 * t, 10 * t), contraction * t)

    def cond(state):
        *_, passed, _, i = state
        return ~passed & (i < max_steps)

    def body(state):
        *_, t, i = state
        return (t, *trial(t), i + 1)

    t, y, fy, gy, passed, _, trials = lax.while_loop(cond, body, (step, *trial(step), jnp.int32(1)))
    return jnp.where(passed, t, jnp.zeros_like(t)), select(passed, y, x), jnp.where(passed, fy, value), gy, trials


STEP_RULES = ("quadratic", "adaptive")


def first_search_memory(dtype):
    """The (step, trials, slope) memory `search` starts from."""
    return jnp.zeros([], dtype), jnp.zeros([], jnp.int32), jnp.zeros([], dtype)


def search(cost, manifold, it, direction, slope, memory, rule, **options):
    """`backtracking` from iterate `it` along `direction`, started by `rule` (one of STEP_RULES;
    "quadratic" is `initial_step`, "adaptive" is `adaptive_initial_step`). `memory` is the
    (step, trials, slope) of the previous search. Returns (y, f(y), grad f(y), memory)."""
    if rule == "adaptive":
        t0 = adaptive_initial_step(manifold, it.x, direction, memory[0], memory[1], it.iteration)
    else:
        t0 = initial_step(manifold, it.x, direction, it.value, it.previous_value, slope, it.iteration,
                          previous=(memory[0], memory[2]))
    y, fy, gy, (t, trials) = search_from(cost, manifold, it, direction, slope, t0, **options)
    return y, fy, gy, (t, trials, slope.astype(t.dtype))


def search_from(cost, manifold, it, direction, slope, t0, **options):
    """`search` with the first trial step t0 given (quasi-Newton directions start at t0 = 1).
    Returns (y, f(y), grad f(y), (t, trials)); t = 0 and y = x after a failed search."""
    t, y, fy, gy, trials = backtracking(cost, manifold, it.x, it.value, direction, slope, t0, **options)
    failed = t == 0
    return y, fy, select(failed, it.grad, gy), (t.astype(it.grad_norm.dtype), trials)

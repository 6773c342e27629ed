"""Armijo backtracking along a retraction, and the initial step guesses it starts from."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers.common import norm, scale, select, value_and_rgrad


def initial_step(manifold, x, direction, value, previous_value, slope, iteration):
    """First trial step: 2 (f_k - f_{k-1}) / <grad f, d> doubled for optimism (Nocedal & Wright
    2006, eq. 3.60), and 1 / ||d|| at the first iteration or when that guess is not usable."""
    guess = 4.0 * (value - previous_value) / slope
    fallback = 1.0 / jnp.maximum(norm(manifold, x, direction), jnp.finfo(jnp.result_type(value)).tiny)
    usable = (iteration > 0) & jnp.isfinite(guess) & (guess > 0)
    return jnp.where(usable, guess, fallback)


def adaptive_initial_step(manifold, x, direction, previous_step, previous_trials, iteration):
    """First trial step of the adaptive rule (Manopt's linesearch_adaptive): the last accepted step
    when it took exactly one backtrack, twice it otherwise (aiming at one backtrack per search);
    1 / ||d|| at the first iteration or after a failed search."""
    fallback = 1.0 / jnp.maximum(norm(manifold, x, direction), jnp.finfo(previous_step.dtype).tiny)
    guess = jnp.where(previous_trials == 2, previous_step, 2.0 * previous_step)
    return jnp.where((iteration > 0) & (previous_step > 0), guess, fallback)


def armijo_backtracking(
    cost, manifold, x, value, direction, slope, step, *, sufficient_decrease=1e-4, contraction=0.5, max_steps=25,
    first_trial=None,
):
    """Largest t = step * contraction^i (i < max_steps) with f(R_x(t d)) <= f(x) + c t <grad f, d>
    and f(R_x(t d)) < f(x) (a strict decrease: once c t <grad f, d> is below the rounding of f(x),
    an unchanged cost would pass the first test without any progress).

    `slope` = <grad f(x), d>_x < 0. `first_trial` = (R_x(step d), f(R_x(step d))) when the caller
    has already evaluated it. Returns (t, R_x(t d), f(R_x(t d)), number of cost evaluations),
    with t = 0 and the point x when no trial passes (NaN costs never pass)."""

    def trial(t):
        y = manifold.retract(x, scale(t, direction))
        return y, cost(y)

    def fails(fy, t):
        return ~((fy <= value + sufficient_decrease * t * slope) & (fy < value))

    def cond(state):
        t, _, fy, i = state
        return fails(fy, t) & (i < max_steps)

    def body(state):
        t, _, _, i = state
        t = t * contraction
        y, fy = trial(t)
        return t, y, fy, i + 1

    y0, f0 = trial(step) if first_trial is None else first_trial
    t, y, fy, trials = lax.while_loop(cond, body, (step, y0, f0, jnp.int32(1)))
    failed = fails(fy, t)
    return jnp.where(failed, jnp.zeros_like(t), t), select(failed, x, y), jnp.where(failed, value, fy), trials


STEP_RULES = ("quadratic", "adaptive")


def first_search_memory(dtype):
    """The (step, cost evaluations) memory `search` starts from."""
    return jnp.zeros([], dtype), jnp.zeros([], jnp.int32)


def search(cost, manifold, it, direction, slope, memory, rule, **armijo_options):
    """Armijo backtracking from iterate `it` along `direction`, started by `rule` (one of
    STEP_RULES; "quadratic" is `initial_step`, "adaptive" is `adaptive_initial_step`).
    `memory` is the (step, evaluations) of the previous search. Returns (y, f(y), grad f(y),
    memory). The first trial is evaluated with its gradient (one value_and_grad, so the forward
    pass is shared), and the gradient is recomputed only when the search had to backtrack."""
    if rule == "adaptive":
        t0 = adaptive_initial_step(manifold, it.x, direction, memory[0], memory[1], it.iteration)
    else:
        t0 = initial_step(manifold, it.x, direction, it.value, it.previous_value, slope, it.iteration)
    return search_from(cost, manifold, it, direction, slope, t0, **armijo_options)


def search_from(cost, manifold, it, direction, slope, t0, **armijo_options):
    """`search` with the first trial step t0 given (quasi-Newton directions start at t0 = 1)."""
    y0 = manifold.retract(it.x, scale(t0, direction))
    f0, g0 = value_and_rgrad(cost, manifold, y0)
    t, y, fy, trials = armijo_backtracking(
        cost, manifold, it.x, it.value, direction, slope, t0, first_trial=(y0, f0), **armijo_options
    )
    failed = t == 0
    gy = lax.cond(
        failed | (trials == 1),
        lambda: select(failed, it.grad, g0),
        lambda: value_and_rgrad(cost, manifold, y)[1],
    )
    return y, fy, gy, (t.astype(it.grad_norm.dtype), trials)

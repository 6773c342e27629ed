"""Armijo backtracking along a retraction, and the initial step guess it starts from."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers.common import norm, scale, select


def initial_step(manifold, x, direction, value, previous_value, slope, iteration):
    """First trial step: 2 (f_k - f_{k-1}) / <grad f, d> doubled for optimism (Nocedal & Wright
    2006, eq. 3.60), and 1 / ||d|| at the first iteration or when that guess is not usable."""
    guess = 4.0 * (value - previous_value) / slope
    fallback = 1.0 / jnp.maximum(norm(manifold, x, direction), jnp.finfo(jnp.result_type(value)).tiny)
    usable = (iteration > 0) & jnp.isfinite(guess) & (guess > 0)
    return jnp.where(usable, guess, fallback)


def armijo_backtracking(
    cost, manifold, x, value, direction, slope, step, *, sufficient_decrease=1e-4, contraction=0.5, max_steps=25
):
    """Largest t = step * contraction^i (i < max_steps) with f(R_x(t d)) <= f(x) + c t <grad f, d>.

    `slope` = <grad f(x), d>_x < 0. Returns (t, R_x(t d), f(R_x(t d))), or (0, x, f(x)) when no
    trial point passes (NaN costs never pass)."""

    def trial(t):
        y = manifold.retract(x, scale(t, direction))
        return y, cost(y)

    def fails(fy, t):
        return ~(fy <= value + sufficient_decrease * t * slope)

    def cond(state):
        t, _, fy, i = state
        return fails(fy, t) & (i < max_steps)

    def body(state):
        t, _, _, i = state
        t = t * contraction
        y, fy = trial(t)
        return t, y, fy, i + 1

    y0, f0 = trial(step)
    t, y, fy, _ = lax.while_loop(cond, body, (step, y0, f0, 0))
    failed = fails(fy, t)
    return jnp.where(failed, jnp.zeros_like(t), t), select(failed, x, y), jnp.where(failed, value, fy)

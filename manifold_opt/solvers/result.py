"""What every solver returns, and why it stopped."""
from __future__ import annotations

import enum
from typing import NamedTuple

import jax


class StopReason(enum.IntEnum):
    """Why a solver stopped (`SolverResult.stop_reason` holds the integer value).

    Only GRADIENT_TOLERANCE (and GAP_TOLERANCE for Frank-Wolfe) count as `converged`: a run that
    stalls, runs out of budget or meets a NaN/inf says so instead of claiming success."""

    RUNNING = 0  # never returned: the loop state before any stopping test held
    GRADIENT_TOLERANCE = 1  # ||grad f(x)||_x <= tolerance
    COST_STALLED = 2  # |f_prev - f| <= cost_tolerance (1 + |f|) with the gradient still large
    STEP_TOO_SMALL = 3  # the line search / trust region could not make progress
    MAX_ITERATIONS = 4  # the iteration budget ran out
    NON_FINITE = 5  # the cost or the gradient became NaN or inf
    GAP_TOLERANCE = 6  # Frank-Wolfe: the duality gap <grad f(x), x - s> <= tolerance
    ACTIVE_SET_FULL = 7  # Frank-Wolfe away/pairwise: a new vertex found no free active-set slot


def stop_reason_name(code) -> str:
    """The StopReason name of an integer code (a Python int or a concrete 0-d array)."""
    return StopReason(int(code)).name


class SolverLog(NamedTuple):
    """Per-iteration history, entry k for iterate k (NaN after the last iterate); `gap` is the
    Frank-Wolfe duality gap (Frank-Wolfe solvers only, else None)."""

    cost: jax.Array
    gradient_norm: jax.Array
    gap: jax.Array | None = None


class SolverResult(NamedTuple):
    """x: the final point; value: cost(x); gradient_norm: ||grad f(x)||_x; iterations: outer
    iterations done; converged: the convergence test (gradient norm, or the Frank-Wolfe gap)
    was met; stop_reason: a `StopReason` code (int32; `stop_reason_name` reads it); log: a
    SolverLog when the solver was called with log=True, else None; gap: the Frank-Wolfe duality
    gap at x (Frank-Wolfe solvers only, else None); inner_iterations: the total inner iterations
    (Hessian-vector products of truncated CG in trust regions; else None)."""

    x: jax.Array
    value: jax.Array
    gradient_norm: jax.Array
    iterations: jax.Array
    converged: jax.Array
    stop_reason: jax.Array
    log: SolverLog | None = None
    gap: jax.Array | None = None
    inner_iterations: jax.Array | None = None

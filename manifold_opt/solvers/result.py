"""What every solver returns."""
from __future__ import annotations

from typing import NamedTuple

import jax


class SolverLog(NamedTuple):
    """Per-iteration history, entry k for iterate k (NaN after the last iterate)."""

    cost: jax.Array
    gradient_norm: jax.Array


class SolverResult(NamedTuple):
    """x: the final point; value: cost(x); gradient_norm: ||grad f(x)||_x; iterations: outer
    iterations done; converged: stopped by the gradient-norm or cost-change test rather than by
    max_iterations; log: a SolverLog when the solver was called with log=True, else None."""

    x: jax.Array
    value: jax.Array
    gradient_norm: jax.Array
    iterations: jax.Array
    converged: jax.Array
    log: SolverLog | None = None

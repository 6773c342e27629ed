"""Momentum shared by the orthogonalized optimizers (Muon reference code, Jordan et al. 2024).

    m <- beta m + (1 - beta) g                  (an EMA, written as a lerp; no bias correction)
    u = (1 - beta) g + beta m   if nesterov,   else u = m.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from manifold_opt.transforms.arguments import hyper, is_python_number


class MomentumState(NamedTuple):
    count: jax.Array
    mu: optax.Updates


def init_momentum(params) -> MomentumState:
    return MomentumState(count=jax.numpy.zeros([], jax.numpy.int32), mu=optax.tree.zeros_like(params))


def ema_momentum(grads, mu, beta: float, nesterov: bool):
    """(new momentum, direction u) for the rule above, leafwise in each leaf's dtype."""
    mu = jax.tree.map(lambda m, g: m + (1 - hyper(beta, m)) * (g.astype(m.dtype) - m), mu, grads)
    if not nesterov:
        return mu, mu
    return mu, jax.tree.map(lambda m, g: (1 - hyper(beta, m)) * g.astype(m.dtype) + hyper(beta, m) * m, mu, grads)


def check_beta(name: str, value) -> None:
    """ValueError naming the argument unless 0 <= value < 1 (arrays, e.g. from
    optax.inject_hyperparams, are not checked)."""
    if is_python_number(value) and not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")

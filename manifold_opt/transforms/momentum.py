"""Momentum shared by the orthogonalized optimizers (Muon reference code, Jordan et al. 2024).

    m <- beta m + (1 - beta) g                  (an EMA, written as a lerp; no bias correction)
    u = (1 - beta) g + beta m   if nesterov,   else u = m.

With bias correction (optax.contrib.muon, `convention="optax"`): optax's momentum,
u = beta m / (1 - beta^(t+1)) + (1 - beta) g / (1 - beta^t). `resolve_convention` gives the
keywords each convention changes.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from manifold_opt.manifolds.base import check_option
from manifold_opt.transforms.arguments import hyper, is_python_number
from manifold_opt.transforms.matrix_params import ndim2_dimension_numbers

# What convention="optax" changes (each only where the keyword is left at None).
_OPTAX = {"bias_correction": True, "ns_eps": 1e-8, "adam_b2": 0.999, "adam_nesterov": True,
          "weight_dimension_numbers": ndim2_dimension_numbers}
_REFERENCE = {"bias_correction": False, "ns_eps": 1e-7, "adam_b2": 0.95, "adam_nesterov": False,
              "weight_dimension_numbers": None}


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


def bias_corrected_momentum(grads, mu, beta, nesterov: bool, count):
    """optax.contrib.muon's momentum (with optax's own helpers, so the rounding is the same)."""
    new_mu = optax.tree.update_moment(grads, mu, beta, 1)
    if nesterov:
        u = jax.tree.map(
            lambda m, g: beta * m + (1 - beta) * g,
            optax.tree.bias_correction(new_mu, beta, optax.safe_increment(count)),
            optax.tree.bias_correction(grads, beta, count),
        )
    else:
        u = optax.tree.bias_correction(new_mu, beta, count)
    return optax.tree.cast_like(new_mu, mu), optax.tree.cast_like(u, mu)


def muon_momentum(grads, mu, beta, nesterov: bool, bias_correction: bool, count):
    """(new momentum, direction u): bias-corrected (optax) or the reference EMA; `count` is the
    step number t >= 1."""
    if bias_correction:
        return bias_corrected_momentum(grads, mu, beta, nesterov, count)
    return ema_momentum(grads, mu, beta, nesterov)


def resolve_convention(public_name: str, convention: str, learning_rate, **given) -> dict:
    """`given` keywords with those left at None taken from the convention: "reference"
    (bias_correction False, ns_eps 1e-7, adam_learning_rate 3e-4, adam_b2 0.95, adam_nesterov
    False, the role rule) or "optax" (optax.contrib.muon: bias correction, ns_eps 1e-8, AdamW at
    the same learning rate with b2 0.999 and Nesterov, every 2-D leaf a matrix)."""
    check_option(public_name, "convention", convention, ("reference", "optax"))
    defaults = {**(_OPTAX if convention == "optax" else _REFERENCE),
                "adam_learning_rate": learning_rate if convention == "optax" else 3e-4}
    return {k: defaults[k] if v is None and k in defaults else v for k, v in given.items()}


def check_beta(name: str, value) -> None:
    """ValueError naming the argument unless 0 <= value < 1 (arrays, e.g. from
    optax.inject_hyperparams, are not checked)."""
    if is_python_number(value) and not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")

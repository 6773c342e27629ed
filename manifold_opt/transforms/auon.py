"""AuON and Hybrid-AuON (2025): linear-time, cosh-normalized momentum updates.

AuON rescales the Nesterov momentum G of each matrix by a hyperbolic-cosine RMS:

    X = G / ||G||_F,   r = sqrt(mean(cosh(gamma X)^2)),
    reference code (default):  U = G / (r + 1e-8),  gamma = 1.5
    paper (normalize=True, gamma=1):  U = (G / (||G||_F + 1e-7)) / (r + 1e-8)

which is elementwise, O(mn), no matmul. Hybrid-AuON first applies Newton-Schulz (Muon
coefficients; the reference code runs 5 steps, the paper 1: `ns_steps`) and then the same
scaling. A zero G gives a zero update (the reference skips the step).

Observation (measured in the tests and the benchmark): since sum X^2 = 1 and sinh^2(gamma
sqrt(s)) is convex in s, 1 + gamma^2 / N <= mean cosh^2(gamma X) <= 1 + sinh^2(gamma) / N for
an N-entry matrix, so r - 1 lies in [0.56, 2.27] / N at gamma = 1.5: at realistic sizes the
scaling is the identity, AuON's update is the (un-normalized) Nesterov momentum itself and
Hybrid-AuON's is Muon's without its shape scale.

Defaults: AuON lr 0.08 (reference README), momentum 0.95, decoupled weight decay 0.01, no
shape scale. Hybrid-AuON: no reference lr; default 0.02 (Muon's, since its update is Muon's
scale). Non-matrix params go to AdamW.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.transforms.arguments import (
    checked_keywords,
    hyper,
    is_python_number,
    optimizer_constructor,
    static_int,
)
from manifold_opt.transforms.matrix_params import (
    Orthogonalizer,
    map_matrices,
    orthogonalize_matrices,
)
from manifold_opt.transforms.momentum import MomentumState, check_beta, ema_momentum, init_momentum
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


def cosh_rms(g: jnp.ndarray, gamma: float = 1.5) -> jnp.ndarray:
    """r = sqrt(mean(cosh(gamma G / ||G||_F)^2)) over the last two axes (1 for G = 0)."""
    norm = jnp.linalg.norm(g, axis=(-2, -1), keepdims=True)
    x = g / jnp.where(norm > 0, norm, 1)
    return jnp.sqrt(jnp.mean(jnp.cosh(gamma * x) ** 2, axis=(-2, -1), keepdims=True))


def cosh_normalize(g: jnp.ndarray, gamma: float = 1.5, normalize: bool = False) -> jnp.ndarray:
    """AuON's map of a stack of matrices (see module doc); statistics in at least float32."""
    g32 = g.astype(jnp.promote_types(g.dtype, jnp.float32))
    gamma = hyper(gamma, g32)
    base = g32 / (jnp.linalg.norm(g32, axis=(-2, -1), keepdims=True) + 1e-7) if normalize else g32
    return (base / (cosh_rms(g32, gamma) + 1e-8)).astype(g.dtype)


def _cosh_core(name, beta, nesterov, gamma, normalize, transform):
    check_beta(f"{name}: beta", beta)
    if is_python_number(gamma) and not gamma > 0:
        raise ValueError(f"{name}: gamma must be positive, got {gamma!r}")

    def update_fn(updates, state, params=None):
        del params
        mu, u = ema_momentum(updates, state.mu, beta, nesterov)
        out = transform(u, lambda m: cosh_normalize(m, gamma, normalize))
        return out, MomentumState(optax.safe_increment(state.count), mu)

    return optax.GradientTransformation(init_momentum, update_fn)


@checked_keywords("mo.scale_by_auon")
def scale_by_auon(beta: float = 0.95, *, nesterov: bool = True, gamma: float = 1.5, normalize: bool = False,
                  weight_dimension_numbers=None) -> optax.GradientTransformation:
    """AuON's core: Nesterov momentum, then the cosh normalization of each matrix."""
    return _cosh_core(
        "scale_by_auon", beta, nesterov, gamma, normalize,
        lambda u, scale: map_matrices(scale, u, weight_dimension_numbers, name="scale_by_auon"),
    )


@checked_keywords("mo.scale_by_hybrid_auon")
def scale_by_hybrid_auon(beta: float = 0.95, *, nesterov: bool = True, gamma: float = 1.5,
                         normalize: bool = False, ns_steps: int | None = None, ns_coeffs="muon", ns_eps: float = 1e-7,
                         ns_dtype=None, weight_dimension_numbers=None,
                         orthogonalizer: Orthogonalizer | None = None) -> optax.GradientTransformation:
    """Hybrid-AuON's core: Nesterov momentum, `ns_steps` (None: 5; static) Newton-Schulz steps,
    cosh normalization."""
    ns_steps = static_int("mo.scale_by_hybrid_auon", "ns_steps", ns_steps, 5)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps, compute_dtype=ns_dtype)

    def transform(u, scale):
        o = orthogonalize_matrices(ns, u, weight_dimension_numbers, name="scale_by_hybrid_auon",
                                   orthogonalizer=orthogonalizer)
        return map_matrices(scale, o, weight_dimension_numbers, name="scale_by_hybrid_auon")

    return _cosh_core("scale_by_hybrid_auon", beta, nesterov, gamma, normalize, transform)


@optimizer_constructor("mo.auon")
def auon(learning_rate=0.08, beta: float = 0.95, weight_decay: float = 0.01, *, nesterov: bool = True,
         gamma: float = 1.5, normalize: bool = False, weight_dimension_numbers=None,
         guard_nonfinite: bool = False, adamw=None) -> optax.GradientTransformation:
    """AuON on matrix params, AdamW (adam_* keywords, see mo.muon) on the rest."""
    core = scale_by_auon(beta, nesterov=nesterov, gamma=gamma, normalize=normalize,
                         weight_dimension_numbers=weight_dimension_numbers)
    return orthogonalized_optimizer(core, learning_rate=learning_rate, weight_decay=weight_decay,
                                    weight_dimension_numbers=weight_dimension_numbers,
                                    guard_nonfinite=guard_nonfinite, **adamw)


@optimizer_constructor("mo.hybrid_auon")
def hybrid_auon(learning_rate=0.02, beta: float = 0.95, weight_decay: float = 0.01, *, nesterov: bool = True,
                gamma: float = 1.5, normalize: bool = False, ns_steps: int | None = None, ns_coeffs="muon",
                ns_eps: float = 1e-7, ns_dtype=None, weight_dimension_numbers=None,
                orthogonalizer: Orthogonalizer | None = None, guard_nonfinite: bool = False,
                adamw=None) -> optax.GradientTransformation:
    """Hybrid-AuON on matrix params, AdamW (adam_* keywords, see mo.muon) on the rest."""
    ns_steps = static_int("mo.hybrid_auon", "ns_steps", ns_steps, 5)
    core = scale_by_hybrid_auon(beta, nesterov=nesterov, gamma=gamma, normalize=normalize, ns_steps=ns_steps,
                                ns_coeffs=ns_coeffs, ns_eps=ns_eps, ns_dtype=ns_dtype,
                                weight_dimension_numbers=weight_dimension_numbers, orthogonalizer=orthogonalizer)
    return orthogonalized_optimizer(core, learning_rate=learning_rate, weight_decay=weight_decay,
                                    weight_dimension_numbers=weight_dimension_numbers,
                                    guard_nonfinite=guard_nonfinite, **adamw)

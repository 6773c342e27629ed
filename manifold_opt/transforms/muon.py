"""Muon: momentum orthogonalized by Newton-Schulz (Jordan et al. 2024, modded-nanogpt).

    m <- beta m + (1 - beta) g;   u = (1 - beta) g + beta m (Nesterov);   O = NS_5(u)
    p <- (1 - lr wd) p - lr sqrt(max(1, fan_out / fan_in)) O

on matrix parameters; everything else goes to AdamW. Defaults follow the reference code:
lr 0.02, beta 0.95, Muon coefficients, 5 steps, NS eps 1e-7, no bias correction; AdamW branch
lr 3e-4, betas (0.9, 0.95). `bias_correction=True` reproduces optax.contrib.muon's momentum:
u = beta m / (1 - beta^(t+1)) + (1 - beta) g / (1 - beta^t).
"""
from __future__ import annotations

import functools

import jax
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.transforms.matrix_params import (
    Orthogonalizer,
    orthogonalize_matrices,
    orthogonalized_optimizer,
    scale_by_shape,
)
from manifold_opt.transforms.momentum import MomentumState, check_beta, ema_momentum, init_momentum


def scale_by_muon(
    beta: float = 0.95,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    ns_steps: int = 5,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
) -> optax.GradientTransformation:
    """Muon's core: momentum, then Newton-Schulz on each matrix (no shape scale, no lr).

    `ns_dtype` (e.g. jnp.bfloat16) is the Newton-Schulz compute dtype (default: the input's);
    `orthogonalizer` spreads the matrices over devices (mo.parallel.sharded_orthogonalizer).
    """
    check_beta("scale_by_muon: beta", beta)
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps, compute_dtype=ns_dtype)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))  # validates steps / coeffs at construction

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu, u = ema_momentum(updates, state.mu, beta, nesterov and not bias_correction)
        if bias_correction:
            t = count.astype(jax.numpy.result_type(float))
            c1, c0 = (1 - beta ** (t + 1)), (1 - beta**t)
            if nesterov:
                u = jax.tree.map(
                    lambda m, g: (beta * m / c1.astype(m.dtype) + (1 - beta) * g.astype(m.dtype) / c0.astype(m.dtype)),
                    mu, updates,
                )
            else:
                u = jax.tree.map(lambda m: m / c0.astype(m.dtype), mu)
        out = orthogonalize_matrices(ns, u, weight_dimension_numbers, name="scale_by_muon", orthogonalizer=orthogonalizer)
        return out, MomentumState(count, mu)

    return optax.GradientTransformation(init_momentum, update_fn)


def muon(
    learning_rate=0.02,
    beta: float = 0.95,
    weight_decay: float = 0.0,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    ns_steps: int = 5,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    consistent_rms: float | None = None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
    guard_nonfinite: bool = False,
    **adam_kwargs,
) -> optax.GradientTransformation:
    """Muon on matrix params (see module doc), AdamW (adam_learning_rate=3e-4, adam_b1=0.9,
    adam_b2=0.95, adam_eps, adam_weight_decay, adam_nesterov) on the rest.

    `consistent_rms=r` replaces the width scale by r sqrt(max(fan_in, fan_out)) (Moonlight 0.2).
    `weight_dimension_numbers` selects the matrices (see transforms.matrix_params).
    `guard_nonfinite=True` skips any step whose gradients hold NaN/inf: zero update, state kept.
    The other optimizers (auon, hybrid_auon, normuon, conda, root, spectral_clip) take the same
    selection, guard and adam_* keywords.
    """
    core = scale_by_muon(
        beta, nesterov=nesterov, bias_correction=bias_correction, ns_steps=ns_steps, ns_coeffs=ns_coeffs,
        ns_eps=ns_eps, ns_dtype=ns_dtype, weight_dimension_numbers=weight_dimension_numbers,
        orthogonalizer=orthogonalizer,
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(weight_dimension_numbers, consistent_rms),
        weight_dimension_numbers=weight_dimension_numbers, guard_nonfinite=guard_nonfinite, **adam_kwargs,
    )

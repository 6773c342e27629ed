"""Muon: momentum orthogonalized by Newton-Schulz (Jordan et al. 2024, modded-nanogpt).

    m <- beta m + (1 - beta) g;   u = (1 - beta) g + beta m (Nesterov);   O = NS_5(u)
    p <- (1 - lr wd) p - lr sqrt(max(1, fan_out / fan_in)) O

on matrix parameters (chosen by role, see transforms.matrix_params); everything else goes to
AdamW. Defaults follow the reference code (`convention="reference"`): lr 0.02, beta 0.95, Muon
coefficients, 5 steps, NS eps 1e-7, no bias correction; AdamW branch lr 3e-4, betas (0.9, 0.95),
no Nesterov.

`convention="optax"` reproduces optax.contrib.muon(learning_rate, beta=..., weight_decay=...)
exactly: optax's momentum with bias correction,
u = beta m / (1 - beta^(t+1)) + (1 - beta) g / (1 - beta^t), NS eps 1e-8, its selection (every
2-D leaf), and its AdamW branch (the same lr, b2 0.999, Nesterov). Keywords given explicitly
still win over either convention.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.manifolds.base import check_option
from manifold_opt.transforms.arguments import checked_keywords, optimizer_constructor, static_int
from manifold_opt.transforms.matrix_params import (
    Orthogonalizer,
    from_matrices,
    orthogonalize_matrices,
    resolve_dimension_numbers,
    scale_by_shape,
    to_matrices,
)
from manifold_opt.transforms.momentum import MomentumState, check_beta, init_momentum, muon_momentum, resolve_convention
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


def scale_by_dual_norm(out, u, weight_dimension_numbers=None):
    """Each matrix O of `out` times <U, O> for the matching matrix U of `u` (the dual norm of U
    when O is its polar factor)."""
    dims = resolve_dimension_numbers(out, weight_dimension_numbers)

    def one(o, g, d):
        o_m = to_matrices(o, d)
        inner = jnp.sum(o_m * to_matrices(g, d).astype(o.dtype), axis=(-2, -1), keepdims=True)
        return from_matrices(inner * o_m, o, d)

    return jax.tree.map(one, out, u, dims)


@checked_keywords("mo.scale_by_muon")
def scale_by_muon(
    beta: float = 0.95,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    preconditioning: str = "frobenius",
    adaptive: bool = False,
    gram_newton_schulz: bool = False,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
) -> optax.GradientTransformation:
    """Muon's core: momentum, then Newton-Schulz on each matrix (no shape scale, no lr).

    `ns_steps` (None: 5) is static; `ns_dtype` (e.g. jnp.bfloat16) is the Newton-Schulz
    compute dtype (default: the input's); `preconditioning` "frobenius" or "aol" (Turbo-Muon,
    see mo.linalg.newton_schulz); `adaptive=True` scales each orthogonalized matrix O by the
    dual norm <u, O> of its input u (Bernstein & Newhouse 2024, optax's `adaptive`; optax takes
    the inner product over a whole leaf, we per matrix: the same for 2-D leaves);
    `gram_newton_schulz=True` runs the same polynomials through the Gram matrix (faster for wide
    aspect ratios, see mo.linalg.newton_schulz);
    `orthogonalizer` spreads the matrices over devices (mo.parallel.sharded_orthogonalizer).
    """
    check_beta("scale_by_muon: beta", beta)
    ns_steps = static_int("mo.scale_by_muon", "ns_steps", ns_steps, 5)
    check_option("mo.scale_by_muon", "preconditioning", preconditioning, ("frobenius", "aol"))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps, compute_dtype=ns_dtype,
                           preconditioning=preconditioning, gram=gram_newton_schulz)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))  # validates steps / coeffs at construction

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu, u = muon_momentum(updates, state.mu, beta, nesterov, bias_correction, count)
        out = orthogonalize_matrices(ns, u, weight_dimension_numbers, name="scale_by_muon", orthogonalizer=orthogonalizer)
        if adaptive:
            out = scale_by_dual_norm(out, u, weight_dimension_numbers)
        return out, MomentumState(count, mu)

    return optax.GradientTransformation(init_momentum, update_fn)


@optimizer_constructor("mo.muon", adam_learning_rate=None, adam_b2=None, adam_nesterov=None)
def muon(
    learning_rate=0.02,
    beta: float = 0.95,
    weight_decay: float = 0.0,
    *,
    convention: str = "reference",
    nesterov: bool = True,
    bias_correction: bool | None = None,
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float | None = None,
    ns_dtype=None,
    preconditioning: str = "frobenius",
    adaptive: bool = False,
    gram_newton_schulz: bool = False,
    consistent_rms: float | None = None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """Muon on matrix params (see module doc), AdamW on the rest.

    `convention`: "reference" (default) or "optax" (exact optax.contrib.muon parity); the
    keywords left at None take the convention's value (reference: bias_correction False,
    ns_eps 1e-7, adam_learning_rate 3e-4, adam_b2 0.95, adam_nesterov False, the role rule).
    `ns_steps` (None: 5) is static. `preconditioning` ("frobenius" or "aol") and `adaptive` as
    in optax.contrib.muon, `gram_newton_schulz` (see mo.scale_by_muon). `consistent_rms=r`
    replaces the width scale by r sqrt(max(fan_in, fan_out)) (Moonlight 0.2).
    `weight_dimension_numbers` selects the matrices (None: by role, see transforms.matrix_params
    and mo.matrix_rules). `guard_nonfinite=True` skips any step whose gradients hold NaN/inf:
    zero update, state kept. The other optimizers take the same selection, guard and adam_*
    keywords (spectral_clip: adam_learning_rate and adam_weight_decay; it shares its betas).
    Float hyperparameters may be traced (optax.inject_hyperparams); ns_steps and the options are
    static. optax's inject_hyperparams takes any callable argument for a schedule: with a
    callable `weight_dimension_numbers` or an `orthogonalizer`, name them in its `static_args`.
    """
    opt = resolve_convention("mo.muon", convention, learning_rate, bias_correction=bias_correction, ns_eps=ns_eps,
                             weight_dimension_numbers=weight_dimension_numbers, **adamw)
    dims = opt["weight_dimension_numbers"]
    ns_steps = static_int("mo.muon", "ns_steps", ns_steps, 5)
    core = scale_by_muon(
        beta, nesterov=nesterov, bias_correction=opt["bias_correction"], ns_steps=ns_steps, ns_coeffs=ns_coeffs,
        ns_eps=opt["ns_eps"], ns_dtype=ns_dtype, preconditioning=preconditioning, adaptive=adaptive,
        gram_newton_schulz=gram_newton_schulz, weight_dimension_numbers=dims, orthogonalizer=orthogonalizer,
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(dims, consistent_rms), weight_dimension_numbers=dims,
        guard_nonfinite=guard_nonfinite, **{k: opt[k] for k in adamw},
    )

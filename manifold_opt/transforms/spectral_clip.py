"""SPECTRA (2025): soft spectral clipping of an optimizer's update.

    H_c(X) = (I + X X^T / c^2)^(-1/2) X,   i.e. sigma -> sigma / sqrt(1 + sigma^2 / c^2),

computed in the wide orientation (X X^T is min(m, n) square) by the coupled Newton-Schulz
inverse square root (linalg.inverse_sqrt, 10 iterations) with the reference's scaling
alpha = 1 + min(max row abs-sum of X X^T, ||X X^T||_F) / c^2. Non-matrix leaves (vectors)
use g / sqrt(1 + (||g|| / c)^2) when ||g|| > c and are left as they are otherwise.
Post-clipping an optimizer's update U (after scale_by_adam, before add_decayed_weights):

    x <- (1 - lr wd) x - lr sqrt(max(1, fan_out / fan_in)) H_c(U).

Defaults: c = 10, Adam betas (0.9, 0.999), eps 1e-8, lr 1e-3 (Adam's usual; the reference
gives none), wd 0. Non-matrix params get AdamW followed by the vector clip.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.inverse_sqrt import inverse_sqrt, spectral_norm_bound
from manifold_opt.transforms.arguments import checked_keywords, is_python_number, static_int
from manifold_opt.transforms.matrix_params import apply_matrices, resolve_dimension_numbers, scale_by_shape
from manifold_opt.transforms.step_rules import add_decayed_weights, follow_schedule, orthogonalized_optimizer


def soft_spectral_clip(x: jax.Array, c: float = 10.0, num_iters: int = 10) -> jax.Array:
    """H_c(x) for a stack of matrices x (..., m, n) (see module doc); computed in >= float32."""
    if x.ndim < 2:
        raise ValueError(f"soft_spectral_clip: x must have at least 2 dimensions, got shape {x.shape}")
    w = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    tall = w.shape[-2] > w.shape[-1]
    if tall:
        w = jnp.swapaxes(w, -1, -2)
    gram = (w @ jnp.swapaxes(w, -1, -2)) / c**2
    a = jnp.eye(w.shape[-2], dtype=w.dtype) + gram
    out = inverse_sqrt(a, num_iters, norm_bound=1.0 + spectral_norm_bound(gram)) @ w
    if tall:
        out = jnp.swapaxes(out, -1, -2)
    return out.astype(x.dtype)


def soft_norm_clip(g: jax.Array, c: float = 10.0) -> jax.Array:
    """g / sqrt(1 + (||g|| / c)^2) when ||g|| > c, else g (the vector rule)."""
    norm = jnp.linalg.norm(g.astype(jnp.promote_types(g.dtype, jnp.float32)))
    factor = jnp.where(norm > c, jax.lax.rsqrt(1.0 + (norm / c) ** 2), 1.0)
    return g * factor.astype(g.dtype)


@checked_keywords("mo.scale_by_spectral_clip")
def scale_by_spectral_clip(c: float = 10.0, num_iters: int | None = None, *,
                           weight_dimension_numbers=None) -> optax.GradientTransformation:
    """Stateless: H_c on each matrix leaf, the vector rule on every other leaf (num_iters
    None: 10; static)."""
    if is_python_number(c) and not c > 0:
        raise ValueError(f"scale_by_spectral_clip: c must be positive, got {c!r}")
    num_iters = static_int("mo.scale_by_spectral_clip", "num_iters", num_iters, 10)

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def clip(u, d):
            if d is None:
                return soft_norm_clip(u, c)
            return apply_matrices(lambda m: soft_spectral_clip(m, c, num_iters), u, d)

        return jax.tree.map(clip, updates, dims), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


@checked_keywords("mo.spectral_clip")
def spectral_clip(
    learning_rate=1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    c: float = 10.0,
    num_iters: int | None = None,
    weight_dimension_numbers=None,
    adam_learning_rate=None,
    adam_weight_decay: float = 0.0,
    cautious_weight_decay: bool = False,
    hyperball: bool = False,
    guard_nonfinite: bool = False,
) -> optax.GradientTransformation:
    """Adam post-clipped by SPECTRA on matrix params; Adam + vector clip on the rest
    (adam_learning_rate defaults to learning_rate)."""
    num_iters = static_int("mo.spectral_clip", "num_iters", num_iters, 10)
    core = optax.chain(
        optax.scale_by_adam(b1, b2, eps),
        scale_by_spectral_clip(c, num_iters, weight_dimension_numbers=weight_dimension_numbers),
    )
    adam_lr = learning_rate if adam_learning_rate is None else follow_schedule(learning_rate, adam_learning_rate)
    other = optax.chain(
        optax.scale_by_adam(b1, b2, eps),
        scale_by_spectral_clip(c, num_iters, weight_dimension_numbers=lambda tree: jax.tree.map(lambda x: None, tree)),
        add_decayed_weights(adam_weight_decay, cautious_weight_decay),
        optax.scale_by_learning_rate(adam_lr),
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(weight_dimension_numbers),
        weight_dimension_numbers=weight_dimension_numbers, other=other, cautious_weight_decay=cautious_weight_decay,
        hyperball=hyperball, guard_nonfinite=guard_nonfinite,
    )

"""ROOT (2025): robust orthogonalized momentum with outlier clipping and per-shape coefficients.

    M <- mu M + g;   u = g + mu M (Nesterov, default) or M
    eps = q-quantile of |u| per matrix (q = 0.9);   B = clip(u, -eps, eps)   (outliers removed)
    O = NS_5(B) with ROOT's per-shape coefficients (linalg.ROOT_SHAPE_COEFFS, else Muon's)
    p <- (1 - lr wd) p - lr 0.2 sqrt(max(fan_in, fan_out)) O

Defaults: lr 1e-3, mu 0.95, wd 0.1, q 0.9. The exact quantile sorts each matrix
(`quantile_method="exact"`, jnp.quantile, linear interpolation); "bisect" finds the threshold t
with mean(|u| <= t) >= q by `bisect_steps` halvings of [0, max|u|] (O(N) per step, no sort;
error <= max|u| 2^-steps plus the gap between neighbouring order statistics).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.manifolds.base import check_option
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
    scale_by_shape,
)
from manifold_opt.transforms.momentum import MomentumState, check_beta, init_momentum
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


def abs_quantile(x: jax.Array, q: float, method: str = "exact", bisect_steps: int = 16) -> jax.Array:
    """q-quantile of |x| over the last two axes, shape x.shape[:-2] + (1, 1)."""
    a = jnp.abs(x).reshape(x.shape[:-2] + (-1,))
    if method == "exact":
        return jnp.quantile(a, q, axis=-1)[..., None, None]

    def halve(bounds, _):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        enough = jnp.mean(a <= mid[..., None], axis=-1) >= q
        return (jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)), None

    hi = jnp.max(a, axis=-1)
    (_, hi), _ = jax.lax.scan(halve, (jnp.zeros_like(hi), hi), None, length=bisect_steps)
    return hi[..., None, None]


@checked_keywords("mo.scale_by_root")
def scale_by_root(
    mu: float = 0.95,
    *,
    nesterov: bool = True,
    quantile: float = 0.9,
    quantile_method: str = "exact",
    bisect_steps: int | None = None,
    ns_steps: int | None = None,
    ns_coeffs="root",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
) -> optax.GradientTransformation:
    """ROOT's core: heavy-ball momentum, quantile clipping, Newton-Schulz; no shape scale, no lr."""
    check_beta("scale_by_root: mu", mu)
    if is_python_number(quantile) and not 0.0 < quantile <= 1.0:
        raise ValueError(f"scale_by_root: quantile must be in (0, 1], got {quantile!r}")
    check_option("scale_by_root", "quantile_method", quantile_method, ("exact", "bisect"))
    bisect_steps = static_int("mo.scale_by_root", "bisect_steps", bisect_steps, 16)
    ns_steps = static_int("mo.scale_by_root", "ns_steps", ns_steps, 5)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps, compute_dtype=ns_dtype)

    def clip(u):
        eps = abs_quantile(u, quantile, quantile_method, bisect_steps).astype(u.dtype)
        return jnp.clip(u, -eps, eps)

    def update_fn(updates, state, params=None):
        del params
        momentum = jax.tree.map(lambda m, g: hyper(mu, m) * m + g.astype(m.dtype), state.mu, updates)
        u = jax.tree.map(lambda m, g: g.astype(m.dtype) + hyper(mu, m) * m, momentum, updates) if nesterov else momentum
        clipped = map_matrices(clip, u, weight_dimension_numbers, name="scale_by_root")
        out = orthogonalize_matrices(ns, clipped, weight_dimension_numbers, name="scale_by_root",
                                     orthogonalizer=orthogonalizer)
        return out, MomentumState(optax.safe_increment(state.count), momentum)

    return optax.GradientTransformation(init_momentum, update_fn)


@optimizer_constructor("mo.root")
def root(
    learning_rate=1e-3,
    mu: float = 0.95,
    weight_decay: float = 0.1,
    *,
    nesterov: bool = True,
    quantile: float = 0.9,
    quantile_method: str = "exact",
    bisect_steps: int | None = None,
    ns_steps: int | None = None,
    ns_coeffs="root",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    consistent_rms: float = 0.2,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """ROOT on matrix params (update scaled by consistent_rms sqrt(max(fan_in, fan_out))),
    AdamW (adam_* keywords, see mo.muon) on the rest."""
    ns_steps = static_int("mo.root", "ns_steps", ns_steps, 5)
    bisect_steps = static_int("mo.root", "bisect_steps", bisect_steps, 16)
    core = scale_by_root(
        mu, nesterov=nesterov, quantile=quantile, quantile_method=quantile_method, bisect_steps=bisect_steps,
        ns_steps=ns_steps, ns_coeffs=ns_coeffs, ns_eps=ns_eps, ns_dtype=ns_dtype,
        weight_dimension_numbers=weight_dimension_numbers, orthogonalizer=orthogonalizer,
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(weight_dimension_numbers, consistent_rms),
        weight_dimension_numbers=weight_dimension_numbers, guard_nonfinite=guard_nonfinite, **adamw,
    )

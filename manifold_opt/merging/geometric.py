"""Merges on the sphere of each weight tensor, and Model Stock's angle-based interpolation.

- SLERP (Shoemake 1985; mergekit's `slerp`): per leaf, with unit directions a/|a|, b/|b| at
  angle theta, slerp(a, b, t) = sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b;
  linear interpolation when |cos theta| > 0.9995.
- Karcher mean (mergekit's `karcher`): per leaf, the weighted Riemannian mean u of the unit
  directions x_i / |x_i| on the sphere by fixed-point iteration u <- Exp_u(sum_i w_i Log_u(x_i)),
  Log_u(x) = theta / sin(theta) (x - cos(theta) u), Exp_u(T) = cos|T| u + sin|T| T / |T|, started
  at the normalized weighted mean and stopped when |T| < tol; the result is
  (sum_i w_i |x_i|) u (weights normalized to sum 1).
- Model Stock (Jang et al. 2024, arXiv 2403.19522, Eq. 2 generalized to N fine-tunes as in
  mergekit): per leaf, with cos the mean pairwise cosine of the task vectors,
  t = N cos / (1 + (N - 1) cos) and theta = theta_pre + t * mean_i (theta_i - theta_pre).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.merging.ortho import _check_weights
from manifold_opt.merging.pool import check_candidates, stream

DOT_THRESHOLD = 0.9995  # mergekit's: above it the directions count as colinear (lerp)
NORM_EPS = 1e-8  # mergekit's: vectors of smaller norm are not normalized


def _unit(x, eps):
    n = jnp.linalg.norm(x)
    return jnp.where(n > eps, x / jnp.where(n > eps, n, 1), x), n


def _slerp_leaf(a, b, t):
    ua, _ = _unit(a, NORM_EPS)
    ub, _ = _unit(b, NORM_EPS)
    dot = jnp.sum(ua * ub)
    colinear = jnp.abs(dot) > DOT_THRESHOLD
    theta = jnp.arccos(jnp.where(colinear, 0.0, dot))
    sin_theta = jnp.sin(jnp.where(colinear, 1.0, theta))
    s0 = jnp.sin(theta - theta * t) / sin_theta
    s1 = jnp.sin(theta * t) / sin_theta
    return jnp.where(colinear, (1 - t) * a + t * b, s0 * a + s1 * b).astype(a.dtype)


@jax.jit
def _slerp(a, b, t):
    return jax.tree.map(lambda x, y: _slerp_leaf(x, y, t), a, b)


def slerp(a, b, t: float):
    """Spherical interpolation of two pytrees, leaf by leaf (mergekit's rule): t = 0 gives a,
    t = 1 gives b."""
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t):
        raise ValueError(f"slerp: t must be a finite number, got {t!r}")
    next(stream("slerp", a, [b]))
    return _slerp(a, b, float(t))


@jax.jit
def _karcher_start(acc, x, w, tol):
    """Accumulate sum_valid w_i x_i/|x_i|, sum_valid w_i, the first valid direction, sum_i w_i |x_i|."""

    def leaf(a, x):
        total, weight, first, found, scale = a
        unit, n = _unit(x, 0.0)
        valid = n > tol
        return (total + jnp.where(valid, w * unit, 0), weight + jnp.where(valid, w, 0),
                jnp.where(valid & ~found, unit, first), found | valid, scale + w * n)

    return jax.tree.map(leaf, acc, x, is_leaf=lambda a: isinstance(a, tuple))


@jax.jit
def _karcher_tangent(tangent, u, x, w, weight, tol):
    """tangent + (w / weight) Log_u(x / |x|) per leaf (skipped for |x| <= tol or theta < tol)."""

    def leaf(t, u, x, weight):
        unit, n = _unit(x, 0.0)
        dot = jnp.clip(jnp.sum(u * unit), -1.0, 1.0)
        theta = jnp.arccos(dot)
        use = (n > tol) & (theta >= tol)
        coef = jnp.where(use, w / jnp.where(weight > 0, weight, 1) * theta / jnp.sin(jnp.where(use, theta, 1.0)), 0)
        return t + coef * (unit - dot * u)

    return jax.tree.map(leaf, tangent, u, x, weight)


@jax.jit
def _karcher_step(u, tangent, done, tol):
    """u <- Exp_u(T), renormalized, on the leaves not done; done |= |T| < tol."""

    def leaf(u, t, done):
        size = jnp.linalg.norm(t)
        stop = done | (size < tol)
        moved = jnp.cos(size) * u + jnp.sin(size) * t / jnp.where(size > 0, size, 1)
        norm = jnp.linalg.norm(moved)
        moved = jnp.where(norm > tol, moved / jnp.where(norm > 0, norm, 1), moved)
        return jnp.where(stop, u, moved), stop

    pairs = jax.tree.map(leaf, u, tangent, done)
    is_pair = lambda p: isinstance(p, tuple)  # noqa: E731
    return jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair), jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)


def karcher_mean(models, weights=None, *, max_iter: int = 10, tol: float = 1e-5):
    """The per-leaf Karcher mean of `models` on the sphere times their weighted mean norm
    (mergekit's `karcher` rule; module docstring), streamed: one pass to start, then one pass per
    iteration. `weights` default to 1/n and are normalized to sum 1."""
    n = check_candidates("karcher_mean", models)
    weights = np.asarray(_check_weights("karcher_mean", weights, n))
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"karcher_mean: weights must be nonnegative with a positive sum, got {weights.tolist()}")
    weights = [float(w) for w in weights / weights.sum()]
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"karcher_mean: max_iter must be a nonnegative int, got {max_iter!r}")
    first = models[0]
    def empty(x):
        full, scalar = jnp.zeros(jnp.shape(x), jnp.result_type(x)), jnp.zeros((), jnp.result_type(x))
        return full, scalar, full, jnp.zeros((), bool), scalar

    acc = jax.tree.map(empty, first)
    for w, x in zip(weights, stream("karcher_mean", first, models)):
        acc = _karcher_start(acc, x, w, tol)
    is_acc = lambda a: isinstance(a, tuple)  # noqa: E731
    weight = jax.tree.map(lambda a: a[1], acc, is_leaf=is_acc)
    scale = jax.tree.map(lambda a: a[4], acc, is_leaf=is_acc)

    def start(a):
        total, weight, first_unit, _, _ = a
        mean = total / jnp.where(weight > 0, weight, 1)
        norm = jnp.linalg.norm(mean)
        return jnp.where(norm < tol, first_unit, mean / jnp.where(norm > 0, norm, 1))

    u = jax.tree.map(start, acc, is_leaf=is_acc)
    done = jax.tree.map(lambda w: w <= 0, weight)
    for _ in range(max_iter):
        if all(bool(d) for d in jax.tree_util.tree_leaves(done)):
            break
        tangent = jax.tree.map(jnp.zeros_like, u)
        for w, x in zip(weights, stream("karcher_mean", first, models)):
            tangent = _karcher_tangent(tangent, u, x, w, weight, tol)
        u, done = _karcher_step(u, tangent, done, tol)
    return jax.tree.map(lambda u, s, w: jnp.where(w > 0, s * u, jnp.zeros_like(u)), u, scale, weight)


@functools.partial(jax.jit, donate_argnums=0)
def _stock_step(acc, pretrained, candidate):
    def leaf(a, p, c):
        total, unit_total, units = a
        tau = c - p
        unit, n = _unit(tau, 0.0)
        unit = jnp.where(n > 0, unit, 0)
        return total + tau, unit_total + unit, units + jnp.sum(unit * unit)

    return jax.tree.map(leaf, acc, pretrained, candidate, is_leaf=lambda a: isinstance(a, tuple))


def model_stock(pretrained, finetuned):
    """Model Stock: theta_pre + t * mean_i tau_i per leaf with t = N cos / (1 + (N - 1) cos), cos
    the mean pairwise cosine of the task vectors (from the streamed sums of tau_i and of
    tau_i / |tau_i|: sum_{i<j} cos_ij = (|sum_i u_i|^2 - sum_i |u_i|^2) / 2)."""
    n = check_candidates("model_stock", finetuned)
    if n < 2:
        raise ValueError(f"model_stock: needs at least 2 fine-tuned models (pairwise angles), got {n}")
    acc = jax.tree.map(lambda p: (jnp.zeros_like(p), jnp.zeros_like(p), jnp.zeros((), p.dtype)), pretrained)
    for candidate in stream("model_stock", pretrained, finetuned):
        acc = _stock_step(acc, pretrained, candidate)

    def merge(a, p):
        total, unit_total, units = a
        cos = (jnp.sum(unit_total * unit_total) - units) / (n * (n - 1))
        t = n * cos / (1 + (n - 1) * cos)
        return p + t * total / n

    return jax.tree.map(merge, acc, pretrained, is_leaf=lambda a: isinstance(a, tuple))

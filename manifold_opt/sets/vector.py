"""Vector sets: a point is a whole array (all its entries form one vector x in R^n).

LMOs (argmin_{s in C} <g, s>, Jaggi 2013; FrankWolfe.jl):
  Simplex {x >= 0, sum x = r}:              r e_i,                 i = argmin g_i
  L1Ball {||x||_1 <= r}:                    -r sign(g_i) e_i,      i = argmax |g_i|
  L2Ball {||x||_2 <= r}:                    -r g / ||g||_2
  LInfBall {||x||_inf <= r}:                -r sign(g)
  Box {lower <= x <= upper}:                lower where g > 0, else upper
  KSparse {||x||_inf <= r, ||x||_1 <= k r}: -r sign(g_i) on the k largest |g_i|, 0 elsewhere
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from manifold_opt.sets.base import MAX_ACTIVE_ATOMS, ConvexSet, Polytope, RadiusSet, check_radius, jitted


def _relu(x):
    return jnp.maximum(x, 0)


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def project_l1(x, radius):
    """Euclidean projection onto {||x||_1 <= radius}: sign(x) * proj_simplex(|x|) outside the
    ball (optax's simplex projection, kept in x's dtype)."""
    inside = jnp.sum(jnp.abs(x)) <= radius
    onto = optax.projections.projection_simplex(jnp.abs(x).reshape(-1), jnp.asarray(radius, x.dtype))
    return jnp.where(inside, x, jnp.sign(x) * onto.reshape(x.shape).astype(x.dtype))


def _signed_atom(codes, like, radius):
    """Point with entries +r at flat index c (c < n) or -r at c - n (c >= n), for each code."""
    n = like.size
    codes = jnp.atleast_1d(codes)
    values = jnp.where(codes < n, radius, -radius).astype(like.dtype)
    return jnp.zeros(n, like.dtype).at[codes % n].set(values).reshape(like.shape)


def _signed_scores(g, codes, radius):
    """<g, atom(c)> for signed codes (L1 and K-sparse vertices), summed over a code's last axis
    when a code holds several entries."""
    flat = g.reshape(-1)
    n = flat.shape[0]
    return radius * jnp.where(codes < n, flat[codes % n], -flat[codes % n])


def _signed_code(g_values, indices, n):
    """The code of +r at `indices` where g < 0 (so <g, s> < 0), of -r elsewhere."""
    return jnp.where(g_values < 0, indices, indices + n).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Simplex(Polytope, RadiusSet):
    """{x >= 0, sum(x) = radius}: the probability simplex scaled by `radius`."""

    def project(self, x):
        self.check_point(x)
        onto = optax.projections.projection_simplex(x.reshape(-1), jnp.asarray(self.radius, x.dtype))
        return onto.reshape(x.shape).astype(x.dtype)

    def feasibility(self, x):
        self.check_point(x)
        return jnp.max(_relu(-x)) + jnp.abs(jnp.sum(x) - self.radius)

    def diameter(self, shape=()) -> float:
        return self.radius * math.sqrt(2.0) if _size(shape) > 1 else 0.0

    def atom_code(self, g):
        return jnp.argmin(g.reshape(-1)).astype(jnp.int32)

    def atom(self, code, like):
        return jnp.zeros(like.size, like.dtype).at[code].set(self.radius).reshape(like.shape)

    def atom_scores(self, g, codes):
        return self.radius * g.reshape(-1)[codes]

    def max_atoms(self, like) -> int:
        return like.size


@dataclasses.dataclass(frozen=True)
class L1Ball(Polytope, RadiusSet):
    """{||x||_1 <= radius}; vertices +-radius e_i, coded i (for +) and n + i (for -)."""

    def project(self, x):
        self.check_point(x)
        return project_l1(x, self.radius)

    def feasibility(self, x):
        self.check_point(x)
        return _relu(jnp.sum(jnp.abs(x)) - self.radius)

    def diameter(self, shape=()) -> float:
        return 2.0 * self.radius

    def atom_code(self, g):
        flat = g.reshape(-1)
        i = jnp.argmax(jnp.abs(flat))
        return _signed_code(flat[i], i, flat.shape[0])

    def atom(self, code, like):
        return _signed_atom(code, like, self.radius)

    def atom_scores(self, g, codes):
        return _signed_scores(g, codes, self.radius)

    def max_atoms(self, like) -> int:
        return 2 * like.size


@dataclasses.dataclass(frozen=True)
class L2Ball(RadiusSet):
    """{||x||_2 <= radius} (Frobenius norm for matrices)."""

    def lmo(self, g):
        self.check_point(g, "g")
        norm = jnp.linalg.norm(g.reshape(-1))
        return -self.radius * g / jnp.where(norm > 0, norm, 1).astype(g.dtype)

    def project(self, x):
        self.check_point(x)
        return optax.projections.projection_l2_ball(x, jnp.asarray(self.radius, x.dtype)).astype(x.dtype)

    def feasibility(self, x):
        self.check_point(x)
        return _relu(jnp.linalg.norm(x.reshape(-1)) - self.radius)

    def diameter(self, shape=()) -> float:
        return 2.0 * self.radius


@dataclasses.dataclass(frozen=True)
class LInfBall(RadiusSet):
    """{max |x_i| <= radius}."""

    def lmo(self, g):
        self.check_point(g, "g")
        return -self.radius * jnp.sign(g)

    def project(self, x):
        self.check_point(x)
        return optax.projections.projection_linf_ball(x, jnp.asarray(self.radius, x.dtype)).astype(x.dtype)

    def feasibility(self, x):
        self.check_point(x)
        return _relu(jnp.max(jnp.abs(x)) - self.radius)

    def diameter(self, shape=()) -> float:
        return 2.0 * self.radius * math.sqrt(_size(shape))


@dataclasses.dataclass(frozen=True, eq=False)
class Box(ConvexSet):
    """{lower <= x <= upper} entrywise; bounds are numbers or arrays broadcastable to x.
    (Compared and hashed by identity, since array bounds are not hashable.)"""

    lower: object = 0.0
    upper: object = 1.0

    __eq__ = object.__eq__  # identity: the arrays it holds are not hashable
    __hash__ = object.__hash__

    def __post_init__(self):
        lower, upper = np.asarray(self.lower, np.float64), np.asarray(self.upper, np.float64)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError("Box: lower and upper must be finite")
        try:
            ok = np.all(lower <= upper)
        except ValueError:
            raise ValueError(f"Box: lower {lower.shape} and upper {upper.shape} must broadcast together") from None
        if not ok:
            raise ValueError("Box: lower must be <= upper everywhere")

    def check_point(self, x, name: str = "x") -> None:
        super().check_point(x, name)
        try:
            np.broadcast_shapes(np.shape(self.lower), np.shape(self.upper), x.shape)
        except ValueError:
            raise ValueError(f"Box: {name} of shape {x.shape} does not broadcast with the bounds") from None

    def _bounds(self, x):
        return (jnp.broadcast_to(jnp.asarray(self.lower, x.dtype), x.shape),
                jnp.broadcast_to(jnp.asarray(self.upper, x.dtype), x.shape))

    def lmo(self, g):
        self.check_point(g, "g")
        lower, upper = self._bounds(g)
        return jnp.where(g > 0, lower, upper)

    def project(self, x):
        self.check_point(x)
        lower, upper = self._bounds(x)
        return optax.projections.projection_box(x, lower, upper)

    def feasibility(self, x):
        self.check_point(x)
        lower, upper = self._bounds(x)
        return jnp.max(jnp.maximum(_relu(lower - x), _relu(x - upper)))

    def diameter(self, shape=()) -> float:
        width = np.broadcast_to(np.asarray(self.upper, np.float64) - np.asarray(self.lower, np.float64), shape)
        return float(np.linalg.norm(width))


@dataclasses.dataclass(frozen=True)
class KSparse(Polytope):
    """The K-sparse polytope conv{x : k entries equal to +-radius, the rest 0}
    = {||x||_inf <= radius, ||x||_1 <= k radius} (Pokutta et al. 2020). Vertices are coded as k
    signed indices (i for +radius, n + i for -radius)."""

    k: int = 1
    radius: float = 1.0

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"KSparse: k must be a positive int, got {self.k!r}")
        check_radius("KSparse", self.radius)

    def check_point(self, x, name: str = "x") -> None:
        super().check_point(x, name)
        if x.size < self.k:
            raise ValueError(f"KSparse: k = {self.k} exceeds the size {x.size} of {name}")

    @jitted
    def project(self, x):
        """Soft-threshold and clip, x_i = sign(y_i) min(max(|y_i| - tau, 0), r), with tau >= 0 the
        smallest value making ||x||_1 <= k r (found by bisection; the KKT conditions of the
        projection onto {||x||_inf <= r} intersected with {||x||_1 <= k r})."""
        self.check_point(x)
        a = jnp.abs(x)
        r = jnp.asarray(self.radius, x.dtype)

        def l1(tau):
            return jnp.sum(jnp.clip(a - tau, 0, r))

        def bisect(bounds, _):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            over = l1(mid) > self.k * r
            return (jnp.where(over, mid, lo), jnp.where(over, hi, mid)), None

        (_, tau), _ = jax.lax.scan(bisect, (jnp.zeros((), x.dtype), jnp.max(a)), None, length=100)
        tau = jnp.where(l1(0) <= self.k * r, 0, tau)
        return jnp.sign(x) * jnp.clip(a - tau, 0, r)

    def feasibility(self, x):
        self.check_point(x)
        return _relu(jnp.max(jnp.abs(x)) - self.radius) + _relu(jnp.sum(jnp.abs(x)) - self.k * self.radius)

    def diameter(self, shape=()) -> float:
        return 2.0 * self.radius * math.sqrt(min(self.k, _size(shape)) if shape else self.k)

    def atom_code(self, g):
        flat = g.reshape(-1)
        _, indices = jax.lax.top_k(jnp.abs(flat), self.k)
        # sorted, so that one vertex has one code (the active set matches atoms by their codes)
        return jnp.sort(_signed_code(flat[indices], indices, flat.shape[0]))

    def atom(self, code, like):
        return _signed_atom(code, like, self.radius)

    def atom_scores(self, g, codes):
        return jnp.sum(_signed_scores(g, codes, self.radius), axis=-1)

    def max_atoms(self, like) -> int:
        return int(min(math.comb(like.size, self.k) * 2**self.k, 2 * (like.size + 1), MAX_ACTIVE_ATOMS))

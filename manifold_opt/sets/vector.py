"""Vector sets: a point is a whole array (all its entries form one vector x in R^n).

LMOs (argmin_{s in C} <g, s>, Jaggi 2013; FrankWolfe.jl):
  Simplex {x >= 0, sum x = r}:              r e_i,                 i = argmin g_i
  L1Ball {||x||_1 <= r}:                    -r sign(g_i) e_i,      i = argmax |g_i|
  L2Ball {||x||_2 <= r}:                    -r g / ||g||_2
  LInfBall {||x||_inf <= r}:                -r sign(g)
  Box {lower <= x <= upper}:                lower where g > 0, else upper
  KSparse {||x||_inf <= r, ||x||_1 <= k r}: -r sign(g_i) on the k largest |g_i|, 0 elsewhere
  Hypersimplex {x in [0, r]^n, sum x = k r}: r on the k smallest g_i, 0 elsewhere
  KNormBall {sum of the k largest |x_i| <= r} = conv(L1Ball(r) u LInfBall(r / k)): the better of
                                            -r sign(g_i) e_i (i = argmax |g_i|) and -(r / k) sign(g)
  Ellipsoid {(x - c)^T A (x - c) <= 1}:     c - A^-1 g / sqrt(g^T A^-1 g)
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


def bisect(fn, lo, hi, steps: int = 100):
    """The root of a nonincreasing scalar function fn on [lo, hi] (fn(lo) >= 0 >= fn(hi)) by
    `steps` bisections in a lax.scan (the projections' one-dimensional KKT equations)."""

    def halve(bounds, _):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = fn(mid) > 0
        return (jnp.where(above, mid, lo), jnp.where(above, hi, mid)), None

    (lo, hi), _ = jax.lax.scan(halve, (lo, hi), None, length=steps)
    return 0.5 * (lo + hi)


def project_capped_simplex(x, total, cap):
    """Euclidean projection onto {y in [0, cap]^n, sum y = total} (0 < total <= n cap):
    y = clip(x - tau, 0, cap) with tau found by bisection (the KKT conditions)."""
    cap = jnp.asarray(cap, x.dtype)
    tau = bisect(lambda t: jnp.sum(jnp.clip(x - t, 0, cap)) - total, jnp.min(x) - cap, jnp.max(x))
    return jnp.clip(x - tau, 0, cap)


def _check_k(owner: str, k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{owner}: k must be a positive int, got {k!r}")


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
        scale = jnp.max(jnp.abs(g))  # g / max|g| has entries in [-1, 1]: its norm cannot overflow
        unit = g / jnp.where(scale > 0, scale, 1).astype(g.dtype)
        norm = jnp.linalg.norm(unit.reshape(-1))
        return -self.radius * unit / jnp.where(norm > 0, norm, 1).astype(g.dtype)

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
        _check_k("KSparse", self.k)
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

        tau = bisect(lambda t: l1(t) - self.k * r, jnp.zeros((), x.dtype), jnp.max(a))
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


@dataclasses.dataclass(frozen=True)
class Hypersimplex(Polytope):
    """{x in [0, radius]^n, sum x = k radius}: conv of the points with k entries radius and the
    rest 0 (FrankWolfe.jl's HyperSimplexOracle). Vertices are coded by their k sorted indices."""

    k: int = 1
    radius: float = 1.0

    def __post_init__(self):
        _check_k("Hypersimplex", self.k)
        check_radius("Hypersimplex", self.radius)

    def check_point(self, x, name: str = "x") -> None:
        super().check_point(x, name)
        if x.size < self.k:
            raise ValueError(f"Hypersimplex: k = {self.k} exceeds the size {x.size} of {name}")

    @jitted
    def project(self, x):
        """x_i = clip(y_i - tau, 0, r) with tau making sum x = k r (`project_capped_simplex`)."""
        self.check_point(x)
        return project_capped_simplex(x, self.k * self.radius, self.radius)

    def feasibility(self, x):
        self.check_point(x)
        return jnp.max(_relu(-x)) + jnp.max(_relu(x - self.radius)) + jnp.abs(jnp.sum(x) - self.k * self.radius)

    def diameter(self, shape=()) -> float:
        n = _size(shape)
        return self.radius * math.sqrt(2.0 * min(self.k, n - self.k)) if shape else 0.0

    def atom_code(self, g):
        _, indices = jax.lax.top_k(-g.reshape(-1), self.k)
        return jnp.sort(indices).astype(jnp.int32)

    def atom(self, code, like):
        return jnp.zeros(like.size, like.dtype).at[code].set(self.radius).reshape(like.shape)

    def atom_scores(self, g, codes):
        return self.radius * jnp.sum(g.reshape(-1)[codes], axis=-1)

    def max_atoms(self, like) -> int:
        return int(min(math.comb(like.size, self.k), 2 * (like.size + 1), MAX_ACTIVE_ATOMS))


def _top_k_sum(a, k):
    return jnp.sum(jax.lax.top_k(a.reshape(-1), k)[0])


@dataclasses.dataclass(frozen=True)
class KNormBall(ConvexSet):
    """{||x||_(k) <= radius}, ||x||_(k) the sum of the k largest |x_i| (FrankWolfe.jl's
    KNormBallLMO): the convex hull of the L1 ball of the radius and the Linf ball of radius / k."""

    k: int = 1
    radius: float = 1.0

    def __post_init__(self):
        _check_k("KNormBall", self.k)
        check_radius("KNormBall", self.radius)

    def check_point(self, x, name: str = "x") -> None:
        super().check_point(x, name)
        if x.size < self.k:
            raise ValueError(f"KNormBall: k = {self.k} exceeds the size {x.size} of {name}")

    def lmo(self, g):
        self.check_point(g, "g")
        flat = g.reshape(-1)
        i = jnp.argmax(jnp.abs(flat))
        l1_vertex = jnp.zeros_like(flat).at[i].set(-self.radius * jnp.sign(flat[i]))
        linf_vertex = -(self.radius / self.k) * jnp.sign(flat)
        l1_better = self.radius * jnp.abs(flat[i]) >= (self.radius / self.k) * jnp.sum(jnp.abs(flat))
        return jnp.where(l1_better, l1_vertex, linf_vertex).reshape(g.shape)

    @jitted
    def project(self, x):
        """sign(y) (|y| - clip(|y| - c, 0, mu)): the prox of mu ||.||_(k) (its subgradients are
        w in [0, 1]^n with sum w = k on the entries at or above the k-th largest c), with c solving
        sum clip(|y| - c, 0, mu) = k mu (c = 0 when no c >= 0 does) and mu the multiplier making
        ||x||_(k) = radius; both by bisection."""
        self.check_point(x)
        a = jnp.abs(x)
        zero = jnp.zeros((), x.dtype)

        def shrunk(mu):
            excess = lambda c: jnp.sum(jnp.clip(a - c, 0, mu)) - self.k * mu
            c = jnp.where(excess(zero) <= 0, zero, bisect(excess, zero, jnp.max(a)))
            return a - jnp.clip(a - c, 0, mu)

        mu = bisect(lambda mu: _top_k_sum(shrunk(mu), self.k) - self.radius, zero, jnp.sum(a))
        inside = _top_k_sum(a, self.k) <= self.radius
        return jnp.where(inside, x, jnp.sign(x) * shrunk(mu))

    def feasibility(self, x):
        self.check_point(x)
        return _relu(_top_k_sum(jnp.abs(x), self.k) - self.radius)

    def diameter(self, shape=()) -> float:
        n = _size(shape)
        if not shape or n == 0:
            return 0.0
        # the farthest vertex pair: opposite Linf vertices (2 r sqrt(n) / k) or L1 ones (2 r)
        return 2.0 * self.radius * max(1.0, math.sqrt(n) / self.k)


@dataclasses.dataclass(frozen=True, eq=False)
class Ellipsoid(ConvexSet):
    """{x : (x - center)^T A (x - center) <= 1} for a symmetric positive definite A (n x n) and
    points of shape (n,). (Compared and hashed by identity, since A is an array.)"""

    A: object = None
    center: object = 0.0

    __eq__ = object.__eq__  # identity: the arrays it holds are not hashable
    __hash__ = object.__hash__

    def __post_init__(self):
        a = np.asarray(self.A, np.float64)
        if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.all(np.isfinite(a)) or not np.allclose(a, a.T):
            raise ValueError(f"Ellipsoid: A must be a finite symmetric (n, n) matrix, got shape {a.shape}")
        if np.linalg.eigvalsh(a)[0] <= 0:
            raise ValueError("Ellipsoid: A must be positive definite")
        try:
            np.broadcast_to(np.asarray(self.center, np.float64), a.shape[:1])
        except ValueError:
            raise ValueError(f"Ellipsoid: center must broadcast to shape {a.shape[:1]}") from None

    def check_point(self, x, name: str = "x") -> None:
        super().check_point(x, name)
        n = np.shape(self.A)[0]
        if x.shape != (n,):
            raise ValueError(f"Ellipsoid: {name} must have shape ({n},), got {x.shape}")

    def _eigh(self, like):
        """A = Q diag(a) Q^T and the center, in like's dtype (NumPy: constants under jit)."""
        a, q = np.linalg.eigh(np.asarray(self.A, np.float64))
        center = np.broadcast_to(np.asarray(self.center, np.float64), a.shape)
        return (jnp.asarray(a, like.dtype), jnp.asarray(q, like.dtype), jnp.asarray(center, like.dtype))

    def lmo(self, g):
        self.check_point(g, "g")
        a, q, center = self._eigh(g)
        a_inv_g = q @ ((q.T @ g) / a)
        norm = jnp.sqrt(jnp.vdot(g, a_inv_g))
        return center - a_inv_g / jnp.where(norm > 0, norm, 1)

    @jitted
    def project(self, x):
        """c + (I + lam A)^-1 (x - c) with lam >= 0 making the point land on the boundary (in A's
        eigenbasis sum a_i z_i^2 / (1 + lam a_i)^2 = 1, by bisection on lam)."""
        self.check_point(x)
        a, q, center = self._eigh(x)
        z = q.T @ (x - center)
        level = lambda lam: jnp.sum(a * (z / (1 + lam * a)) ** 2) - 1
        lam = bisect(level, jnp.zeros((), x.dtype), jnp.sqrt(jnp.sum(z**2 / a)))
        lam = jnp.where(level(0) <= 0, 0, lam)
        return center + q @ (z / (1 + lam * a))

    def feasibility(self, x):
        self.check_point(x)
        a, q, center = self._eigh(x)
        z = q.T @ (x - center)
        return _relu(jnp.sum(a * z**2) - 1)

    def diameter(self, shape=()) -> float:
        return 2.0 / math.sqrt(float(np.linalg.eigvalsh(np.asarray(self.A, np.float64))[0]))

"""The unit sphere S^{n-1} = {x in R^n : ||x|| = 1}, with the metric of R^n.

proj(x, u) = u - <x, u> x; retraction (x + u) / ||x + u||; closed forms

    exp_x(u) = cos(|u|) x + sin(|u|) u / |u|,
    log_x(y) = theta (y - <x, y> x) / ||y - <x, y> x||,   theta = dist(x, y) = 2 arcsin(|y - x| / 2)

(arcsin of the chord is accurate for nearby points, unlike arccos <x, y>). The functions below
take the axis that holds the vector, so the Oblique manifold (columnwise spheres) shares them.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_positive_int


def _dot(a, b, axis):
    return jnp.sum(a * b, axis=axis, keepdims=True)


def _norm(a, axis):
    return jnp.sqrt(_dot(a, a, axis))


def _safe_divide(a, b):
    """a / b, and 0 where b == 0 (with finite gradients)."""
    nonzero = b > 0
    return jnp.where(nonzero, a / jnp.where(nonzero, b, 1), 0)


def sphere_proj(x, u, axis=-1):
    return u - _dot(x, u, axis) * x


def sphere_normalize(x, axis=-1):
    return x / _norm(x, axis)


def sphere_exp(x, u, axis=-1):
    t = _norm(u, axis)
    y = jnp.cos(t) * x + jnp.sin(t) * _safe_divide(u, t)
    return sphere_normalize(y, axis)


def sphere_dist(x, y, axis=-1):
    """Great-circle distance, keeping the reduced axis (size 1)."""
    chord = _norm(y - x, axis)
    return 2 * jnp.arcsin(jnp.clip(chord / 2, 0, 1))


def sphere_log(x, y, axis=-1):
    direction = sphere_proj(x, y, axis)
    return sphere_dist(x, y, axis) * _safe_divide(direction, _norm(direction, axis))


def sphere_ehess_to_rhess(x, egrad, ehvp, u, axis=-1):
    """proj(x, ehvp) - <x, egrad> u: the Weingarten term of the sphere."""
    return sphere_proj(x, ehvp, axis) - _dot(x, egrad, axis) * u


def sphere_feasibility(x, axis=-1):
    """| ||x|| - 1 | per vector (keeping the reduced axis)."""
    return jnp.abs(_norm(x, axis) - 1)


@dataclasses.dataclass(frozen=True)
class Sphere(Manifold):
    """Unit vectors in R^n."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("Sphere", "n", self.n))

    @property
    def shape(self):
        return (self.n,)

    @property
    def dim(self):
        return self.n - 1

    def random_point(self, key, dtype=None, batch_shape=()):
        return sphere_normalize(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_proj(x, u)

    def retract(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_normalize(x + u)

    def project(self, x):
        self.check_point(x)
        return sphere_normalize(x)

    def feasibility(self, x):
        self.check_point(x)
        return sphere_feasibility(x)[..., 0]

    def exp(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_exp(x, u)

    def log(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        return sphere_log(x, y)

    def dist(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        return sphere_dist(x, y)[..., 0]

    @property
    def typical_dist(self):
        return math.pi

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return sphere_ehess_to_rhess(x, egrad, ehvp, u)

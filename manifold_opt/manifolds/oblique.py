"""The oblique manifold OB(n, p): n x p matrices with unit-norm columns, a product of p spheres
S^{n-1} (one per column) with the Frobenius metric. Every operation is the sphere's, applied
columnwise (axis -2); dist = sqrt(sum of squared column distances)."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_positive_int
from manifold_opt.manifolds.sphere import (
    sphere_dist,
    sphere_ehess_to_rhess,
    sphere_exp,
    sphere_feasibility,
    sphere_log,
    sphere_normalize,
    sphere_proj,
)


@dataclasses.dataclass(frozen=True)
class Oblique(Manifold):
    """n x p matrices whose columns are unit vectors."""

    n: int
    p: int

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("Oblique", "n", self.n))
        object.__setattr__(self, "p", check_positive_int("Oblique", "p", self.p))

    @property
    def shape(self):
        return (self.n, self.p)

    @property
    def dim(self):
        return (self.n - 1) * self.p

    def random_point(self, key, dtype=None, batch_shape=()):
        x = jax.random.normal(key, tuple(batch_shape) + self.shape, dtype)
        return sphere_normalize(x, axis=-2)

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_proj(x, u, axis=-2)

    def retract(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_normalize(x + u, axis=-2)

    def project(self, x):
        self.check_point(x)
        return sphere_normalize(x, axis=-2)

    def feasibility(self, x):
        """Largest | ||column|| - 1 |."""
        self.check_point(x)
        return jnp.max(sphere_feasibility(x, axis=-2), axis=(-2, -1))

    def exp(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return sphere_exp(x, u, axis=-2)

    def log(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        return sphere_log(x, y, axis=-2)

    def dist(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        return jnp.sqrt(jnp.sum(sphere_dist(x, y, axis=-2) ** 2, axis=(-2, -1)))

    @property
    def typical_dist(self):
        return math.pi * math.sqrt(self.p)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return sphere_ehess_to_rhess(x, egrad, ehvp, u, axis=-2)

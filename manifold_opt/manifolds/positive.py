"""Entrywise positive m x n matrices with the metric <U, V>_X = sum_ij U_ij V_ij / X_ij^2
(Pymanopt's `Positive`; each entry is a copy of the positive reals with the metric of
log-coordinates, so the manifold is flat: X = exp(Z) is an isometry from R^{m x n}).

With all operations entrywise:

    egrad_to_rgrad(X, G) = X^2 G,   exp_X(U) = X exp(U / X),   log_X(Y) = X log(Y / X),
    dist(X, Y) = ||log Y - log X||_F,   Hess f(X)[U] = X^2 H + X G U,

retraction R_X(U) = X + U + U^2 / (2 X) (second order; = (X + U)^2 / (2X) + X / 2 > 0), and
transport the identity (every tangent space is R^{m x n}).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_positive_int


@dataclasses.dataclass(frozen=True)
class Positive(Manifold):
    """m x n matrices with positive entries."""

    m: int
    n: int

    def __post_init__(self):
        object.__setattr__(self, "m", check_positive_int("Positive", "m", self.m))
        object.__setattr__(self, "n", check_positive_int("Positive", "n", self.n))

    @property
    def shape(self):
        return (self.m, self.n)

    @property
    def dim(self):
        return self.m * self.n

    @property
    def typical_dist(self):
        return math.sqrt(self.dim)

    def random_point(self, key, dtype=None, batch_shape=()):
        """exp of a standard Gaussian matrix."""
        return jnp.exp(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return u

    def egrad_to_rgrad(self, x, egrad):
        self.check_points(x=x, egrad=egrad)
        return x**2 * egrad

    def inner(self, x, u, v):
        self.check_points(x=x, u=u, v=v)
        return jnp.sum(u * v / x**2, axis=(-2, -1))

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return x + u + u**2 / (2 * x)

    def transport(self, x, y, v):
        self.check_points(x=x, y=y, v=v)
        return v

    def project(self, x):
        """Entries floored at eps * max |entry| of each point."""
        self.check_point(x)
        floor = jnp.finfo(x.dtype).eps * jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True)
        return jnp.maximum(x, floor)

    def feasibility(self, x):
        """Largest of 0 and tiny - min entry (positive for any entry <= 0)."""
        self.check_point(x)
        return jnp.maximum(jnp.finfo(x.dtype).tiny - jnp.min(x, axis=(-2, -1)), 0)

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        return x * jnp.exp(u / x)

    def log(self, x, y):
        self.check_points(x=x, y=y)
        return x * jnp.log(y / x)

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        return jnp.linalg.norm(jnp.log(y / x), axis=(-2, -1))

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return x**2 * ehvp + x * egrad * u

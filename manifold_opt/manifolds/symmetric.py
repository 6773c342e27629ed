"""Symmetric n x n matrices Sym(n) with the Frobenius metric (Pymanopt's `Symmetric`): a linear
space, so proj(X, U) = sym(U) = (U + U^T) / 2, exp_X(U) = retract_X(U) = X + U, log_X(Y) = Y - X,
dist(X, Y) = ||Y - X||_F and the Riemannian Hessian is sym(ehvp). `SkewSymmetric(n)` (Pymanopt's)
is the same with skew(U) = (U - U^T) / 2."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds._matrix import skew, sym
from manifold_opt.manifolds.base import Manifold, check_positive_int


@dataclasses.dataclass(frozen=True)
class SymmetricEuclidean(Manifold):
    """n x n symmetric matrices."""

    n: int
    _part = staticmethod(sym)  # the orthogonal projection onto the subspace

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int(type(self).__name__, "n", self.n))

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dim(self):
        return self.n * (self.n + 1) // 2

    @property
    def typical_dist(self):
        return math.sqrt(self.dim)

    def random_point(self, key, dtype=None, batch_shape=()):
        return self._part(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return self._part(u)

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return x + u

    def transport(self, x, y, v):
        self.check_points(x=x, y=y, v=v)
        return v

    def project(self, x):
        self.check_point(x)
        return self._part(x)

    def feasibility(self, x):
        """||X - X^T||_F (||X + X^T||_F for SkewSymmetric)."""
        self.check_point(x)
        return 2 * jnp.linalg.norm(x - self._part(x), axis=(-2, -1))

    def exp(self, x, u):
        return self.retract(x, u)

    def log(self, x, y):
        self.check_points(x=x, y=y)
        return y - x

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        return jnp.linalg.norm(y - x, axis=(-2, -1))

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self._part(ehvp)


@dataclasses.dataclass(frozen=True)
class SkewSymmetric(SymmetricEuclidean):
    """n x n skew-symmetric matrices."""

    _part = staticmethod(skew)

    @property
    def dim(self):
        return self.n * (self.n - 1) // 2

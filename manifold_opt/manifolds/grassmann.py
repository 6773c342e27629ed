"""The Grassmann manifold Gr(n, p) of p-dimensional subspaces of R^n (Edelman et al. 1998), and
the complex Grassmannian of subspaces of C^n (the same formulas with X^H for X^T, the metric
Re tr(U^H V)).

A subspace is represented by an n x p orthonormal basis X; tangent vectors are horizontal
(X^T U = 0), so proj(X, U) = (I - X X^T) U, and the metric is tr(U^T V). Closed forms, with
U = Q S V^T a thin SVD:

    exp_X(U) = X V cos(S) V^T + Q sin(S) V^T,
    log_X(Y) = Q arctan(S) V^T   where Q S V^T = (I - X X^T) Y (X^T Y)^{-1},
    dist(X, Y) = ||theta||_2,     theta = principal angles between span X and span Y.

Riemannian Hessian (horizontal lift; Absil, Mahony & Trumpler 2013):
Hess f(X)[U] = proj(X, ehvp) - U X^T egrad.

log is independent of Y's basis and needs X^T Y invertible (no angle of pi/2).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt import linalg
from manifold_opt.manifolds._matrix import adjoint, orthonormality_error, qr_positive, transpose
from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_positive_int


@dataclasses.dataclass(frozen=True)
class Grassmann(Manifold):
    """p-dimensional subspaces of R^n, as n x p orthonormal representatives."""

    n: int
    p: int

    def __post_init__(self):
        owner = type(self).__name__
        n = check_positive_int(owner, "n", self.n)
        p = check_positive_int(owner, "p", self.p)
        if p > n:
            raise ValueError(f"{owner}: p must be <= n, got p={p} > n={n}")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "p", p)

    @property
    def shape(self):
        return (self.n, self.p)

    @property
    def dim(self):
        return self.p * (self.n - self.p)

    def random_point(self, key, dtype=None, batch_shape=()):
        return qr_positive(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return u - x @ (adjoint(x) @ u)

    def retract(self, x, u):
        """Q factor of X + U (diag(R) > 0): a representative of span(X + U)."""
        self.check_point(x)
        self.check_point(u, "u")
        return qr_positive(x + u)

    def project(self, x):
        self.check_point(x)
        return linalg.polar(x)

    def feasibility(self, x):
        self.check_point(x)
        return orthonormality_error(x)

    def exp(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        q, s, vh = jnp.linalg.svd(u, full_matrices=False)
        y = (x @ adjoint(vh)) * jnp.cos(s)[..., None, :] @ vh + q * jnp.sin(s)[..., None, :] @ vh
        return qr_positive(y)

    def log(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        xty = adjoint(x) @ y
        horizontal = y - x @ xty
        # horizontal (X^T Y)^{-1}, as a solve with the transposed system
        m = transpose(jnp.linalg.solve(transpose(xty), transpose(horizontal)))
        q, s, vh = jnp.linalg.svd(m, full_matrices=False)
        return q * jnp.arctan(s)[..., None, :] @ vh

    @property
    def typical_dist(self):
        return math.sqrt(self.p)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, ehvp) - u @ (adjoint(x) @ egrad)


@dataclasses.dataclass(frozen=True)
class ComplexGrassmann(Grassmann):
    """p-dimensional subspaces of C^n, as n x p complex orthonormal representatives (X^H X = I);
    complex64 / complex128 arrays."""

    @property
    def dim(self):
        return 2 * self.p * (self.n - self.p)

    def random_point(self, key, dtype=None, batch_shape=()):
        return super().random_point(key, check_complex_dtype("ComplexGrassmann", dtype), batch_shape)

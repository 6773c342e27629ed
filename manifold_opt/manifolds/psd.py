"""Low-rank factorizations X = Y Y^H of positive semidefinite matrices, as quotients of
full-rank n x k matrices Y by the orthogonal (unitary) group Y ~ Y Q (Journee, Bach, Absil &
Sepulchre 2010; Pymanopt's `PSDFixedRank`, `PSDFixedRankComplex`, `Elliptope`).

Tangent vectors are horizontal lifts: vectors orthogonal (Re tr(U^H V)) to the vertical space
{Y Omega : Omega skew(-Hermitian)}, i.e. with Y^H U Hermitian. The horizontal projection is
U - Y Omega with Omega the skew solution of the Lyapunov equation

    (Y^H Y) Omega + Omega (Y^H Y) = Y^H U - U^H Y,

solved through the eigendecomposition Y^H Y = Q diag(w) Q^H: Omega = Q [(Q^H A Q)_ij / (w_i + w_j)] Q^H.
For a cost invariant under Y -> Y Q the Euclidean gradient is already horizontal, and the
Riemannian Hessian is proj(Y, H) on PSDFixedRank (the total space is flat).

- PSDFixedRank / PSDFixedRankComplex: Y in R^{n x k} (C^{n x k}) of full rank; exp_Y(U) = Y + U
  (the retraction), log_Y(Z) = Z Q - Y with Q the Procrustes rotation aligning Z to Y
  (U S V^H = Z^H Y, Q = U V^H), dist = ||log_Y(Z)||_F (the Bures-Wasserstein distance of Y Y^H
  and Z Z^H).
- Elliptope: the rows of Y have unit norm (X = Y Y^T has unit diagonal: correlation matrices of
  rank <= k); tangent vectors are first projected row-wise (Y_i . U_i = 0), the retraction
  normalizes the rows of Y + U, and Hess f(Y)[U] = proj(Y, H - diag(rowsum(G * Y)) U).
  No closed-form exp/log/dist.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from manifold_opt.manifolds._matrix import adjoint
from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_positive_int
from manifold_opt.manifolds.sphere import sphere_feasibility, sphere_normalize, sphere_proj


def horizontal_projection(y, u):
    """u - Y Omega with Omega skew(-Hermitian) solving (Y^H Y) Omega + Omega (Y^H Y) = Y^H u - u^H Y."""
    a = adjoint(y) @ u
    w, q = jnp.linalg.eigh(adjoint(y) @ y)
    b = adjoint(q) @ (a - adjoint(a)) @ q
    omega = q @ (b / (w[..., :, None] + w[..., None, :])) @ adjoint(q)
    return u - y @ omega


def _check_rank(owner: str, n: int, k: int):
    n = check_positive_int(owner, "n", n)
    k = check_positive_int(owner, "k", k)
    if k > n:
        raise ValueError(f"{owner}: k must be <= n, got k={k} > n={n}")
    return n, k


@dataclasses.dataclass(frozen=True)
class PSDFixedRank(Manifold):
    """n x n real PSD matrices of rank k, as factors Y (n x k) modulo Y ~ Y Q, Q in O(k)."""

    n: int
    k: int

    def __post_init__(self):
        n, k = _check_rank(type(self).__name__, self.n, self.k)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "k", k)

    @property
    def shape(self):
        return (self.n, self.k)

    @property
    def dim(self):
        return self.k * self.n - self.k * (self.k - 1) // 2

    @property
    def typical_dist(self):
        return 10 + self.k

    def random_point(self, key, dtype=None, batch_shape=()):
        """A standard Gaussian n x k matrix."""
        return jax.random.normal(key, tuple(batch_shape) + self.shape, dtype)

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return horizontal_projection(x, u)

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return x + u

    def exp(self, x, u):
        return self.retract(x, u)

    def log(self, x, y):
        self.check_points(x=x, y=y)
        u, _, vh = jnp.linalg.svd(adjoint(y) @ x, full_matrices=False)
        return y @ (u @ vh) - x

    def project(self, x):
        self.check_point(x)
        return x

    def feasibility(self, x):
        """max(0, tiny - smallest eigenvalue of Y^H Y): zero for full rank Y."""
        self.check_point(x)
        smallest = jnp.linalg.eigvalsh(adjoint(x) @ x)[..., 0]
        return jnp.maximum(jnp.finfo(smallest.dtype).tiny - smallest, 0)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, ehvp)


@dataclasses.dataclass(frozen=True)
class PSDFixedRankComplex(PSDFixedRank):
    """n x n Hermitian PSD matrices of rank k, as complex factors Y (n x k) modulo Y ~ Y Q,
    Q in U(k); complex64 / complex128 arrays."""

    @property
    def dim(self):
        return 2 * self.k * self.n - self.k**2

    def random_point(self, key, dtype=None, batch_shape=()):
        return super().random_point(key, check_complex_dtype("PSDFixedRankComplex", dtype), batch_shape)


@dataclasses.dataclass(frozen=True)
class Elliptope(Manifold):
    """n x n correlation matrices (PSD, unit diagonal) of rank k, as factors Y (n x k) with unit
    rows modulo Y ~ Y Q, Q in O(k)."""

    n: int
    k: int

    def __post_init__(self):
        n, k = _check_rank("Elliptope", self.n, self.k)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "k", k)

    @property
    def shape(self):
        return (self.n, self.k)

    @property
    def dim(self):
        return self.n * (self.k - 1) - self.k * (self.k - 1) // 2

    @property
    def typical_dist(self):
        return 10 * self.k

    def random_point(self, key, dtype=None, batch_shape=()):
        return sphere_normalize(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return horizontal_projection(x, sphere_proj(x, u))

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return sphere_normalize(x + u)

    def project(self, x):
        self.check_point(x)
        return sphere_normalize(x)

    def feasibility(self, x):
        """max_i | ||Y_i|| - 1 | over the rows."""
        self.check_point(x)
        return jnp.max(sphere_feasibility(x)[..., 0], axis=-1)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, ehvp - jnp.sum(egrad * x, axis=-1, keepdims=True) * u)

"""Symmetric positive definite matrices SPD(n) with the affine-invariant metric
(Pennec, Fillard & Ayache 2006; Bhatia 2007, ch. 6)

    <U, V>_X = tr(X^{-1} U X^{-1} V).

Tangent vectors are symmetric matrices; proj(X, U) = sym(U) (skew matrices are orthogonal to
symmetric ones in this metric), the Riemannian gradient is X sym(G) X. With X = L L^T (Cholesky;
any factor gives the same results as X^{1/2}):

    exp_X(U) = L expm(L^{-1} U L^{-T}) L^T,   log_X(Y) = L logm(L^{-1} Y L^{-T}) L^T,
    dist(X, Y) = ||logm(L^{-1} Y L^{-T})||_F = sqrt(sum_i log^2 lambda_i(X, Y)).

The retraction is the second-order R_X(U) = X + U + U X^{-1} U / 2 (Jeuris, Vandebril &
Vandereycken 2012), which equals ((X + (X + U) X^{-1} (X + U)) / 2 and so is SPD for every
symmetric U. Transport is the identity (all tangent spaces are the symmetric matrices).
Riemannian Hessian, from the Christoffel term -sym(U X^{-1} V) of this metric:
Hess f(X)[U] = X sym(H) X + sym(U sym(G) X) with G = egrad, H = ehvp.

`HermitianPositiveDefinite(n)` is the complex case (Pymanopt's): the same formulas with X^H for
X^T, sym the Hermitian part and the metric Re tr(X^{-1} U X^{-1} V).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from manifold_opt.manifolds._matrix import adjoint, sym, transpose
from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_positive_int


def symmetric_function(a: jax.Array, fn) -> jax.Array:
    """fn applied to the eigenvalues of the symmetric (Hermitian) a: V diag(fn(w)) V^H."""
    w, v = jnp.linalg.eigh(a)
    return (v * fn(w).astype(v.dtype)[..., None, :]) @ adjoint(v)


def _whiten(chol: jax.Array, u: jax.Array) -> jax.Array:
    """L^{-1} U L^{-H} for the lower Cholesky factor L."""
    left = solve_triangular(chol, u, lower=True)
    return adjoint(solve_triangular(chol, adjoint(left), lower=True))


@dataclasses.dataclass(frozen=True)
class SymmetricPositiveDefinite(Manifold):
    """n x n symmetric positive definite matrices with the affine-invariant metric."""

    n: int

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
        """expm of a symmetric Gaussian matrix with entries of variance 1/n."""
        g = jax.random.normal(key, tuple(batch_shape) + self.shape, dtype)
        return symmetric_function(sym(g) / math.sqrt(self.n), jnp.exp)

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return sym(u)

    def egrad_to_rgrad(self, x, egrad):
        self.check_points(x=x, egrad=egrad)
        return x @ sym(egrad) @ x

    def inner(self, x, u, v):
        self.check_points(x=x, u=u, v=v)
        chol = jnp.linalg.cholesky(x)
        return jnp.real(jnp.sum(_whiten(chol, u) * transpose(_whiten(chol, v)), axis=(-2, -1)))

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        u = sym(u)
        w = solve_triangular(jnp.linalg.cholesky(x), u, lower=True)
        return sym(x + u + adjoint(w) @ w / 2)

    def transport(self, x, y, v):
        self.check_points(x=x, y=y, v=v)
        return sym(v)

    def project(self, x):
        """Nearest symmetric matrix with eigenvalues floored at eps * max |eigenvalue|."""
        self.check_point(x)
        s = sym(x)
        w, v = jnp.linalg.eigh(s)
        floor = jnp.finfo(x.dtype).eps * jnp.max(jnp.abs(w), axis=-1, keepdims=True)
        return sym((v * jnp.maximum(w, floor).astype(v.dtype)[..., None, :]) @ adjoint(v))

    def feasibility(self, x):
        """||X - X^H||_F plus the negative part of the smallest eigenvalue of sym(X)."""
        self.check_point(x)
        asym = jnp.linalg.norm(x - adjoint(x), axis=(-2, -1))
        return asym + jnp.maximum(-jnp.linalg.eigvalsh(sym(x))[..., 0], 0)

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        chol = jnp.linalg.cholesky(x)
        return sym(chol @ symmetric_function(sym(_whiten(chol, u)), jnp.exp) @ adjoint(chol))

    def log(self, x, y):
        self.check_points(x=x, y=y)
        chol = jnp.linalg.cholesky(x)
        return sym(chol @ symmetric_function(sym(_whiten(chol, y)), jnp.log) @ adjoint(chol))

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        w = jnp.linalg.eigvalsh(sym(_whiten(jnp.linalg.cholesky(x), y)))
        return jnp.sqrt(jnp.sum(jnp.log(w) ** 2, axis=-1))

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return x @ sym(ehvp) @ x + sym(u @ sym(egrad) @ x)


@dataclasses.dataclass(frozen=True)
class HermitianPositiveDefinite(SymmetricPositiveDefinite):
    """n x n Hermitian positive definite matrices (complex64 / complex128), affine-invariant
    metric; real dimension n^2."""

    @property
    def dim(self):
        return self.n**2

    def random_point(self, key, dtype=None, batch_shape=()):
        return super().random_point(key, check_complex_dtype("HermitianPositiveDefinite", dtype), batch_shape)


def _unit_determinant(x: jax.Array) -> jax.Array:
    """x / det(x)^(1/n) for positive definite x."""
    scale = jnp.exp(-jnp.linalg.slogdet(x)[1] / x.shape[-1])
    return x * scale.astype(x.dtype)[..., None, None]


def _real_trace(a: jax.Array) -> jax.Array:
    return jnp.real(jnp.trace(a, axis1=-2, axis2=-1))


@dataclasses.dataclass(frozen=True)
class SpecialHermitianPositiveDefinite(HermitianPositiveDefinite):
    """Hermitian positive definite matrices of determinant 1 (Pymanopt's), a totally geodesic
    submanifold of HPD(n) (exp_X(U) has det X exp(tr X^{-1} U)), real dimension n^2 - 1.

    The normal space at X is spanned by X (<X, V>_X = tr X^{-1} V), so
    proj(X, V) = herm(V) - (Re tr(X^{-1} herm V) / n) X; exp, log and dist are HPD's (rescaled to
    det 1 against rounding), the retraction HPD's divided by det^(1/n), and, the submanifold being
    totally geodesic, the Riemannian Hessian is proj of HPD's.
    """

    @property
    def dim(self):
        return self.n**2 - 1

    def random_point(self, key, dtype=None, batch_shape=()):
        return _unit_determinant(super().random_point(key, dtype, batch_shape))

    def proj(self, x, u):
        u = super().proj(x, u)
        t = _real_trace(jnp.linalg.solve(x, u)) / self.n
        return u - t.astype(x.dtype)[..., None, None] * x

    def egrad_to_rgrad(self, x, egrad):
        return self.proj(x, super().egrad_to_rgrad(x, egrad))

    def retract(self, x, u):
        return _unit_determinant(super().retract(x, u))

    def transport(self, x, y, v):
        self.check_points(x=x, y=y, v=v)
        return self.proj(y, v)

    def project(self, x):
        return _unit_determinant(super().project(x))

    def feasibility(self, x):
        """HPD's residual plus |log det X|."""
        return super().feasibility(x) + jnp.abs(jnp.linalg.slogdet(x)[1])

    def exp(self, x, u):
        return _unit_determinant(super().exp(x, u))

    def log(self, x, y):
        return self.proj(x, super().log(x, y))

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        return self.proj(x, super().ehess_to_rhess(x, egrad, ehvp, u))

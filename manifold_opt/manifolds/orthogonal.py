"""The orthogonal group O(n) = {X : X^T X = I}, or SO(n) (det X = +1) when `special`, and the
unitary group U(n) = {X : X^H X = I} (`UnitaryGroup`: the same formulas with X^H for X^T).

Tangent vectors at X are ambient matrices X W with W skew-symmetric; proj(X, U) = X skew(X^T U)
and the metric is tr(U^T V) (bi-invariant). Retractions, with W = skew(X^T U):
"qr" (Q of X + U, diag(R) > 0), "polar" ((X + U) ((X + U)^T (X + U))^{-1/2}),
"cayley" (X cayley(W / 2) = X (I - W/2)^{-1} (I + W/2)), "exp" (X expm(W), the geodesic).
All four keep det X, so SO(n) is preserved.

log_X(Y) = X L with L = logm(X^T Y) skew. JAX has no general logm; for an orthogonal Q the parts
S = (Q + Q^T)/2 and A = (Q - Q^T)/2 commute (Q is normal), and on each rotation block
Q = [[c, -s], [s, c]] with c = cos t, s = sin t: L = t J = A t / sin t. Hence

    L = A g(S),   g(c) = arccos(c) / sqrt(1 - c^2)  (g -> 1 as c -> 1),

evaluated through an eigendecomposition of S (matmuls and eigh only, GPU friendly). Valid when
X^T Y has no eigenvalue -1 (rotation angles below pi), which excludes X, Y in different
components of O(n).

Riemannian Hessian: proj(X, ehvp - U sym(X^T egrad)), as on St(n, n) with the Euclidean metric.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from manifold_opt import linalg
from manifold_opt.manifolds._matrix import (
    adjoint,
    orthonormality_error,
    polar_by_gram,
    qr_positive,
    skew,
    sym,
    weingarten_orthonormal,
)
from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_option, check_positive_int

RETRACTIONS = ("qr", "polar", "cayley", "exp")


def _theta_over_sin(c: jax.Array) -> jax.Array:
    """g(c) = arccos(c) / sqrt(1 - c^2) for c in [-1, 1), smooth at c = 1 (series 1 + t^2/6)."""
    theta = jnp.arccos(jnp.clip(c, -1, 1))
    small = theta < 1e-3
    safe = jnp.where(small, 1.0, theta)
    return jnp.where(small, 1 + theta**2 / 6, safe / jnp.sin(safe))


def skew_log_orthogonal(q: jax.Array) -> jax.Array:
    """Principal logarithm L (skew) of an orthogonal (or unitary: L skew-Hermitian) q (..., n, n)
    without eigenvalue -1."""
    s, a = sym(q), skew(q)
    c, v = jnp.linalg.eigh(s)
    g = (v * _theta_over_sin(c).astype(v.dtype)[..., None, :]) @ adjoint(v)
    return skew(a @ g)


def _flip_first_column_if(x: jax.Array, flip: jax.Array) -> jax.Array:
    sign = jnp.where(flip, -1, 1).astype(x.dtype)
    return x.at[..., :, 0].multiply(sign[..., None])


@dataclasses.dataclass(frozen=True)
class OrthogonalGroup(Manifold):
    """n x n orthogonal matrices (rotations only when `special`)."""

    n: int
    special: bool = False
    retraction: str = "qr"

    def __post_init__(self):
        owner = type(self).__name__
        n = check_positive_int(owner, "n", self.n)
        if not isinstance(self.special, bool):
            raise ValueError(f"{owner}: special must be a bool, got {self.special!r}")
        check_option(owner, "retraction", self.retraction, RETRACTIONS)
        object.__setattr__(self, "n", n)

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dim(self):
        return self.n * (self.n - 1) // 2

    def random_point(self, key, dtype=None, batch_shape=()):
        """Haar-distributed on O(n) (QR of a Gaussian, diag(R) > 0); on SO(n) the first column
        is negated where det = -1."""
        x = qr_positive(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))
        if self.special:
            x = _flip_first_column_if(x, jnp.linalg.det(x) < 0)
        return x

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return x @ skew(adjoint(x) @ u)

    def retract(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        if self.retraction == "qr":
            return qr_positive(x + u)
        if self.retraction == "polar":
            return polar_by_gram(x + u)
        w = skew(adjoint(x) @ u)
        if self.retraction == "cayley":
            return x @ linalg.cayley(w / 2)
        return x @ expm(w)

    def project(self, x):
        """Nearest orthogonal matrix (polar factor); for SO(n) the nearest rotation
        U diag(1, ..., 1, det(U V^T)) V^T (Kabsch / orthogonal Procrustes)."""
        self.check_point(x)
        if not self.special:
            return linalg.polar(x)
        u, _, vh = jnp.linalg.svd(x)
        d = jnp.sign(jnp.linalg.det(u) * jnp.linalg.det(vh))
        u = u.at[..., :, -1].multiply(d[..., None])
        return u @ vh

    def feasibility(self, x):
        """||X^T X - I||_F, plus |det X - 1| on SO(n)."""
        self.check_point(x)
        err = orthonormality_error(x)
        if self.special:
            err = err + jnp.abs(jnp.linalg.det(x) - 1)
        return err

    def exp(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return x @ expm(skew(adjoint(x) @ u))

    def log(self, x, y):
        self.check_point(x)
        self.check_point(y, "y")
        return x @ skew_log_orthogonal(adjoint(x) @ y)

    @property
    def typical_dist(self):
        return math.pi * math.sqrt(self.n)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, weingarten_orthonormal(x, egrad, ehvp, u))


@dataclasses.dataclass(frozen=True)
class UnitaryGroup(OrthogonalGroup):
    """n x n unitary matrices (X^H X = I), complex64 / complex128: the formulas above with X^H for
    X^T, tangent vectors X W with W skew-Hermitian, metric Re tr(U^H V) (Pymanopt's
    `UnitaryGroup`). The logarithm's formula holds as it is: X^H Y is normal, its Hermitian part
    has eigenvalues cos(t) where X^H Y has exp(i t)."""

    def __post_init__(self):
        if self.special is not False:
            raise ValueError(f"UnitaryGroup: special (SU(n)) is not supported, got special={self.special!r}")
        super().__post_init__()

    @property
    def dim(self):
        return self.n**2

    def random_point(self, key, dtype=None, batch_shape=()):
        """Haar-distributed (QR of a complex Gaussian, diag(R) > 0)."""
        return super().random_point(key, check_complex_dtype("UnitaryGroup", dtype), batch_shape)

"""The unit sphere S^{n-1} = {x in R^n : ||x|| = 1}, with the metric of R^n.

proj(x, u) = u - <x, u> x; retraction (x + u) / ||x + u||; closed forms

    exp_x(u) = cos(|u|) x + sin(|u|) u / |u|,
    log_x(y) = theta (y - <x, y> x) / ||y - <x, y> x||,   theta = dist(x, y) = 2 arcsin(|y - x| / 2)

(arcsin of the chord is accurate for nearby points, unlike arccos <x, y>). The functions below
take the axis that holds the vector, so the Oblique manifold (columnwise spheres) shares them.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

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


class _GreatCircles:
    """exp, log and dist along great circles, shared by the sphere and its subspace sections
    (a great circle through x along a tangent u stays in any subspace holding x and u)."""

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        return sphere_exp(x, u)

    def log(self, x, y):
        self.check_points(x=x, y=y)
        return sphere_log(x, y)

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        return sphere_dist(x, y)[..., 0]

    @property
    def typical_dist(self):
        return math.pi


@dataclasses.dataclass(frozen=True)
class Sphere(_GreatCircles, Manifold):
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

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return sphere_ehess_to_rhess(x, egrad, ehvp, u)


def _orthonormal_basis(owner: str, matrix, complement: bool) -> np.ndarray:
    """An orthonormal basis (n, r) of the column span of `matrix` (n, m), or of its orthogonal
    complement, from an SVD with NumPy's matrix_rank tolerance."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < a.shape[1] or a.size == 0:
        raise ValueError(f"{owner}: matrix must be a 2-D array (n, m) with n >= m >= 1, got shape {a.shape}")
    u, s, _ = np.linalg.svd(a)
    rank = int(np.sum(s > s.max(initial=0) * max(a.shape) * np.finfo(a.dtype).eps))
    basis = u[:, rank:] if complement else u[:, :rank]
    if basis.shape[1] == 0:
        raise ValueError(f"{owner}: the subspace is {{0}}, so the manifold is empty")
    return basis


@dataclasses.dataclass(frozen=True)
class SphereSubspaceIntersection(_GreatCircles, Manifold):
    """Unit vectors of R^n in the column span of a matrix (Pymanopt's): the unit sphere of that
    r-dimensional subspace, dimension r - 1 (isolated points +-q when r = 1).

    With Q an orthonormal basis of the subspace: proj(x, u) = Q Q^T u - <x, Q Q^T u> x, the
    retraction (x + u) / ||x + u||, and exp, log and dist the sphere's (a great circle through
    x along a tangent u stays in the subspace). Riemannian Hessian proj(x, ehvp) - <x, egrad> u.
    The basis is stored as nested tuples, so the manifold stays hashable (a jit static argument).
    """

    basis: tuple

    def __init__(self, matrix):
        basis = _orthonormal_basis(type(self).__name__, matrix, self._complement)
        object.__setattr__(self, "basis", tuple(map(tuple, basis.tolist())))

    _complement = False

    @functools.cached_property
    def _q(self) -> np.ndarray:
        return np.array(self.basis)

    def _onto_subspace(self, u):
        q = jnp.asarray(self._q, u.dtype)
        return (u @ q) @ q.T

    @property
    def shape(self):
        return (len(self.basis),)

    @property
    def dim(self):
        return len(self.basis[0]) - 1

    def random_point(self, key, dtype=None, batch_shape=()):
        y = jax.random.normal(key, tuple(batch_shape) + (len(self.basis[0]),), dtype)
        return sphere_normalize(y) @ jnp.asarray(self._q, y.dtype).T

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return sphere_proj(x, self._onto_subspace(u))

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return sphere_normalize(x + u)

    def project(self, x):
        """The nearest point: the normalized projection onto the subspace."""
        self.check_point(x)
        return sphere_normalize(self._onto_subspace(x))

    def feasibility(self, x):
        """| ||x|| - 1 | plus the distance of x from the subspace."""
        self.check_point(x)
        return sphere_feasibility(x)[..., 0] + jnp.linalg.norm(x - self._onto_subspace(x), axis=-1)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return sphere_ehess_to_rhess(x, egrad, self._onto_subspace(ehvp), u)


@dataclasses.dataclass(frozen=True, init=False)
class SphereSubspaceComplementIntersection(SphereSubspaceIntersection):
    """Unit vectors of R^n orthogonal to the column span of a matrix (Pymanopt's): the unit
    sphere of the orthogonal complement, dimension n - rank - 1; formulas as in
    `SphereSubspaceIntersection` with Q a basis of the complement."""

    _complement = True

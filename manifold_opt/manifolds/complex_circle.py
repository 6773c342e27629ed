"""The complex circle (S^1)^n = {z in C^n : |z_i| = 1} (Pymanopt's `ComplexCircle`), a Riemannian
submanifold of C^n = R^2n with the metric <u, v> = Re sum_i conj(u_i) v_i. Entrywise:

    proj(z, u) = u - Re(conj(u) z) z,   retract(z, u) = (z + u) / |z + u|,
    exp_z(u) = cos|u| z + sin|u| u / |u|,
    log_z(y) = theta v / |v|,  v = proj(z, y - z),  theta = 2 arcsin(|y - z| / 2),
    dist(z, y) = ||theta||_2,
    Hess f(z)[u] = proj(z, H - Re(z conj(G)) u)

with G = df/dRe z + i df/dIm z the Euclidean gradient (`jax.grad` returns its conjugate; the
solvers conjugate it). Arrays are complex64 or complex128.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_positive_int
from manifold_opt.manifolds.sphere import _safe_divide


def _normalize(z):
    return z / jnp.abs(z)


@dataclasses.dataclass(frozen=True)
class ComplexCircle(Manifold):
    """n unit-modulus complex numbers."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("ComplexCircle", "n", self.n))

    @property
    def shape(self):
        return (self.n,)

    @property
    def dim(self):
        return self.n

    @property
    def typical_dist(self):
        return math.pi * math.sqrt(self.n)

    def random_point(self, key, dtype=None, batch_shape=()):
        dtype = check_complex_dtype("ComplexCircle", dtype)
        return _normalize(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return u - jnp.real(jnp.conj(u) * x) * x

    def retract(self, x, u):
        self.check_points(x=x, u=u)
        return _normalize(x + u)

    def project(self, x):
        self.check_point(x)
        return _normalize(x)

    def feasibility(self, x):
        """max_i | |z_i| - 1 |."""
        self.check_point(x)
        return jnp.max(jnp.abs(jnp.abs(x) - 1), axis=-1)

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        t = jnp.abs(u)
        return _normalize(jnp.cos(t) * x + jnp.sin(t) * _safe_divide(u, t))

    def _angles(self, x, y):
        return 2 * jnp.arcsin(jnp.clip(jnp.abs(y - x) / 2, 0, 1))

    def log(self, x, y):
        self.check_points(x=x, y=y)
        v = self.proj(x, y - x)
        return self._angles(x, y) * _safe_divide(v, jnp.abs(v))

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        return jnp.linalg.norm(self._angles(x, y), axis=-1)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, ehvp - jnp.real(x * jnp.conj(egrad)) * u)

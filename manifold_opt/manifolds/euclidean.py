"""Euclidean space R^shape: the unconstrained case, with the identity retraction; and C^shape
(`ComplexEuclidean`), the same with the real inner product Re sum(conj(u) v)."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_complex_dtype, check_positive_int


@dataclasses.dataclass(frozen=True)
class Euclidean(Manifold):
    """All arrays of shape `shape`; exp = retract = x + u, log = y - x."""

    dims: tuple[int, ...]

    def __init__(self, shape):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        for d in shape:
            check_positive_int(type(self).__name__, "shape", d)
        object.__setattr__(self, "dims", tuple(int(d) for d in shape))

    @property
    def shape(self):
        return self.dims

    @property
    def dim(self):
        return math.prod(self.dims)

    def random_point(self, key, dtype=None, batch_shape=()):
        return jax.random.normal(key, tuple(batch_shape) + self.shape, dtype)

    def proj(self, x, u):
        return u

    def retract(self, x, u):
        return x + u

    def transport(self, x, y, v):
        return v

    def project(self, x):
        return x

    def feasibility(self, x):
        return jnp.zeros(x.shape[: x.ndim - len(self.shape)], x.dtype)

    def exp(self, x, u):
        return x + u

    def log(self, x, y):
        return y - x

    @property
    def typical_dist(self):
        return math.sqrt(self.dim)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        return ehvp


@dataclasses.dataclass(frozen=True, init=False)
class ComplexEuclidean(Euclidean):
    """All complex arrays of shape `shape` (complex64 / complex128), as R^(2 size) (Pymanopt's
    `ComplexEuclidean`)."""

    @property
    def dim(self):
        return 2 * math.prod(self.dims)

    def random_point(self, key, dtype=None, batch_shape=()):
        return super().random_point(key, check_complex_dtype("ComplexEuclidean", dtype), batch_shape)

    def feasibility(self, x):
        return jnp.real(super().feasibility(x))

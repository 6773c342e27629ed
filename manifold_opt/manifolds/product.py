"""Product manifold M_1 x ... x M_k: points, tangent vectors and gradients are tuples with one
entry per factor; the metric is the sum of the factors' metrics and every operation acts
factorwise. Leading batch dimensions must agree across factors."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold


@dataclasses.dataclass(frozen=True)
class Product(Manifold):
    """The product of the given manifolds (at least one)."""

    manifolds: tuple

    def __init__(self, *manifolds):
        if not manifolds:
            raise ValueError("Product: manifolds must be at least one Manifold, got none")
        for i, m in enumerate(manifolds):
            if not isinstance(m, Manifold):
                raise ValueError(f"Product: manifolds[{i}] must be a Manifold, got {type(m).__name__}")
        object.__setattr__(self, "manifolds", tuple(manifolds))

    @property
    def shape(self):
        """The tuple of the factors' shapes."""
        return tuple(m.shape for m in self.manifolds)

    @property
    def dim(self):
        return sum(m.dim for m in self.manifolds)

    @property
    def point_structure(self):
        return jax.tree_util.treedef_tuple([m.point_structure for m in self.manifolds])

    def batch_shape(self, x):
        return self.manifolds[0].batch_shape(x[0])

    def zero_tangent(self, x):
        return self._map("zero_tangent", x=x)

    def check_point(self, x, name="x"):
        if not isinstance(x, (tuple, list)) or len(x) != len(self.manifolds):
            got = type(x).__name__ + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else "")
            raise ValueError(
                f"Product: {name} must be a tuple of {len(self.manifolds)} arrays, got {got}"
            )
        for i, (m, xi) in enumerate(zip(self.manifolds, x)):
            m.check_point(xi, f"{name}[{i}]")

    def _map(self, method, **args):
        """Checks each named argument, then applies `method` factorwise."""
        for name, arg in args.items():
            self.check_point(arg, name)
        parts = zip(self.manifolds, *args.values())
        return tuple(getattr(m, method)(*factor_args) for m, *factor_args in parts)

    def _sum(self, method, **args):
        return sum(self._map(method, **args))

    def random_point(self, key, dtype=None, batch_shape=()):
        keys = jax.random.split(key, len(self.manifolds))
        return tuple(m.random_point(k, dtype, batch_shape) for m, k in zip(self.manifolds, keys))

    def random_tangent(self, key, x):
        """A random unit tangent vector (Gaussian in every factor, projected, normalized jointly)."""
        self.check_point(x)
        keys = jax.random.split(key, len(self.manifolds))
        u = self.proj(x, tuple(jax.random.normal(k, xi.shape, xi.dtype) for k, xi in zip(keys, x)))
        norm = self.norm(x, u)
        scale = jnp.where(norm > 0, norm, 1)
        return tuple(
            ui / scale[(...,) + (None,) * len(m.shape)] for m, ui in zip(self.manifolds, u)
        )

    def proj(self, x, u):
        return self._map("proj", x=x, u=u)

    def egrad_to_rgrad(self, x, egrad):
        return self._map("egrad_to_rgrad", x=x, egrad=egrad)

    def inner(self, x, u, v):
        return self._sum("inner", x=x, u=u, v=v)

    def retract(self, x, u):
        return self._map("retract", x=x, u=u)

    def transport(self, x, y, v):
        return self._map("transport", x=x, y=y, v=v)

    def retract_transport(self, x, u, v):
        pairs = self._map("retract_transport", x=x, u=u, v=v)
        return tuple(y for y, _ in pairs), tuple(w for _, w in pairs)

    def project(self, x):
        return self._map("project", x=x)

    def feasibility(self, x):
        """Sum of the factors' residuals."""
        return self._sum("feasibility", x=x)

    def exp(self, x, u):
        return self._map("exp", x=x, u=u)

    def log(self, x, y):
        return self._map("log", x=x, y=y)

    def dist(self, x, y):
        return jnp.sqrt(sum(d**2 for d in self._map("dist", x=x, y=y)))

    @property
    def typical_dist(self):
        return math.sqrt(sum(m.typical_dist**2 for m in self.manifolds))

    @property
    def has_hessian(self):
        return all(m.has_hessian for m in self.manifolds)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        return self._map("ehess_to_rhess", x=x, egrad=egrad, ehvp=ehvp, u=u)

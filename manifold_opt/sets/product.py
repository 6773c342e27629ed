"""The Cartesian product C_1 x ... x C_m of constraint sets: a point is a tuple (x_1, ..., x_m).

Everything acts blockwise: lmo(g) = (lmo_1(g_1), ..., lmo_m(g_m)) (a linear function over a
product is minimized block by block), project likewise; feasibility sums the blocks' residuals.
`mo.solvers.frank_wolfe(..., variant="block_coordinate")` updates one block per iteration
(Lacoste-Julien, Jaggi, Schmidt & Pletscher 2013).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from manifold_opt.sets.base import ConvexSet


@dataclasses.dataclass(frozen=True, init=False)
class ProductSet(ConvexSet):
    """ProductSet(C_1, ..., C_m): points are tuples with one point of each C_i."""

    sets: tuple = ()

    def __init__(self, *sets):
        if not sets or not all(isinstance(c, ConvexSet) for c in sets):
            raise ValueError(f"ProductSet: expected one or more constraint sets of mo.sets, got {sets!r}")
        object.__setattr__(self, "sets", tuple(sets))

    @property
    def lmo_is_exact(self) -> bool:
        return all(c.lmo_is_exact for c in self.sets)

    def check_point(self, x, name: str = "x") -> None:
        if not isinstance(x, (tuple, list)) or len(x) != len(self.sets):
            raise ValueError(f"ProductSet: {name} must be a tuple of {len(self.sets)} points, got {type(x).__name__}")
        for i, (c, xi) in enumerate(zip(self.sets, x)):
            c.check_point(xi, f"{name}[{i}]")

    def _blockwise(self, method, *args):
        return tuple(getattr(c, method)(*a) for c, *a in zip(self.sets, *args))

    def lmo(self, g):
        self.check_point(g, "g")
        return self._blockwise("lmo", g)

    def lmo_exact(self, g):
        self.check_point(g, "g")
        return self._blockwise("lmo_exact", g)

    def lmo_factored(self, g, warm=None, exact: bool = False):
        self.check_point(g, "g")
        warm = (None,) * len(self.sets) if warm is None else warm
        return tuple(zip(*(c.lmo_factored(gi, wi, exact) for c, gi, wi in zip(self.sets, g, warm))))

    def vertex(self, factors):
        return self._blockwise("vertex", factors)

    def project(self, x):
        self.check_point(x)
        return self._blockwise("project", x)

    def feasibility(self, x):
        self.check_point(x)
        return sum(jnp.max(r) for r in self._blockwise("feasibility", x))

    def diameter(self, shape=()) -> float:
        """sqrt(sum_i diam(C_i)^2) for `shape` a tuple of the blocks' shapes."""
        return math.sqrt(sum(c.diameter(s) ** 2 for c, s in zip(self.sets, shape)))

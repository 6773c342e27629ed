"""The interface every constraint set implements.

A constraint set C is a frozen dataclass (hashable, safe as a `jax.jit` static argument and as a
leaf of a geometry tree, see `manifold_opt.manifolds.tree`). Its methods are pure functions of
arrays that preserve dtype:

- `lmo(g)`: the linear minimization oracle argmin_{s in C} <g, s> (Frank-Wolfe's only access);
  where it is approximate (`lmo_is_exact` False), `lmo_exact(g)` is exact and slower;
  `lmo_factored(g, warm)` gives the same vertex in a compact form (`vertex(factors)` expands it:
  the nuclear ball's rank-one vertices as two vectors) with the oracle's warm start,
- `project(x)`: the Euclidean projection argmin_{y in C} ||y - x|| where it is tractable,
- `feasibility(x)`: a nonnegative residual, 0 exactly on C,
- `diameter(shape)`: max ||x - y||_2 over C for points of that shape (the rescaling constant of
  stochastic Frank-Wolfe, Pokutta et al. 2020).

Polytopes with a vertex encoding (Simplex, L1Ball, ConvexHull, KSparse, Hypersimplex, BirkhoffPolytope) also
expose `atom_code`, `atom` and `atom_scores`, which the away-step and pairwise variants of
`mo.solvers.frank_wolfe` use to keep a fixed-capacity active set of vertices as integer codes.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp


# Default active-set capacity cap for sets with combinatorially many vertices (K-sparse, Birkhoff).
MAX_ACTIVE_ATOMS = 2048


@dataclasses.dataclass(frozen=True)
class ConvexSet:
    """Base class of the sets in `mo.sets`."""

    # Sets whose vertices have integer codes (away-step / pairwise Frank-Wolfe) set this True.
    has_atoms = False
    # False where `lmo` is approximate (power iteration, Newton-Schulz); `lmo_exact` is then exact.
    lmo_is_exact = True

    def check_point(self, x, name: str = "x") -> None:
        """ValueError (at trace time) unless x has a shape this set accepts."""
        if not hasattr(x, "shape"):
            raise ValueError(f"{type(self).__name__}: {name} must be an array, got {type(x).__name__}")

    def lmo(self, g):
        raise NotImplementedError

    def lmo_exact(self, g):
        """An exact LMO (Frank-Wolfe certifies its duality gap with it when `lmo` is approximate)."""
        return self.lmo(g)

    def lmo_factored(self, g, warm=None, exact: bool = False):
        """(factors, warm): lmo(g) (lmo_exact(g) if `exact`) as `vertex(factors)`, and the warm
        start for the next call (None for oracles without one). Frank-Wolfe carries the factors,
        so a structured vertex is expanded only inside the fused passes that use it; here the
        factors are the vertex itself."""
        return (self.lmo_exact(g) if exact else self.lmo(g)), None

    def vertex(self, factors):
        """The vertex that `lmo_factored` returned as `factors`, as a point."""
        return factors

    def project(self, x):
        raise NotImplementedError(f"{type(self).__name__} has no tractable Euclidean projection")

    def feasibility(self, x):
        raise NotImplementedError

    def diameter(self, shape=()) -> float:
        raise NotImplementedError

    # ----- vertex codes (polytopes only) ----------------------------------------------------
    def atom_code(self, g):
        """The int32 code of the vertex lmo(g)."""
        raise NotImplementedError(f"{type(self).__name__} has no vertex encoding (use variant='vanilla')")

    def atom(self, code, like):
        """The vertex with `code`, as a point shaped and typed like `like`."""
        raise NotImplementedError

    def atom_scores(self, g, codes):
        """<g, atom(c)> for each code c stacked on the leading axis of `codes`."""
        raise NotImplementedError

    def max_atoms(self, like) -> int:
        """Default capacity of an active set for points like `like`: the number of vertices when
        they are few (Simplex, L1Ball, ConvexHull), else min(2 (dim + 1), MAX_ACTIVE_ATOMS): the
        active-set bookkeeping costs O(capacity) per iteration."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Polytope(ConvexSet):
    """A set whose LMO returns a coded vertex: lmo(g) = atom(atom_code(g))."""

    has_atoms = True

    def lmo(self, g):
        self.check_point(g, "g")
        return self.atom(self.atom_code(g), g)


@dataclasses.dataclass(frozen=True)
class RadiusSet(ConvexSet):
    """A set scaled by a positive `radius` (validated at construction)."""

    radius: float = 1.0

    def __post_init__(self):
        check_radius(type(self).__name__, self.radius)


def jitted(method):
    """`method(self, *arrays)` compiled once per set and input shapes (the set is static), so eager
    calls do not retrace the loops inside (power iteration, Hungarian algorithm, bisection)."""
    return functools.wraps(method)(jax.jit(method, static_argnums=0))


def check_radius(owner: str, radius) -> float:
    """`radius` as a float, or a ValueError naming `owner`'s argument."""
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"{owner}: radius must be a positive finite number, got {radius!r}")
    return float(radius)


def check_matrix(owner: str, x, name: str, square: bool = False) -> None:
    """ValueError unless x has shape (..., m, n) (m == n when `square`)."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 2 or (square and shape[-1] != shape[-2]):
        kind = "(..., n, n)" if square else "(..., m, n)"
        raise ValueError(f"{owner}: {name} must have shape {kind}, got {shape if shape is not None else type(x).__name__}")


def vdot(a, b):
    """<a, b> summed over every entry (arrays or pytrees)."""
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


"""The convex hull of finitely many points (FW-Merging's set: a hull of model checkpoints).

conv{v_1, ..., v_m} with the vertices stacked on the leading axis of every leaf of a pytree, so a
point is a pytree shaped like one vertex. LMO: the vertex v_i minimizing <g, v_i> (summed over
leaves). Projection and feasibility need a quadratic program and are not offered.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.sets.base import Polytope


@dataclasses.dataclass(frozen=True, eq=False)
class ConvexHull(Polytope):
    """conv of the m vertices stacked on the leading axis of each leaf of `vertices` (arrays or
    any pytree). Vertex codes are their indices. Hashed and compared by identity."""

    vertices: object = None

    __eq__ = object.__eq__  # identity: the arrays it holds are not hashable
    __hash__ = object.__hash__

    def __post_init__(self):
        leaves = jax.tree_util.tree_leaves(self.vertices)
        if not leaves or any(getattr(v, "ndim", 0) < 1 for v in leaves):
            raise ValueError("ConvexHull: vertices must be a non-empty array or pytree of arrays stacked on a leading axis")
        counts = {v.shape[0] for v in leaves}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"ConvexHull: every leaf of vertices needs the same nonzero leading size, got {sorted(counts)}")

    @property
    def num_vertices(self) -> int:
        return jax.tree_util.tree_leaves(self.vertices)[0].shape[0]

    @property
    def covers_tree(self) -> bool:
        """True when a point is a pytree (several leaves) rather than a single array."""
        return not hasattr(self.vertices, "shape")

    def check_point(self, x, name: str = "x") -> None:
        expected = jax.tree_util.tree_map(lambda v: v.shape[1:], self.vertices)
        try:
            got = jax.tree_util.tree_map(lambda a: tuple(a.shape), x)
        except AttributeError:
            got = None
        if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(expected) or got != expected:
            raise ValueError(f"ConvexHull: {name} must be shaped like one vertex {expected}, got {got}")

    def scores(self, g):
        """(m,) inner products <g, v_i>."""
        self.check_point(g, "g")
        flat = [v.reshape(v.shape[0], -1) @ a.reshape(-1).astype(v.dtype) for v, a in
                zip(jax.tree_util.tree_leaves(self.vertices), jax.tree_util.tree_leaves(g))]
        return sum(flat)

    def diameter(self, shape=()) -> float:
        """The largest vertex distance (computed in NumPy, so it is a constant under jit)."""
        leaves = jax.tree_util.tree_leaves(self.vertices)
        flat = np.concatenate([np.asarray(v, np.float64).reshape(v.shape[0], -1) for v in leaves], axis=1)
        sq = np.sum(flat**2, axis=1)
        return float(np.sqrt(max(np.max(sq[:, None] + sq[None, :] - 2 * flat @ flat.T), 0.0)))

    def atom_code(self, g):
        return jnp.argmin(self.scores(g)).astype(jnp.int32)

    def atom(self, code, like):
        return jax.tree_util.tree_map(lambda v, a: v[code].astype(a.dtype), self.vertices, like)

    def atom_scores(self, g, codes):
        return self.scores(g)[codes]

    def max_atoms(self, like) -> int:
        return self.num_vertices

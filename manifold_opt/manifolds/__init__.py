"""Riemannian manifolds: static, hashable geometry objects (see base.Manifold)."""
from manifold_opt.manifolds.base import Manifold
from manifold_opt.manifolds.euclidean import Euclidean
from manifold_opt.manifolds.tree import check_manifold_tree, manifold_tree, map_manifold_tree

__all__ = ["Euclidean", "Manifold", "check_manifold_tree", "manifold_tree", "map_manifold_tree"]

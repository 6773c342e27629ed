"""Riemannian manifolds: static, hashable geometry objects (see base.Manifold)."""
from manifold_opt.manifolds.base import Manifold
from manifold_opt.manifolds.euclidean import Euclidean

__all__ = ["Euclidean", "Manifold"]

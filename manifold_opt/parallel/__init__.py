"""Mesh and sharding helpers, distributed orthogonalization."""
from manifold_opt.parallel.orthogonalize import sharded_orthogonalizer

__all__ = ["sharded_orthogonalizer"]

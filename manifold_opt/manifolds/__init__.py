"""Riemannian manifolds: static, hashable geometry objects (see base.Manifold)."""
from manifold_opt.manifolds.base import Manifold
from manifold_opt.manifolds.birkhoff import Birkhoff
from manifold_opt.manifolds.euclidean import Euclidean
from manifold_opt.manifolds.grassmann import Grassmann
from manifold_opt.manifolds.oblique import Oblique
from manifold_opt.manifolds.orthogonal import OrthogonalGroup
from manifold_opt.manifolds.product import Product
from manifold_opt.manifolds.sphere import Sphere
from manifold_opt.manifolds.stiefel import Stiefel

__all__ = [
    "Birkhoff",
    "Euclidean",
    "Grassmann",
    "Manifold",
    "Oblique",
    "OrthogonalGroup",
    "Product",
    "Sphere",
    "Stiefel",
]

from manifold_opt.manifolds.tree import check_manifold_tree, manifold_tree, map_manifold_tree  # noqa: E402

__all__ += ["check_manifold_tree", "manifold_tree", "map_manifold_tree"]

from manifold_opt.manifolds.spd import SymmetricPositiveDefinite  # noqa: E402

__all__ += ["SymmetricPositiveDefinite"]

from manifold_opt.manifolds.params import partition_labels, project_params  # noqa: E402

__all__ += ["partition_labels", "project_params"]

"""Riemannian manifolds: static, hashable geometry objects (see base.Manifold), and the manifold
trees that say which parameters live on which manifold (tree.py, params.py)."""
from manifold_opt.manifolds.base import Manifold
from manifold_opt.manifolds.birkhoff import Birkhoff
from manifold_opt.manifolds.complex_circle import ComplexCircle
from manifold_opt.manifolds.euclidean import ComplexEuclidean, Euclidean
from manifold_opt.manifolds.fixed_rank import FixedRankEmbedded
from manifold_opt.manifolds.grassmann import ComplexGrassmann, Grassmann
from manifold_opt.manifolds.hyperbolic import Hyperboloid, PoincareBall
from manifold_opt.manifolds.oblique import Oblique
from manifold_opt.manifolds.orthogonal import OrthogonalGroup, UnitaryGroup
from manifold_opt.manifolds.params import partition_labels, project_params
from manifold_opt.manifolds.positive import Positive
from manifold_opt.manifolds.product import Product
from manifold_opt.manifolds.psd import Elliptope, PSDFixedRank, PSDFixedRankComplex
from manifold_opt.manifolds.spd import (
    HermitianPositiveDefinite,
    SpecialHermitianPositiveDefinite,
    SymmetricPositiveDefinite,
)
from manifold_opt.manifolds.sphere import Sphere, SphereSubspaceComplementIntersection, SphereSubspaceIntersection
from manifold_opt.manifolds.stiefel import Stiefel
from manifold_opt.manifolds.symmetric import SkewSymmetric, SymmetricEuclidean
from manifold_opt.manifolds.tree import check_manifold_tree, manifold_tree, map_manifold_tree

__all__ = [
    "Birkhoff",
    "ComplexCircle",
    "ComplexEuclidean",
    "ComplexGrassmann",
    "Elliptope",
    "Euclidean",
    "FixedRankEmbedded",
    "Grassmann",
    "HermitianPositiveDefinite",
    "Hyperboloid",
    "Manifold",
    "Oblique",
    "OrthogonalGroup",
    "PSDFixedRank",
    "PSDFixedRankComplex",
    "PoincareBall",
    "Positive",
    "Product",
    "SkewSymmetric",
    "SpecialHermitianPositiveDefinite",
    "Sphere",
    "SphereSubspaceComplementIntersection",
    "SphereSubspaceIntersection",
    "Stiefel",
    "SymmetricEuclidean",
    "SymmetricPositiveDefinite",
    "UnitaryGroup",
    "check_manifold_tree",
    "manifold_tree",
    "map_manifold_tree",
    "partition_labels",
    "project_params",
]

"""Convex constraint sets for Frank-Wolfe: linear minimization oracles, projections, feasibility
residuals and diameters. Sets are leaves of the same geometry tree as manifolds
(`mo.manifold_tree(params, {"*/kernel": mo.sets.L2Ball(10.0)})`)."""
from manifold_opt.sets.base import ConvexSet, Polytope
from manifold_opt.sets.hull import ConvexHull
from manifold_opt.sets.matrix import BirkhoffPolytope, Fantope, NuclearNormBall, SpectralNormBall, Spectraplex
from manifold_opt.sets.product import ProductSet
from manifold_opt.sets.sizing import sets_from_init
from manifold_opt.sets.vector import Box, Ellipsoid, Hypersimplex, KNormBall, KSparse, L1Ball, L2Ball, LInfBall, Simplex

__all__ = [
    "BirkhoffPolytope",
    "Box",
    "ConvexHull",
    "ConvexSet",
    "Ellipsoid",
    "Fantope",
    "Hypersimplex",
    "KNormBall",
    "KSparse",
    "L1Ball",
    "L2Ball",
    "LInfBall",
    "NuclearNormBall",
    "Polytope",
    "ProductSet",
    "Simplex",
    "SpectralNormBall",
    "Spectraplex",
    "sets_from_init",
]

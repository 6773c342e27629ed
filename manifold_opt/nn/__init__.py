"""Flax (NNX and linen) building blocks: manifold-aware initializers and parameter metadata,
orthogonally constrained layers. The only package besides experiments/ that imports Flax."""
from manifold_opt.nn.metadata import manifold_init, manifold_tree_of, with_manifold
from manifold_opt.nn.orthogonal import OrthogonalDense
from manifold_opt.nn import linen  # mo.nn.linen: with_manifold, ManifoldBoxed, OrthogonalDense

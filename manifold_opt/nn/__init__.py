"""Flax (NNX and linen) building blocks: manifold-aware initializers and parameter metadata,
orthogonally constrained layers. The only package besides experiments/ that imports Flax.

NNX: `with_manifold(M)` (kernel_init tagging `nnx.Param(value, manifold=M)`), `OrthogonalDense`;
linen (`mo.nn.linen`): `with_manifold(M)` (boxes values in `ManifoldBoxed`), `OrthogonalDense`;
both: `manifold_init(M)` (plain initializer), `manifold_tree_of(model_or_variables)`.
"""
from manifold_opt.nn.metadata import manifold_init, manifold_tree_of, with_manifold
from manifold_opt.nn.orthogonal import OrthogonalDense
from manifold_opt.nn import linen  # mo.nn.linen: with_manifold, ManifoldBoxed, OrthogonalDense

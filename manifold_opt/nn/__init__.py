"""Flax (NNX and linen) building blocks: manifold-aware initializers and parameter metadata,
orthogonally constrained layers. The only package besides experiments/ that imports Flax."""

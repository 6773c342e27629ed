"""manifold_opt: constrained and manifold optimization for JAX, optax and Flax.

    import manifold_opt as mo
"""
from manifold_opt import linalg, manifolds, parallel, solvers, transforms
from manifold_opt.manifolds.tree import manifold_tree
from manifold_opt.transforms import (
    auon,
    conda,
    hybrid_auon,
    muon,
    normuon,
    project_to_tangent,
    retract,
    riemannian_adam,
    riemannian_sgd,
    root,
    scale_by_auon,
    scale_by_conda,
    scale_by_hybrid_auon,
    scale_by_muon,
    scale_by_normuon,
    scale_by_root,
    scale_by_spectral_clip,
    spectral_clip,
)

__version__ = "0.1.0"


def __getattr__(name):
    """`mo.nn` (Flax modules) is imported on first use, so the core never imports Flax."""
    if name == "nn":
        import importlib

        return importlib.import_module("manifold_opt.nn")
    raise AttributeError(f"module 'manifold_opt' has no attribute {name!r}")

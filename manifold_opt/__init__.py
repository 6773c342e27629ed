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

from manifold_opt import merging  # noqa: E402

__version__ = "0.1.0"

from manifold_opt.manifolds.params import partition_labels, project_params  # noqa: E402
from manifold_opt.transforms.partition import riemannian_partition  # noqa: E402


def __getattr__(name):
    """`mo.nn` imports Flax, so it loads on first use and `import manifold_opt` stays Flax-free."""
    if name == "nn":
        import importlib

        return importlib.import_module("manifold_opt.nn")
    raise AttributeError(f"module 'manifold_opt' has no attribute {name!r}")

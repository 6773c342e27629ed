"""manifold_opt: constrained and manifold optimization for JAX, optax and Flax.

    import manifold_opt as mo
"""
from manifold_opt import linalg, manifolds, merging, parallel, sets, solvers, transforms
from manifold_opt.manifolds.params import partition_labels, project_params
from manifold_opt.manifolds.tree import manifold_tree
from manifold_opt.transforms import (
    auon,
    conda,
    frank_wolfe,
    fw_agnostic_schedule,
    fw_momentum_schedule,
    hybrid_auon,
    matrix_rules,
    muon,
    normuon,
    orthogonal_gradient,
    pcgrad,
    project_out,
    project_to_tangent,
    protect_from_inputs,
    protect_from_weights,
    qk_clip,
    retract,
    riemannian_adam,
    riemannian_partition,
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
    """`mo.nn` imports Flax, so it loads on first use and `import manifold_opt` stays Flax-free."""
    if name == "nn":
        import importlib

        return importlib.import_module("manifold_opt.nn")
    raise AttributeError(f"module 'manifold_opt' has no attribute {name!r}")

"""optax GradientTransformations built from the manifolds and kernels."""
from manifold_opt.transforms.auon import auon, hybrid_auon, scale_by_auon, scale_by_hybrid_auon
from manifold_opt.transforms.conda import conda, scale_by_conda
from manifold_opt.transforms.matrix_params import (
    DimensionNumbers,
    default_dimension_numbers,
    matrix_labels,
    orthogonalized_optimizer,
    resolve_dimension_numbers,
    scale_by_shape,
)
from manifold_opt.transforms.muon import muon, scale_by_muon
from manifold_opt.transforms.normuon import normuon, scale_by_normuon
from manifold_opt.transforms.riemannian import (
    RiemannianAdamState,
    RiemannianSgdState,
    project_to_tangent,
    retract,
    riemannian_adam,
    riemannian_sgd,
)
from manifold_opt.transforms.root import root, scale_by_root
from manifold_opt.transforms.spectral_clip import scale_by_spectral_clip, soft_spectral_clip, spectral_clip

__all__ = [
    "DimensionNumbers",
    "RiemannianAdamState",
    "RiemannianSgdState",
    "auon",
    "conda",
    "default_dimension_numbers",
    "hybrid_auon",
    "matrix_labels",
    "muon",
    "normuon",
    "orthogonalized_optimizer",
    "project_to_tangent",
    "resolve_dimension_numbers",
    "retract",
    "riemannian_adam",
    "riemannian_sgd",
    "root",
    "scale_by_auon",
    "scale_by_conda",
    "scale_by_hybrid_auon",
    "scale_by_muon",
    "scale_by_normuon",
    "scale_by_root",
    "scale_by_shape",
    "scale_by_spectral_clip",
    "soft_spectral_clip",
    "spectral_clip",
]

from manifold_opt.transforms.partition import riemannian_partition  # noqa: E402

__all__ += ["riemannian_partition"]

"""optax GradientTransformations built from the manifolds and kernels."""
from manifold_opt.transforms.auon import auon, hybrid_auon, scale_by_auon, scale_by_hybrid_auon
from manifold_opt.transforms.conda import conda, scale_by_conda
from manifold_opt.transforms.frank_wolfe import (
    FrankWolfeState,
    frank_wolfe,
    fw_agnostic_schedule,
    fw_momentum_schedule,
)
from manifold_opt.transforms.matrix_params import (
    DimensionNumbers,
    MatrixRules,
    default_dimension_numbers,
    matrix_axes,
    matrix_labels,
    matrix_rules,
    ndim2_dimension_numbers,
    orthogonalized_optimizer,
    resolve_dimension_numbers,
    role_dimension_numbers,
    scale_by_shape,
)
from manifold_opt.transforms.muon import muon, scale_by_muon
from manifold_opt.transforms.normuon import normuon, scale_by_normuon
from manifold_opt.transforms.orthogonal_gradient import PCGradState, orthogonal_gradient, pcgrad
from manifold_opt.transforms.partition import riemannian_partition
from manifold_opt.transforms.project_out import (
    ProjectOutState,
    extend_basis,
    project_out,
    protect_from_inputs,
    protect_from_weights,
)
from manifold_opt.transforms.qk_clip import qk_clip
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
    "FrankWolfeState",
    "MatrixRules",
    "PCGradState",
    "ProjectOutState",
    "RiemannianAdamState",
    "RiemannianSgdState",
    "auon",
    "conda",
    "default_dimension_numbers",
    "extend_basis",
    "frank_wolfe",
    "fw_agnostic_schedule",
    "fw_momentum_schedule",
    "hybrid_auon",
    "matrix_axes",
    "matrix_labels",
    "matrix_rules",
    "muon",
    "ndim2_dimension_numbers",
    "normuon",
    "orthogonal_gradient",
    "orthogonalized_optimizer",
    "pcgrad",
    "project_out",
    "project_to_tangent",
    "protect_from_inputs",
    "protect_from_weights",
    "qk_clip",
    "resolve_dimension_numbers",
    "retract",
    "riemannian_adam",
    "riemannian_partition",
    "riemannian_sgd",
    "role_dimension_numbers",
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

r"""optax GradientTransformations built from the manifolds and kernels.

- Riemannian: the tangent step $u$ at $x$ becomes the additive update $R_x(u) - x$, so
  `optax.apply_updates` lands exactly on the retraction $R_x(u)$.
- Orthogonalized momentum (Muon family): a matrix's update is built from
  $\operatorname{msign}(M) = U V^\top$ for the momentum $M = U \Sigma V^\top$ (Newton-Schulz).
- Frank-Wolfe: $x \leftarrow x + \gamma_t (s - x)$ with $s = \arg\min_{s \in C} \langle g, s \rangle$.
- Orthogonal gradient: updates with the components along protected directions removed.
"""
from manifold_opt.transforms.aro import aro, scale_by_aro
from manifold_opt.transforms.auon import auon, hybrid_auon, scale_by_auon, scale_by_hybrid_auon
from manifold_opt.transforms.conda import conda, scale_by_conda
from manifold_opt.transforms.dion2 import dion2, scale_by_dion2
from manifold_opt.transforms.fismo import fismo, scale_by_fismo
from manifold_opt.transforms.frank_wolfe import (
    FrankWolfeState,
    frank_wolfe,
    fw_agnostic_schedule,
    fw_momentum_schedule,
)
from manifold_opt.transforms.manifold_muon import manifold_muon, scale_by_manifold_muon, stiefel_retraction
from manifold_opt.transforms.matrix_params import (
    DimensionNumbers,
    MatrixRules,
    SplitMatrix,
    default_dimension_numbers,
    matrix_axes,
    matrix_labels,
    matrix_rules,
    ndim2_dimension_numbers,
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
from manifold_opt.transforms.step_rules import HyperballState, hyperball_projection, orthogonalized_optimizer

__all__ = [
    "DimensionNumbers",
    "FrankWolfeState",
    "HyperballState",
    "MatrixRules",
    "PCGradState",
    "ProjectOutState",
    "RiemannianAdamState",
    "RiemannianSgdState",
    "SplitMatrix",
    "aro",
    "auon",
    "conda",
    "default_dimension_numbers",
    "dion2",
    "extend_basis",
    "fismo",
    "frank_wolfe",
    "fw_agnostic_schedule",
    "fw_momentum_schedule",
    "hybrid_auon",
    "hyperball_projection",
    "manifold_muon",
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
    "scale_by_aro",
    "scale_by_auon",
    "scale_by_conda",
    "scale_by_dion2",
    "scale_by_fismo",
    "scale_by_hybrid_auon",
    "scale_by_manifold_muon",
    "scale_by_muon",
    "scale_by_normuon",
    "scale_by_root",
    "scale_by_shape",
    "scale_by_spectral_clip",
    "soft_spectral_clip",
    "spectral_clip",
    "stiefel_retraction",
]

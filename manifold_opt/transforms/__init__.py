"""optax GradientTransformations built from manifolds, sets and the linalg kernels."""
from manifold_opt.transforms.riemannian import (
    RiemannianAdamState,
    RiemannianSgdState,
    project_to_tangent,
    retract,
    riemannian_adam,
    riemannian_sgd,
)

__all__ = [
    "RiemannianAdamState",
    "RiemannianSgdState",
    "project_to_tangent",
    "retract",
    "riemannian_adam",
    "riemannian_sgd",
]

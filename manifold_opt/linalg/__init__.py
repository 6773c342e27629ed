"""Numerical kernels shared by the whole library: one implementation each."""
from manifold_opt.linalg.cayley import cayley
from manifold_opt.linalg.inverse_sqrt import inverse_sqrt, spectral_norm_bound
from manifold_opt.linalg.polar import newton_schulz, ns_coefficients, polar
from manifold_opt.linalg.sinkhorn import birkhoff_tangent_projection, sinkhorn
from manifold_opt.linalg.spectral import top_singular

__all__ = [
    "birkhoff_tangent_projection",
    "cayley",
    "inverse_sqrt",
    "newton_schulz",
    "ns_coefficients",
    "polar",
    "sinkhorn",
    "spectral_norm_bound",
    "top_singular",
]

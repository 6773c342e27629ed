"""Numerical kernels shared by the whole library: one implementation each."""
from manifold_opt.linalg.cayley import cayley
from manifold_opt.linalg.polar import newton_schulz, ns_coefficients, polar
from manifold_opt.linalg.sinkhorn import birkhoff_tangent_projection, sinkhorn
from manifold_opt.linalg.spectral import top_singular

__all__ = [
    "birkhoff_tangent_projection",
    "cayley",
    "newton_schulz",
    "ns_coefficients",
    "polar",
    "sinkhorn",
    "top_singular",
]

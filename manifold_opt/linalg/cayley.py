"""Cayley transform of skew-symmetric matrices.

cayley(A) = (I - A)^{-1} (I + A) is orthogonal with determinant +1 for skew A (A^T = -A) and
cannot reach eigenvalue -1. JPmHC's Q = (I + A)^{-1} (I - A) is cayley(-A). The Stiefel
retraction of Wen & Yin (2013) uses cayley(W / 2) for W = P_X U X^T - X U^T P_X; its low-rank
(Woodbury) form lives with the Stiefel manifold.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cayley(a: jax.Array) -> jax.Array:
    """(I - a)^{-1} (I + a) for square a (..., n, n); orthogonal when a is skew-symmetric."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"cayley: a must be square (..., n, n), got shape {a.shape}")
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    return jnp.linalg.solve(eye - a, eye + a)

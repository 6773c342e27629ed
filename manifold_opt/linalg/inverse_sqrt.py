"""Inverse square root of a symmetric positive definite matrix by coupled Newton-Schulz.

For SPD A with spectrum in (0, alpha], scale A' = A / alpha (spectrum in (0, 1]) and iterate

    Y_0 = A',  Z_0 = I,  T = (3 I - Z Y) / 2,  Y <- Y T,  Z <- T Z,

so that Y -> A'^(1/2) and Z -> A'^(-1/2) quadratically once ZY is near I (Higham 2008,
"Functions of Matrices", eq. 6.35); then A^(-1/2) = Z / sqrt(alpha). Matmuls only. Eigenvalues
of A' near 0 need about log(1/lambda_min)/log(2.25) warm-up iterations before the quadratic
phase, so `num_iters` bounds the condition number that converges. Used by SPECTRA's spectral
clipping (mo.scale_by_spectral_clip).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def spectral_norm_bound(a: jax.Array) -> jax.Array:
    """min(max absolute row sum, Frobenius norm) of a (..., n, n), an upper bound on ||a||_2."""
    row_sum = jnp.max(jnp.sum(jnp.abs(a), axis=-1), axis=-1)
    return jnp.minimum(row_sum, jnp.linalg.norm(a, axis=(-2, -1)))


def inverse_sqrt(a: jax.Array, num_iters: int = 10, norm_bound: jax.Array | None = None) -> jax.Array:
    """A^(-1/2) of an SPD matrix a (..., n, n) by `num_iters` coupled Newton-Schulz iterations.

    `norm_bound` (shape a.shape[:-2]) must be >= ||a||_2; by default spectral_norm_bound(a).
    """
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"inverse_sqrt: a must be square (..., n, n), got shape {a.shape}")
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"inverse_sqrt: num_iters must be a positive int, got {num_iters!r}")
    alpha = spectral_norm_bound(a) if norm_bound is None else jnp.asarray(norm_bound, a.dtype)
    alpha = alpha[..., None, None]
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)

    def step(yz, _):
        y, z = yz
        t = 0.5 * (3.0 * eye - z @ y)
        return (y @ t, t @ z), None

    (_, z), _ = jax.lax.scan(step, (a / alpha, eye), None, length=num_iters)
    return z / jnp.sqrt(alpha)

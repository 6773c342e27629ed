"""Top singular pair by power iteration (for spectral norms, sHC mixers, nuclear-ball LMOs).

Alternates v <- G^T u / ||G^T u||, u <- G v / ||G v||; sigma = u^T G v. Converges at the rate
(sigma_2 / sigma_1)^(2k); warm-start with `v0` across optimizer steps.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def top_singular(
    g: jax.Array, num_iters: int = 20, v0: jax.Array | None = None, key: jax.Array | None = None
):
    """(sigma, u, v): largest singular value of g (..., m, n) and its singular vectors."""
    if g.ndim < 2:
        raise ValueError(f"top_singular: g must have at least 2 dimensions, got shape {g.shape}")
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"top_singular: num_iters must be a positive int, got {num_iters!r}")
    if v0 is None:
        key = jax.random.PRNGKey(0) if key is None else key
        v0 = jax.random.normal(key, g.shape[:-2] + g.shape[-1:], dtype=g.dtype)
    elif v0.shape != g.shape[:-2] + g.shape[-1:]:
        raise ValueError(f"top_singular: v0 must have shape {g.shape[:-2] + g.shape[-1:]}, got {v0.shape}")
    tiny = jnp.finfo(g.dtype).tiny

    def normalize(x):
        return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + tiny)

    def step(v, _):
        u = normalize(jnp.einsum("...ij,...j->...i", g, v))
        v = normalize(jnp.einsum("...ij,...i->...j", g, u))
        return v, None

    v, _ = jax.lax.scan(step, normalize(v0), None, length=num_iters)
    gv = jnp.einsum("...ij,...j->...i", g, v)
    sigma = jnp.linalg.norm(gv, axis=-1)
    return sigma, normalize(gv), v

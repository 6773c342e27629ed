"""Sinkhorn-Knopp normalization in log space, and the Birkhoff tangent projection it shares.

sinkhorn(Z) is the doubly stochastic matrix P = diag(u) exp(Z) diag(v) (Sinkhorn & Knopp 1967),
found by alternating column and row normalization of log P, stopped when every row and column
sum is within `tol` of 1 or after `num_iters` sweeps.

Its derivative (Eisenberger et al. 2022; Douik & Hassibi 2019) at the fixed point is the
Fisher-metric projection onto the Birkhoff tangent space: for a cotangent G, with mu = P * G,

    dL/dZ = mu - (a 1^T + 1 b^T) * P,   [[I, P], [P^T, I]] [a; b] = [mu 1; mu^T 1],

so memory is O(n^2) whatever the iteration count (`implicit_diff=True`). With
`implicit_diff=False` a fixed number of sweeps is unrolled and differentiated step by step.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def birkhoff_tangent_projection(p: jax.Array, z: jax.Array) -> jax.Array:
    r"""z - (alpha 1^T + 1 beta^T) * p, with alpha, beta making every row and column sum zero.

    p (..., n, n) is doubly stochastic with positive entries. The 2n x 2n system

    $$\begin{pmatrix} I & P \\ P^\top & I \end{pmatrix}
      \begin{pmatrix} \alpha \\ \beta \end{pmatrix}
      = \begin{pmatrix} Z \mathbf{1} \\ Z^\top \mathbf{1} \end{pmatrix}$$

    has a one-dimensional null space (1, -1); eliminating alpha gives
    $(I - P^\top P + \mathbf{1}\mathbf{1}^\top / n)\,\beta = Z^\top \mathbf{1} - P^\top Z \mathbf{1}$,
    which is nonsingular and fixes that freedom by $\mathbf{1}^\top \beta = 0$.
    """
    n = p.shape[-1]
    rows = jnp.sum(z, axis=-1)
    cols = jnp.sum(z, axis=-2)
    pt = jnp.swapaxes(p, -1, -2)
    eye = jnp.eye(n, dtype=p.dtype)
    lhs = eye - pt @ p + jnp.ones((n, n), p.dtype) / n
    rhs = cols - jnp.einsum("...ji,...j->...i", p, rows)
    beta = jnp.linalg.solve(lhs, rhs[..., None])[..., 0]
    alpha = rows - jnp.einsum("...ij,...j->...i", p, beta)
    return z - (alpha[..., :, None] + beta[..., None, :]) * p


def _normalize_cols_then_rows(log_p):
    log_p = log_p - jax.nn.logsumexp(log_p, axis=-2, keepdims=True)
    return log_p - jax.nn.logsumexp(log_p, axis=-1, keepdims=True)


def _marginal_error(log_p):
    """Largest deviation of a column sum from 1 (rows are exact after a sweep)."""
    return jnp.max(jnp.abs(jnp.sum(jnp.exp(log_p), axis=-2) - 1.0))


def _sinkhorn_to_tolerance(log_k, num_iters, tol):
    def cond(carry):
        i, _, err = carry
        return (i < num_iters) & (err > tol)

    def body(carry):
        i, log_p, _ = carry
        log_p = _normalize_cols_then_rows(log_p)
        return i + 1, log_p, _marginal_error(log_p)

    init = (jnp.asarray(0), log_k, jnp.asarray(jnp.inf, log_k.dtype))
    _, log_p, _ = jax.lax.while_loop(cond, body, init)
    return jnp.exp(log_p)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _sinkhorn_implicit(log_k, num_iters, tol):
    return _sinkhorn_to_tolerance(log_k, num_iters, tol)


def _sinkhorn_implicit_fwd(log_k, num_iters, tol):
    p = _sinkhorn_to_tolerance(log_k, num_iters, tol)
    return p, p


def _sinkhorn_implicit_bwd(num_iters, tol, p, g):
    return (birkhoff_tangent_projection(p, p * g),)


_sinkhorn_implicit.defvjp(_sinkhorn_implicit_fwd, _sinkhorn_implicit_bwd)


def _sinkhorn_unrolled(log_k, num_iters):
    log_p, _ = jax.lax.scan(
        lambda log_p, _: (_normalize_cols_then_rows(log_p), None), log_k, None, length=num_iters
    )
    return jnp.exp(log_p)


def sinkhorn(
    log_k: jax.Array,
    num_iters: int = 100,
    tol: float | None = None,
    implicit_diff: bool = True,
) -> jax.Array:
    r"""Doubly stochastic matrix $\operatorname{diag}(u)\, e^{K} \operatorname{diag}(v)$ for square `log_k` = K (..., n, n).

    Runs until every column sum is within `tol` of 1 (default: 1e-6 in float32, 1e-12 in float64)
    or `num_iters` sweeps. `implicit_diff=True` differentiates the fixed point (exact at
    convergence); `implicit_diff=False` runs exactly `num_iters` sweeps and differentiates them.
    Batched over leading dimensions (the stopping test uses the worst matrix of the batch).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from manifold_opt.linalg import sinkhorn
        >>> p = sinkhorn(jax.random.normal(jax.random.PRNGKey(0), (3, 3)))
        >>> bool(jnp.allclose(p.sum(0), 1.0, atol=1e-5) and jnp.allclose(p.sum(1), 1.0, atol=1e-5))
        True
    """
    if log_k.ndim < 2 or log_k.shape[-1] != log_k.shape[-2]:
        raise ValueError(f"sinkhorn: log_k must be square (..., n, n), got shape {log_k.shape}")
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"sinkhorn: num_iters must be a positive int, got {num_iters!r}")
    if tol is None:
        tol = 1e-12 if log_k.dtype == jnp.float64 else 1e-6
    if tol < 0:
        raise ValueError(f"sinkhorn: tol must be nonnegative, got {tol!r}")
    if implicit_diff:
        return _sinkhorn_implicit(log_k, num_iters, float(tol))
    return _sinkhorn_unrolled(log_k, num_iters)

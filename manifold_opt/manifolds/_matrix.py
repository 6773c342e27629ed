"""Matrix helpers shared by the orthonormal-frame manifolds (Stiefel, Grassmann, O(n), U(n));
real or complex (X^H is X^T for real X).

All functions act on the last two axes and accept leading batch dimensions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def transpose(a: jax.Array) -> jax.Array:
    return jnp.swapaxes(a, -1, -2)


def adjoint(a: jax.Array) -> jax.Array:
    """Conjugate transpose a^H (the transpose for real a)."""
    return jnp.conj(transpose(a))


def sym(a: jax.Array) -> jax.Array:
    """(a + a^H) / 2: the symmetric (Hermitian) part."""
    return (a + adjoint(a)) / 2


def skew(a: jax.Array) -> jax.Array:
    """(a - a^H) / 2: the skew-symmetric (skew-Hermitian) part."""
    return (a - adjoint(a)) / 2


def weingarten_orthonormal(x: jax.Array, egrad: jax.Array, ehvp: jax.Array, u: jax.Array) -> jax.Array:
    """ehvp - U sym(X^H egrad): its projection onto T_X is the Riemannian Hessian on St(n, p),
    O(n) and U(n) with the Euclidean metric (Absil, Mahony & Trumpler 2013, the Weingarten map)."""
    return ehvp - u @ sym(adjoint(x) @ egrad)


def orthonormality_error(x: jax.Array) -> jax.Array:
    """||X^H X - I||_F per matrix."""
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    return jnp.linalg.norm(adjoint(x) @ x - eye, axis=(-2, -1))


def qr_positive(a: jax.Array) -> jax.Array:
    """Q factor of the thin QR a = QR normalized so that diag(R) > 0 (unique for full rank a;
    real or complex: the columns of Q are multiplied by the phases d / |d| of d = diag(R)).

    The sign fix makes the QR retraction a smooth map (and Q of a Gaussian matrix Haar
    distributed; Mezzadri 2007).
    """
    q, r = jnp.linalg.qr(a)
    d = jnp.diagonal(r, axis1=-2, axis2=-1)
    magnitude = jnp.abs(d)
    phase = jnp.where(magnitude > 0, d / jnp.where(magnitude > 0, magnitude, 1), 1)
    return q * phase.astype(q.dtype)[..., None, :]


def polar_by_gram(a: jax.Array) -> jax.Array:
    """Polar factor a (a^H a)^{-1/2} of a tall full-rank a (..., n, p) through a p x p eigh.

    O(n p^2), against O(n p^2) with a much larger constant for an n x p SVD. For a = X + U with
    X on the Stiefel manifold and U tangent (X^T U skew), a^T a = I + U^T U >= I, so the Gram
    matrix is well conditioned and squaring the condition number costs nothing. The Gram matrix
    is formed from a itself (not assumed to be I + U^T U), so orthogonality drift in X is removed.
    """
    w, v = jnp.linalg.eigh(adjoint(a) @ a)
    w = jnp.maximum(w, jnp.finfo(w.dtype).tiny)
    inv_sqrt = (v * jax.lax.rsqrt(w).astype(v.dtype)[..., None, :]) @ adjoint(v)
    return a @ inv_sqrt


def cayley_stiefel(x: jax.Array, u: jax.Array, v: jax.Array | None = None):
    """Cayley retraction of Wen & Yin (2013) in low-rank (Woodbury) form, O(n p^2).

    With P = I - X X^T / 2 and W = P U X^T - X U^T P (skew, n x n), the retraction is
    Y = (I - W/2)^{-1} (I + W/2) X. Writing W = A B^T with A = [P U, X], B = [X, -P U]
    (2p columns) and (I - W/2)^{-1} W = A (I - B^T A / 2)^{-1} B^T gives

        Y = X + A (I - B^T A / 2)^{-1} B^T X,

    a 2p x 2p solve and no n x n matrix. Y = Q X with Q orthogonal, so Y^T Y = X^T X: the
    Cayley retraction preserves (does not remove) orthogonality error. If `v` is given, also
    returns Q v (the isometric Cayley transport of v, Zhu 2017) from the same solve.
    """
    xtu = transpose(x) @ u
    pu = u - x @ xtu / 2
    a = jnp.concatenate([pu, x], axis=-1)
    b = jnp.concatenate([x, -pu], axis=-1)
    two_p = a.shape[-1]
    m = jnp.eye(two_p, dtype=x.dtype) - transpose(b) @ a / 2
    p = x.shape[-1]
    rhs = transpose(b) @ (x if v is None else jnp.concatenate([x, v], axis=-1))
    sol = jnp.linalg.solve(m, rhs)
    if v is None:
        return x + a @ sol
    return x + a @ sol[..., :p], v + a @ sol[..., p:]

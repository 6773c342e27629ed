"""m x n real matrices of fixed rank k as an embedded submanifold of R^{m x n} with the Frobenius
metric (Vandereycken 2013, "Low-rank matrix completion by Riemannian optimization"; Pymanopt's
`FixedRankEmbedded`, same layouts).

A point is a tuple (U, s, Vt), U (m, k) and Vt^T (n, k) orthonormal, s (k,) positive: the matrix
X = U diag(s) Vt. A tangent vector is a tuple (Up, M, Vp), Up (m, k) with U^T Up = 0, M (k, k),
Vp (n, k) with V^T Vp = 0: the matrix U M Vt + Up Vt + U Vp^T. The metric is the Frobenius
inner product of those matrices, sum of the three parts' Frobenius products. For an ambient Z:

    proj(X, Z) = (P_U^perp Z V, U^T Z V, P_V^perp Z^T U),   P_U^perp = I - U U^T.

The Euclidean gradient the solvers hand in is the gradient (dU, ds, dVt) of the cost as a
function of the three factors (what `jax.grad` returns for a tuple point); `egrad_to_rgrad`
recovers the Riemannian gradient from it through the derivative of the SVD (Townsend 2016),
with F_ij = 1 / (s_j^2 - s_i^2) off the diagonal:

    Up = P_U^perp dU / s,   Vp = P_V^perp dVt^T / s,
    M = F * (U^T dU - dU^T U) diag(s) + diag(s) F * (Vt dVt^T - dVt Vt^T) + diag(ds).

A dense (m, n) gradient is also accepted (then it is proj). The retraction is the metric
projection of X + xi onto rank k, computed from a 2k x 2k SVD (Absil & Malick 2012);
transport is projection onto T_Y. No closed-form exp, log or dist; no `ehess_to_rhess` from the
factors' derivatives (they see only the tangent part of the ambient gradient, and the
Weingarten term needs its normal part), so trust regions and ARC do not apply (as in Pymanopt).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from manifold_opt.manifolds._matrix import orthonormality_error, qr_positive, transpose
from manifold_opt.manifolds.base import Manifold, check_positive_int


def _is_factored(z) -> bool:
    return isinstance(z, (tuple, list))


@dataclasses.dataclass(frozen=True)
class FixedRankEmbedded(Manifold):
    """m x n matrices of rank k; points (U, s, Vt), tangent vectors (Up, M, Vp)."""

    m: int
    n: int
    k: int

    def __post_init__(self):
        m = check_positive_int("FixedRankEmbedded", "m", self.m)
        n = check_positive_int("FixedRankEmbedded", "n", self.n)
        k = check_positive_int("FixedRankEmbedded", "k", self.k)
        if k > min(m, n):
            raise ValueError(f"FixedRankEmbedded: k must be <= min(m, n), got k={k}, m={m}, n={n}")
        for name, value in (("m", m), ("n", n), ("k", k)):
            object.__setattr__(self, name, value)

    @property
    def shape(self):
        """The shapes of a point's factors (U, s, Vt)."""
        return ((self.m, self.k), (self.k,), (self.k, self.n))

    @property
    def tangent_shape(self):
        """The shapes of a tangent vector's factors (Up, M, Vp)."""
        return ((self.m, self.k), (self.k, self.k), (self.n, self.k))

    @property
    def dim(self):
        return (self.m + self.n - self.k) * self.k

    @property
    def point_structure(self):
        return jax.tree_util.tree_structure((0, 0, 0))

    def batch_shape(self, x):
        return tuple(x[1].shape[:-1])

    def zero_tangent(self, x):
        batch = self.batch_shape(x)
        return tuple(jnp.zeros(batch + shape, x[0].dtype) for shape in self.tangent_shape)

    @property
    def typical_dist(self):
        return self.dim

    def _check(self, value, name, shapes, what):
        ok = _is_factored(value) and len(value) == 3
        if ok:
            batch = None
            for a, shape in zip(value, shapes):
                nd = len(shape)
                if not hasattr(a, "shape") or a.ndim < nd or tuple(a.shape[a.ndim - nd:]) != shape:
                    ok = False
                    break
                lead = tuple(a.shape[: a.ndim - nd])
                ok = batch is None or lead == batch
                batch = lead
                if not ok:
                    break
        if not ok:
            got = [getattr(a, "shape", type(a).__name__) for a in value] if _is_factored(value) else type(value).__name__
            raise ValueError(
                f"FixedRankEmbedded: {name} must be a {what} tuple of arrays of shapes "
                f"(..., {', '.join(' x '.join(map(str, s)) for s in shapes)}), got {got}"
            )

    def check_point(self, x, name="x"):
        self._check(x, name, self.shape, "point (U, s, Vt)")

    def check_tangent(self, u, name="u"):
        self._check(u, name, self.tangent_shape, "tangent (Up, M, Vp)")

    def random_point(self, key, dtype=None, batch_shape=()):
        """Haar-distributed U and V, singular values uniform in [1, 2), sorted descending."""
        k1, k2, k3 = jax.random.split(key, 3)
        b = tuple(batch_shape)
        u = qr_positive(jax.random.normal(k1, b + (self.m, self.k), dtype))
        v = qr_positive(jax.random.normal(k2, b + (self.n, self.k), dtype))
        s = -jnp.sort(-(1 + jax.random.uniform(k3, b + (self.k,), dtype)), axis=-1)
        return u, s, transpose(v)

    def random_tangent(self, key, x):
        """A unit tangent vector: Gaussian factors, Up and Vp projected."""
        self.check_point(x)
        keys = jax.random.split(key, 3)
        batch = self.batch_shape(x)
        z = tuple(jax.random.normal(kk, batch + s, x[0].dtype) for kk, s in zip(keys, self.tangent_shape))
        u, _, vt = x
        up = z[0] - u @ (transpose(u) @ z[0])
        vp = z[2] - transpose(vt) @ (vt @ z[2])
        t = (up, z[1], vp)
        norm = self.norm(x, t)
        return tuple(a / norm[..., None, None] for a in t)

    def _apply(self, z, matrix):
        """Z @ matrix for a dense Z or a factored Z = A B C^T."""
        return z[0] @ (z[1] @ (transpose(z[2]) @ matrix)) if _is_factored(z) else z @ matrix

    def _apply_transpose(self, z, matrix):
        """Z^T @ matrix for a dense or factored Z."""
        return z[2] @ (transpose(z[1]) @ (transpose(z[0]) @ matrix)) if _is_factored(z) else transpose(z) @ matrix

    def proj(self, x, z):
        """The tangent vector nearest to the ambient Z: a dense (..., m, n) array, or a
        factored (A, B, C) meaning A B C^T (such as `embedding`'s output)."""
        self.check_point(x)
        if not _is_factored(z) and (not hasattr(z, "shape") or z.ndim < 2 or tuple(z.shape[-2:]) != (self.m, self.n)):
            raise ValueError(
                f"FixedRankEmbedded: z must be an array of shape (..., {self.m}, {self.n}) or a factored "
                f"(A, B, C), got {getattr(z, 'shape', type(z).__name__)}"
            )
        u, _, vt = x
        zv = self._apply(z, transpose(vt))
        utzv = transpose(u) @ zv
        ztu = self._apply_transpose(z, u)
        return zv - u @ utzv, utzv, ztu - transpose(vt) @ transpose(utzv)

    def egrad_to_rgrad(self, x, egrad):
        self.check_point(x)
        if not _is_factored(egrad):
            return self.proj(x, egrad)
        self.check_point(egrad, "egrad")
        u, s, vt = x
        du, ds, dvt = egrad
        utdu = transpose(u) @ du
        vtdv = vt @ transpose(dvt)
        up = (du - u @ utdu) / s[..., None, :]
        vp = (transpose(dvt) - transpose(vt) @ vtdv) / s[..., None, :]
        eye = jnp.eye(self.k, dtype=s.dtype)
        f = 1 / (s[..., None, :] ** 2 - s[..., :, None] ** 2 + eye)
        m = (f * (utdu - transpose(utdu)) * s[..., None, :]
             + s[..., :, None] * f * (vtdv - transpose(vtdv))
             + ds[..., :, None] * eye)
        return up, m, vp

    def inner(self, x, u, v):
        self.check_point(x)
        self.check_tangent(u, "u")
        self.check_tangent(v, "v")
        return sum(jnp.sum(a * b, axis=(-2, -1)) for a, b in zip(u, v))

    def embedding(self, x, u):
        """The tangent vector u at x as a factored ambient matrix (A, I, B), A I B^T (rank 2k)."""
        self.check_point(x)
        self.check_tangent(u, "u")
        left, _, vt = x
        up, m, vp = u
        a = jnp.concatenate([left @ m + up, left], axis=-1)
        b = jnp.concatenate([transpose(vt), vp], axis=-1)
        eye = jnp.broadcast_to(jnp.eye(2 * self.k, dtype=m.dtype), m.shape[:-2] + (2 * self.k, 2 * self.k))
        return a, eye, b

    def to_dense(self, x, u=None):
        """The m x n matrix of the point x, or of the tangent vector u at x."""
        self.check_point(x)
        left, s, vt = x
        if u is None:
            return (left * s[..., None, :]) @ vt
        self.check_tangent(u, "u")
        up, m, vp = u
        return (left @ m + up) @ vt + left @ transpose(vp)

    def retract(self, x, u):
        """The best rank-k approximation of X + xi, from QR of Up, Vp and a 2k x 2k SVD."""
        self.check_point(x)
        self.check_tangent(u, "u")
        left, s, vt = x
        up, m, vp = u
        qu, ru = jnp.linalg.qr(up)
        qv, rv = jnp.linalg.qr(vp)
        zero = jnp.zeros_like(m)
        core = jnp.concatenate([
            jnp.concatenate([s[..., :, None] * jnp.eye(self.k, dtype=s.dtype) + m, transpose(rv)], axis=-1),
            jnp.concatenate([ru, zero], axis=-1),
        ], axis=-2)
        a, sigma, bh = jnp.linalg.svd(core, full_matrices=False)
        k = self.k
        new_u = jnp.concatenate([left, qu], axis=-1) @ a[..., :, :k]
        new_vt = bh[..., :k, :] @ transpose(jnp.concatenate([transpose(vt), qv], axis=-1))
        return new_u, sigma[..., :k], new_vt

    def transport(self, x, y, v):
        self.check_point(y, "y")
        return self.proj(y, self.embedding(x, v))

    def project(self, x):
        """A point (U, s, Vt) with orthonormal U, V and s >= 0 sorted, from a perturbed point
        (QR of U and Vt^T and an SVD of the k x k core), or the best rank-k approximation (SVD)
        of a dense (..., m, n) matrix."""
        if not _is_factored(x):
            if not hasattr(x, "shape") or x.ndim < 2 or tuple(x.shape[-2:]) != (self.m, self.n):
                raise ValueError(
                    f"FixedRankEmbedded: x must be a point (U, s, Vt) or an array of shape (..., {self.m}, {self.n}), "
                    f"got {getattr(x, 'shape', type(x).__name__)}"
                )
            u, s, vh = jnp.linalg.svd(x, full_matrices=False)
            return u[..., :, : self.k], s[..., : self.k], vh[..., : self.k, :]
        self.check_point(x)
        left, s, vt = x
        qu, ru = jnp.linalg.qr(left)
        qv, rv = jnp.linalg.qr(transpose(vt))
        a, sigma, bh = jnp.linalg.svd((ru * s[..., None, :]) @ transpose(rv))
        return qu @ a, sigma, bh @ transpose(qv)

    def feasibility(self, x):
        """||U^T U - I||_F + ||V^T V - I||_F + max(0, tiny - min s)."""
        self.check_point(x)
        left, s, vt = x
        rank = jnp.maximum(jnp.finfo(s.dtype).tiny - jnp.min(s, axis=-1), 0)
        return orthonormality_error(left) + orthonormality_error(transpose(vt)) + rank

    @property
    def has_hessian(self):
        return False

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        raise NotImplementedError(
            "FixedRankEmbedded: no ehess_to_rhess from derivatives with respect to the factors "
            "(U, s, Vt): they do not determine the normal part of the ambient gradient that the "
            "Weingarten term needs; use a first-order solver"
        )

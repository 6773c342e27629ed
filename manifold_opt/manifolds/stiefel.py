"""The Stiefel manifold St(n, p) = {X in R^{n x p} : X^T X = I}.

Tangent space at X: {U : X^T U + U^T X = 0}, dimension n p - p (p + 1) / 2. Two metrics
(Edelman, Arias & Smith 1998):
- "euclidean": <U, V> = tr(U^T V), Riemannian gradient = proj(X, G);
- "canonical": <U, V>_X = tr(U^T (I - X X^T / 2) V), Riemannian gradient G - X G^T X.
The orthogonal projection proj(X, U) = U - X sym(X^T U) is the same for both metrics; only
egrad_to_rgrad differs.

Exponential map (Edelman, Arias & Smith 1998), with A = X^T U:
- euclidean (eq. 2.45): [X, U] expm([[A, -U^T U], [I, A]]) [I; 0] expm(-A);
- canonical (eq. 2.42): [X, Q] expm([[A, -R^T], [R, 0]]) [I; 0], with QR = U - X A.
Logarithm (canonical metric only; Zimmermann 2017, "A matrix-algebraic algorithm for the
Riemannian logarithm on the Stiefel manifold"): with M = X^T Y and QN = Y - X M, complete [M; N] to
an orthogonal V = [[M, X0], [N, Y0]] (the completion rotated so that Y0 is symmetric), then repeat
L = logm(V), V[:, p:] <- V[:, p:] expm(-L_22) until the block L_22 vanishes; log_X(Y) = X L_11 + Q L_21.
It converges for points closer than about 0.9 pi (Zimmermann's bound).

Riemannian Hessian from the Euclidean one (`ehess_to_rhess`), with G = egrad, H = ehvp:
- euclidean: proj(X, H - U sym(X^T G)) (the Weingarten term);
- canonical: proj(X, H - X H^T X - U G^T X - X G^T U - (U X^T R + R X^T U) / 2), R = G - X G^T X:
  the derivative of the gradient field R plus the Christoffel term of the ambient metric
  tr(U^T (I - X X^T / 2) V), projected (normal parts X S, S symmetric, drop out).

Retractions: "qr" (Q of X + U with diag(R) > 0), "polar" ((X + U)((X+U)^T (X+U))^{-1/2} by a
p x p eigh), "cayley" (Wen & Yin 2013, low-rank form). QR and polar re-orthonormalize at every
step; Cayley preserves any orthogonality error, so re-`project` periodically when using it.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from manifold_opt import linalg
from manifold_opt.manifolds._matrix import (
    cayley_stiefel,
    orthonormality_error,
    polar_by_gram,
    qr_positive,
    sym,
    transpose,
    weingarten_orthonormal,
)
from manifold_opt.manifolds.base import Manifold, check_option, check_positive_int
from manifold_opt.manifolds.orthogonal import skew_log_orthogonal

RETRACTIONS = ("qr", "polar", "cayley")
METRICS = ("euclidean", "canonical")


@dataclasses.dataclass(frozen=True)
class Stiefel(Manifold):
    """n x p matrices with orthonormal columns."""

    n: int
    p: int
    retraction: str = "qr"
    metric: str = "euclidean"

    def __post_init__(self):
        n = check_positive_int("Stiefel", "n", self.n)
        p = check_positive_int("Stiefel", "p", self.p)
        if p > n:
            raise ValueError(f"Stiefel: p must be <= n, got p={p} > n={n}")
        check_option("Stiefel", "retraction", self.retraction, RETRACTIONS)
        check_option("Stiefel", "metric", self.metric, METRICS)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "p", p)

    @property
    def shape(self):
        return (self.n, self.p)

    @property
    def dim(self):
        return self.n * self.p - self.p * (self.p + 1) // 2

    def random_point(self, key, dtype=None, batch_shape=()):
        return qr_positive(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return u - x @ sym(transpose(x) @ u)

    def egrad_to_rgrad(self, x, egrad):
        if self.metric == "euclidean":
            return super().egrad_to_rgrad(x, egrad)
        self.check_point(x)
        self.check_point(egrad, "egrad")
        return egrad - x @ transpose(egrad) @ x

    def inner(self, x, u, v):
        self.check_point(x)
        self.check_point(u, "u")
        self.check_point(v, "v")
        euclid = jnp.sum(u * v, axis=(-2, -1))
        if self.metric == "euclidean":
            return euclid
        return euclid - jnp.sum((transpose(x) @ u) * (transpose(x) @ v), axis=(-2, -1)) / 2

    def retract(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        if self.retraction == "qr":
            return qr_positive(x + u)
        if self.retraction == "polar":
            return polar_by_gram(x + u)
        return cayley_stiefel(x, u)

    def retract_transport(self, x, u, v):
        """With the Cayley retraction, one 2p x 2p solve gives both R_x(u) and the isometric
        Cayley transport Q v (Zhu 2017), which differs from proj(y, v) (both land in T_y);
        otherwise (retract(x, u), proj(y, v))."""
        if self.retraction != "cayley":
            return super().retract_transport(x, u, v)
        self.check_point(x)
        self.check_point(u, "u")
        self.check_point(v, "v")
        return cayley_stiefel(x, u, v)

    def project(self, x):
        self.check_point(x)
        return linalg.polar(x)

    def feasibility(self, x):
        self.check_point(x)
        return orthonormality_error(x)

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        a = transpose(x) @ u
        p = self.p
        eye = jnp.broadcast_to(jnp.eye(p, dtype=x.dtype), a.shape)
        if self.metric == "euclidean":
            block = jnp.concatenate([
                jnp.concatenate([a, -transpose(u) @ u], axis=-1),
                jnp.concatenate([eye, a], axis=-1),
            ], axis=-2)
            e = expm(block)[..., :p]
            return (x @ e[..., :p, :] + u @ e[..., p:, :]) @ expm(-a)
        q, r = jnp.linalg.qr(u - x @ a)
        block = jnp.concatenate([
            jnp.concatenate([a, -transpose(r)], axis=-1),
            jnp.concatenate([r, jnp.zeros_like(a)], axis=-1),
        ], axis=-2)
        e = expm(block)[..., :p]
        return x @ e[..., :p, :] + q @ e[..., p:, :]

    @property
    def typical_dist(self):
        return math.sqrt(self.p)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        if self.metric == "euclidean":
            return self.proj(x, weingarten_orthonormal(x, egrad, ehvp, u))
        xt, gt = transpose(x), transpose(egrad)
        rgrad = egrad - x @ gt @ x
        d_rgrad = ehvp - x @ transpose(ehvp) @ x - u @ (gt @ x) - x @ (gt @ u)
        connection = (u @ (xt @ rgrad) + rgrad @ (xt @ u)) / 2
        return self.proj(x, d_rgrad - connection)

    def log(self, x, y, tolerance=None, max_iterations: int = 100):
        """Zimmermann's iteration (canonical metric), stopped when ||L_22||_F <= tolerance
        (default 1e3 eps of the dtype) or after max_iterations."""
        if self.metric != "canonical":
            raise NotImplementedError("Stiefel: log is implemented for metric='canonical' only")
        self.check_points(x=x, y=y)
        p = self.p
        m = transpose(x) @ y
        q, n = jnp.linalg.qr(y - x @ m)
        first = jnp.concatenate([m, n], axis=-2)
        completion = jnp.linalg.qr(first, mode="complete")[0][..., :, p:]
        u, _, vh = jnp.linalg.svd(completion[..., p:, :])
        v = jnp.concatenate([first, completion @ transpose(vh) @ transpose(u)], axis=-1)
        tolerance = 1e3 * jnp.finfo(x.dtype).eps if tolerance is None else tolerance

        def lower_block(v):
            return skew_log_orthogonal(v)[..., p:, p:]

        def body(state):
            k, v, c = state
            v = v.at[..., :, p:].set(v[..., :, p:] @ expm(-c))
            return k + 1, v, lower_block(v)

        def cond(state):
            k, _, c = state
            return (jnp.max(jnp.linalg.norm(c, axis=(-2, -1))) > tolerance) & (k < max_iterations)

        _, v, _ = jax.lax.while_loop(cond, body, (0, v, lower_block(v)))
        log_v = skew_log_orthogonal(v)
        return x @ log_v[..., :p, :p] + q @ log_v[..., p:, :p]

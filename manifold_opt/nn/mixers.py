"""Residual mixers of hyper-connections: raw parameters to constrained n x n matrices.

A hyper-connection layer keeps n streams H (..., n, d) and wraps a block F (Zhu et al. 2024,
"Hyper-Connections"; Xie et al. 2025, "mHC"):

    H' = H_res H + h_post (F(h_pre^T H))^T,

with width weights h_pre, h_post in R^n and the residual mixer H_res in R^(n x n). A mixer
family maps an unconstrained raw matrix Z to H_res:

- "identity": H_res = I, h_pre = 1/n, h_post = 1 (a plain residual block, exactly, at n = 1).
- "unconstrained" (HC): H_res = Z, h_pre and h_post raw (init I, e_(k mod n), 1).
- "birkhoff" (mHC): H_res = Sinkhorn(exp Z), doubly stochastic; log-space Sinkhorn in at least
  float32 whatever the model dtype, differentiated implicitly by default (`linalg.sinkhorn`).
- "orthostochastic": H_res = Q * Q (entrywise) for Q = cayley(Z - Z^T) orthogonal; doubly
  stochastic without Sinkhorn (rows and columns of Q are unit vectors).
- "stiefel" (JPmHC): H_res = Q = cayley(Z - Z^T), exactly orthogonal (`linalg.cayley`; JPmHC's
  (I + A)^(-1) (I - A) is the same map with A = Z^T - Z).
- "grassmann" (JPmHC, rank p): H_res = U U^T, the orthogonal projector onto the p-dimensional
  stream subspace spanned by U = the first p columns of cayley(Z - Z^T). It depends on the
  subspace only (a point of Gr(n, p)): symmetric, idempotent, rank p, spectral norm 1; the
  other n - p stream directions are forgotten each layer and refilled by h_post.
- "spectral_sphere" (sHC): H_res = Z / sigma_max(Z) (negative entries allowed), the top singular
  pair (u, v) held constant in the derivative (Miyato et al. 2018), so d sigma = u^T dZ v. By
  default (`power_iters=None`) the pair is exact, from an SVD: n x n with small n costs nothing
  next to the layer. `power_iters=k` runs k warm-started power sweeps per call instead
  (`linalg.top_singular`), for large n only: the iterate lags a fast-moving Z, so sigma_max(H_res)
  drifts off 1 (3e-3 to 8e-3 during 50 Adam steps at lr 0.1 with k = 2, n = 4).

All constrained families (not HC) use mHC's width maps h_pre = sigmoid(.), h_post = 2 sigmoid(.).
Nothing here imports Flax: the NNX and linen modules share these functions.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from manifold_opt import linalg

MIXERS = ("identity", "unconstrained", "birkhoff", "orthostochastic", "stiefel", "grassmann", "spectral_sphere")
# Mixers whose point can live on one of our manifolds (the `riemannian=True` option).
RIEMANNIAN_MIXERS = ("birkhoff", "orthostochastic", "stiefel", "grassmann")
BIRKHOFF_INIT_LOGIT = 4.0  # Z = 4 I: H_res near the identity (diagonal ~0.95 at n = 4)
ORTHOSTOCHASTIC_INIT_SCALE = 0.1  # Q * Q has zero gradient at Q = I: start off that saddle
PRE_INIT_LOGIT = 2.0  # h_pre = sigmoid(+-2): mostly stream k mod n, as HC's e_(k mod n)
TOKEN_POWER_ITERS = 50  # sHC power sweeps for per-token (dynamic) mixers


@dataclasses.dataclass(frozen=True)
class MixerSpec:
    """A validated mixer family with its options; `where` names the public caller in errors."""

    name: str
    n: int
    rank: int | None = None
    sinkhorn_iters: int = 1000
    implicit_diff: bool = True
    power_iters: int | None = None
    where: str = "HyperConnections"

    def __post_init__(self):
        if self.name not in MIXERS:
            raise ValueError(f"{self.where}: mixer must be one of {list(MIXERS)}, got {self.name!r}")
        for key in ("n", "sinkhorn_iters") + (("power_iters",) if self.power_iters is not None else ()):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                name = "n_streams" if key == "n" else key
                raise ValueError(f"{self.where}: {name} must be a positive int, got {value!r}")
        if self.rank is not None:
            if self.name != "grassmann":
                raise ValueError(f"{self.where}: rank applies to the 'grassmann' mixer only, got mixer={self.name!r}")
            if isinstance(self.rank, bool) or not isinstance(self.rank, int) or not 1 <= self.rank <= self.n:
                raise ValueError(f"{self.where}: rank must be an int in [1, n_streams={self.n}], got {self.rank!r}")

    @property
    def p(self) -> int:
        """Grassmann rank: `rank`, default max(1, n - 1)."""
        return self.rank if self.rank is not None else max(1, self.n - 1)

    @property
    def constrained_width(self) -> bool:
        """mHC's sigmoid width maps (all but HC's raw ones and the fixed identity)."""
        return self.name not in ("identity", "unconstrained")

    # ---- initial raw values -------------------------------------------------------------
    def residual_init(self, key, dtype=jnp.float32) -> jax.Array | None:
        """The raw n x n residual parameter Z at initialization (None for "identity")."""
        n = self.n
        if self.name == "identity":
            return None
        if self.name in ("unconstrained", "spectral_sphere"):
            return jnp.eye(n, dtype=dtype)
        if self.name == "birkhoff":
            return BIRKHOFF_INIT_LOGIT * jnp.eye(n, dtype=dtype)
        if self.name == "orthostochastic":
            return ORTHOSTOCHASTIC_INIT_SCALE * jax.random.normal(key, (n, n), dtype)
        return jnp.zeros((n, n), dtype)  # stiefel, grassmann: Q = I

    def width_init(self, layer_index, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
        """Raw (h_pre, h_post) at initialization for layer `layer_index` (HC: e_(k mod n), 1)."""
        chosen = jnp.arange(self.n) == layer_index % self.n
        if self.constrained_width:
            return jnp.where(chosen, PRE_INIT_LOGIT, -PRE_INIT_LOGIT).astype(dtype), jnp.zeros(self.n, dtype)
        return chosen.astype(dtype), jnp.ones(self.n, dtype)

    def power_init(self, key, dtype=jnp.float32) -> jax.Array:
        """Warm-start right singular vector of the sHC power iteration."""
        v = jax.random.normal(key, (self.n,), dtype)
        return v / jnp.linalg.norm(v)

    # ---- raw -> constrained ---------------------------------------------------------------
    def width(self, raw_pre, raw_post):
        """(h_pre, h_post) from raw values: mHC's sigmoid and 2 sigmoid, or HC's raw ones."""
        if self.constrained_width:
            return jax.nn.sigmoid(raw_pre), 2.0 * jax.nn.sigmoid(raw_post)
        return raw_pre, raw_post

    def residual(self, raw, v0=None):
        """(H_res, v): the constrained mixer of raw Z (..., n, n) and, for "spectral_sphere", the
        power iteration's new right singular vector (else v0 unchanged)."""
        name = self.name
        if name == "unconstrained":
            return raw, v0
        if name == "birkhoff":
            compute = jnp.promote_types(raw.dtype, jnp.float32)
            p = linalg.sinkhorn(raw.astype(compute), num_iters=self.sinkhorn_iters, implicit_diff=self.implicit_diff)
            return p.astype(raw.dtype), v0
        if name == "spectral_sphere":
            if self.power_iters is None:  # exact top singular pair (SVD), no warm start needed
                left, _, right = jnp.linalg.svd(jax.lax.stop_gradient(raw))
                u, v = left[..., :, 0], right[..., 0, :]
            else:
                v0 = jnp.broadcast_to(v0, raw.shape[:-1]).astype(raw.dtype)
                _, u, v = linalg.top_singular(jax.lax.stop_gradient(raw), num_iters=self.power_iters, v0=v0)
            u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
            sigma = jnp.einsum("...i,...ij,...j->...", u, raw, v)
            return raw / sigma[..., None, None], v
        q = linalg.cayley(raw - jnp.swapaxes(raw, -1, -2))
        return self.from_point(q), v0

    def warm_residual(self, static, raw, v):
        """sHC with a warm start: (H_res of raw, the new iterate). The static mixer advances the
        iterate v by `power_iters` sweeps; per-token mixers raw (..., n, n), which cannot be
        warm-started across steps, start from it with TOKEN_POWER_ITERS sweeps."""
        res, v = self.residual(static, v)
        v = jax.lax.stop_gradient(v)
        if raw.ndim == 2:
            return res, v
        return dataclasses.replace(self, power_iters=TOKEN_POWER_ITERS).residual(raw, v)[0], v

    def from_point(self, x):
        """H_res from a point of the mixer's manifold: Q (orthogonal) or U (n x p, orthonormal)
        or P (doubly stochastic). Orthogonal Q serves "grassmann" through its first p columns."""
        if self.name == "orthostochastic":
            return x * x
        if self.name == "grassmann":
            u = x[..., :, : self.p]
            return u @ jnp.swapaxes(u, -1, -2)
        return x

    # ---- the raw-parameter option: the point itself, kept on a manifold by the optimizer ---
    def manifold(self):
        """The manifold of the mixer's point (`riemannian=True`)."""
        from manifold_opt import manifolds

        if self.name not in RIEMANNIAN_MIXERS:
            raise ValueError(
                f"{self.where}: riemannian=True needs a mixer on a manifold, one of {list(RIEMANNIAN_MIXERS)}; "
                f"got {self.name!r}"
            )
        if self.name == "birkhoff":
            return manifolds.Birkhoff(self.n)
        if self.name == "grassmann":
            return manifolds.Grassmann(self.n, self.p)
        return manifolds.OrthogonalGroup(self.n)

    def point_init(self, key, dtype=jnp.float32) -> jax.Array:
        """The initial point: the constrained image of `residual_init` (for grassmann, U)."""
        raw = self.residual_init(key, dtype)
        if self.name == "birkhoff":
            return self.residual(raw)[0]
        q = linalg.cayley(raw - raw.T)
        return q[:, : self.p] if self.name == "grassmann" else q

    # ---- feasibility ------------------------------------------------------------------------
    def feasibility(self, m) -> jax.Array:
        """Largest violation of the family's constraint by H_res (..., n, n): row/column sums and
        negativity (doubly stochastic), ||M^T M - I|| (orthogonal), |sigma_max - 1|, or for
        grassmann ||M^2 - M|| + ||M - M^T|| + |trace M - p| (a rank-p orthogonal projector)."""
        name = self.name
        eye = jnp.eye(self.n, dtype=m.dtype)
        mt = jnp.swapaxes(m, -1, -2)
        if name in ("birkhoff", "orthostochastic"):
            sums = jnp.concatenate([jnp.sum(m, -1), jnp.sum(m, -2)], -1)
            return jnp.maximum(jnp.max(jnp.abs(sums - 1.0)), jnp.max(-m))
        if name == "stiefel":
            return jnp.max(jnp.abs(mt @ m - eye))
        if name == "grassmann":
            trace = jnp.trace(m, axis1=-2, axis2=-1)
            return jnp.max(jnp.abs(m @ m - m)) + jnp.max(jnp.abs(m - mt)) + jnp.max(jnp.abs(trace - self.p))
        if name == "spectral_sphere":
            return jnp.max(jnp.abs(jnp.linalg.norm(m, ord=2, axis=(-2, -1)) - 1.0))
        if name == "identity":
            return jnp.max(jnp.abs(m - eye))
        return jnp.zeros((), m.dtype)


def rms_normalize(x, eps=1e-6):
    """x / rms(x) over the last axis (RMSNorm without a gain)."""
    compute = jnp.promote_types(x.dtype, jnp.float32)
    x32 = x.astype(compute)
    return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)


def dynamic_raw(h, static, phi, alpha):
    """mHC's per-token raw coefficients static + alpha * (RMSNorm(vec H) @ phi), shaped like
    `static` with the leading dimensions of H (..., n, d)."""
    flat = rms_normalize(h.reshape(h.shape[:-2] + (-1,)))
    delta = (flat @ phi.astype(flat.dtype)).reshape(h.shape[:-2] + static.shape)
    return static + (alpha * delta).astype(static.dtype)


def mix(h, block, pre, post, res):
    """H' = res H + post F(pre^T H) for streams h (..., n, d); res None means the identity with
    the stream mean as branch input (exactly h + F(h) at n = 1)."""
    if res is None:
        y = block(jnp.mean(h, axis=-2))
        return h + y[..., None, :]
    x = jnp.einsum("...n,...nd->...d", pre.astype(h.dtype), h)
    y = block(x)
    mixed = jnp.einsum("...ij,...jd->...id", res.astype(h.dtype), h)
    return mixed + post.astype(h.dtype)[..., :, None] * y[..., None, :]


def expand_streams(x, n: int):
    """Copy x (..., d) into n streams (..., n, d) (HC's input expansion)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expand_streams: n must be a positive int, got {n!r}")
    return jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (n, x.shape[-1]))


def reduce_streams(h):
    """Sum the streams (..., n, d) -> (..., d) (HC's output reduction)."""
    if h.ndim < 2:
        raise ValueError(f"reduce_streams: h must be streams (..., n, d), got shape {h.shape}")
    return jnp.sum(h, axis=-2)


def composite_gain(matrices):
    """mHC's stability measure of residual mixers (L, n, n) over depth: for each depth l the
    product P_l = H_l ... H_1, returned as (largest absolute row sum of P_l, spectral norm of P_l),
    each of shape (L,)."""

    def step(prod, m):
        prod = m @ prod
        return prod, (jnp.max(jnp.sum(jnp.abs(prod), -1)), jnp.linalg.norm(prod, ord=2))

    eye = jnp.eye(matrices.shape[-1], dtype=matrices.dtype)
    _, (row_sums, spectral) = jax.lax.scan(step, eye, matrices)
    return row_sums, spectral

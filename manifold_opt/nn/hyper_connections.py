"""Hyper-connections in Flax NNX: `h = hc(h, block)` on n residual streams (..., n, d).

    H' = H_res H + h_post F(h_pre^T H)        (Zhu et al. 2024; mHC, Xie et al. 2025)

The mixer family (see `manifold_opt.nn.mixers`) keeps H_res on its constraint set. Static
mixers hold one raw matrix per layer; `dynamic=True` adds mHC's per-token terms
raw = bias + alpha * (RMSNorm(vec H) @ phi) with phi = 0 and alpha = 0.01 at init, so a dynamic
mixer equals its static one at initialization. `riemannian=True` stores the mixer's point itself
(P, Q or U) as `nnx.Param(value, manifold=M)`, for `mo.riemannian_adam` to keep on M.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from manifold_opt.nn.mixers import MixerSpec, dynamic_raw, mix

DYNAMIC_ALPHA_INIT = 0.01  # mHC's alpha


class PowerIterate(nnx.Variable):
    """The sHC power iteration's right singular vector, warm-started across calls."""


class HyperConnections(nnx.Module):
    """Hyper-connections around any block: `h = hc(h, block)` on streams h (..., n, d).

    mixer: "identity" | "unconstrained" (HC) | "birkhoff" (mHC) | "orthostochastic" |
    "stiefel" | "grassmann" | "spectral_sphere" (sHC). `dim` (d) is needed only when
    `dynamic`. `layer_index` k picks HC's initial branch input stream k mod n. `rank` is the
    grassmann rank p (default n - 1); `sinkhorn_iters`, `implicit_diff` configure birkhoff,
    `power_iters` sHC's sigma_max (None: exact, by SVD; k: k warm-started power sweeps per
    call, for large n only, see `mixers`). Sinkhorn stops at tolerance (1e-6 in float32) or
    `sinkhorn_iters` sweeps (mHC uses 20, which misses 1e-5 once trained mixers grow sharp;
    unrolled differentiation always runs all sweeps).
    """

    def __init__(
        self,
        n_streams: int,
        *,
        mixer: str = "birkhoff",
        dynamic: bool = False,
        dim: int | None = None,
        layer_index: int = 0,
        rank: int | None = None,
        sinkhorn_iters: int = 1000,
        implicit_diff: bool = True,
        power_iters: int | None = None,
        riemannian: bool = False,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.spec = spec = MixerSpec(mixer, n_streams, rank, sinkhorn_iters, implicit_diff, power_iters)
        check_options(spec, dynamic, dim, layer_index, riemannian, "HyperConnections")
        self.dynamic, self.riemannian = dynamic, riemannian
        n = n_streams
        if mixer == "identity":
            return
        pre, post = spec.width_init(layer_index, param_dtype)
        self.pre, self.post = nnx.Param(pre), nnx.Param(post)
        key = rngs.params()
        if riemannian:
            self.residual = nnx.Param(spec.point_init(key, param_dtype), manifold=spec.manifold())
        else:
            self.residual = nnx.Param(spec.residual_init(key, param_dtype))
        if mixer == "spectral_sphere" and power_iters is not None:
            self.power_v = PowerIterate(spec.power_init(rngs.params(), param_dtype))
        if dynamic:
            self.phi_pre = nnx.Param(jnp.zeros((n * dim, n), param_dtype))
            self.phi_post = nnx.Param(jnp.zeros((n * dim, n), param_dtype))
            self.phi_res = nnx.Param(jnp.zeros((n * dim, n * n), param_dtype))
            self.alpha = nnx.Param(jnp.full((3,), DYNAMIC_ALPHA_INIT, param_dtype))

    def _residual(self, raw):
        if self.riemannian:
            return self.spec.from_point(raw)
        if self.spec.name != "spectral_sphere" or self.spec.power_iters is None:
            return self.spec.residual(raw)[0]
        res, self.power_v[...] = self.spec.warm_residual(self.residual[...], raw, self.power_v[...])
        return res

    def residual_matrix(self, h: jax.Array | None = None) -> jax.Array:
        """The current constrained n x n residual mixer; for a dynamic layer given streams h
        (..., n, d), the per-token mixers (..., n, n) (without h: the static part)."""
        if self.spec.name == "identity":
            return jnp.eye(self.spec.n)
        return self._coefficients(h)[2]

    def width_weights(self) -> tuple[jax.Array, jax.Array]:
        """The static (h_pre, h_post)."""
        if self.spec.name == "identity":
            n = self.spec.n
            return jnp.full((n,), 1.0 / n), jnp.ones((n,))
        return self.spec.width(self.pre[...], self.post[...])

    def __call__(self, h: jax.Array, block) -> jax.Array:
        check_streams(h, self.spec.n, "HyperConnections")
        if self.spec.name == "identity":
            return mix(h, block, None, None, None)
        pre, post, res = self._coefficients(h)
        return mix(h, block, pre, post, res)

    def _coefficients(self, h=None):
        """(h_pre, h_post, H_res), per token when dynamic and h is given."""
        raw_pre, raw_post, raw_res = self.pre[...], self.post[...], self.residual[...]
        if self.dynamic and h is not None:
            a = self.alpha[...]
            raw_pre = dynamic_raw(h, raw_pre, self.phi_pre[...], a[0])
            raw_post = dynamic_raw(h, raw_post, self.phi_post[...], a[1])
            raw_res = dynamic_raw(h, raw_res, self.phi_res[...], a[2])
        pre, post = self.spec.width(raw_pre, raw_post)
        return pre, post, self._residual(raw_res)


def check_options(spec: MixerSpec, dynamic, dim, layer_index, riemannian, where: str) -> None:
    """ValueError naming `where` for options the mixer spec does not cover."""
    if isinstance(layer_index, bool) or not isinstance(layer_index, int) or layer_index < 0:
        raise ValueError(f"{where}: layer_index must be a nonnegative int, got {layer_index!r}")
    if dynamic:
        if spec.name == "identity":
            raise ValueError(f"{where}: the 'identity' mixer has no dynamic variant (dynamic=True)")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"{where}: dynamic=True needs dim, the stream width d, a positive int; got {dim!r}")
        if riemannian:
            raise ValueError(f"{where}: riemannian=True stores one static point; it has no dynamic variant")
    if riemannian:
        spec.manifold()  # raises for mixers without a manifold


def check_streams(h, n: int, where: str) -> None:
    if h.ndim < 2 or h.shape[-2] != n:
        raise ValueError(f"{where}: h must be streams (..., n_streams={n}, d), got shape {h.shape}")

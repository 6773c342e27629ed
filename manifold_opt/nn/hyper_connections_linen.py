"""Hyper-connections in Flax linen: the same layer as `manifold_opt.nn.HyperConnections` (NNX),
sharing its mixer functions. Call it with a bound block: `h = self.hc(h, self.block)`.

Parameters: 'pre', 'post', 'residual' (and 'phi_pre', 'phi_post', 'phi_res', 'alpha' when
dynamic); with `riemannian=True` 'residual' is the mixer's point on `spec.manifold()` (linen
params carry no metadata: build the tree with `mo.manifold_tree(params, {"*/residual": M})`).
With `power_iters=k`, the sHC power iterate lives in the 'power_iteration' collection (updated
when it is mutable).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from manifold_opt.nn.hyper_connections import DYNAMIC_ALPHA_INIT, check_options, check_streams
from manifold_opt.nn.mixers import MixerSpec, dynamic_raw, mix


class HyperConnections(nn.Module):
    """Linen hyper-connections; see `manifold_opt.nn.HyperConnections` for the options."""

    n_streams: int
    mixer: str = "birkhoff"
    dynamic: bool = False
    dim: int | None = None
    layer_index: int = 0
    rank: int | None = None
    sinkhorn_iters: int = 1000
    implicit_diff: bool = True
    power_iters: int | None = None
    riemannian: bool = False
    param_dtype: Any = jnp.float32

    @property
    def spec(self) -> MixerSpec:
        return MixerSpec(self.mixer, self.n_streams, self.rank, self.sinkhorn_iters, self.implicit_diff,
                         self.power_iters, where="HyperConnectionsLinen")

    @nn.compact
    def __call__(self, h, block):
        spec = self.spec
        check_options(spec, self.dynamic, self.dim, self.layer_index, self.riemannian, "HyperConnectionsLinen")
        check_streams(h, spec.n, "HyperConnectionsLinen")
        if spec.name == "identity":
            return mix(h, block, None, None, None)
        n, dtype = spec.n, self.param_dtype
        raw_pre = self.param("pre", lambda key: spec.width_init(self.layer_index, dtype)[0])
        raw_post = self.param("post", lambda key: spec.width_init(self.layer_index, dtype)[1])
        if self.riemannian:
            res = spec.from_point(self.param("residual", lambda key: spec.point_init(key, dtype)))
        else:
            raw_res = self.param("residual", lambda key: spec.residual_init(key, dtype))
            if self.dynamic:
                alpha = self.param("alpha", lambda key: jnp.full((3,), DYNAMIC_ALPHA_INIT, dtype))
                zeros = lambda width: (lambda key: jnp.zeros((n * self.dim, width), dtype))  # noqa: E731
                raw_pre = dynamic_raw(h, raw_pre, self.param("phi_pre", zeros(n)), alpha[0])
                raw_post = dynamic_raw(h, raw_post, self.param("phi_post", zeros(n)), alpha[1])
                raw_res = dynamic_raw(h, raw_res, self.param("phi_res", zeros(n * n)), alpha[2])
            if spec.name == "spectral_sphere" and spec.power_iters is not None:
                res = self._spectral_sphere(spec, raw_res)
            else:
                res = spec.residual(raw_res)[0]
        pre, post = spec.width(raw_pre, raw_post)
        return mix(h, block, pre, post, res)

    def _spectral_sphere(self, spec, raw):
        """sHC by `MixerSpec.warm_residual`; the iterate is stored when the collection is mutable."""
        init = lambda: spec.power_init(self.make_rng("params"), self.param_dtype)  # noqa: E731
        power = self.variable("power_iteration", "v", init)
        res, v = spec.warm_residual(self.get_variable("params", "residual"), raw, power.value)
        if self.is_mutable_collection("power_iteration"):
            power.value = v
        return res

"""The linen side of `manifold_opt.nn`: boxed manifold metadata and the orthogonal dense layer.

    kernel_init=mo.nn.linen.with_manifold(Stiefel(64, 32))   # value boxed with its manifold
    variables = model.init(key, x)
    manifolds = mo.nn.manifold_tree_of(variables)            # fits boxed and unboxed params

linen unboxes `ManifoldBoxed` values when a module reads them (as it does `nn.Partitioned`), so
models run unchanged on boxed or `nn.meta.unbox`-ed variables.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from flax.core import meta

from manifold_opt.manifolds.base import Manifold
from manifold_opt.nn.metadata import check_manifold, manifold_init
from manifold_opt.nn.orthogonal import check_orthogonal_dense, kernel_manifold, rotation

BASE_COLLECTION = "orthogonal_base"  # where OrthogonalDense keeps its fixed W0 (not trained)


class ManifoldBoxed(struct.PyTreeNode, meta.AxisMetadata):
    """A linen parameter value boxed with the manifold it lives on (`manifold_tree_of` reads it).
    Stacking layers (nn.scan / nn.vmap) adds leading axes, which manifolds accept as batch axes."""

    value: Any
    manifold: Manifold = struct.field(pytree_node=False)

    def unbox(self):
        return self.value

    def replace_boxed(self, val):
        return self.replace(value=val)

    def add_axis(self, index: int, params: dict[Any, Any]):
        return self

    def remove_axis(self, index: int, params: dict[Any, Any]):
        return self


def with_manifold(manifold: Manifold, init=None):
    """A linen `kernel_init` returning `ManifoldBoxed(init(key, shape, dtype), manifold)`, drawing
    from `init` (default `manifold_init(manifold)`)."""
    check_manifold("linen.with_manifold", manifold)
    draw = manifold_init(manifold) if init is None else init

    def boxed_init(*args, **kwargs):
        return ManifoldBoxed(draw(*args, **kwargs), manifold)

    return boxed_init


class OrthogonalDense(nn.Module):
    """linen twin of `mo.nn.OrthogonalDense`: y = x W + b, W (in x features) with W^T W = I.

    "riemannian": W is the boxed param 'kernel' (train it with a Riemannian transform);
    "cayley" / "exp": W = Q(A - A^T) W0 with the free param 'generator' A (zeros at init) and the
    fixed W0 in the 'orthogonal_base' collection (keep that collection in the variables you
    pass to `apply`; it is not a param, so optimizers never see it)."""

    features: int
    parameterization: str = "riemannian"
    use_bias: bool = True
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = x.shape[-1]
        check_orthogonal_dense("linen.OrthogonalDense", n, self.features, self.parameterization)
        manifold, shape = kernel_manifold(n, self.features), (n, self.features)
        if self.parameterization == "riemannian":
            kernel = self.param("kernel", with_manifold(manifold), shape, self.param_dtype)
        else:
            generator = self.param("generator", nn.initializers.zeros, (n, n), self.param_dtype)
            base = self.variable(
                BASE_COLLECTION, "base", lambda: manifold_init(manifold)(self.make_rng("params"), shape, self.param_dtype)
            )
            kernel = rotation(generator, self.parameterization) @ base.value
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        return y

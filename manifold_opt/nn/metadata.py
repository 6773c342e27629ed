"""Manifold-aware initializers and parameter metadata for Flax NNX and linen.

A constrained parameter says which manifold it lives on once, where it is created:

- NNX: the Variable carries it as metadata, `nnx.Param(value, manifold=M)`; `with_manifold(M)`
  is a `kernel_init` that draws from M and attaches the metadata.
- linen: the value is boxed in `linen.ManifoldBoxed(value, M)` (like `nn.Partitioned`);
  `manifold_opt.nn.linen.with_manifold(M)` is the `kernel_init`.

`manifold_tree_of(model_or_variables)` reads the manifold tree back (None for every parameter
without the metadata), ready for `mo.riemannian_adam`, `mo.riemannian_partition` and
`mo.project_params`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from manifold_opt.manifolds.base import Manifold
from manifold_opt.manifolds.tree import check_manifold_tree, is_param_wrapper, path_to_str

MANIFOLD = "manifold"  # the metadata attribute: nnx.Param(value, manifold=M), box.manifold


def check_manifold(owner: str, manifold) -> None:
    if not isinstance(manifold, Manifold):
        raise TypeError(f"{owner}: manifold must be a manifold_opt Manifold, got {manifold!r}")


def manifold_init(manifold: Manifold):
    """A Flax initializer `init(key, shape, dtype)` drawing `manifold.random_point` (uniform on
    Stiefel / O(n) (Haar), on the sphere, ...). `shape` must be `batch_shape + manifold.shape`;
    leading batch axes draw independent points (stacked layers). Plain arrays, no metadata:
    usable as `kernel_init` in NNX and linen alike."""
    check_manifold("manifold_init", manifold)

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(shape)
        k = len(manifold.shape)
        if len(shape) < k or shape[len(shape) - k:] != tuple(manifold.shape):
            raise ValueError(
                f"manifold_init({manifold}): shape must be (..., {', '.join(map(str, manifold.shape))}), got {shape}"
            )
        return manifold.random_point(key, dtype, batch_shape=shape[: len(shape) - k])

    return init


def with_manifold(manifold: Manifold, init=None):
    """An NNX `kernel_init` whose Param carries `manifold=manifold` metadata, drawing from
    `init` (default `manifold_init(manifold)`), e.g.
    `nnx.Linear(64, 32, kernel_init=mo.nn.with_manifold(Stiefel(64, 32)), rngs=rngs)`."""
    check_manifold("with_manifold", manifold)
    return nnx.with_metadata(manifold_init(manifold) if init is None else init, **{MANIFOLD: manifold})


def _manifold_of(path, node):
    """The manifold recorded on a parameter wrapper (None when absent or a bare array)."""
    if not is_param_wrapper(node):
        return None
    if isinstance(node, nnx.Variable):
        manifold = node.get_metadata().get(MANIFOLD)
    else:
        manifold = getattr(node, MANIFOLD, None)
    if manifold is not None and not isinstance(manifold, Manifold):
        raise TypeError(
            f"manifold_tree_of: the {MANIFOLD!r} metadata of {path_to_str(path)!r} must be a Manifold, got {manifold!r}"
        )
    return manifold


def manifold_tree_of(tree):
    """The manifold tree recorded in Flax parameter metadata.

    `tree` is an NNX module (read through `nnx.state(tree, nnx.Param)`), an `nnx.State` of
    Variables, or linen variables holding `ManifoldBoxed` values. The result has one leaf per
    parameter (a Manifold, or None where no manifold was recorded) in the containers of that
    state, so it fits both the wrapped params and their plain arrays (`nnx.as_pure`,
    `nn.meta.unbox`); for `nnx.to_pure_dict` params, convert it with `nnx.to_pure_dict` too.
    ValueError if a recorded manifold does not fit its parameter's shape.
    """
    state = nnx.state(tree, nnx.Param) if isinstance(tree, nnx.Module) else tree
    manifolds = jax.tree_util.tree_map_with_path(_manifold_of, state, is_leaf=is_param_wrapper)
    try:
        check_manifold_tree(manifolds, state)
    except ValueError as err:
        raise ValueError(f"manifold_tree_of: {err}") from None
    return manifolds

"""Helpers over a params pytree given its manifold tree (see `manifolds.tree`).

- `project_params(manifolds, params)`: every constrained parameter snapped onto its manifold,
- `partition_labels(manifolds)`: an `optax.partition` label function, constrained vs free.

Both accept params whose arrays sit inside wrapper nodes (Flax `nnx.Variable`s, linen boxed
metadata) and keep the wrappers, so they work on `nnx.state(model, nnx.Param)` directly.
"""
from __future__ import annotations

import jax

from manifold_opt.manifolds.tree import (
    broadcast_manifold_tree,
    check_manifold_tree,
    is_manifold_leaf,
    map_manifold_tree,
)

CONSTRAINED = "manifold"
FREE = "free"


def _checked(owner: str, manifolds, params) -> None:
    try:
        check_manifold_tree(manifolds, params)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None


def project_params(manifolds, params):
    """`params` with each constrained leaf x replaced by `M.project(x)`, the nearest point of its
    manifold M where one exists (Stiefel / O(n): the polar factor U V^T of x = U S V^T; sphere and
    oblique: normalized columns); unconstrained (`None`) leaves are returned unchanged.

    Typical use: snap an initialization or a drifted checkpoint onto the manifolds before a
    Riemannian transform starts, e.g.
    `nnx.update(model, mo.project_params(manifolds, nnx.state(model, nnx.Param)))`.
    """
    _checked("project_params", manifolds, params)
    return map_manifold_tree(lambda m, x: m.project(x), manifolds, params)


def partition_labels(manifolds, constrained: str = CONSTRAINED, free: str = FREE):
    """A label function `params -> labels` for `optax.partition`: `constrained` on the leaves of
    the manifold tree that hold a manifold, `free` on the `None` ones.

    The labels form a prefix of the params (one label per manifold-tree leaf), so the same
    function labels the Variable-wrapped params `nnx.Optimizer` passes to `init` and the plain
    arrays it passes to `update`. `mo.riemannian_partition` is the one-line use.
    """
    for name, label in (("constrained", constrained), ("free", free)):
        if not isinstance(label, str):
            raise TypeError(f"partition_labels: {name} must be a str label, got {label!r}")
    if constrained == free:
        raise ValueError(f"partition_labels: constrained and free must differ, both are {free!r}")
    for leaf in jax.tree.leaves(manifolds, is_leaf=is_manifold_leaf):
        if not is_manifold_leaf(leaf):
            raise TypeError(f"partition_labels: manifolds must be a manifold tree (Manifold or None leaves), got leaf {leaf!r}")

    def labels(params):
        _checked("partition_labels", manifolds, params)
        tree = broadcast_manifold_tree(manifolds, params)
        return jax.tree.map(lambda m: free if m is None else constrained, tree, is_leaf=is_manifold_leaf)

    return labels

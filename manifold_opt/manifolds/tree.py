"""Manifold trees: which parameters of a pytree live on which manifold.

A manifold tree mirrors a params pytree; each leaf is a geometry: a `Manifold`, a constraint set
(`mo.sets`, anything with an `lmo`) or `None` (unconstrained). A single geometry (or `None`)
stands for itself at every leaf of the params. This module is the one place that walks such
trees (manifold trees and set trees alike):

- `manifold_tree(params, rules)` builds a tree from glob patterns over '/'-joined key paths,
- `check_manifold_tree(manifolds, params)` validates one against params (the error names the
  first mismatching path),
- `map_manifold_tree(fn, manifolds, params, *rest)` maps `fn(manifold, param, *rest_leaves)`
  over the leaves, with `None` replaced by `UNCONSTRAINED`,
- `infeasible_leaves(manifolds, params)` lists the concrete params that are off their manifold.

The manifold tree only has to be a prefix of the params: a leaf sits over the params subtree
that holds one point of its manifold, possibly inside a wrapper node (a Flax `Variable`, as
`nnx.Optimizer.init` passes them), or over an empty subtree (an `optax.MaskedNode` inside
`optax.partition`, skipped). A point is one array for most manifolds and a tuple of arrays where
the manifold's `point_structure` says so (FixedRankEmbedded's (U, s, Vt), a Product's factors):
there the subtree's arrays, in flattening order (a tuple or named tuple keeps its order), are
handed to the manifold as that tuple, and results of the point's structure are put back in the
subtree's containers, so updates have the params' structure. `manifold_tree` stops at such
wrappers (`is_param_wrapper`), so `manifold_tree(nnx.state(model, nnx.Param), rules)` and boxed
linen variables work directly, with rule paths like 'dense/kernel', and the tree it returns
fits both the wrapped and the plain (`nnx.as_pure`) params.
JAX treats `None` as an empty subtree, so every flatten here passes `is_leaf=is_manifold_leaf`.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Mapping

import jax
import numpy as np

from manifold_opt.manifolds.base import Manifold, feasibility_tolerance
from manifold_opt.manifolds.euclidean import Euclidean

# The stand-in for a `None` leaf: Euclidean space of scalars, so every entry of an unconstrained
# array is its own factor (per-entry norms; Riemannian Adam reduces to Adam there).
UNCONSTRAINED = Euclidean(())


def is_manifold_leaf(node) -> bool:
    """True for the leaves of a manifold tree: manifolds, constraint sets and `None`."""
    return node is None or isinstance(node, Manifold) or is_constraint_set(node)


def is_constraint_set(node) -> bool:
    """True for a constraint set of `mo.sets` (duck-typed by its `lmo`, so manifolds/ does not
    import sets/)."""
    return not isinstance(node, type) and callable(getattr(type(node), "lmo", None))


def is_param_wrapper(node) -> bool:
    """True for a pytree node that wraps one parameter array with metadata: a Flax
    `nnx.Variable` (its class has `get_value`) or linen boxed metadata such as `nn.Partitioned`
    (its class has `unbox`). Duck-typed, so the core never imports Flax."""
    kind = type(node)
    return callable(getattr(kind, "get_value", None)) or callable(getattr(kind, "unbox", None))


def path_to_str(path) -> str:
    """'/'-joined names of a JAX key path, e.g. ('params', 'dense_0', 'kernel')."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return "/".join(parts)


def manifold_tree(params, rules: Mapping[str, Manifold | None]):
    """A manifold tree for `params` from glob rules over '/'-joined key paths.

    `rules` maps patterns (`fnmatch` syntax; `*` also matches '/') to a manifold or `None`, e.g.
    `{"*/mixer": Birkhoff(4), "dense*/kernel": Stiefel(64, 32)}`. A manifold whose points are
    tuples (FixedRankEmbedded, Product) matches the path of a tuple holding one of its points,
    e.g. `{"lowrank": FixedRankEmbedded(m, n, k)}` for `params["lowrank"] = (U, s, Vt)`. The
    first matching rule wins;
    parameters matched by no rule are unconstrained (`None`). A rule that matches no parameter
    left by the earlier rules is a ValueError (usually a typo). The result is validated with `check_manifold_tree`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from manifold_opt.manifolds import Stiefel, manifold_tree
        >>> params = {"dense": {"kernel": jnp.eye(4, 2), "bias": jnp.zeros(2)}}
        >>> manifold_tree(params, {"*/kernel": Stiefel(4, 2)})["dense"]["bias"] is None
        True
    """
    if not isinstance(rules, Mapping):
        raise TypeError(f"manifold_tree: rules must be a mapping pattern -> Manifold, got {type(rules).__name__}")
    for pattern, manifold in rules.items():
        if not isinstance(pattern, str):
            raise TypeError(f"manifold_tree: rule patterns must be str, got {pattern!r}")
        if not is_manifold_leaf(manifold):
            raise TypeError(f"manifold_tree: rule {pattern!r} must map to a Manifold or None, or a constraint set of mo.sets, got {manifold!r}")
    used = set()
    tuple_points = [m for m in rules.values() if _holds_tuples(m)]

    def fits(geometry, node) -> bool:
        """Whether a rule's geometry may sit at this node: one array (or a wrapped one) for most,
        a tuple that is one of its points for FixedRankEmbedded and Product."""
        value = _unwrap(node) if is_param_wrapper(node) else node
        if not _holds_tuples(geometry):
            return not isinstance(value, (tuple, list))
        try:
            geometry.check_point(value)
        except ValueError:
            return False
        return True

    def is_leaf(node) -> bool:
        return is_param_wrapper(node) or any(fits(m, node) for m in tuple_points)

    def pick(path, node):
        name = path_to_str(path)
        several = len(jax.tree_util.tree_leaves(node)) > 1
        for pattern, manifold in rules.items():
            if fnmatch.fnmatchcase(name, pattern) and (manifold is None or fits(manifold, node)):
                used.add(pattern)
                return jax.tree_util.tree_map(lambda _: None, node) if manifold is None and several else manifold
        if several:  # a tuple no rule claims as a whole: its arrays one by one
            return jax.tree_util.tree_map_with_path(lambda p, leaf: pick(path + p, leaf), node,
                                                    is_leaf=lambda n: n is not node and is_param_wrapper(n))
        return None

    tree = jax.tree_util.tree_map_with_path(pick, params, is_leaf=is_leaf)
    unused = [p for p in rules if p not in used]
    if unused:
        names = [path_to_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=is_param_wrapper)[0]]
        raise ValueError(
            f"manifold_tree: rule {unused[0]!r} matches no parameter (none left by earlier rules); "
            f"parameter paths are {names}"
        )
    check_manifold_tree(tree, params)
    return tree


def _holds_tuples(geometry) -> bool:
    """Whether a geometry's points are tuples of arrays (see `Manifold.point_structure`)."""
    return not jax.tree_util.treedef_is_leaf(_point_structure(geometry))


def broadcast_manifold_tree(manifolds, params):
    """`manifolds` as a full tree over `params` (a single manifold or None goes to every leaf; a
    single manifold whose points are tuples covers all of params, one point)."""
    if is_manifold_leaf(manifolds) and not _holds_tuples(manifolds):
        return jax.tree_util.tree_map(lambda _: manifolds, params, is_leaf=is_param_wrapper)
    return manifolds


def _paired(manifolds, params):
    """(path string, manifold or None, params subtree) for each leaf of the manifold tree.

    The manifold tree must be a prefix of params: each of its leaves sits over a subtree holding
    one array (possibly inside a wrapper node such as a Flax Variable) or no array at all
    (an `optax.MaskedNode` inside `optax.partition`)."""
    manifolds = broadcast_manifold_tree(manifolds, params)
    m_leaves, treedef = jax.tree_util.tree_flatten_with_path(manifolds, is_leaf=is_manifold_leaf)
    try:
        subtrees = treedef.flatten_up_to(params)
    except (ValueError, TypeError):
        raise ValueError(f"manifold tree does not match params: {_first_mismatch(m_leaves, params) or _CONTAINERS}") from None
    return [(path_to_str(path), m, sub) for (path, m), sub in zip(m_leaves, subtrees)], treedef


_CONTAINERS = (
    "the paths agree but the container types differ (e.g. a dict tree for an nnx.State); build the tree "
    "from the params the transform sees, e.g. mo.manifold_tree(nnx.state(model, nnx.Param), rules) or "
    "mo.nn.manifold_tree_of(model) for nnx.Optimizer, or convert it with nnx.to_pure_dict"
)


def _first_mismatch(m_leaves, params) -> str | None:
    """A message naming the first path present in one tree and not the other."""
    m_paths = [tuple(path) for path, _ in m_leaves]
    p_paths = [tuple(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for path in p_paths:
        if not any(path[: len(m)] == m for m in m_paths):
            return f"params has {path_to_str(path)!r}, which the manifold tree lacks"
    for m in m_paths:
        if not any(path[: len(m)] == m for path in p_paths):
            return f"the manifold tree has {path_to_str(m)!r}, which params lack"
    return None


def _point_structure(geometry) -> jax.tree_util.PyTreeDef:
    """A manifold's point structure; one array for None and the constraint sets."""
    return (geometry if isinstance(geometry, Manifold) else UNCONSTRAINED).point_structure


def _point(path, geometry, subtree):
    """What a params-shaped subtree holds for `geometry`: its arrays in the point structure (a
    point, tangent vector or gradient), None for an empty (masked) subtree, and as it is a lone
    array under a manifold whose points are tuples (a value per point, such as Adam's second
    moment, stored by `_put`)."""
    leaves = jax.tree_util.tree_leaves(subtree)
    if not leaves:
        return None
    structure = _point_structure(geometry)
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(subtree)) and structure.num_leaves > 1:
        return subtree
    if len(leaves) != structure.num_leaves:
        raise ValueError(
            f"manifold tree does not match params at {path!r}: one manifold leaf covers {len(leaves)} arrays, "
            f"{'a point' if geometry is None else repr(geometry) + ' points'} have {structure.num_leaves}"
        )
    return jax.tree_util.tree_unflatten(structure, leaves)


def _unwrap(node):
    """The value inside a parameter wrapper (see `is_param_wrapper`)."""
    return node.get_value() if callable(getattr(type(node), "get_value", None)) else node.unbox()


def _put(geometry, subtree, value):
    """`value` in place of a params subtree. Where points are one array: in the subtree's
    containers, wrappers included. Where points are tuples: a value of the point structure in the
    subtree's containers without its wrappers (a Flax Variable holding a tuple would come back
    from nnx.Optimizer's state update as an nnx.State); any other value (one per point) as it is.
    """
    structure = _point_structure(geometry)
    if jax.tree_util.treedef_is_leaf(structure):
        return jax.tree_util.tree_map(lambda _: value, subtree)
    if jax.tree_util.tree_structure(value) != structure:
        return value
    containers = jax.tree_util.tree_map(lambda n: _unwrap(n) if is_param_wrapper(n) else n, subtree,
                                        is_leaf=is_param_wrapper)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(containers), jax.tree_util.tree_leaves(value))


def check_manifold_tree(manifolds, params) -> None:
    """ValueError naming the first path where `manifolds` and `params` disagree.

    They disagree where one tree has a path the other lacks, where a leaf of `manifolds` is
    neither a Manifold nor None, or where a parameter's trailing shape is not the manifold's
    shape (leading batch dimensions are allowed).
    """
    pairs, _ = _paired(manifolds, params)
    for path, manifold, subtree in pairs:
        if not is_manifold_leaf(manifold):
            raise ValueError(f"manifold tree leaf at {path!r} must be a Manifold or None, or a constraint set of mo.sets, got {manifold!r}")
        param = _point(path, manifold, subtree)
        if manifold is not None and param is not None:
            try:
                manifold.check_point(param, name=f"param {path!r}")
            except ValueError as err:
                raise ValueError(f"manifold tree does not match params at {path!r}: {err}") from None


def map_manifold_tree(fn: Callable[..., Any], manifolds, params, *rest, num_outputs: int = 1):
    """`fn(manifold, param, *rest_leaves)` over the arrays of params (None -> UNCONSTRAINED).

    `rest` are pytrees with the structure of `params`. Returns a pytree of that structure, or a
    tuple of `num_outputs` such pytrees when `fn` returns tuples of that length. Masked
    (empty) subtrees are passed through unchanged.
    """
    pairs, treedef = _paired(manifolds, params)
    rest_subtrees = [treedef.flatten_up_to(r) for r in rest]
    outputs = [[] for _ in range(num_outputs)]
    for i, (path, manifold, subtree) in enumerate(pairs):
        param = _point(path, manifold, subtree)
        if param is None:
            for out in outputs:
                out.append(subtree)
            continue
        manifold = UNCONSTRAINED if manifold is None else manifold
        result = fn(manifold, param, *(_point(path, manifold, r[i]) for r in rest_subtrees))
        result = (result,) if num_outputs == 1 else result
        for out, value in zip(outputs, result):
            out.append(_put(manifold, subtree, value))
    trees = tuple(jax.tree_util.tree_unflatten(treedef, out) for out in outputs)
    return trees[0] if num_outputs == 1 else trees


def infeasible_leaves(manifolds, params) -> list[tuple[str, Manifold, float, float]]:
    """(path, manifold, feasibility, tolerance) of each constrained param whose largest
    `feasibility` exceeds the `feasibility_tolerance` of its dtype. Params that are tracers
    (under jit) are skipped: only concrete values can be checked."""
    found = []
    for path, manifold, subtree in _paired(manifolds, params)[0]:
        param = _point(path, manifold, subtree)
        first = jax.tree_util.tree_leaves(param)[:1]
        if manifold is None or not first or isinstance(first[0], jax.core.Tracer):
            continue
        residual = float(np.max(np.asarray(manifold.feasibility(param))))
        tolerance = feasibility_tolerance(first[0].dtype)
        if not residual <= tolerance:
            found.append((path, manifold, residual, tolerance))
    return found

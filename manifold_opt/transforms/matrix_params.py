"""Which parameters the orthogonalized optimizers treat as matrices, and how.

A parameter is viewed as a stack of matrices by dimension numbers (optax's
`MuonDimensionNumbers(reduction_axis, output_axis)`): the reduction (fan-in) axes are flattened
into the rows, the output (fan-out) axes into the columns, and every other axis is a batch axis,
so a leaf becomes a (batch, fan_in, fan_out) array and each matrix is processed independently
(`matrix_axes` says which axis is which). optax's Dense kernels are (in, out).

`weight_dimension_numbers`, accepted by every optimizer, selects the matrix parameters:

- None (default): the role rule below, `matrix_rules()`;
- `matrix_rules(overrides, per_head=...)`: the role rule with per-head attention and/or
  explicit glob overrides over '/'-joined parameter paths, e.g.
  `mo.matrix_rules({"*/final/kernel": False}, per_head=True)`;
- a pytree matching the params (or a prefix of it) whose leaves are `DimensionNumbers`,
  None (not a matrix), True (a matrix: attention kernels read as by the role rule, other
  leaves by `default_dimension_numbers`) or False;
- a callable params -> such a pytree (a label function), e.g. `ndim2_dimension_numbers`
  (optax.contrib.muon's rule: every 2-D leaf). optax.inject_hyperparams treats callables as
  schedules: pass it `static_args=("weight_dimension_numbers",)` then (`matrix_rules` objects
  are not callable and need nothing).

The role rule (`role_dimension_numbers`, by path names and shapes; Flax linen and NNX names):

1. AdamW: leaves with fewer than 2 axes; leaves named `bias` or `scale` (attention biases of
   shape (heads, head_dim) included); embeddings (a leaf name containing "embed", or a module
   named `wte`/`wpe`); output heads (any module on the path named one of HEAD_MODULES, or a 2-D
   kernel of shape (d, V) when the tree holds a (V, d) embedding, V != d: a tied-shape head);
   learned tokens and positional tables (a leaf name containing "token" or "position", or named
   `pos` / `pos_*`, e.g. `cls_token`, `pos`, `pos_embedding`); 2-D leaves with a size-1 axis.
2. Attention kernels, recognized by their module name: input projections (INPUT_PROJECTIONS,
   e.g. linen/NNX `query`, `key`, `value`), shape (d, heads, head_dim), are one (d, heads *
   head_dim) matrix; output projections (OUTPUT_PROJECTIONS, e.g. `out`), shape (heads,
   head_dim, d), are one (heads * head_dim, d) matrix; a fused `qkv` kernel (d, 3, heads,
   head_dim) is three (d, heads * head_dim) matrices. With `per_head=True` the heads axis is a
   batch axis: one (d, head_dim) / (head_dim, d) matrix per head (and per q, k, v).
3. Every other 2-D leaf is a (fan_in, fan_out) matrix; other leaves of rank >= 3 (conv kernels,
   stacked layers) go to AdamW unless an override says how to read them.

A fused kernel whose fan-out columns hold several matrices (a 2-D fused QKV (d, q + k + v), GQA
included) is split into its parts by `SplitMatrix(dims, sizes)` or `matrix_rules(split_sizes=
{pattern: sizes})`: each part is its own matrix for the orthogonalizing optimizers (map_matrices,
orthogonalize_matrices, scale_by_shape: muon, auon, hybrid_auon, normuon, root, spectral_clip);
to_matrices and the rest (conda's projection, hyperball norms, manifold_muon, project_out) see
the fused kernel whole.

Default dims for rank r >= 3 (for True leaves other than attention kernels) read a Flax conv kernel
(kh, kw, ..., in, out): all axes but the last are fan-in, so the kernel is reshaped to
(kh * kw * in, out). Use explicit `DimensionNumbers` for stacked layers (batch axes).

`orthogonalized_optimizer` (transforms.step_rules) is the one helper every optimizer uses: an
`optax.partition` that sends matrix leaves to `chain(core, shape scaling, decoupled weight
decay, learning rate)` and every other leaf (embeddings, heads, biases, norms) to AdamW.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers as DimensionNumbers

from manifold_opt.manifolds.tree import path_to_str
from manifold_opt.transforms.arguments import checked_keywords

MATRIX, OTHER = "matrix", "other"

# A user-supplied orthogonalizer(fn, matrices) -> [fn(m) for m in matrices] (maybe distributed).
Orthogonalizer = Callable[[Callable[[jax.Array], jax.Array], list], list]


class SplitMatrix(NamedTuple):
    """A kernel read by `dims` whose (flattened) fan-out columns are the consecutive matrices of
    widths `sizes` (e.g. a fused QKV kernel (d, q + k + v): sizes (q, k, v))."""

    dims: DimensionNumbers
    sizes: tuple[int, ...]


def _is_spec_leaf(x) -> bool:
    return x is None or isinstance(x, (DimensionNumbers, SplitMatrix, bool, optax.MaskedNode))


def _is_dims(d) -> bool:
    return d is None or isinstance(d, (DimensionNumbers, SplitMatrix))


def default_dimension_numbers(x: jax.Array) -> DimensionNumbers:
    """(0, 1) for a 2-D array; all-but-last fan-in, last fan-out for rank >= 3 (conv kernels)."""
    if x.ndim < 2:
        raise ValueError(
            f"weight_dimension_numbers: a leaf of shape {x.shape} was marked as a matrix; "
            "matrices need at least 2 dimensions"
        )
    if x.ndim == 2:
        return DimensionNumbers(0, 1)
    return DimensionNumbers(tuple(range(x.ndim - 1)), x.ndim - 1)


class MatrixAxes(NamedTuple):
    """The fan-in, fan-out and batch axes of one parameter (non-negative, disjoint)."""

    fan_in: tuple[int, ...]
    fan_out: tuple[int, ...]
    batch: tuple[int, ...]


def matrix_axes(shape, dims: DimensionNumbers) -> MatrixAxes:
    """Which axes of an array of `shape` are fan-in, fan-out and batch under `dims`.

    The one per-leaf reading of dimension numbers (every reshape here goes through it; a
    SplitMatrix is read whole); ValueError for axes out of range, empty or overlapping.
    """
    if isinstance(dims, SplitMatrix):
        dims = dims.dims
    shape = tuple(shape)
    ndim = len(shape)

    def norm(axes):
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        for ax in axes:
            if not -ndim <= ax < ndim:
                raise ValueError(f"weight_dimension_numbers: axis {ax} out of range for shape {shape}")
        return tuple(ax % ndim for ax in axes)

    fan_in, fan_out = norm(dims.reduction_axis), norm(dims.output_axis)
    if not fan_in or not fan_out or set(fan_in) & set(fan_out):
        raise ValueError(
            f"weight_dimension_numbers: reduction axes {fan_in} and output axes {fan_out} must be "
            f"non-empty and disjoint (shape {shape})"
        )
    return MatrixAxes(fan_in, fan_out, tuple(a for a in range(ndim) if a not in fan_in + fan_out))


# Module names the role rule reads (compared in lower case).
HEAD_MODULES = frozenset({"head", "lm_head", "output_head", "cls_head", "classifier", "logits", "unembed", "readout"})
EMBEDDING_MODULES = frozenset({"wte", "wpe"})
INPUT_PROJECTIONS = frozenset({"query", "key", "value", "q", "k", "v", "qkv", "q_proj", "k_proj", "v_proj",
                               "qkv_proj", "wq", "wk", "wv"})
OUTPUT_PROJECTIONS = frozenset({"out", "o_proj", "out_proj", "wo"})
FUSED_PROJECTIONS = frozenset({"qkv", "qkv_proj"})


def path_names(path) -> tuple[str, ...]:
    """The names along a JAX key path, without the `.value` of a Flax Variable wrapping a leaf."""
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey):
        path = path[:-1]
    return tuple(path_to_str((entry,)) for entry in path)


def _is_token_or_position(leaf: str) -> bool:
    return "token" in leaf or "position" in leaf or leaf == "pos" or leaf.startswith("pos_")


def role_dimension_numbers(names, shape, *, per_head: bool = False) -> DimensionNumbers | None:
    """The role rule (module doc) for one leaf: its path `names` and `shape` -> dims or None."""
    names = [str(n).lower() for n in names]
    leaf, module = (names[-1] if names else ""), (names[-2] if len(names) > 1 else "")
    ndim = len(shape)
    if (ndim < 2 or leaf in ("bias", "scale") or "embed" in leaf or module in EMBEDDING_MODULES
            or HEAD_MODULES.intersection(names[:-1]) or _is_token_or_position(leaf) or (ndim == 2 and 1 in shape)):
        return None
    if ndim >= 3 and module in INPUT_PROJECTIONS:  # (d, heads, head_dim): fan-in d
        first = 2 if ndim >= 4 and module in FUSED_PROJECTIONS else 1  # (d, 3, heads, head_dim): q, k, v apart
        return DimensionNumbers(0, ndim - 1) if per_head else DimensionNumbers(0, tuple(range(first, ndim)))
    if ndim >= 3 and module in OUTPUT_PROJECTIONS:  # (heads, head_dim, d): fan-out d
        return DimensionNumbers(ndim - 2, ndim - 1) if per_head else DimensionNumbers(tuple(range(ndim - 1)), ndim - 1)
    return DimensionNumbers(0, 1) if ndim == 2 else None


def ndim2_dimension_numbers(tree):
    """optax.contrib.muon's rule: every 2-D leaf is a (fan_in, fan_out) matrix, nothing else."""
    return jax.tree.map(lambda x: DimensionNumbers(0, 1) if x.ndim == 2 else None, tree)


@dataclasses.dataclass(frozen=True)
class MatrixRules:
    """The role rule with options (built by `matrix_rules`; not callable, so
    optax.inject_hyperparams keeps it static)."""

    overrides: tuple = ()
    per_head: bool = False
    split_sizes: tuple = ()

    def dimension_numbers(self, tree):
        """A pytree like `tree`: DimensionNumbers at matrix leaves, None elsewhere."""
        flat = [(path_names(path), x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]]
        embeddings = {tuple(x.shape) for names, x in flat if names and "embed" in names[-1].lower()}

        def one(path, x):
            names = path_names(path)
            dims = by_role(names, x)
            for pattern, sizes in self.split_sizes:
                if dims is not None and fnmatch.fnmatchcase("/".join(names), pattern):
                    return _leaf_dims(SplitMatrix(dims, sizes), x, names)
            return dims

        def by_role(names, x):
            for pattern, spec in self.overrides:
                if fnmatch.fnmatchcase("/".join(names), pattern):
                    return _leaf_dims(spec, x, names)
            if x.ndim == 2 and x.shape[0] != x.shape[1] and x.shape[::-1] in embeddings:
                return None  # a (d, V) head shaped like a (V, d) embedding
            return role_dimension_numbers(names, x.shape, per_head=self.per_head)

        return jax.tree_util.tree_map_with_path(one, tree)


@checked_keywords("mo.matrix_rules")
def matrix_rules(overrides: Mapping | None = None, *, per_head: bool = False,
                 split_sizes: Mapping | None = None) -> MatrixRules:
    """The role rule (module doc), with per-head attention matrices and explicit overrides.

    `overrides` maps glob patterns over '/'-joined parameter paths (`fnmatch`; `*` also matches
    '/'; a Flax Variable's `.value` is not part of the path) to DimensionNumbers, True/False or
    None; the first matching pattern wins over the role rule, e.g.
    `{"*/final_proj/kernel": False, "*/stack": DimensionNumbers(1, 2)}`. `split_sizes` maps
    patterns to the widths of the matrices fused along a matrix leaf's fan-out (SplitMatrix), e.g.
    `{"*/qkv/kernel": (512, 128, 128)}` for a GQA kernel (d, 768).
    """
    overrides = dict(overrides or {})
    for pattern, spec in overrides.items():
        if not isinstance(pattern, str):
            raise TypeError(f"matrix_rules: override patterns must be str, got {pattern!r}")
        if not (spec is None or isinstance(spec, (bool, DimensionNumbers))):
            raise TypeError(
                f"matrix_rules: override {pattern!r} must map to DimensionNumbers, a bool or None, "
                f"got {type(spec).__name__}"
            )
    if not isinstance(per_head, bool):
        raise TypeError(f"matrix_rules: per_head must be a bool, got {per_head!r}")
    split_sizes = dict(split_sizes or {})
    for pattern, sizes in split_sizes.items():
        if not (isinstance(sizes, (tuple, list)) and sizes and all(isinstance(n, int) and n > 0 for n in sizes)):
            raise TypeError(f"matrix_rules: split_sizes {pattern!r} must be a tuple of positive ints, got {sizes!r}")
    return MatrixRules(tuple(overrides.items()), per_head, tuple((k, tuple(v)) for k, v in split_sizes.items()))


def _leaf_dims(d, x, names=()):
    """One leaf (at path `names`) of a user spec -> DimensionNumbers or None, validated against
    x. True reads attention kernels by the role rule, anything else by default_dimension_numbers."""
    if isinstance(d, DimensionNumbers):
        matrix_axes(x.shape, d)
        return d
    if isinstance(d, SplitMatrix):
        fan_out = fans(x, d)[1]
        if sum(d.sizes) != fan_out:
            raise ValueError(
                f"weight_dimension_numbers: split sizes {tuple(d.sizes)} of {'/'.join(names)!r} must add up "
                f"to its fan-out {fan_out} (shape {x.shape})"
            )
        return d
    if d is True:
        return role_dimension_numbers(names, x.shape) or default_dimension_numbers(x)
    if d is None or d is False:
        return None
    raise TypeError(
        "weight_dimension_numbers: leaves must be DimensionNumbers, SplitMatrix, None or bool, "
        f"got {type(d).__name__}"
    )


def resolve_dimension_numbers(tree, weight_dimension_numbers=None):
    """A pytree like `tree` with a DimensionNumbers at each matrix leaf and None elsewhere.

    `tree` may contain optax.MaskedNode (inside optax.partition); they are kept as is.
    """
    spec = weight_dimension_numbers
    if spec is None:
        spec = MatrixRules()
    if isinstance(spec, MatrixRules):
        return spec.dimension_numbers(tree)
    if callable(spec) and not isinstance(spec, (DimensionNumbers, SplitMatrix)):
        spec = spec(tree)

    def subtree(path, d, sub):
        if isinstance(sub, optax.MaskedNode):
            return sub
        return jax.tree_util.tree_map_with_path(lambda rest, x: _leaf_dims(d, x, path_names(path + rest)), sub)

    try:
        return jax.tree_util.tree_map_with_path(subtree, spec, tree, is_leaf=_is_spec_leaf)
    except ValueError as err:
        if "weight_dimension_numbers" in str(err):
            raise
        raise ValueError(
            "weight_dimension_numbers: its pytree must match the params (or be a prefix of "
            f"them): {err}"
        ) from err


def matrix_labels(params, weight_dimension_numbers=None):
    """"matrix" / "other" labels for optax.partition."""
    dims = resolve_dimension_numbers(params, weight_dimension_numbers)
    return jax.tree.map(
        lambda d: OTHER if d is None else MATRIX, dims, is_leaf=_is_dims
    )


def fans(x: jax.Array, dims: DimensionNumbers) -> tuple[int, int]:
    """(fan_in, fan_out) of one matrix of x."""
    axes = matrix_axes(x.shape, dims)
    return math.prod(x.shape[a] for a in axes.fan_in), math.prod(x.shape[a] for a in axes.fan_out)


def to_matrices(x: jax.Array, dims: DimensionNumbers) -> jax.Array:
    """x viewed as (batch, fan_in, fan_out)."""
    axes = matrix_axes(x.shape, dims)
    n_in, n_out = fans(x, dims)
    return jnp.transpose(x, axes.batch + axes.fan_in + axes.fan_out).reshape(-1, n_in, n_out)


def from_matrices(m: jax.Array, like: jax.Array, dims: DimensionNumbers) -> jax.Array:
    """Inverse of to_matrices: back to the layout of `like`."""
    axes = matrix_axes(like.shape, dims)
    order = axes.batch + axes.fan_in + axes.fan_out
    m = m.reshape(tuple(like.shape[a] for a in order))
    return jnp.transpose(m, tuple(order.index(a) for a in range(like.ndim)))


def _split(x, d) -> list:
    """x (..., fan_out) as the list of its SplitMatrix parts along the last axis ([x] otherwise)."""
    if not isinstance(d, SplitMatrix):
        return [x]
    return jnp.split(x, list(itertools.accumulate(d.sizes))[:-1], axis=-1)


def apply_matrices(fn, x, d, *extra):
    """fn on the leaf x viewed as (batch, fan_in, fan_out) stacks, each part of a SplitMatrix apart
    (extra arrays are split along their last, fan-out, axis), back in x's layout."""
    parts = zip(_split(to_matrices(x, d), d), *(_split(e, d) for e in extra))
    return from_matrices(jnp.concatenate([fn(*part) for part in parts], axis=-1), x, d)


def map_matrices(fn, tree, weight_dimension_numbers=None, *, name: str, extra=None):
    """fn(matrices[, extra_leaf]) on each matrix leaf of `tree`, viewed as (batch, fan_in, fan_out)
    (each part of a SplitMatrix apart).

    Raises ValueError for a non-matrix leaf: `name`'s core only handles matrices (use the
    full optimizer, which routes other leaves to AdamW). `extra` is an optional pytree with
    the structure of `tree` passed leafwise as fn's second argument.
    """
    dims = resolve_dimension_numbers(tree, weight_dimension_numbers)

    def one(x, d, *e):
        if d is None:
            raise ValueError(
                f"{name}: got a non-matrix leaf of shape {x.shape}; pass weight_dimension_numbers "
                f"or use the full optimizer, which sends non-matrix params to AdamW"
            )
        return apply_matrices(fn, x, d, *e)

    trees = (tree, dims) if extra is None else (tree, dims, extra)
    return jax.tree.map(one, *trees)


def orthogonalize_matrices(fn, tree, weight_dimension_numbers=None, *, name: str,
                           orthogonalizer: Orthogonalizer | None = None):
    """fn (a polar-type map, fn(X^T) = fn(X)^T) on every matrix leaf of `tree`, all at once.

    With `orthogonalizer` (e.g. mo.parallel.sharded_orthogonalizer(mesh)), the list of
    (batch, fan_in, fan_out) stacks is handed over as a whole so it can be spread over devices.
    """
    if orthogonalizer is None:
        return map_matrices(fn, tree, weight_dimension_numbers, name=name)
    dims = resolve_dimension_numbers(tree, weight_dimension_numbers)
    leaves, treedef = jax.tree.flatten(tree)
    dim_leaves = treedef.flatten_up_to(dims)
    for x, d in zip(leaves, dim_leaves):
        if d is None:
            raise ValueError(f"{name}: got a non-matrix leaf of shape {x.shape}")
    parts = [_split(to_matrices(x, d), d) for x, d in zip(leaves, dim_leaves)]
    outs = iter(orthogonalizer(fn, [p for leaf_parts in parts for p in leaf_parts]))
    joined = [jnp.concatenate([next(outs) for _ in leaf_parts], axis=-1) for leaf_parts in parts]
    return treedef.unflatten([from_matrices(o, x, d) for o, x, d in zip(joined, leaves, dim_leaves)])


def scale_by_shape(weight_dimension_numbers=None, consistent_rms: float | None = None):
    """Scale each matrix update by sqrt(max(1, fan_out / fan_in)) (Muon's width rule), or by
    consistent_rms * sqrt(max(fan_in, fan_out)) when given (Moonlight / ROOT, r = 0.2)."""

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def factor(fan_in, fan_out):
            if consistent_rms is None:
                return math.sqrt(max(1.0, fan_out / fan_in))
            return consistent_rms * math.sqrt(max(fan_in, fan_out))

        def scale(u, d):
            if d is None:
                return u
            fan_in, fan_out = fans(u, d)
            if not isinstance(d, SplitMatrix):
                return u * jnp.asarray(factor(fan_in, fan_out), u.dtype)
            factors = jnp.concatenate([jnp.full(n, factor(fan_in, n), u.dtype) for n in d.sizes])
            return from_matrices(to_matrices(u, d) * factors, u, d)

        return jax.tree.map(scale, updates, dims), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)

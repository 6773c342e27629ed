"""Which parameters the orthogonalized optimizers treat as matrices, and how.

A parameter is viewed as a stack of matrices by dimension numbers (optax's
`MuonDimensionNumbers(reduction_axis, output_axis)`): the reduction (fan-in) axes are flattened
into the rows, the output (fan-out) axes into the columns, and every other axis is a batch axis,
so a leaf becomes a (batch, fan_in, fan_out) array and each matrix is processed independently.
optax's Dense kernels are (in, out): fan-in axis 0, fan-out axis 1.

`weight_dimension_numbers`, accepted by every optimizer, selects the matrix parameters:

- None (default): every 2-D leaf is a matrix with dims (0, 1); every other leaf is not.
- a pytree matching the params (or a prefix of it) whose leaves are `DimensionNumbers`,
  None (not a matrix), True (a matrix with default dims for its rank) or False;
- a callable params -> such a pytree: this is the label-function override, e.g.
  `lambda p: jax.tree.map(lambda x: x.ndim == 2 and x.shape[0] != vocab, p)`.

Default dims for rank r >= 3 (used for True leaves) treat the array as a Flax conv kernel
(kh, kw, ..., in, out): all axes but the last are fan-in, so the kernel is reshaped to
(kh * kw * in, out). Use explicit `DimensionNumbers` for stacked layers (batch axes).

`orthogonalized_optimizer` is the one helper every optimizer uses: an `optax.partition` that
sends matrix leaves to `chain(core, shape scaling, decoupled weight decay, learning rate)` and
every other leaf (embeddings/heads when excluded, biases, norms) to AdamW.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers as DimensionNumbers

MATRIX, OTHER = "matrix", "other"

# A user-supplied orthogonalizer(fn, matrices) -> [fn(m) for m in matrices] (maybe distributed).
Orthogonalizer = Callable[[Callable[[jax.Array], jax.Array], list], list]


def _is_spec_leaf(x) -> bool:
    return x is None or isinstance(x, (DimensionNumbers, bool, optax.MaskedNode))


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


def _axes(x: jax.Array, dims: DimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def norm(axes):
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        for ax in axes:
            if not -x.ndim <= ax < x.ndim:
                raise ValueError(f"weight_dimension_numbers: axis {ax} out of range for shape {x.shape}")
        return tuple(ax % x.ndim for ax in axes)

    fan_in, fan_out = norm(dims.reduction_axis), norm(dims.output_axis)
    if not fan_in or not fan_out or set(fan_in) & set(fan_out):
        raise ValueError(
            f"weight_dimension_numbers: reduction axes {fan_in} and output axes {fan_out} must be "
            f"non-empty and disjoint (shape {x.shape})"
        )
    return fan_in, fan_out


def resolve_dimension_numbers(tree, weight_dimension_numbers=None):
    """A pytree like `tree` with a DimensionNumbers at each matrix leaf and None elsewhere.

    `tree` may contain optax.MaskedNode (inside optax.partition); they are kept as is.
    """
    spec = weight_dimension_numbers
    if callable(spec) and not isinstance(spec, DimensionNumbers):
        spec = spec(tree)
    if spec is None:
        return jax.tree.map(lambda x: DimensionNumbers(0, 1) if x.ndim == 2 else None, tree)

    def leaf_dims(d, x):
        if isinstance(d, DimensionNumbers):
            _axes(x, d)
            return d
        if d is True:
            return default_dimension_numbers(x)
        if d is None or d is False:
            return None
        raise TypeError(
            "weight_dimension_numbers: leaves must be DimensionNumbers, None or bool, "
            f"got {type(d).__name__}"
        )

    def subtree(d, sub):
        if isinstance(sub, optax.MaskedNode):
            return sub
        return jax.tree.map(lambda x: leaf_dims(d, x), sub)

    try:
        return jax.tree.map(subtree, spec, tree, is_leaf=_is_spec_leaf)
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
        lambda d: OTHER if d is None else MATRIX, dims, is_leaf=lambda d: d is None or isinstance(d, DimensionNumbers)
    )


def fans(x: jax.Array, dims: DimensionNumbers) -> tuple[int, int]:
    """(fan_in, fan_out) of one matrix of x."""
    fan_in, fan_out = _axes(x, dims)
    return math.prod(x.shape[a] for a in fan_in), math.prod(x.shape[a] for a in fan_out)


def to_matrices(x: jax.Array, dims: DimensionNumbers) -> jax.Array:
    """x viewed as (batch, fan_in, fan_out)."""
    fan_in, fan_out = _axes(x, dims)
    batch = tuple(a for a in range(x.ndim) if a not in fan_in + fan_out)
    n_in, n_out = fans(x, dims)
    return jnp.transpose(x, batch + fan_in + fan_out).reshape(-1, n_in, n_out)


def from_matrices(m: jax.Array, like: jax.Array, dims: DimensionNumbers) -> jax.Array:
    """Inverse of to_matrices: back to the layout of `like`."""
    fan_in, fan_out = _axes(like, dims)
    batch = tuple(a for a in range(like.ndim) if a not in fan_in + fan_out)
    order = batch + fan_in + fan_out
    m = m.reshape(tuple(like.shape[a] for a in order))
    return jnp.transpose(m, tuple(order.index(a) for a in range(like.ndim)))


def map_matrices(fn, tree, weight_dimension_numbers=None, *, name: str, extra=None):
    """fn(matrices[, extra_leaf]) on each matrix leaf of `tree`, viewed as (batch, fan_in, fan_out).

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
        return from_matrices(fn(to_matrices(x, d), *e), x, d)

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
    outs = orthogonalizer(fn, [to_matrices(x, d) for x, d in zip(leaves, dim_leaves)])
    return treedef.unflatten([from_matrices(o, x, d) for o, x, d in zip(outs, leaves, dim_leaves)])


def scale_by_shape(weight_dimension_numbers=None, consistent_rms: float | None = None):
    """Scale each matrix update by sqrt(max(1, fan_out / fan_in)) (Muon's width rule), or by
    consistent_rms * sqrt(max(fan_in, fan_out)) when given (Moonlight / ROOT, r = 0.2)."""

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def scale(u, d):
            if d is None:
                return u
            fan_in, fan_out = fans(u, d)
            if consistent_rms is None:
                factor = math.sqrt(max(1.0, fan_out / fan_in))
            else:
                factor = consistent_rms * math.sqrt(max(fan_in, fan_out))
            return u * jnp.asarray(factor, u.dtype)

        return jax.tree.map(scale, updates, dims), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def orthogonalized_optimizer(
    core: optax.GradientTransformation,
    *,
    learning_rate,
    weight_decay: float = 0.0,
    shape_scaling: optax.GradientTransformation | None = None,
    weight_dimension_numbers=None,
    other: optax.GradientTransformation | None = None,
    adam_learning_rate=3e-4,
    adam_b1: float = 0.9,
    adam_b2: float = 0.95,
    adam_eps: float = 1e-8,
    adam_weight_decay: float = 0.0,
    adam_nesterov: bool = False,
    guard_nonfinite: bool = False,
) -> optax.GradientTransformation:
    """optax.partition: matrix leaves -> chain(core, shape_scaling, wd, -lr); others -> AdamW.

    Matrix updates are -lr * (shape_scale(core(g)) + wd * p), i.e. p <- (1 - lr wd) p - lr ...
    (decoupled weight decay). `other` replaces the AdamW branch. With `guard_nonfinite`, a
    step whose gradients contain NaN/inf is skipped: the update is zero and the optimizer state
    is left unchanged (optax.apply_if_finite; its state counts the skipped steps).
    """
    matrix_chain = optax.chain(
        core,
        shape_scaling if shape_scaling is not None else optax.identity(),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )
    if other is None:
        other = optax.adamw(
            adam_learning_rate, b1=adam_b1, b2=adam_b2, eps=adam_eps,
            weight_decay=adam_weight_decay, nesterov=adam_nesterov,
        )
    tx = optax.partition(
        {MATRIX: matrix_chain, OTHER: other},
        lambda params: matrix_labels(params, weight_dimension_numbers),
    )
    if guard_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
    return tx

"""Protected subspaces for continual learning: updates kept orthogonal to what earlier tasks use.

For a kernel W viewed as a (fan_in, fan_out) matrix (optax's (in, out) layout; conv and
stacked kernels by the weight-dimension rules of transforms.matrix_params), with orthonormal
bases U (fan_in side) and V (fan_out side) of the protected subspaces,

    input side:   dW <- dW - U U^T dW          (GPM, Saha et al. 2021; FOT, Bakman et al. 2023)
    output side:  dW <- dW - dW V V^T
    both:         dW <- (I - U U^T) dW (I - V V^T).

With U spanning an old task's layer inputs x, x dW = 0: the layer's outputs on them do not move.
Chain it last (after the optimizer and its learning rate) so the applied update is projected.

Bases live in the transform's state with a fixed shape, (batch, n, c) per matrix leaf with
capacity c = min(n, max_rank): the first `rank` columns orthonormal, the rest zero (rank 0 at
the start), so a growing subspace never changes shapes under jit or in checkpoints. A step
costs O(n c fan_out) per matrix; set `max_rank` when n is large and the subspaces stay small. At a task boundary the helpers grow them:

- `protect_from_inputs(opt_state, inputs)`: GPM / FOT. For samples R (n x m) of layer inputs,
  remove the existing subspace, R^ = R - U U^T R, take R^'s top left singular vectors until
  (||U U^T R||^2 + sum_{i<=k} s_i^2) >= threshold ||R||^2 (threshold 0.98), append, QR.
- `protect_from_weights(opt_state, params)`: Sculpting Subspaces (2025): the same rule on the
  weights themselves (columns of W on the input side, rows on the output side), so the top
  singular directions of the trained weights are frozen; `rank_fraction` caps the new
  directions at a fraction of n (the paper's rank-fraction rule).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.transforms.matrix_params import (
    from_matrices,
    ndim2_dimension_numbers,
    path_names,
    resolve_dimension_numbers,
    to_matrices,
)

SIDES = ("input", "output", "both")


class ProjectOutState(NamedTuple):
    """Protected bases per matrix leaf, (batch, n, capacity) zero-padded; None for an unused
    side and for the leaves that are not matrices."""
    input: optax.Params | None
    output: optax.Params | None


def _default_dims(weight_dimension_numbers):
    """project_out protects every 2-D leaf unless told otherwise (output heads included: the
    Muon role rule, which skips them, is not the default here)."""
    return ndim2_dimension_numbers if weight_dimension_numbers is None else weight_dimension_numbers


def _is_state(x) -> bool:
    return isinstance(x, ProjectOutState)


def _check_side(name: str, side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"{name}: side must be one of {list(SIDES)}, got {side!r}")


def _check_fraction(name: str, value, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")


def orthonormal_padded(columns: jax.Array, rank: jax.Array) -> jax.Array:
    """An orthonormal basis of the first `rank` columns of (..., n, c) `columns`, zero beyond.

    Householder QR: for full-rank leading columns, Q's first `rank` columns span them."""
    q, _ = jnp.linalg.qr(columns)
    keep = jnp.arange(columns.shape[-1]) < rank[..., None, None]
    return jnp.where(keep, q, 0.0).astype(columns.dtype)


def basis_rank(basis: jax.Array) -> jax.Array:
    """The number of (unit, leading) columns of a zero-padded basis."""
    return jnp.sum(jnp.sum(basis * basis, axis=-2) > 0.5, axis=-1)


def extend_basis(basis: jax.Array, samples: jax.Array, threshold: float = 0.98,
                 max_new: int | None = None) -> jax.Array:
    """GPM / FOT basis growth (module doc) for one stack: basis (..., n, c) zero-padded,
    samples (..., n, m) as columns. At most `max_new` new directions when given, and never
    more than the free columns (the energy rule stops at full capacity)."""
    capacity = basis.shape[-1]
    samples = samples.astype(basis.dtype)
    rank = basis_rank(basis)
    inside = basis @ (jnp.swapaxes(basis, -1, -2) @ samples)
    residual = samples - inside
    u, s, _ = jnp.linalg.svd(residual, full_matrices=False)
    total = jnp.sum(samples * samples, axis=(-2, -1))
    energy = jnp.sum(inside * inside, axis=(-2, -1))[..., None] + jnp.cumsum(s * s, axis=-1) - s * s  # before i
    tiny = s[..., :1] * max(samples.shape[-2:]) * jnp.finfo(basis.dtype).eps
    new = jnp.sum((energy < threshold * total[..., None]) & (s > tiny), axis=-1)
    new = jnp.minimum(new, capacity - rank)
    if max_new is not None:
        new = jnp.minimum(new, max_new)
    # new directions go into columns rank .. rank + new - 1
    slot = jnp.arange(capacity) - rank[..., None]  # (..., c): which new direction lands in column c
    placed = jnp.take_along_axis(u, jnp.clip(slot, 0, u.shape[-1] - 1)[..., None, :], axis=-1)
    placed = jnp.where(((slot >= 0) & (slot < new[..., None]))[..., None, :], placed, 0.0)
    return orthonormal_padded(basis + placed, rank + new)


def _matrix_shape(x, dims) -> tuple[int, int, int]:
    """(batch, fan_in, fan_out) of x's matrix view."""
    return jax.eval_shape(lambda a: to_matrices(a, dims), x).shape


def _zero_bases(params, dims, side_index: int, max_rank: int | None):
    def zero(x, d):
        if d is None:
            return None
        b, n_in, n_out = _matrix_shape(x, d)
        n = (n_in, n_out)[side_index]
        return jnp.zeros((b, n, n if max_rank is None else min(n, max_rank)), x.dtype)

    return jax.tree.map(zero, params, dims)


def _given_basis(name: str, given, zero: jax.Array, path: str) -> jax.Array:
    """A user basis (n, k) or (batch, n, k), orthonormal columns, into the padded (batch, n, c)."""
    given = jnp.asarray(given, zero.dtype)
    b, n, c = zero.shape
    shape = given.shape
    if given.ndim == 2:
        given = jnp.broadcast_to(given, (b,) + shape)
    if given.ndim != 3 or given.shape[0] != b or given.shape[1] != n or given.shape[2] > c:
        raise ValueError(
            f"{name}: bases{path} has shape {shape}; expected (n, k) or ({b}, n, k) with n = {n} and k <= {c}"
        )
    k = given.shape[2]
    padded = jnp.concatenate([given, jnp.zeros((b, n, c - k), zero.dtype)], axis=-1)
    return orthonormal_padded(padded, jnp.full((b,), k))


def project_out(bases=None, *, side: str = "input", max_rank: int | None = None,
                weight_dimension_numbers=None) -> optax.GradientTransformation:
    """Keep each matrix leaf's update orthogonal to its protected subspaces (module doc).

    `side`: "input" (fan-in side, GPM/FOT), "output" or "both". `bases` (optional): initial
    protected bases, a pytree over the params whose leaves are (n, k) / (batch, n, k) arrays
    with orthonormal columns (for side "both", pairs (input, output)) or None; they are
    re-orthonormalized. `max_rank` caps each basis's capacity (default: n, no cap).
    `weight_dimension_numbers` picks the matrices and their fan-in /
    fan-out / batch axes as for mo.muon (default: every 2-D leaf); other leaves pass unchanged.
    """
    _check_side("project_out", side)
    if max_rank is not None and (isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 1):
        raise ValueError(f"project_out: max_rank must be a positive int or None, got {max_rank!r}")

    def init_fn(params):
        dims = resolve_dimension_numbers(params, _default_dims(weight_dimension_numbers))
        sides = {"input": (0,), "output": (1,), "both": (0, 1)}[side]
        zeros = [_zero_bases(params, dims, s, max_rank) if s in sides else None for s in (0, 1)]
        if bases is not None:
            for s in sides:
                def fill(path, z, g, s=s):
                    g = g[s] if side == "both" and g is not None else g
                    if g is None:
                        return z
                    if z is None:
                        raise ValueError(f"project_out: bases{jax.tree_util.keystr(path)} is given for a leaf "
                                         "that is not a matrix (see weight_dimension_numbers)")
                    return _given_basis("project_out", g, z, jax.tree_util.keystr(path))

                try:
                    zeros[s] = jax.tree_util.tree_map_with_path(fill, zeros[s], bases, is_leaf=lambda x: x is None)
                except ValueError as err:
                    if "project_out" in str(err):
                        raise
                    raise ValueError(f"project_out: bases must match the params' tree structure: {err}") from err
        return ProjectOutState(*zeros)

    def update_fn(updates, state, params=None):
        del params
        dims = resolve_dimension_numbers(updates, _default_dims(weight_dimension_numbers))

        def project(u, d, left, right):
            if d is None:
                return u
            m = to_matrices(u, d)
            if left is not None:
                m = m - left @ (jnp.swapaxes(left, -1, -2) @ m)
            if right is not None:
                m = m - (m @ right) @ jnp.swapaxes(right, -1, -2)
            return from_matrices(m, u, d)

        none = jax.tree.map(lambda _: None, updates)
        left = none if state.input is None else state.input
        right = none if state.output is None else state.output
        return jax.tree.map(project, updates, dims, left, right), state

    return optax.GradientTransformation(init_fn, update_fn)


def _by_names(tree) -> dict:
    """{parameter path names: leaf} of a pytree's non-None leaves (a Flax Variable's `.value`
    is not part of the path, so nnx states, linen dicts and plain dicts match by name)."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    return {path_names(path): x for path, x in flat if x is not None}


def _grow(name: str, opt_state, samples, threshold, max_new_for, sides=(0, 1), strict: bool = False):
    """Replace every ProjectOutState in `opt_state` (an optax state, or nnx.Optimizer's
    opt_state) by one whose bases on `sides` grew from samples[side][path names] (n, m).
    `strict`: samples given for a leaf that no state protects on those sides are a ValueError."""
    _check_fraction(f"{name}: threshold", threshold)
    found, used = [], set()

    def one(path, basis, side_index):
        x = samples[side_index].get(path_names(path))
        if basis is None or x is None:
            return basis
        used.add((side_index, path_names(path)))
        x = jnp.asarray(x)
        if x.ndim == 2:
            x = jnp.broadcast_to(x, (basis.shape[0],) + x.shape)
        if x.ndim != 3 or x.shape[0] != basis.shape[0] or x.shape[1] != basis.shape[1]:
            raise ValueError(
                f"{name}: samples of shape {x.shape} for {'/'.join(path_names(path))} do not fit its protected "
                f"basis of shape {basis.shape}; expected (n, m) or ({basis.shape[0]}, n, m) with n = {basis.shape[1]}"
            )
        return extend_basis(basis, x, threshold, max_new_for(basis.shape[1]))

    def grow_state(state):
        if not _is_state(state):
            return state
        found.append(state)
        return ProjectOutState(*(
            bases if bases is None or side_index not in sides else jax.tree_util.tree_map_with_path(
                lambda path, b, i=side_index: one(path, b, i), bases, is_leaf=lambda x: x is None)
            for side_index, bases in enumerate(state)))

    out = jax.tree.map(grow_state, opt_state, is_leaf=_is_state)
    if not found:
        raise ValueError(f"{name}: opt_state holds no project_out state")
    unused = [(i, names) for i in sides for names in samples[i] if (i, names) not in used]
    if strict and unused:
        raise ValueError(
            f"{name}: samples are given for {', '.join('/'.join(n) for _, n in unused)}, which no project_out state "
            f"protects on the {SIDES[unused[0][0]]} side (see project_out's side and weight_dimension_numbers)"
        )
    return out


def protect_from_inputs(opt_state, inputs, *, threshold: float = 0.98, side: str = "input"):
    """GPM / FOT: grow the protected bases of every project_out state in `opt_state` (an optax
    state or nnx.Optimizer's opt_state) from representations collected on the finished task.

    `inputs`: a pytree keyed like the params (nested dicts, an nnx State, linen params) whose
    leaves hold (num_samples, n) or (batch, num_samples, n) samples (layer inputs for side
    "input", n = fan_in in the matrix view's row order; layer outputs for side "output"); leaves
    left out (or None) are unchanged. Samples for a leaf that is not protected on `side` are a
    ValueError, never silently dropped.
    """
    _check_side("protect_from_inputs", side)
    if side == "both":
        raise ValueError("protect_from_inputs: side must be 'input' or 'output' (call once per side)")
    wanted = SIDES.index(side)
    given = {names: jnp.swapaxes(jnp.asarray(x), -1, -2) for names, x in _by_names(inputs).items()}
    samples = [given if i == wanted else {} for i in (0, 1)]
    return _grow("protect_from_inputs", opt_state, samples, threshold, lambda n: None, sides=(wanted,), strict=True)


def protect_from_weights(opt_state, params, *, threshold: float = 0.98, rank_fraction: float | None = None,
                         weight_dimension_numbers=None):
    """Sculpting Subspaces: protect the top singular directions of the trained weights (module
    doc) on every side a project_out state in `opt_state` protects. `weight_dimension_numbers`
    must be the one given to project_out."""
    _check_fraction("protect_from_weights: rank_fraction", rank_fraction, allow_none=True)
    dims = resolve_dimension_numbers(params, _default_dims(weight_dimension_numbers))
    matrices = _by_names(jax.tree.map(lambda x, d: None if d is None else to_matrices(x, d), params, dims))
    samples = [matrices, {names: jnp.swapaxes(m, -1, -2) for names, m in matrices.items()}]

    def max_new(n):
        return None if rank_fraction is None else max(1, math.ceil(rank_fraction * n))

    return _grow("protect_from_weights", opt_state, samples, threshold, max_new)

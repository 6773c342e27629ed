"""OrthoMerge (Yang, Shi & Liu 2026): merging on the orthogonal group through its Lie algebra.

Orthogonal fine-tunes W_i = R_i W_pre (R_i in O(n), acting on the rows of W_pre, as in
orthogonal fine-tuning) merge by

    R = exp(A),   A = sum_i w_i log R_i   (log/exp of `manifolds.OrthogonalGroup` at I),

a weighted average of the generators, mapped back to the group. With `magnitude_correction` the
averaged generator is rescaled to the weighted mean norm sum_i w_i ||log R_i||_F: averaging
generators that point different ways shrinks them, and the correction keeps the adaptation's
strength while the average sets its direction. For general fine-tunes (Orthogonal-Residual
Decoupling) each 2-D weight is split as W_i = R_i W_pre + E_i with R_i the Procrustes solution
argmin_{R in O(n)} ||W_i - R W_pre||_F = polar(W_i W_pre^T) (`linalg.polar`); the R_i merge on
O(n) as above and the residuals E_i merge additively, sum_i w_i E_i. Other leaves merge
additively (their residual is the whole task vector W_i - W_pre).

The log needs rotations without eigenvalue -1 (angles below pi), true of the small rotations
fine-tuning produces.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt import linalg
from manifold_opt.manifolds.orthogonal import OrthogonalGroup
from manifold_opt.merging.pool import check_candidates, stream


def procrustes_rotation(weight: jax.Array, pretrained: jax.Array) -> jax.Array:
    """R = polar(W W_pre^T), the orthogonal matrix closest to mapping W_pre onto W (R W_pre ~ W).
    Unique when W W_pre^T has full rank (W_pre with at least as many columns as rows)."""
    return linalg.polar(weight @ jnp.swapaxes(pretrained, -1, -2))


def _group(n):
    return OrthogonalGroup(n)


def _identity(n, dtype):
    return jnp.eye(n, dtype=dtype)


@jax.jit
def _generator(rotation):
    """log_I(R): the skew generator A with R = exp(A)."""
    n = rotation.shape[-1]
    return _group(n).log(_identity(n, rotation.dtype), rotation)


@jax.jit
def _exp(generator):
    n = generator.shape[-1]
    return _group(n).exp(_identity(n, generator.dtype), generator)


def _check_weights(name, weights, n):
    if weights is None:
        return [1.0 / n] * n
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != (n,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: weights must be {n} finite numbers (one per candidate), got {weights!r}")
    return [float(w) for w in array]  # Python floats: weakly typed, the leaves keep their dtype


def _average_generators(generators, norms, magnitude_correction):
    """The merged generator from sum_i w_i log R_i and sum_i w_i ||log R_i||."""
    if not magnitude_correction:
        return generators
    size = jnp.linalg.norm(generators, axis=(-2, -1), keepdims=True)
    return generators * jnp.where(size > 0, norms[..., None, None] / jnp.where(size > 0, size, 1), 1)


def merge_rotations(rotations, weights=None, *, magnitude_correction: bool = True) -> jax.Array:
    """exp(sum_i w_i log R_i) for orthogonal R_i (..., n, n) given as a sequence (streamed);
    default weights 1/k. The result is orthogonal (up to rounding)."""
    k = check_candidates("merge_rotations", rotations)
    weights = _check_weights("merge_rotations", weights, k)
    first = rotations[0]
    if np.ndim(first) < 2 or np.shape(first)[-1] != np.shape(first)[-2]:
        raise ValueError(f"merge_rotations: rotations must be square matrices (..., n, n), got shape {np.shape(first)}")
    total, norms = 0.0, 0.0
    for w, rotation in zip(weights, stream("merge_rotations", first, rotations)):
        generator = _generator(jnp.asarray(rotation))
        total = total + w * generator
        norms = norms + w * jnp.linalg.norm(generator, axis=(-2, -1))
    return _exp(_average_generators(total, norms, magnitude_correction))


@jax.jit
def _decouple(weight, pretrained):
    """(log R_i, ||log R_i||, residual E_i) of one 2-D weight."""
    rotation = procrustes_rotation(weight, pretrained)
    generator = _generator(rotation)
    return generator, jnp.linalg.norm(generator), weight - rotation @ pretrained


def _is_matrix(x):
    return np.ndim(x) == 2 and np.shape(x)[0] <= np.shape(x)[1]


def orthomerge(pretrained, finetuned, weights=None, *, magnitude_correction: bool = True):
    """OrthoMerge with Orthogonal-Residual Decoupling on a pytree of weights, streamed.

    Each 2-D leaf W_pre (n x m, n <= m) is merged as exp(A) W_pre + sum_i w_i E_i with A the
    (magnitude-corrected) weighted average of the Procrustes generators log polar(W_i W_pre^T)
    and E_i = W_i - R_i W_pre; leaves of other shapes (biases, tall matrices) as
    W_pre + sum_i w_i (W_i - W_pre). `weights` default to 1/k.
    """
    k = check_candidates("orthomerge", finetuned)
    weights = _check_weights("orthomerge", weights, k)
    leaves, treedef = jax.tree_util.tree_flatten(pretrained)
    acc = [None] * len(leaves)
    for w, candidate in zip(weights, stream("orthomerge", pretrained, finetuned)):
        for j, (p, c) in enumerate(zip(leaves, jax.tree_util.tree_leaves(candidate))):
            if _is_matrix(p):
                parts = _decouple(jnp.asarray(c), jnp.asarray(p))
            else:
                parts = (jnp.asarray(c) - p,)
            parts = tuple(w * x for x in parts)
            acc[j] = parts if acc[j] is None else tuple(a + x for a, x in zip(acc[j], parts))
    merged = []
    for p, parts in zip(leaves, acc):
        if _is_matrix(p):
            generator, norm, residual = parts
            merged.append(_exp(_average_generators(generator, norm, magnitude_correction)) @ p + residual)
        else:
            merged.append(p + parts[0])
    return jax.tree_util.tree_unflatten(treedef, merged)

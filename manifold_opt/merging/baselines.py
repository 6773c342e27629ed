"""Data-free merging baselines on pytrees, streaming the candidates one at a time.

With task vectors tau_i = theta_i - theta_pre:

- average: (1/n) sum_i theta_i (uniform soup).
- task arithmetic (Ilharco et al. 2023): theta_pre + lambda sum_i tau_i, lambda = 0.3.
- TIES (Yadav et al. 2023): trim each tau_i to its top `density` fraction of entries by
  magnitude (over the whole task vector), elect per entry the sign of sum_i trim(tau_i), and
  take the disjoint mean, the mean of the trimmed entries whose sign agrees with the elected one
  (0 where none does); theta_pre + lambda * merged, lambda = 1.
- DARE (Yu et al. 2024): drop each entry of tau_i with probability p, rescale the kept ones by
  1 / (1 - p) (the expectation is unchanged), then merge by task arithmetic or TIES.

Each function keeps running sums on the device (TIES: the sum and count of positive and of
negative trimmed entries, enough to elect the sign and form the disjoint mean in one pass),
so device memory holds the accumulators and one candidate whatever the pool size.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from manifold_opt.merging.pool import check_candidates, stream

COMBINE = ("task_arithmetic", "ties")


def _check_fraction(name, arg, value, *, open_right=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        0.0 <= value < 1.0 if open_right else 0.0 < value <= 1.0)
    if not ok:
        interval = "[0, 1)" if open_right else "(0, 1]"
        raise ValueError(f"{name}: {arg} must be a number in {interval}, got {value!r}")
    return float(value)


def _check_scaling(name, scaling):
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not math.isfinite(scaling):
        raise ValueError(f"{name}: scaling must be a finite number, got {scaling!r}")
    return float(scaling)


def drop_and_rescale(tau, key: jax.Array, drop_rate: float):
    """DARE on one task vector: each entry kept with probability 1 - p and divided by 1 - p,
    zeroed otherwise, so E[result] = tau. Leaf j uses the j-th key of split(key, num_leaves)."""
    leaves, treedef = jax.tree_util.tree_flatten(tau)
    keys = jax.random.split(key, len(leaves))
    keep = 1.0 - drop_rate
    out = [jnp.where(jax.random.bernoulli(k, keep, x.shape), x / keep, jnp.zeros_like(x)) for k, x in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def _task_vector(pretrained, candidate, key, drop_rate):
    tau = jax.tree.map(lambda c, p: c - p, candidate, pretrained)
    return tau if drop_rate == 0.0 else drop_and_rescale(tau, key, drop_rate)


def trim_top_k(tau, density: float):
    """tau with all but its k = max(1, floor(density * size)) largest-magnitude entries zeroed,
    the ranking taken over all leaves together (TIES' trim step; ties at the threshold kept)."""
    leaves = jax.tree_util.tree_leaves(tau)
    flat = jnp.concatenate([jnp.abs(x).ravel() for x in leaves])
    k = max(1, int(density * flat.size))
    threshold = jax.lax.top_k(flat, k)[0][-1]
    return jax.tree.map(lambda x: jnp.where(jnp.abs(x) >= threshold, x, jnp.zeros_like(x)), tau)


@functools.partial(jax.jit, static_argnames=("drop_rate",), donate_argnums=0)
def _sum_step(total, pretrained, candidate, key, drop_rate):
    return jax.tree.map(jnp.add, total, _task_vector(pretrained, candidate, key, drop_rate))


@functools.partial(jax.jit, static_argnames=("density", "drop_rate"), donate_argnums=0)
def _ties_step(acc, pretrained, candidate, key, density, drop_rate):
    trimmed = trim_top_k(_task_vector(pretrained, candidate, key, drop_rate), density)
    return add_signed(acc, trimmed)


def signed_accumulators(pretrained):
    """Zero (positive sum, positive count, negative sum, negative count) at every leaf."""
    return jax.tree.map(lambda p: tuple(jnp.zeros(p.shape, d) for d in (p.dtype, jnp.int32) * 2), pretrained)


def add_signed(acc, tau):
    """The sign-split running sums and counts of `signed_accumulators` with tau added."""

    def add(a, t):
        pos_sum, pos_count, neg_sum, neg_count = a
        return (pos_sum + jnp.maximum(t, 0), pos_count + (t > 0), neg_sum + jnp.minimum(t, 0), neg_count + (t < 0))

    return jax.tree.map(add, acc, tau, is_leaf=lambda a: isinstance(a, tuple))


def disjoint_mean(acc):
    """TIES' elect + disjoint mean per leaf from the sign-split accumulators."""
    return jax.tree.map(_disjoint_mean, acc, is_leaf=lambda a: isinstance(a, tuple))


def _disjoint_mean(acc):
    pos_sum, pos_count, neg_sum, neg_count = acc
    elected = jnp.sign(pos_sum + neg_sum)
    pos_mean = pos_sum / jnp.maximum(pos_count, 1).astype(pos_sum.dtype)
    neg_mean = neg_sum / jnp.maximum(neg_count, 1).astype(neg_sum.dtype)
    return jnp.where(elected > 0, pos_mean, jnp.where(elected < 0, neg_mean, jnp.zeros_like(pos_sum)))


def _candidate_keys(key, i):
    return jax.random.fold_in(key, i) if key is not None else jax.random.key(0)


def _task_arithmetic(name, pretrained, finetuned, scaling, key, drop_rate):
    total = jax.tree.map(jnp.zeros_like, pretrained)
    for i, candidate in enumerate(stream(name, pretrained, finetuned)):
        total = _sum_step(total, pretrained, candidate, _candidate_keys(key, i), drop_rate)
    return jax.tree.map(lambda p, t: p + scaling * t, pretrained, total)


def _ties(name, pretrained, finetuned, density, scaling, key, drop_rate):
    acc = signed_accumulators(pretrained)
    for i, candidate in enumerate(stream(name, pretrained, finetuned)):
        acc = _ties_step(acc, pretrained, candidate, _candidate_keys(key, i), density, drop_rate)
    merged = disjoint_mean(acc)
    return jax.tree.map(lambda p, m: p + scaling * m, pretrained, merged)


def average(candidates):
    """The uniform average (1/n) sum_i theta_i of the candidates, streamed."""
    n = check_candidates("average", candidates)
    origin = jax.tree.map(jnp.zeros_like, candidates[0])
    return jax.tree.map(lambda t: t / n, _task_arithmetic("average", origin, candidates, 1.0, None, 0.0))


def task_arithmetic(pretrained, finetuned, scaling: float = 0.3):
    """theta_pre + scaling * sum_i (theta_i - theta_pre) (Ilharco et al. 2023)."""
    scaling = _check_scaling("task_arithmetic", scaling)
    return _task_arithmetic("task_arithmetic", pretrained, finetuned, scaling, None, 0.0)


def ties(pretrained, finetuned, density: float = 0.2, scaling: float = 1.0):
    """TIES-merging (Yadav et al. 2023): trim to the top `density` by magnitude, elect signs by
    summed mass, disjoint mean; theta_pre + scaling * merged."""
    density = _check_fraction("ties", "density", density)
    scaling = _check_scaling("ties", scaling)
    return _ties("ties", pretrained, finetuned, density, scaling, None, 0.0)


def dare(pretrained, finetuned, key: jax.Array, drop_rate: float = 0.9, scaling: float = 0.3, *,
         combine: str = "task_arithmetic", density: float = 0.2):
    """DARE (Yu et al. 2024): each task vector dropped and rescaled (`drop_and_rescale` with
    key fold_in(key, i) for candidate i), then combined by `combine`: "task_arithmetic"
    (theta_pre + scaling * sum) or "ties" (with `density`)."""
    drop_rate = _check_fraction("dare", "drop_rate", drop_rate, open_right=True)
    scaling = _check_scaling("dare", scaling)
    if combine not in COMBINE:
        raise ValueError(f"dare: combine must be one of {list(COMBINE)}, got {combine!r}")
    if not isinstance(key, jax.Array):
        raise TypeError(f"dare: key must be a jax.random key, got {type(key).__name__}")
    if combine == "ties":
        density = _check_fraction("dare", "density", density)
        return _ties("dare", pretrained, finetuned, density, scaling, key, drop_rate)
    return _task_arithmetic("dare", pretrained, finetuned, scaling, key, drop_rate)

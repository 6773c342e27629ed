"""Sparsified task arithmetic: Model Breadcrumbs and DELLA, streamed one candidate at a time.

- Model Breadcrumbs (Davari & Belilovsky 2024, arXiv 2312.06795, Sec. 3): per layer, the task
  vector tau_i keeps the entries ranked between its `gamma` largest-magnitude outliers and its
  smallest ones, `density` of them in all (mergekit's `magnitude_outliers` counts: n_top =
  floor(gamma n), n_bottom = n - floor(density n) - n_top, n_top reduced when that is negative);
  theta_pre + scaling * sum_i mask_i * tau_i.
- DELLA (Deep et al. 2024, arXiv 2406.11617, Sec. 3, MagPrune): per output unit the entries of
  tau_i are ranked by magnitude, rank r in 0..n-1 gets keep probability
  p_r = density - epsilon + 2 epsilon r / (n - 1) (larger magnitude, likelier kept), kept entries
  are rescaled by 1 / p_r (so E[result] = tau_i), then TIES' elect + disjoint mean;
  theta_pre + scaling * merged.

Both keep only running sums on the device (DELLA: TIES' sign-split sums and counts).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from manifold_opt.merging.baselines import (
    _candidate_keys,
    _check_fraction,
    _check_scaling,
    add_signed,
    disjoint_mean,
    signed_accumulators,
)
from manifold_opt.merging.pool import stream


def _ranks(magnitude, axis):
    """0-based ascending rank of each entry along `axis` (argsort of argsort)."""
    return jnp.argsort(jnp.argsort(magnitude, axis=axis), axis=axis)


def breadcrumbs_mask(tau, density: float, gamma: float):
    """The Breadcrumbs mask of one leaf: entries ranked in [n_bottom, n - n_top) by magnitude."""
    n = tau.size
    n_top = int(gamma * n)
    n_bottom = n - int(density * n) - n_top
    if n_bottom < 0:
        n_top, n_bottom = n_top + n_bottom, 0
    rank = _ranks(jnp.abs(tau).ravel(), 0).reshape(tau.shape)
    return (rank >= n_bottom) & (rank < n - n_top)


@functools.partial(jax.jit, static_argnames=("density", "gamma"), donate_argnums=0)
def _breadcrumbs_step(total, pretrained, candidate, density, gamma):
    def add(t, p, c):
        tau = c - p
        return t + jnp.where(breadcrumbs_mask(tau, density, gamma), tau, jnp.zeros_like(tau))

    return jax.tree.map(add, total, pretrained, candidate)


def breadcrumbs(pretrained, finetuned, density: float = 0.9, gamma: float = 0.01, scaling: float = 0.3):
    """Model Breadcrumbs: per leaf drop the `gamma` largest-magnitude entries of each task vector
    and the smallest ones, keeping `density` of them; theta_pre + scaling * sum of the masked
    task vectors."""
    density = _check_fraction("breadcrumbs", "density", density)
    gamma = _check_fraction("breadcrumbs", "gamma", gamma, open_right=True)
    scaling = _check_scaling("breadcrumbs", scaling)
    total = jax.tree.map(jnp.zeros_like, pretrained)
    for candidate in stream("breadcrumbs", pretrained, finetuned):
        total = _breadcrumbs_step(total, pretrained, candidate, density, gamma)
    return jax.tree.map(lambda p, t: p + scaling * t, pretrained, total)


def della_keep_probability(tau, density: float, epsilon: float):
    """DELLA's MagPrune keep probabilities of one leaf: ranked by magnitude within each output
    unit (the last axis indexes the units; a vector is one unit), linear in the rank from
    density - epsilon (smallest) to density + epsilon (largest)."""
    rows = tau.reshape(-1, tau.shape[-1]) if tau.ndim >= 2 else tau.reshape(-1, 1)
    n = rows.shape[0]
    rank = _ranks(jnp.abs(rows), 0).astype(tau.dtype)
    spread = rank / (n - 1) if n > 1 else jnp.full_like(rank, 0.5)
    return (density - epsilon + 2 * epsilon * spread).reshape(tau.shape)


@functools.partial(jax.jit, static_argnames=("density", "epsilon"), donate_argnums=0)
def _della_step(acc, pretrained, candidate, key, density, epsilon):
    leaves, treedef = jax.tree_util.tree_flatten(jax.tree.map(lambda c, p: c - p, candidate, pretrained))
    keys = jax.random.split(key, len(leaves))
    pruned = []
    for k, tau in zip(keys, leaves):
        keep = della_keep_probability(tau, density, epsilon)
        pruned.append(jnp.where(jax.random.bernoulli(k, keep), tau / keep, jnp.zeros_like(tau)))
    return add_signed(acc, jax.tree_util.tree_unflatten(treedef, pruned))


def della(pretrained, finetuned, key: jax.Array, density: float = 0.7, epsilon: float = 0.15,
          scaling: float = 1.0):
    """DELLA-Merging: MagPrune each task vector (`della_keep_probability`, Bernoulli draws with
    key fold_in(key, i) for candidate i, split per leaf), rescale kept entries by 1 / p, then
    TIES' elect + disjoint mean; theta_pre + scaling * merged."""
    density = _check_fraction("della", "density", density)
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not (
            0 <= epsilon and 0 < density - epsilon and density + epsilon <= 1):
        raise ValueError(f"della: epsilon must satisfy 0 <= epsilon, 0 < density - epsilon and "
                         f"density + epsilon <= 1 (density={density}), got {epsilon!r}")
    scaling = _check_scaling("della", scaling)
    if not isinstance(key, jax.Array):
        raise TypeError(f"della: key must be a jax.random key, got {type(key).__name__}")
    acc = signed_accumulators(pretrained)
    for i, candidate in enumerate(stream("della", pretrained, finetuned)):
        acc = _della_step(acc, pretrained, candidate, _candidate_keys(key, i), density, float(epsilon))
    return jax.tree.map(lambda p, m: p + scaling * m, pretrained, disjoint_mean(acc))

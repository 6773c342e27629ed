"""Soft merging: per-layer coefficients learned on unlabelled data (AdaMerging, Yang et al. 2024).

    theta(lambda) = theta_0 + sum_j lambda_{l, j} (theta_j - theta_0)   for each leaf l,

lambda initialized to `init` (0.3) and trained by Adam (lr 1e-3, 500 steps) to minimize an
objective, usually the prediction entropy on unlabelled test batches (`prediction_entropy`).
The coefficients need every merged task vector at once, so device memory grows with the
number of merged candidates: `adamerging` merges the whole pool, `fw_merge(mode="soft")` only
the candidates its Frank-Wolfe oracle picked in one iteration (one per target task).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from manifold_opt.merging.pool import Subset, check_candidates, stream


class SoftMergeResult(NamedTuple):
    params: Any  # the merged pytree theta(lambda)
    coefficients: jax.Array  # (num_leaves, k): lambda per leaf (in tree order) and merged candidate
    losses: jax.Array  # (steps,): the objective before each Adam step


def prediction_entropy(logits: jax.Array) -> jax.Array:
    """Mean over the batch of the Shannon entropy -sum_c p_c log p_c of softmax(logits)."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


@functools.partial(jax.jit, donate_argnums=0)
def _put_task_vector(stacked, index, base, candidate):
    return jax.tree.map(lambda s, b, c: s.at[index].set(c - b), stacked, base, candidate)


def stack_task_vectors(name: str, base, candidates, indices):
    """Leaf-wise stacks (k, ...) of candidates[i] - base for i in `indices`, filled one
    candidate at a time into a device buffer."""
    stacked = jax.tree.map(lambda b: jnp.zeros((len(indices),) + b.shape, b.dtype), base)
    for j, candidate in enumerate(stream(name, base, Subset(candidates, indices))):
        stacked = _put_task_vector(stacked, j, base, candidate)
    return stacked


def _combine(base, stacked, coefficients):
    leaves, treedef = jax.tree_util.tree_flatten(base)
    taus = jax.tree_util.tree_leaves(stacked)
    merged = [b + jnp.tensordot(coefficients[l].astype(b.dtype), t, axes=1) for l, (b, t) in enumerate(zip(leaves, taus))]
    return jax.tree_util.tree_unflatten(treedef, merged)


@functools.partial(jax.jit, static_argnames=("objective", "steps", "learning_rate"))
def _fit_coefficients(objective, base, stacked, data, init, steps, learning_rate):
    optimizer = optax.adam(learning_rate)
    loss_of = lambda c: objective(_combine(base, stacked, c), data)  # noqa: E731

    def step(carry, _):
        coefficients, state = carry
        loss, grad = jax.value_and_grad(loss_of)(coefficients)
        updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(coefficients, updates), state), loss

    (coefficients, _), losses = jax.lax.scan(step, (init, optimizer.init(init)), None, length=steps)
    return _combine(base, stacked, coefficients), coefficients, losses


def check_soft_options(name: str, objective, steps, learning_rate, init, prefix: str = ""):
    """TypeError/ValueError naming `name` and the argument (`prefix` + its name) when an option is bad."""
    if not callable(objective):
        raise TypeError(f"{name}: {prefix}objective must be a callable objective(params, data) -> scalar, got {objective!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name}: {prefix}steps must be a positive int, got {steps!r}")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"{name}: {prefix}learning_rate must be a positive number, got {learning_rate!r}")
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not np.isfinite(init):
        raise ValueError(f"{name}: {prefix}init must be a finite number, got {init!r}")


def soft_merge(name: str, base, candidates, indices, objective: Callable, data, *, steps: int,
               learning_rate: float, init: float) -> SoftMergeResult:
    """Layer-wise coefficients over candidates[indices] around `base`, fitted by Adam (options
    already checked by the caller)."""
    stacked = stack_task_vectors(name, base, candidates, indices)
    leaves = jax.tree_util.tree_leaves(base)
    coefficients = jnp.full((len(leaves), len(indices)), init, dtype=jnp.result_type(*leaves))
    return SoftMergeResult(*_fit_coefficients(objective, base, stacked, data, coefficients, int(steps),
                                              float(learning_rate)))


def adamerging(pretrained, candidates, objective: Callable, data, *, steps: int = 500,
               learning_rate: float = 1e-3, init: float = 0.3) -> SoftMergeResult:
    """Layer-wise AdaMerging over the whole pool: theta_pre + sum_j lambda_{l, j} tau_j with
    lambda fitted by Adam on `objective(params, data)` (e.g. `prediction_entropy` of the
    model's logits on unlabelled inputs). Device memory grows with the pool (all k task
    vectors are stacked)."""
    n = check_candidates("adamerging", candidates)
    check_soft_options("adamerging", objective, steps, learning_rate, init)
    return soft_merge("adamerging", pretrained, candidates, list(range(n)), objective, data, steps=steps,
                      learning_rate=learning_rate, init=init)

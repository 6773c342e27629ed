"""The step every orthogonalized optimizer shares around its direction u: `orthogonalized_optimizer`
sends matrix leaves to chain(core, shape scale, decay, -lr[, hyperball]) and the rest to AdamW.

- Cautious weight decay (Chen et al. 2025, arXiv 2510.12402): decay only the coordinates where
  the update and the parameter agree in sign,  p <- p - lr (u + wd 1[u p >= 0] p).
- Hyperball (MuonH): after the step, each matrix is rescaled to the Frobenius norm it had at
  init,  W <- ||W_0||_F (W - lr u) / ||W - lr u||_F  (one norm per matrix of a stacked leaf).
- A learning-rate schedule for the whole optimizer: the AdamW branch follows the shape of the
  matrix branch's schedule, adam_lr(t) = adam_learning_rate lr(t) / max_t lr(t) (schedule_peak), as
  modded-nanogpt schedules every parameter group by one multiplier.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from manifold_opt.transforms.arguments import checked_keywords, hyper
from manifold_opt.transforms.matrix_params import (
    MATRIX,
    OTHER,
    from_matrices,
    matrix_labels,
    resolve_dimension_numbers,
    to_matrices,
)

# The steps at which a schedule's peak is read: every step below 2^14, then a geometric grid
# (ratio ~1.003) up to 2^31, so a peak after step 2^14 is read to within ~0.3%.
PEAK_STEPS = np.unique(np.concatenate([np.arange(2**14), np.geomspace(2**14, 2**31 - 1, 4096).astype(np.int64)]))


def add_decayed_weights(weight_decay, cautious: bool = False) -> optax.GradientTransformation:
    """u + wd p (optax.add_decayed_weights), or with `cautious` u + wd 1[u p >= 0] p."""
    if not cautious:
        return optax.add_decayed_weights(weight_decay)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("cautious weight decay needs params: call update(grads, state, params)")
        out = jax.tree.map(
            lambda u, p: u + hyper(weight_decay, u) * jnp.where(u * p >= 0, p, 0).astype(u.dtype), updates, params
        )
        return out, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


class HyperballState(NamedTuple):
    radius: optax.Params  # per matrix leaf: the init Frobenius norm of each matrix, shape (batch,)


def hyperball_projection(weight_dimension_numbers=None) -> optax.GradientTransformation:
    """Last in a chain: turns the update u into W' - W with W' = r (W + u) / ||W + u||_F, r the
    matrix's Frobenius norm at init (every leaf must be a matrix, see transforms.matrix_params)."""

    def norms(x, d):
        return jnp.linalg.norm(to_matrices(x, d), axis=(-2, -1))

    def init_fn(params):
        return HyperballState(jax.tree.map(norms, params, resolve_dimension_numbers(params, weight_dimension_numbers)))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("hyperball needs params: call update(grads, state, params)")
        dims = resolve_dimension_numbers(updates, weight_dimension_numbers)

        def one(u, p, d, r):
            new = to_matrices(p + u, d)
            scale = r / jnp.maximum(jnp.linalg.norm(new, axis=(-2, -1)), jnp.finfo(r.dtype).tiny)
            return (from_matrices(new * scale[:, None, None].astype(new.dtype), p, d) - p).astype(u.dtype)

        return jax.tree.map(one, updates, params, dims, state.radius), state

    return optax.GradientTransformation(init_fn, update_fn)


def schedule_peak(schedule) -> float:
    """The largest value of an optax schedule over PEAK_STEPS."""
    values = jax.jit(jax.vmap(schedule))(jnp.asarray(PEAK_STEPS, jnp.int32))
    return float(np.max(np.asarray(values)))


def follow_schedule(learning_rate, adam_learning_rate):
    """The AdamW branch's rate: a number becomes t -> number * lr(t) / peak(lr) when the matrix
    branch's `learning_rate` is a schedule; anything else is returned as is."""
    if not callable(learning_rate) or callable(adam_learning_rate):
        return adam_learning_rate
    peak = schedule_peak(learning_rate)
    if peak <= 0:
        return lambda count: 0.0 * learning_rate(count)
    return lambda count: learning_rate(count) * (adam_learning_rate / peak)


@checked_keywords("mo.transforms.orthogonalized_optimizer")
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
    cautious_weight_decay: bool = False,
    hyperball: bool = False,
    after_step: optax.GradientTransformation | None = None,
    guard_nonfinite: bool = False,
) -> optax.GradientTransformation:
    """optax.partition: matrix leaves -> chain(core, shape_scaling, wd, -lr); others -> AdamW.

    Matrix updates are -lr * (shape_scale(core(g)) + wd * p), i.e. p <- (1 - lr wd) p - lr ...
    (decoupled weight decay; `cautious_weight_decay` decays only where sign(u) = sign(p), on both
    branches). `hyperball=True` keeps each matrix at its init Frobenius norm. A schedule as
    `learning_rate` reaches the AdamW branch too: a number `adam_learning_rate` is AdamW's peak
    rate and follows the schedule's shape (module doc). `after_step` (e.g. a retraction) ends
    the matrix branch. `other` replaces the AdamW branch. With
    `guard_nonfinite`, a step whose gradients contain NaN/inf is skipped: the update is zero and
    the optimizer state is left unchanged (optax.apply_if_finite; its state counts the skipped
    steps).
    """
    matrix_chain = optax.chain(
        core,
        shape_scaling if shape_scaling is not None else optax.identity(),
        add_decayed_weights(weight_decay, cautious_weight_decay),
        optax.scale_by_learning_rate(learning_rate),
        hyperball_projection(weight_dimension_numbers) if hyperball else optax.identity(),
        after_step if after_step is not None else optax.identity(),
    )
    if other is None:
        other = optax.chain(  # optax.adamw, with the cautious option
            optax.scale_by_adam(adam_b1, adam_b2, adam_eps, nesterov=adam_nesterov),
            add_decayed_weights(adam_weight_decay, cautious_weight_decay),
            optax.scale_by_learning_rate(follow_schedule(learning_rate, adam_learning_rate)),
        )
    tx = optax.partition(
        {MATRIX: matrix_chain, OTHER: other},
        lambda params: matrix_labels(params, weight_dimension_numbers),
    )
    if guard_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
    return tx

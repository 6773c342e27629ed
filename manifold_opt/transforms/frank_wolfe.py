"""Stochastic Frank-Wolfe as an optax transform.

    d_t = beta_t d_{t-1} + (1 - beta_t) g_t   (d_0 = g_0; beta = 0: d_t = g_t)
    s_t = LMO_C(d_t) = argmin_{s in C} <d_t, s>
    x_{t+1} = x_t + gamma_t (s_t - x_t),   so the update is gamma_t (s_t - x_t)

with gamma_t = clamp(lr_t * factor, 0, 1) and factor = 1 (rescale=None), 1 / diam(C)
(rescale="diameter") or ||d_t|| / ||s_t - x_t|| (rescale="gradient"), per parameter, as in
Pokutta, Spiegel & Zimmer 2020 ("Deep Neural Network Training with Frank-Wolfe"). A convex
combination of feasible points stays feasible, so params that start in C stay in C.
`fw_agnostic_schedule()` is the classical 2/(t+2); `fw_momentum_schedule()` is Mokhtari,
Hassani & Karbasi 2018's beta_t = 1 - 4/(t+8)^(2/3).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.manifolds.tree import UNCONSTRAINED, is_constraint_set, map_manifold_tree
from manifold_opt.transforms.arguments import is_python_number

RESCALINGS = (None, "diameter", "gradient")


class FrankWolfeState(NamedTuple):
    count: jax.Array
    momentum: optax.Params  # the averaged gradient d_t ( () without momentum)


def fw_agnostic_schedule() -> optax.Schedule:
    """gamma_t = 2 / (t + 2), t = 0, 1, ... (gamma_0 = 1: the first step lands on a vertex)."""
    return lambda count: 2.0 / (count + 2.0)


def fw_momentum_schedule() -> optax.Schedule:
    """beta_t = 1 - 4 / (t + 8)^(2/3) (Mokhtari et al. 2018; beta_0 = 0), for `momentum=`."""
    return lambda count: 1.0 - 4.0 / (count + 8.0) ** (2.0 / 3.0)


def _value(rate, count):
    return rate(count) if callable(rate) else rate


def frank_wolfe(
    learning_rate: optax.ScalarOrSchedule, sets, momentum: float | optax.Schedule = 0.0, rescale: str | None = None
) -> optax.GradientTransformation:
    """Frank-Wolfe updates gamma_t (LMO(d_t) - x_t) over a tree of constraint sets.

    `sets`: one set for every param leaf, a tree of sets matching the params (`mo.manifold_tree`
    builds one from path rules; `mo.sets.sets_from_init` sizes balls from the initialization),
    or a `ConvexHull` whose vertices are pytrees shaped like the params (the set of the whole
    tree, as in FW-Merging). Inside `optax.partition` pass the full tree; masked leaves are
    skipped. `learning_rate` is a number in [0, 1] or a schedule (`fw_agnostic_schedule()`);
    `momentum` a number in [0, 1) or a schedule (`fw_momentum_schedule()`); `rescale` one of
    None, "diameter", "gradient". update(grads, state, params) needs params.
    """
    if rescale not in RESCALINGS:
        raise ValueError(f"frank_wolfe: unknown rescale {rescale!r}; expected one of {list(RESCALINGS)}")
    # numbers are validated here; schedules and arrays (optax.inject_hyperparams) are taken as given
    if is_python_number(momentum) and not 0.0 <= momentum < 1.0:
        raise ValueError(f"frank_wolfe: momentum must be in [0, 1) or a schedule, got {momentum!r}")
    if is_python_number(learning_rate) and not 0.0 <= learning_rate <= 1.0 and rescale is None:
        raise ValueError(f"frank_wolfe: learning_rate must be in [0, 1] without rescaling, got {learning_rate!r}")
    whole_tree = getattr(sets, "covers_tree", False)
    use_momentum = not is_python_number(momentum) or momentum > 0.0

    def check(params):
        if whole_tree:
            sets.check_point(params, "params")
            return

        def leaf(geometry, x):
            if geometry is UNCONSTRAINED or not is_constraint_set(geometry):
                raise ValueError(
                    f"frank_wolfe: every parameter needs a constraint set (mo.sets), got {geometry!r}; "
                    "train unconstrained parameters with another optimizer through optax.partition"
                )
            geometry.check_point(x, "param")
            return x

        map_manifold_tree(leaf, sets, params)

    def init_fn(params):
        check(params)
        trace = optax.tree_utils.tree_zeros_like(params) if use_momentum else ()
        return FrankWolfeState(jnp.zeros([], jnp.int32), trace)

    def step(geometry, x, d, lr):
        s = geometry.lmo(d)
        direction = jax.tree_util.tree_map(lambda a, b: a - b, s, x)
        if rescale == "diameter":
            factor = 1.0 / geometry.diameter(jax.tree_util.tree_leaves(x)[0].shape)
        elif rescale == "gradient":
            distance = optax.tree_utils.tree_norm(direction)
            factor = optax.tree_utils.tree_norm(d) / jnp.where(distance > 0, distance, 1)
        else:
            factor = 1.0
        gamma = jnp.clip(lr * factor, 0.0, 1.0)
        return jax.tree_util.tree_map(lambda u: (gamma * u).astype(u.dtype), direction)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("frank_wolfe: update needs params (the current point x); call update(grads, state, params)")
        check(params)
        lr = _value(learning_rate, state.count)
        if use_momentum:
            beta = jnp.where(state.count == 0, 0.0, _value(momentum, state.count))
            directions = jax.tree_util.tree_map(lambda m, g: (beta * m + (1 - beta) * g).astype(g.dtype), state.momentum, updates)
        else:
            directions = updates
        if whole_tree:
            new_updates = step(sets, params, directions, lr)
        else:
            new_updates = map_manifold_tree(lambda c, x, d: step(c, x, d, lr), sets, params, directions)
        return new_updates, FrankWolfeState(optax.safe_increment(state.count), directions if use_momentum else ())

    return optax.GradientTransformation(init_fn, update_fn)

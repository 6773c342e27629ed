"""Orthogonal-gradient combiners: ODICE's rule for a forward/backward gradient pair, and
PCGrad's projection of conflicting task gradients. Both chain before any optimizer.

ODICE (Mao et al. 2024, "ODICE: Revealing the Mystery of Distribution Correction Estimation via
Orthogonal-gradient Update"): with the forward gradient g_f (through V(s)) and the backward
gradient g_b (through V(s')) of a DICE value loss,

    g = g_f + eta (g_b - <g_b, g_f> / max(||g_f||^2, eps) g_f),

i.e. only the part of g_b normal to g_f is added. The inner product is taken over all
parameters (the reference code) or leaf by leaf (`per_leaf=True`).

PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task gradient g_i
is projected, in random order over the other tasks j, onto the normal plane of every g_j it
conflicts with (<g_i, g_j> < 0): g_i <- g_i - <g_i, g_j>/||g_j||^2 g_j; the result is the sum
(or mean) of the projected g_i. Every projected g_i is a combination of the original gradients,
so the whole surgery runs on the K x K Gram matrix of the task gradients.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def _check_pair(name: str, updates, size: int | None = 2):
    """The gradients of a tuple/list of pytrees with one structure (ValueError otherwise). A
    mapping with keys 0 .. K-1 (what nnx.Optimizer.update makes of a tuple) is read as a tuple."""
    if isinstance(updates, Mapping) and set(updates.keys()) == set(range(len(updates))):
        updates = tuple(updates[i] for i in range(len(updates)))
    if not isinstance(updates, (tuple, list)) or (size is not None and len(updates) != size) or len(updates) < 2:
        what = "a pair (g_forward, g_backward) of pytrees" if size == 2 else "a tuple of at least 2 gradient pytrees"
        raise ValueError(f"{name}: updates must be {what}, got {type(updates).__name__}")
    structure = jax.tree.structure(updates[0])
    for i, g in enumerate(updates[1:], 1):
        if jax.tree.structure(g) != structure:
            raise ValueError(f"{name}: updates[{i}] has tree structure {jax.tree.structure(g)}, expected {structure}")
    return updates


def _check_nonnegative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a nonnegative number, got {value!r}")


def _inner(a, b):
    """Per-leaf inner products <a, b> as a pytree of scalars."""
    return jax.tree.map(lambda x, y: jnp.vdot(x, y.astype(x.dtype)), a, b)


def _total(scalars):
    return sum(jax.tree.leaves(scalars))


def orthogonal_gradient(eta: float = 1.0, *, per_leaf: bool = False, eps: float = 1e-10) -> optax.GradientTransformation:
    """ODICE's orthogonal-gradient update (module doc): updates (g_forward, g_backward) -> g.

    Chain it before an optimizer: `optax.chain(mo.orthogonal_gradient(1.0), optax.adam(2e-4))`,
    and pass `(g_f, g_b)` as the updates. A zero forward gradient gives g = eta g_b (c = 0, no
    NaN); `eps` (1e-10, the reference value) floors ||g_f||^2.
    """
    _check_nonnegative("orthogonal_gradient: eta", eta)
    _check_nonnegative("orthogonal_gradient: eps", eps)

    def update_fn(updates, state, params=None):
        del params
        g_f, g_b = _check_pair("orthogonal_gradient", updates)
        dot, sq = _inner(g_b, g_f), _inner(g_f, g_f)
        if per_leaf:
            coef = jax.tree.map(lambda d, s: d / jnp.maximum(s, eps), dot, sq)
        else:
            c = _total(dot) / jnp.maximum(_total(sq), eps)
            coef = jax.tree.map(lambda _: c, dot)
        out = jax.tree.map(
            lambda f, b, c: f + eta * (b.astype(f.dtype) - c.astype(f.dtype) * f), g_f, g_b, coef
        )
        return out, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


class PCGradState(NamedTuple):
    key: jax.Array  # for the random projection order; unused when the order is fixed


def surgery_coefficients(gram: jax.Array, order: jax.Array, eps: float) -> jax.Array:
    """W (K x K) with projected g_i = sum_j W[i, j] g_j, from the Gram matrix G[i, j] = <g_i, g_j>.

    order[i] is the sequence of the other tasks (K - 1 of them) g_i is projected against.
    """
    k = gram.shape[0]

    def one_task(i, order_i):
        def step(w, j):
            d = w @ gram[:, j]  # <current g_i, g_j>
            return w - jnp.where(d < 0, d / jnp.maximum(gram[j, j], eps), 0.0) * jax.nn.one_hot(j, k, dtype=w.dtype), None

        return jax.lax.scan(step, jax.nn.one_hot(i, k, dtype=gram.dtype), order_i)[0]

    return jax.vmap(one_task)(jnp.arange(k), order)


def _orders(k: int, key: jax.Array | None) -> jax.Array:
    """(K, K-1): for task i the other tasks, in increasing order or a random permutation."""
    others = jnp.array([[j for j in range(k) if j != i] for i in range(k)], jnp.int32)
    if key is None:
        return others
    return jax.vmap(lambda kk, o: jax.random.permutation(kk, o))(jax.random.split(key, k), others)


def pcgrad(seed: int | None = 0, *, reduction: str = "sum", per_leaf: bool = False,
           eps: float = 1e-10) -> optax.GradientTransformation:
    """PCGrad gradient surgery (module doc): updates (g_1, ..., g_K) -> one pytree.

    `seed` draws a fresh random projection order each step (the paper's rule); `seed=None`
    projects against the other tasks in index order. `reduction` "sum" (the paper) or "mean";
    `per_leaf` does the surgery leaf by leaf instead of on the whole parameter vector.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"pcgrad: reduction must be 'sum' or 'mean', got {reduction!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"pcgrad: seed must be an int or None, got {seed!r}")
    _check_nonnegative("pcgrad: eps", eps)

    def init_fn(params):
        del params
        return PCGradState(jax.random.key_data(jax.random.key(0 if seed is None else seed)))

    def update_fn(updates, state, params=None):
        del params
        grads = _check_pair("pcgrad", updates, size=None)
        k = len(grads)
        key, sub = jax.random.split(jax.random.wrap_key_data(state.key))
        order = _orders(k, None if seed is None else sub)
        stacked = jax.tree.map(lambda *g: jnp.stack([x.astype(g[0].dtype) for x in g]).reshape(k, -1), *grads)
        grams = jax.tree.map(lambda s: s @ s.T, stacked)
        if per_leaf:
            weights = jax.tree.map(lambda g: surgery_coefficients(g, order, eps), grams)
        else:
            w = surgery_coefficients(_total(grams), order, eps)
            weights = jax.tree.map(lambda _: w, grams)
        scale = 1.0 if reduction == "sum" else 1.0 / k
        out = jax.tree.map(
            lambda w, s, g: (scale * w.sum(0).astype(s.dtype) @ s).reshape(g.shape), weights, stacked, grads[0]
        )
        return out, PCGradState(jax.random.key_data(key))

    return optax.GradientTransformation(init_fn, update_fn)

"""OTA merging and Fast Fisher Grafting (Mahdavinia & Mahdavi 2025, "Harnessing Optimization
Dynamics for Curvature-Informed Model Merging", arXiv 2509.11167, Sec. 3, and the authors'
mergekit methods `ota` and `ffg`): Adam's second moment v_i (optax's `nu`) is a free diagonal
curvature (Fisher) proxy of fine-tune i.

- Fast Fisher Grafting: per leaf keep the top `density` entries (k = max(1, round(density n)))
  of the saliency v_i * tau_i^2 and graft them onto the base: theta_pre + m_i * tau_i.
- OTA: the curvature-weighted mean theta = sum_i P_i theta_i / sum_i P_i with the
  preconditioner P_i = v_i^power + epsilon (power 1/2: Adam's sqrt(v)), optionally normalized
  per leaf by its mean; with `density`, theta_i are the grafted fine-tunes.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from manifold_opt.merging.baselines import _check_fraction
from manifold_opt.merging.pool import check_candidates, stream


def adam_second_moments(opt_state):
    """The `nu` (second moment) tree of the first `optax.ScaleByAdamState` in an optax state."""
    states = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
              if isinstance(s, optax.ScaleByAdamState)]
    if not states:
        raise ValueError("adam_second_moments: opt_state holds no optax.ScaleByAdamState")
    return states[0].nu


def _graft_leaf(p, c, v, density):
    tau = c - p
    saliency = (v * tau * tau).ravel()
    k = max(1, round(density * saliency.size))
    keep = jnp.zeros(saliency.size, bool).at[jax.lax.top_k(saliency, k)[1]].set(True).reshape(tau.shape)
    return p + jnp.where(keep, tau, jnp.zeros_like(tau))


@functools.partial(jax.jit, static_argnames="density")
def fisher_graft(pretrained, finetuned, second_moment, density: float = 0.1):
    """Fast Fisher Grafting of one fine-tune: per leaf theta_pre + m * tau with m the top
    `density` entries of second_moment * tau^2."""
    return jax.tree.map(lambda p, c, v: _graft_leaf(p, c, v, density), pretrained, finetuned, second_moment)


@functools.partial(jax.jit, static_argnames=("density", "power", "normalize"), donate_argnums=0)
def _ota_step(acc, pretrained, candidate, moment, density, power, epsilon, normalize):
    if density is not None:
        candidate = fisher_graft(pretrained, candidate, moment, density)

    def add(a, c, v):
        weighted, total = a
        precond = v ** power
        if normalize:
            precond = precond / (jnp.mean(precond) + epsilon)
        precond = precond + epsilon
        return weighted + precond * c, total + precond

    return jax.tree.map(add, acc, candidate, moment, is_leaf=lambda a: isinstance(a, tuple))


def ota_merge(pretrained, finetuned, second_moments, *, density: float | None = None, power: float = 0.5,
              epsilon: float = 1e-8, normalize: bool = False):
    """OTA merging: sum_i P_i theta_i / sum_i P_i elementwise, P_i = (v_i^power normalized per leaf
    by its mean when `normalize`) + epsilon, v_i = second_moments[i] (e.g. `adam_second_moments`
    of the fine-tune's optimizer state); with `density` each theta_i is first Fisher-grafted
    (`fisher_graft`). Candidates and moments are streamed together."""
    n = check_candidates("ota_merge", finetuned)
    if check_candidates("ota_merge", second_moments) != n:
        raise ValueError(f"ota_merge: second_moments must hold one tree per candidate ({n}), got {len(second_moments)}")
    if density is not None:
        density = _check_fraction("ota_merge", "density", density)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or power <= 0:
        raise ValueError(f"ota_merge: power must be a positive number, got {power!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon <= 0:
        raise ValueError(f"ota_merge: epsilon must be a positive number, got {epsilon!r}")
    acc = jax.tree.map(lambda p: (jnp.zeros_like(p), jnp.zeros_like(p)), pretrained)
    moments = stream("ota_merge", pretrained, second_moments)
    for candidate in stream("ota_merge", pretrained, finetuned):
        acc = _ota_step(acc, pretrained, candidate, next(moments), density, float(power), float(epsilon), bool(normalize))
    return jax.tree.map(lambda a: a[0] / a[1], acc, is_leaf=lambda a: isinstance(a, tuple))

"""FW-Merging (Chen et al. 2025): merging as Frank-Wolfe over the convex hull of the candidates.

    min_theta  L(theta) = sum_k loss_fn(theta, proxy_data[k])   over conv{theta_1, ..., theta_n}

with L the loss of the merged model on a small labelled proxy set of each target task.

Hard mode, iteration t (t = 0, 1, ...):
  1. g = grad L(theta_t) (the merged model's gradient);
  2. relevance of candidate i: r_i = sum_l cos(g_l, tau_{i,l}) over the leaves l, with task
     vectors tau_i = theta_i - theta_pre (relevance="checkpoint": cos(g_l, theta_{i,l}), as the
     paper's code does); the linear minimization oracle (LMO) picks
     s = theta_{i*}, i* = argmin_i r_i ("task" granularity), or per leaf
     s_l = theta_{i*_l, l}, i*_l = argmin_i cos(g_l, tau_{i,l}) ("layer" granularity);
  3. theta_{t+1} = theta_t + gamma_t (s - theta_t), gamma_t = 2 / (t + 2) * step_size * scaling
     (the paper's 2/(t+2) scaled by 0.1 * 0.3).
theta_0 is task arithmetic theta_pre + init_scaling * sum_i tau_i (init_scaling = 0.3; 0 starts
at theta_pre). The LMO is streamed: each candidate is read once per iteration, its relevance
computed and the best one so far kept, so device memory holds theta_t, g, the running best s,
theta_pre and one candidate, whatever the pool size. The reported FW gap is the duality gap of
the linear oracle over the hull, max_i <g, theta_t - theta_i> (per leaf and summed for "layer").
theta_t stays a convex combination of theta_0 and the candidates; `weights` tracks it.

Soft mode: from theta_pre, for each target task k pick the candidate with the lowest relevance
to grad loss_fn(theta_pre, proxy_data[k]) (one streamed pass for all tasks), then fit layer-wise
coefficients over the picked candidates (`soft.soft_merge`, AdaMerging-style: Adam on
`soft_objective(params, soft_data)`, e.g. prediction entropy on unlabelled batches; by default
the proxy loss). Memory grows with the number of target tasks, not with the pool.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.merging.baselines import task_arithmetic
from manifold_opt.merging.pool import check_candidates, stream
from manifold_opt.merging.soft import check_soft_options, soft_merge
from manifold_opt.transforms.frank_wolfe import fw_agnostic_schedule

MODES = ("hard", "soft")
GRANULARITIES = ("task", "layer")
RELEVANCES = ("task_vector", "checkpoint")


class FWMergeResult(NamedTuple):
    params: Any  # the merged pytree
    weights: np.ndarray  # (num_leaves, n + 1): leaf l = sum_i weights[l, i] * vertex_i, vertex 0 = the start
    selected: np.ndarray  # hard: (iterations, num_leaves) index picked per leaf; soft: (tasks,) per task
    gaps: np.ndarray  # hard: the FW gap at theta_0 .. theta_{T-1}; soft: empty
    losses: np.ndarray  # hard: the proxy loss at theta_0 .. theta_T; soft: the objective per Adam step


@functools.partial(jax.jit, static_argnums=0)
def _proxy_value_and_grad(loss_fn, params, proxy_data):
    return jax.value_and_grad(lambda p: sum(loss_fn(p, d) for d in proxy_data))(params)


def _cosines_and_inners(grad, pretrained, candidate, relevance="task_vector"):
    """(cos(g_l, v_l), <g_l, tau_l>) per leaf l, each of shape (num_leaves,), with v the task
    vector tau = candidate - pretrained or, for relevance="checkpoint", the candidate itself."""
    cos, inner = [], []
    for g, p, c in zip(*(jax.tree_util.tree_leaves(t) for t in (grad, pretrained, candidate))):
        tau = c - p
        v = tau if relevance == "task_vector" else c
        norms = jnp.linalg.norm(g) * jnp.linalg.norm(v)
        cos.append(jnp.where(norms > 0, jnp.vdot(g, v) / jnp.where(norms > 0, norms, 1), 0))
        inner.append(jnp.vdot(g, tau))
    return jnp.stack(cos), jnp.stack(inner)


@functools.partial(jax.jit, static_argnames=("granularity", "relevance"), donate_argnums=(0, 1))
def _lmo_step(best, vertex, grad, pretrained, candidate, granularity, relevance):
    """Compare one candidate with the best so far: (best score, best vertex, better mask, inners)."""
    cos, inner = _cosines_and_inners(grad, pretrained, candidate, relevance)
    score = jnp.full_like(cos, jnp.sum(cos)) if granularity == "task" else cos
    better = score < best
    leaves, treedef = jax.tree_util.tree_flatten(vertex)
    chosen = [jnp.where(b, c, v) for b, c, v in zip(better, jax.tree_util.tree_leaves(candidate), leaves)]
    return jnp.where(better, score, best), jax.tree_util.tree_unflatten(treedef, chosen), better, inner


@jax.jit
def _step_toward(theta, vertex, gamma, grad, pretrained):
    """(theta + gamma (s - theta), <g, theta - theta_pre>)."""
    moved = jax.tree.map(lambda x, s: x + gamma.astype(x.dtype) * (s - x), theta, vertex)
    offset = sum(jnp.vdot(g, x - p) for g, x, p in zip(*(jax.tree_util.tree_leaves(t) for t in (grad, theta, pretrained))))
    return moved, offset


@functools.partial(jax.jit, static_argnames="relevance")
def _task_relevances(grads, pretrained, candidate, relevance):
    """sum_l cos(g_{k,l}, v_l) for each task gradient k (grads stacked on a leading axis)."""
    return jax.vmap(lambda g: jnp.sum(_cosines_and_inners(g, pretrained, candidate, relevance)[0]))(grads)


def _check(name, value, kind, test, expected):
    if isinstance(value, bool) or not isinstance(value, kind) or not test(value):
        raise ValueError(f"fw_merge: {name} must be {expected}, got {value!r}")


def fw_merge(pretrained, candidates, loss_fn: Callable, proxy_data, *, mode: str = "hard",
             granularity: str = "task", relevance: str = "task_vector", iterations: int = 3,
             init_scaling: float = 0.3, step_size: float = 0.1, scaling: float = 0.3,
             soft_objective: Callable | None = None,
             soft_data=None, soft_steps: int = 500, soft_learning_rate: float = 1e-3,
             soft_init: float = 0.3) -> FWMergeResult:
    """Merge `candidates` (a sequence of pytrees like `pretrained`, streamed) by FW-Merging.

    `loss_fn(params, data) -> scalar` is evaluated on each element of `proxy_data` (a sequence,
    one labelled proxy set per target task) and summed. See the module docstring for the modes.
    """
    n = check_candidates("fw_merge", candidates)
    if mode not in MODES:
        raise ValueError(f"fw_merge: mode must be one of {list(MODES)}, got {mode!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"fw_merge: granularity must be one of {list(GRANULARITIES)}, got {granularity!r}")
    if relevance not in RELEVANCES:
        raise ValueError(f"fw_merge: relevance must be one of {list(RELEVANCES)}, got {relevance!r}")
    if not callable(loss_fn):
        raise TypeError(f"fw_merge: loss_fn must be a callable loss_fn(params, data) -> scalar, got {loss_fn!r}")
    if not isinstance(proxy_data, Sequence) or len(proxy_data) == 0:
        raise TypeError("fw_merge: proxy_data must be a non-empty sequence (list or tuple) of per-task data, "
                        f"got {type(proxy_data).__name__}")
    proxy_data = tuple(proxy_data)
    if mode == "soft":
        if granularity != "task":
            raise ValueError("fw_merge: mode='soft' picks whole candidates per target task; granularity must be 'task'")
        objective = soft_objective or functools.partial(_summed_loss, loss_fn)
        check_soft_options("fw_merge", objective, soft_steps, soft_learning_rate, soft_init, prefix="soft_")
        return _soft(pretrained, candidates, n, loss_fn, proxy_data, relevance, objective,
                     proxy_data if soft_objective is None else soft_data, soft_steps, soft_learning_rate, soft_init)
    _check("iterations", iterations, (int, np.integer), lambda v: v >= 1, "a positive int")
    for name, value in (("init_scaling", init_scaling), ("step_size", step_size), ("scaling", scaling)):
        _check(name, value, (int, float), np.isfinite, "a finite number")
    return _hard(pretrained, candidates, n, loss_fn, proxy_data, granularity, relevance, int(iterations),
                 float(init_scaling), float(step_size) * float(scaling))


def _summed_loss(loss_fn, params, proxy_data):
    return sum(loss_fn(params, d) for d in proxy_data)


def _hard(pretrained, candidates, n, loss_fn, proxy_data, granularity, relevance, iterations, init_scaling,
          step_scale):
    theta = task_arithmetic(pretrained, candidates, init_scaling) if init_scaling else pretrained
    num_leaves = len(jax.tree_util.tree_leaves(pretrained))
    weights = np.zeros((num_leaves, n + 1))
    weights[:, 0] = 1.0
    selected = np.zeros((iterations, num_leaves), np.int64)
    gaps, losses = [], []
    for t in range(iterations):
        loss, grad = _proxy_value_and_grad(loss_fn, theta, proxy_data)
        best = jnp.full((num_leaves,), jnp.inf, jnp.result_type(*jax.tree_util.tree_leaves(theta)))
        vertex = jax.tree.map(jnp.zeros_like, theta)
        inners = np.zeros((n, num_leaves))
        for i, candidate in enumerate(stream("fw_merge", pretrained, candidates)):
            best, vertex, better, inner = _lmo_step(best, vertex, grad, pretrained, candidate, granularity, relevance)
            better, inners[i] = jax.device_get((better, inner))
            selected[t, better] = i
        gamma = float(fw_agnostic_schedule()(t)) * step_scale
        theta, offset = _step_toward(theta, vertex, jnp.asarray(gamma), grad, pretrained)
        lmo = inners.sum(1).min() if granularity == "task" else inners.min(0).sum()
        gaps.append(float(offset) - lmo)
        losses.append(float(loss))
        weights *= 1.0 - gamma
        weights[np.arange(num_leaves), selected[t] + 1] += gamma
    losses.append(float(_proxy_value_and_grad(loss_fn, theta, proxy_data)[0]))
    return FWMergeResult(theta, weights, selected, np.asarray(gaps), np.asarray(losses))


def _soft(pretrained, candidates, n, loss_fn, proxy_data, relevance, objective, data, steps, learning_rate, init):
    grads = [_proxy_value_and_grad(loss_fn, pretrained, (d,))[1] for d in proxy_data]
    grads = jax.tree.map(lambda *g: jnp.stack(g), *grads)
    relevance = np.stack([jax.device_get(_task_relevances(grads, pretrained, c, relevance))
                          for c in stream("fw_merge", pretrained, candidates)])  # (n, tasks)
    picked = relevance.argmin(0)
    chosen = list(dict.fromkeys(int(i) for i in picked))  # one per task, duplicates merged once
    result = soft_merge("fw_merge", pretrained, candidates, chosen, objective, data, steps=steps,
                        learning_rate=learning_rate, init=init)
    coefficients = np.asarray(result.coefficients, np.float64)
    weights = np.zeros((coefficients.shape[0], n + 1))
    weights[:, np.asarray(chosen) + 1] = coefficients
    weights[:, 0] = 1.0 - coefficients.sum(1)
    return FWMergeResult(result.params, weights, picked, np.zeros(0), np.asarray(result.losses))

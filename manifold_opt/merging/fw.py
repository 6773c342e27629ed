"""FW-Merging (Chen et al. 2025, "FW-Merging: Scaling Model Merging with Frank-Wolfe
Optimization", arXiv 2503.12649): merging as Frank-Wolfe over the convex hull of the candidates,

    min_theta  L(theta) = sum_k loss_fn(theta, proxy_data[k])   over conv{theta_1, ..., theta_n},

with L the loss of the merged model on a small labelled proxy set of each target task. Defaults
are the official code's configs (hmarkc/fusion_bench fw_hard.yaml / fw_soft.yaml: 10 iterations,
step 0.1, scale 0.3, task granularity); its published commands vary them (e.g. the ViT Soft FW
runs: 5 iterations, later coefficient starts 1e-2; the GLUE Hard FW runs: layer-wise, 0.29).

Relevance of candidate i to a gradient g: r_i = sum_l cos(g_l, tau_{i,l}) over the leaves l, with
task vectors tau_i = theta_i - theta_pre (relevance="checkpoint": cos(g_l, theta_{i,l}), as the
paper's code does). The linear minimization oracle (LMO) picks the candidate of lowest relevance.
It is streamed: each candidate is read once per iteration and only the running best (hard) or
the relevance scores (soft) are kept, so the LMO holds one candidate at a time whatever the pool
size. Both modes report, per iteration t, the FW gap of the linear oracle over the candidates'
hull, gap_t = max_i <g_t, theta_t - theta_i> with g_t = grad L(theta_t) (per leaf and summed for
granularity "layer"), and the proxy loss L(theta_t).

Hard mode, iteration t (t = 0, 1, ...):
  1. g = grad L(theta_t) (the merged model's gradient);
  2. the LMO picks s = theta_{i*}, i* = argmin_i r_i ("task" granularity), or per leaf
     s_l = theta_{i*_l, l}, i*_l = argmin_i cos(g_l, tau_{i,l}) ("layer" granularity);
  3. theta_{t+1} = theta_t + gamma_t (s - theta_t), gamma_t = 2 / (t + 2) * step_size * scaling
     (the paper's 2/(t+2) scaled by 0.1 * 0.3).
theta_0 is task arithmetic theta_pre + init_scaling * sum_i tau_i (init_scaling = 0.3; 0 starts
at theta_pre). theta_t stays a convex combination of theta_0 and the candidates (`weights`).
(The paper's code also offers theta_0 itself to the LMO; here the LMO ranges over the candidates.)

Soft mode (the paper's Soft FW), from theta_0 = theta_pre, iteration t:
  1. g_k = grad loss_fn(theta_t, proxy_data[k]) for each target task k;
  2. the LMO picks, task by task, the candidate s_k of lowest relevance to g_k among those not
     yet picked in this iteration (min(tasks, n) distinct picks, one streamed pass for all tasks);
  3. the soft merge around the iterate, AdaMerging-style (`soft.soft_merge`):
     theta_{t+1} = theta_t + sum_k lambda_{l,k} (s_k - theta_t) for each leaf l, the coefficients
     fitted by Adam on `soft_objective(params, soft_data)` (e.g. the prediction entropy on
     unlabelled batches; by default the proxy loss), started at `soft_init` (0.3) at t = 0 and
     at `soft_later_init` afterwards (0: the official config's 1e-8; its ViT command uses 1e-2
     with 5 iterations), so later iterations refine the iterate.
The candidates picked over the iterations accumulate in theta_t, an affine combination of
theta_pre and every candidate picked so far (`weights`). Memory: one candidate for the LMO, then
the picks (at most one per target task) for the soft merge, never the pool.
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
    selected: np.ndarray  # hard: (iterations, num_leaves) index picked per leaf; soft: (iterations, picks) per task
    gaps: np.ndarray  # (iterations,): the FW gap at theta_0 .. theta_{T-1}
    losses: np.ndarray  # (iterations + 1,): the proxy loss L at theta_0 .. theta_T


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
def _offset(grad, theta, pretrained):
    """<g, theta - theta_pre>, the iterate's term of the FW gap."""
    return sum(jnp.vdot(g, x - p) for g, x, p in zip(*(jax.tree_util.tree_leaves(t) for t in (grad, theta, pretrained))))


@jax.jit
def _step_toward(theta, vertex, gamma):
    """theta + gamma (s - theta)."""
    return jax.tree.map(lambda x, s: x + gamma.astype(x.dtype) * (s - x), theta, vertex)


@functools.partial(jax.jit, static_argnames="relevance")
def _task_relevances(grads, pretrained, candidate, relevance):
    """(sum_l cos(g_{k,l}, v_l), <g_k, tau>) for each task gradient k (grads stacked on a leading axis)."""
    return jax.vmap(lambda g: jax.tree.map(jnp.sum, _cosines_and_inners(g, pretrained, candidate, relevance)))(grads)


def _check(name, value, kind, test, expected):
    if isinstance(value, bool) or not isinstance(value, kind) or not test(value):
        raise ValueError(f"fw_merge: {name} must be {expected}, got {value!r}")


def fw_merge(pretrained, candidates, loss_fn: Callable, proxy_data, *, mode: str = "hard",
             granularity: str = "task", relevance: str = "task_vector", iterations: int = 10,
             init_scaling: float = 0.3, step_size: float = 0.1, scaling: float = 0.3,
             soft_objective: Callable | None = None,
             soft_data=None, soft_steps: int = 500, soft_learning_rate: float = 1e-3,
             soft_init: float = 0.3, soft_later_init: float = 0.0) -> FWMergeResult:
    """Merge `candidates` (a sequence of pytrees like `pretrained`, streamed) by FW-Merging.

    `loss_fn(params, data) -> scalar` is evaluated on each element of `proxy_data` (a sequence,
    one labelled proxy set per target task) and summed. See the module docstring for the modes;
    `init_scaling`, `step_size` and `scaling` are hard mode's, `soft_*` soft mode's.
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
    _check("iterations", iterations, (int, np.integer), lambda v: v >= 1, "a positive int")
    proxy_data = tuple(proxy_data)
    if mode == "soft":
        if granularity != "task":
            raise ValueError("fw_merge: mode='soft' picks whole candidates per target task; granularity must be 'task'")
        objective = soft_objective or _summed_loss(loss_fn)
        check_soft_options("fw_merge", objective, soft_steps, soft_learning_rate, soft_init, prefix="soft_")
        _check("soft_later_init", soft_later_init, (int, float), np.isfinite, "a finite number")
        return _soft(pretrained, candidates, n, loss_fn, proxy_data, relevance, int(iterations), objective,
                     proxy_data if soft_objective is None else soft_data, soft_steps, soft_learning_rate,
                     (float(soft_init), float(soft_later_init)))
    for name, value in (("init_scaling", init_scaling), ("step_size", step_size), ("scaling", scaling)):
        _check(name, value, (int, float), np.isfinite, "a finite number")
    return _hard(pretrained, candidates, n, loss_fn, proxy_data, granularity, relevance, int(iterations),
                 float(init_scaling), float(step_size) * float(scaling))


@functools.lru_cache(maxsize=None)
def _summed_loss(loss_fn):
    """objective(params, proxy_data) = sum_k loss_fn(params, proxy_data[k]), one object per loss_fn
    (a static argument of the jitted coefficient fit, so repeated calls reuse its compilation)."""
    return lambda params, proxy_data: sum(loss_fn(params, d) for d in proxy_data)


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
        lmo = inners.sum(1).min() if granularity == "task" else inners.min(0).sum()
        gaps.append(float(_offset(grad, theta, pretrained)) - lmo)
        losses.append(float(loss))
        gamma = float(fw_agnostic_schedule()(t)) * step_scale
        theta = _step_toward(theta, vertex, jnp.asarray(gamma))
        weights *= 1.0 - gamma
        weights[np.arange(num_leaves), selected[t] + 1] += gamma
    losses.append(float(_proxy_value_and_grad(loss_fn, theta, proxy_data)[0]))
    return FWMergeResult(theta, weights, selected, np.asarray(gaps), np.asarray(losses))


def _distinct_picks(scores: np.ndarray) -> list[int]:
    """Soft FW's picks from relevance scores (n candidates, tasks): task by task, the candidate of
    lowest score among those not yet picked; min(tasks, n) picks."""
    picks: list[int] = []
    for column in scores.T[: scores.shape[0]]:
        picks.append(int(np.argmin(np.where(np.isin(np.arange(len(column)), picks), np.inf, column))))
    return picks


def _soft(pretrained, candidates, n, loss_fn, proxy_data, relevance, iterations, objective, data, steps,
          learning_rate, inits):
    theta = pretrained
    num_leaves = len(jax.tree_util.tree_leaves(pretrained))
    weights = np.zeros((num_leaves, n + 1))
    weights[:, 0] = 1.0
    selected = np.zeros((iterations, min(len(proxy_data), n)), np.int64)
    gaps, losses = [], []
    for t in range(iterations):
        values, grads = zip(*(_proxy_value_and_grad(loss_fn, theta, (d,)) for d in proxy_data))
        stacked = jax.tree.map(lambda *g: jnp.stack(g), *grads)
        scores, inners = (np.stack(x) for x in zip(*(
            jax.device_get(_task_relevances(stacked, pretrained, c, relevance))
            for c in stream("fw_merge", pretrained, candidates))))  # each (n, tasks)
        selected[t] = _distinct_picks(scores)
        offset = sum(float(_offset(g, theta, pretrained)) for g in grads)
        gaps.append(offset - inners.sum(1).min())
        losses.append(float(sum(values)))
        fitted = soft_merge("fw_merge", theta, candidates, list(selected[t]), objective, data, steps=steps,
                            learning_rate=learning_rate, init=inits[t > 0])
        coefficients = np.asarray(fitted.coefficients, np.float64)  # (num_leaves, picks)
        weights *= (1.0 - coefficients.sum(1))[:, None]
        weights[:, selected[t] + 1] += coefficients
        theta = fitted.params
    losses.append(float(_proxy_value_and_grad(loss_fn, theta, proxy_data)[0]))
    return FWMergeResult(theta, weights, selected, np.asarray(gaps), np.asarray(losses))

"""Riemannian limited-memory BFGS (Huang, Gallivan & Absil 2015, "A Broyden class of quasi-Newton
methods for Riemannian optimization"; the cautious update of Huang, Absil & Gallivan 2018; as in
Manopt's rlbfgs).

At x_k, with pairs (s_i, y_i) stored in T_{x_k} M, the direction d = -H_k grad f(x_k) comes from
the two-loop recursion (Nocedal & Wright 2006, Alg. 7.4) with H^0 = gamma I, gamma = <s, y> / <y, y>
of the newest pair (1 / ||grad f|| with an empty memory: a unit first step). Backtracking
(`line_search.backtracking`) from t = 1 gives x_{k+1} = R_{x_k}(t d); with T the vector transport from x_k to x_{k+1},

    s = T(t d),   y = grad f(x_{k+1}) - T(grad f(x_k)),

and the pair is kept (overwriting the oldest in a ring buffer of `memory` pairs) only when the
cautious test <s, y> / <s, s> >= cautious * ||grad f(x_{k+1})|| holds; every stored pair is
transported to x_{k+1} (one batched transport per iteration). The memory is cleared when d is not
a descent direction (the step is then along -grad f) and after a failed line search; a failed
search along -grad f stops the run with STEP_TOO_SMALL.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.manifolds.base import check_positive_int
from manifold_opt.solvers import common
from manifold_opt.solvers.line_search import search_from
from manifold_opt.solvers.result import SolverResult

tmap = jax.tree_util.tree_map


class Memory(NamedTuple):
    """Ring buffers of the last `size` pairs, all tangent at the current iterate."""

    s: object  # tangent vectors stacked on a leading axis of length size (pytrees for Products)
    y: object
    rho: jax.Array  # 1 / <s_i, y_i>, from when the pair was made
    count: jax.Array  # pairs stored (<= size)
    newest: jax.Array  # ring index of the newest pair
    gamma: jax.Array  # <s, y> / <y, y> of the newest pair


def empty_memory(tangent, size: int, dtype) -> Memory:
    zeros = tmap(lambda a: jnp.zeros((size,) + a.shape, a.dtype), tangent)
    return Memory(zeros, zeros, jnp.zeros((size,), dtype), jnp.int32(0), jnp.int32(size - 1), jnp.ones([], dtype))


def _entry(buffer, i):
    return tmap(lambda b: b[i], buffer)


def two_loop(manifold, x, grad, memory: Memory, gamma):
    """H grad for the L-BFGS inverse-Hessian approximation H built from gamma I and the stored
    pairs (newest first in the first loop, oldest first in the second). Fixed trip counts with
    empty slots masked, so it is vmap-able."""
    size = memory.rho.shape[0]

    def slot(j):  # the j-th newest pair
        return (memory.newest - j) % size

    def newest_first(j, carry):
        q, alphas = carry
        i = slot(j)
        alpha = jnp.where(j < memory.count, memory.rho[i] * common.inner(manifold, x, _entry(memory.s, i), q), 0.0)
        return common.axpy(-alpha, _entry(memory.y, i), q), alphas.at[j].set(alpha)

    q, alphas = lax.fori_loop(0, size, newest_first, (grad, jnp.zeros_like(memory.rho)))

    def oldest_first(k, r):
        j = size - 1 - k
        i = slot(j)
        beta = memory.rho[i] * common.inner(manifold, x, _entry(memory.y, i), r)
        return common.axpy(jnp.where(j < memory.count, alphas[j] - beta, 0.0), _entry(memory.s, i), r)

    return lax.fori_loop(0, size, oldest_first, common.scale(gamma, q))


def push(memory: Memory, s, y, s_y, y_y) -> Memory:
    """`memory` with (s, y) as its newest pair (the oldest dropped when full)."""
    size = memory.rho.shape[0]
    i = (memory.newest + 1) % size
    return Memory(
        tmap(lambda b, v: b.at[i].set(v), memory.s, s),
        tmap(lambda b, v: b.at[i].set(v), memory.y, y),
        memory.rho.at[i].set(1.0 / s_y),
        jnp.minimum(memory.count + 1, size),
        i,
        s_y / y_y,
    )


def _transport_all(manifold, x, y, memory: Memory, step, grad):
    """The buffers, the step and the old gradient transported from x to y in one batched call."""
    size = memory.rho.shape[0]
    stacked = tmap(lambda a, b, c, d: jnp.concatenate([a, b, c[None], d[None]]), memory.s, memory.y, step, grad)
    moved = jax.vmap(lambda v: manifold.transport(x, y, v))(stacked)
    return (tmap(lambda a: a[:size], moved), tmap(lambda a: a[size:2 * size], moved),
            tmap(lambda a: a[2 * size], moved), tmap(lambda a: a[2 * size + 1], moved))


@common.jitted_solver(static_argnames=("max_iterations", "log", "memory", "max_line_search_steps"))
def lbfgs(
    cost,
    manifold,
    x0,
    *,
    memory: int = 10,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    log: bool = False,
    cautious=1e-4,
    sufficient_decrease=1e-4,
    contraction=0.5,
    max_line_search_steps: int = 25,
    project_x0: bool = False,
) -> SolverResult:
    """Minimize `cost` (a function or a `Cost` with hand-written derivatives) on `manifold` by
    Riemannian L-BFGS keeping the last `memory` pairs. One jitted lax.while_loop; stopping and
    stop reasons as in `steepest_descent` (STEP_TOO_SMALL: the line search failed along
    -grad f)."""
    size = check_positive_int("lbfgs", "memory", memory)
    common.check_solver_args("lbfgs", cost, manifold, x0, max_iterations)
    armijo = dict(sufficient_decrease=sufficient_decrease, contraction=contraction, max_steps=max_line_search_steps)

    def step(it, mem):
        unit = 1.0 / jnp.maximum(it.grad_norm, jnp.finfo(it.grad_norm.dtype).tiny)
        gamma = jnp.where(mem.count > 0, mem.gamma, unit)
        direction = common.scale(-1.0, two_loop(manifold, it.x, it.grad, mem, gamma))
        slope = common.inner(manifold, it.x, it.grad, direction)
        descent = slope < 0
        direction = common.select(descent, direction, common.scale(-unit, it.grad))
        slope = jnp.where(descent, slope, -it.grad_norm)
        mem = mem._replace(count=jnp.where(descent, mem.count, 0))
        y, fy, gy, (t, _) = search_from(cost, manifold, it, direction, slope, jnp.ones_like(slope), **armijo)
        failed = t == 0
        s_buf, y_buf, s, old_grad = _transport_all(manifold, it.x, y, mem, common.scale(t, direction), it.grad)
        diff = common.axpy(-1.0, old_grad, gy)
        s_y = common.inner(manifold, y, s, diff)
        s_s = common.inner(manifold, y, s, s)
        keep = ~failed & (s_y >= cautious * common.norm(manifold, y, gy) * s_s) & (s_y > 0)
        moved = mem._replace(s=s_buf, y=y_buf)
        new = common.select(keep, push(moved, s, diff, s_y, common.inner(manifold, y, diff, diff)), moved)
        stuck = failed & (mem.count == 0)
        new = new._replace(count=jnp.where(failed, 0, new.count))
        return common.advance(manifold, it, y, fy, gy, accepted=~failed, stuck=stuck), new

    it = common.start(cost, manifold, x0, log, max_iterations, project_x0)
    result, _ = common.run(step, it, empty_memory(it.grad, size, it.grad_norm.dtype), max_iterations, tolerance,
                           cost_tolerance)
    return result

"""Riemannian adaptive regularization with cubics (ARC; Agarwal, Boumal, Bullins & Cartis 2021,
"Adaptive regularization with cubics on manifolds"; Manopt's arc with its Lanczos subsolver).

Model at x: m(s) = f(x) + <g, s> + 1/2 <H[s], s> + sigma/3 ||s||^3 on T_x M. The subproblem is
solved in the Krylov space of H and g: k Lanczos steps from q_1 = g / ||g|| (full
reorthogonalization) give H Q = Q T with T tridiagonal, and the model restricted to s = Q y,

    min_y ||g|| y_1 + 1/2 y^T T y + sigma/3 ||y||^3,

is solved exactly: y = -(T + lambda I)^{-1} ||g|| e_1 with lambda = sigma ||y|| >= -lambda_min(T)
(the secular equation, by bisection after an eigendecomposition of the small T). The step is
accepted when rho = (f(x) - f(R_x(s))) / (m(0) - m(s)) >= eta_1; sigma shrinks by gamma_1 (not
below sigma_min) when rho >= eta_2 and grows by gamma_2 when the step is rejected. Hessian-vector
products as in trust regions (`manifold.ehess_to_rhess`, hand-written derivatives where given).
A sigma beyond max_sigma ends the run with STEP_TOO_SMALL.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers import common
from manifold_opt.solvers.result import SolverResult
from manifold_opt.solvers.trust_regions import riemannian_hvp

tmap = jax.tree_util.tree_map


def lanczos(manifold, x, grad, hess, steps: int):
    """(Q stacked on a leading axis, T tridiagonal steps x steps) with H Q = Q T on the Krylov
    space of grad (each new vector projected back onto T_x M); after a breakdown (an invariant subspace) the remaining basis vectors are zero
    and their rows of T are left empty."""
    grad = manifold.proj(x, grad)  # rounding off the tangent space, divided by a small ||g||, would grow
    grad_norm = common.norm(manifold, x, grad)
    q1 = common.scale(1.0 / jnp.maximum(grad_norm, jnp.finfo(grad_norm.dtype).tiny), grad)
    basis = tmap(lambda a: jnp.zeros((steps,) + a.shape, a.dtype).at[0].set(a), q1)
    inner_all = jax.vmap(lambda b, v: common.inner(manifold, x, b, v), in_axes=(0, None))

    def body(j, carry):
        basis, alphas, betas = carry
        q = tmap(lambda b: b[j], basis)
        w = hess(q)
        alpha = common.inner(manifold, x, q, w)
        for _ in range(2):  # Gram-Schmidt against the whole basis, twice
            coefficients = inner_all(basis, w)
            w = manifold.proj(x, tmap(lambda a, b: a - jnp.tensordot(coefficients, b, axes=1).astype(a.dtype), w, basis))
        beta = common.norm(manifold, x, w)
        previous = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0.0)
        write = (beta > jnp.sqrt(jnp.finfo(beta.dtype).eps) * (jnp.abs(alpha) + previous)) & (j + 1 < steps)
        following = jnp.minimum(j + 1, steps - 1)
        inverse = 1.0 / jnp.where(beta > 0, beta, 1.0)
        basis = tmap(lambda b, v: b.at[following].set(jnp.where(write, inverse * v, b[following]).astype(b.dtype)),
                     basis, w)
        return basis, alphas.at[j].set(alpha), betas.at[j].set(jnp.where(write, beta, 0.0))

    zeros = jnp.zeros((steps,), grad_norm.dtype)
    basis, alphas, betas = lax.fori_loop(0, steps, body, (basis, zeros, zeros))
    t = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return basis, t


def cubic_subproblem(t, g_norm, sigma, bisections: int = 100):
    """argmin_y g_norm y_1 + 1/2 y^T T y + sigma/3 ||y||^3 (global; the easy case)."""
    theta, v = jnp.linalg.eigh(t)
    c = g_norm * v[0]

    def norm_y(lam):
        return jnp.sqrt(jnp.sum((c / (theta + lam)) ** 2))

    low = jnp.maximum(0.0, -theta[0]) * (1 + 1e-12) + jnp.finfo(t.dtype).tiny
    high = low + 2 * jnp.sqrt(sigma * g_norm) + 2 * g_norm / sigma + 1.0

    def bisect(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        too_small = norm_y(mid) > mid / sigma
        return jnp.where(too_small, mid, lo), jnp.where(too_small, hi, mid)

    lo, hi = lax.fori_loop(0, bisections, bisect, (low, high))
    return -v @ (c / (theta + hi))


@common.jitted_solver(static_argnames=("max_iterations", "log", "max_inner_iterations"))
def arc(
    cost,
    manifold,
    x0,
    *,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    log: bool = False,
    max_inner_iterations: int | None = None,
    initial_sigma=None,
    min_sigma=1e-10,
    max_sigma=1e15,
    eta_1=0.1,
    eta_2=0.9,
    gamma_1=0.1,
    gamma_2=2.0,
    project_x0: bool = False,
) -> SolverResult:
    """Minimize `cost` on `manifold` by Riemannian ARC with a Lanczos subsolver of
    max_inner_iterations steps (default min(ambient size, 50)); initial_sigma defaults to
    100 / manifold.typical_dist (Manopt's), else 100. Stopping as in `trust_regions`."""
    common.check_solver_args("arc", cost, manifold, x0, max_iterations)
    common.check_hessian("arc", manifold)
    leaves = jax.tree_util.tree_leaves(x0)
    if max_inner_iterations is None:
        max_inner_iterations = min(sum(math.prod(leaf.shape) for leaf in leaves), 50)
    if initial_sigma is None:
        try:
            initial_sigma = 100.0 / manifold.typical_dist
        except (AttributeError, NotImplementedError):
            initial_sigma = 100.0
    dtype = jnp.finfo(jnp.result_type(*leaves)).dtype  # real (float for complex points)
    rho_regularization = 1e3 * jnp.finfo(dtype).eps

    def step(it, sigma):
        _, hess = riemannian_hvp(cost, manifold, it.x)
        basis, t = lanczos(manifold, it.x, it.grad, hess, max_inner_iterations)
        y = cubic_subproblem(t, it.grad_norm, sigma)
        s = tmap(lambda b: jnp.tensordot(y.astype(b.dtype), b, axes=1), basis)
        model_decrease = -(it.grad_norm * y[0] + 0.5 * y @ t @ y + sigma / 3 * jnp.sum(y**2) ** 1.5)
        candidate = manifold.retract(it.x, s)
        fy, gy = common.value_and_rgrad(cost, manifold, candidate)
        reg = jnp.maximum(1.0, jnp.abs(it.value)) * rho_regularization
        rho = (it.value - fy + reg) / (model_decrease + reg)
        accept = (rho >= eta_1) & (model_decrease > 0) & jnp.isfinite(fy)
        sigma = jnp.where(accept, jnp.where(rho >= eta_2, jnp.maximum(gamma_1 * sigma, min_sigma), sigma), gamma_2 * sigma)
        x = common.select(accept, candidate, it.x)
        value = jnp.where(accept, fy, it.value)
        grad = common.select(accept, gy, it.grad)
        return common.advance(manifold, it, x, value, grad, accepted=accept, stuck=sigma > max_sigma), sigma

    it = common.start(cost, manifold, x0, log, max_iterations, project_x0)
    result, _ = common.run(step, it, jnp.asarray(initial_sigma, dtype), max_iterations, tolerance, cost_tolerance)
    return result

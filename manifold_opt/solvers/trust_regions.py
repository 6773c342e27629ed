"""Riemannian trust-region method with a truncated-CG (Steihaug-Toint) inner solver
(Absil, Baker & Gallivan 2007, "Trust-region methods on Riemannian manifolds", Alg. 1 and 2).

Model at x: m(eta) = f(x) + <g, eta> + 1/2 <H[eta], eta>, solved approximately in ||eta|| <= Delta
by CG, stopped at the boundary, at negative curvature, when ||r_j|| <= ||r_0|| min(||r_0||^theta,
kappa), or (as Manopt's tCG) when a CG step would not decrease the model: near a tight tolerance,
rounding in the Hessian-vector products ends CG's progress long before that residual target, and
continuing would only wander into spurious negative curvature. The step is accepted when
rho = (f(x) - f(R_x(eta))) / (m(0) - m(eta)) > rho_prime; Delta shrinks by 4 when rho < 1/4 and
doubles (up to max_radius) when rho > 3/4 at the boundary.

Hessian-vector products: Hess f(x)[u] = manifold.ehess_to_rhess(x, egrad, ehvp(u), u), the exact
Riemannian Hessian for every manifold and metric (Weingarten and connection terms included), from
the Euclidean gradient and Hessian-vector product: the cost's own where it is a `Cost` that has
them, else autodiff (the gradient linearized once per outer iteration, forward over reverse).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers import common
from manifold_opt.solvers.cost import euclidean_grad_and_hvp
from manifold_opt.solvers.result import SolverResult


def riemannian_hvp(cost, manifold, x):
    """(grad f(x), u -> Hess f(x)[u]) with the Euclidean HVP prepared once at x."""
    egrad, ehvp = euclidean_grad_and_hvp(cost, x)
    return manifold.egrad_to_rgrad(x, egrad), lambda u: manifold.ehess_to_rhess(x, egrad, ehvp(u), u)


class _CGState(NamedTuple):
    eta: jax.Array
    h_eta: jax.Array
    r: jax.Array
    delta: jax.Array  # search direction
    r_r: jax.Array
    e_e: jax.Array  # <eta, eta>
    e_d: jax.Array  # <eta, delta>
    d_d: jax.Array  # <delta, delta>
    model: jax.Array  # <g, eta> + 1/2 <eta, H eta>
    j: jax.Array
    done: jax.Array
    at_boundary: jax.Array


def truncated_cg(manifold, x, grad, hess, radius, max_inner, kappa, theta):
    """Steihaug-Toint truncated CG for min <g, eta> + 1/2 <H eta, eta>, ||eta|| <= radius.

    Returns (eta, H eta, hit the boundary, CG iterations)."""
    ip = functools.partial(common.inner, manifold, x)
    zero = common.scale(0.0, grad)
    r0_norm = jnp.sqrt(ip(grad, grad))
    target = r0_norm * jnp.minimum(r0_norm**theta, kappa)
    r_r = ip(grad, grad)
    init = _CGState(zero, zero, grad, common.scale(-1.0, grad), r_r, 0.0 * r_r, 0.0 * r_r, r_r, 0.0 * r_r,
                    jnp.zeros([], jnp.int32), r0_norm <= 0, jnp.array(False))

    def body(s):
        h_delta = hess(s.delta)
        d_h_d = ip(s.delta, h_delta)
        alpha = s.r_r / jnp.where(d_h_d != 0, d_h_d, 1.0)
        e_e_new = s.e_e + 2.0 * alpha * s.e_d + alpha**2 * s.d_d
        to_boundary = (d_h_d <= 0) | (e_e_new >= radius**2)
        # tau >= 0 with ||eta + tau delta|| = radius
        tau = (-s.e_d + jnp.sqrt(jnp.maximum(s.e_d**2 + s.d_d * (radius**2 - s.e_e), 0.0))) / s.d_d
        step = jnp.where(to_boundary, tau, alpha)
        eta = common.axpy(step, s.delta, s.eta)
        h_eta = common.axpy(step, h_delta, s.h_eta)
        model = ip(grad, eta) + 0.5 * ip(eta, h_eta)
        stalled = ~to_boundary & ~(model < s.model)  # keep the previous iterate
        r = common.axpy(alpha, h_delta, s.r)
        r_r = ip(r, r)
        beta = r_r / s.r_r
        delta = common.axpy(beta, s.delta, common.scale(-1.0, r))
        converged = jnp.sqrt(r_r) <= target
        new = _CGState(
            eta, h_eta, r, delta, r_r, e_e_new,
            beta * (s.e_d + alpha * s.d_d), r_r + beta**2 * s.d_d, model,
            s.j + 1, to_boundary | converged, to_boundary,
        )
        return jax.tree.map(lambda old, n: jnp.where(stalled, old, n), s._replace(j=s.j + 1, done=True), new)

    s = lax.while_loop(lambda s: ~s.done & (s.j < max_inner), body, init)
    return s.eta, s.h_eta, s.at_boundary, s.j


@common.jitted_solver(static_argnames=("max_iterations", "log", "max_inner_iterations"))
def trust_regions(
    cost,
    manifold,
    x0,
    *,
    max_iterations: int = 1000,
    tolerance=1e-6,
    cost_tolerance=0.0,
    log: bool = False,
    max_radius=None,
    initial_radius=None,
    max_inner_iterations: int | None = None,
    rho_prime=0.1,
    kappa=0.1,
    theta=1.0,
    project_x0: bool = False,
) -> SolverResult:
    """Minimize `cost` on `manifold` by Riemannian trust regions with truncated CG.

    max_radius defaults to ||x0||_F (sqrt(p) on Stiefel: a typical distance), initial_radius to
    max_radius / 8, max_inner_iterations to the ambient size of x0. x0 check, compilation and
    stop reasons as in `steepest_descent` (why did it stop? `stop_reason_name(result.stop_reason)`);
    STEP_TOO_SMALL means rejected steps shrank the radius below eps * max_radius, where a step no
    longer changes x in this precision. iterations counts outer iterations, rejected steps included.
    """
    common.check_solver_args("trust_regions", cost, manifold, x0, max_iterations)
    common.check_hessian("trust_regions", manifold)
    it = common.start(cost, manifold, x0, log, max_iterations, project_x0)
    leaves = jax.tree_util.tree_leaves(it.x)
    if max_inner_iterations is None:
        max_inner_iterations = sum(math.prod(leaf.shape) for leaf in leaves)
    if max_radius is None:
        max_radius = jnp.sqrt(sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in leaves))
    if initial_radius is None:
        initial_radius = max_radius / 8.0
    dtype = jnp.finfo(jnp.result_type(*leaves)).dtype  # real (float for complex points)
    rho_regularization = 1e3 * jnp.finfo(dtype).eps
    min_radius = jnp.finfo(dtype).eps * max_radius

    def step(it, extras):
        radius, inner = extras
        _, hess = riemannian_hvp(cost, manifold, it.x)
        eta, h_eta, at_boundary, cg_iterations = truncated_cg(
            manifold, it.x, it.grad, hess, radius, max_inner_iterations, kappa, theta
        )
        y = manifold.retract(it.x, eta)
        fy, gy = common.value_and_rgrad(cost, manifold, y)
        model_decrease = -(common.inner(manifold, it.x, it.grad, eta)
                           + 0.5 * common.inner(manifold, it.x, eta, h_eta))
        reg = jnp.maximum(1.0, jnp.abs(it.value)) * rho_regularization
        rho = (it.value - fy + reg) / (model_decrease + reg)
        bad = ~(rho >= 0.25) | ~(model_decrease > 0)
        radius = jnp.where(bad, radius / 4.0,
                           jnp.where((rho > 0.75) & at_boundary, jnp.minimum(2.0 * radius, max_radius), radius))
        accept = (model_decrease > 0) & (rho > rho_prime) & jnp.isfinite(fy)
        x = common.select(accept, y, it.x)
        value = jnp.where(accept, fy, it.value)
        grad = common.select(accept, gy, it.grad)
        stuck = ~accept & (radius < min_radius)
        return common.advance(manifold, it, x, value, grad, accepted=accept, stuck=stuck), (radius, inner + cg_iterations)

    extras = (jnp.asarray(initial_radius, dtype), jnp.zeros([], jnp.int32))
    result, (_, inner) = common.run(step, it, extras, max_iterations, tolerance, cost_tolerance)
    return result._replace(inner_iterations=inner)

"""Implicit differentiation of a solver's solution x*(theta) with respect to the data `args` =
theta of a cost f(x, theta) (as optimistix and jaxopt do in Euclidean space; Absil et al. 2008
for the Riemannian Hessian; Blondel et al. 2022, "Efficient and modular implicit
differentiation", for the fixed-point rule).

Riemannian solvers. At a critical point grad f(x*, theta) = 0 on M, differentiating in theta
gives, in the tangent space T_x M,

    Hess f(x*)[dx] = -egrad_to_rgrad(x*, D_theta egrad(x*, theta)[dtheta]).

For a cotangent x_bar of x* (Euclidean, as JAX hands it), Hess f being self-adjoint for the
metric and egrad_to_rgrad the Riesz map of the metric give the vector-Jacobian product

    v = Hess f(x*)^{-1} egrad_to_rgrad(x*, x_bar)   (conjugate gradient in T_x M),
    theta_bar = -(D_theta egrad(x*, theta))^T v      (one VJP of the Euclidean gradient).

Frank-Wolfe (sets with a Euclidean projection P). A solution is a fixed point
x* = T(x*, theta) = P(x* - grad_x f(x*, theta)) (the projected-gradient optimality condition;
the step 1 gives the same Jacobian as any other where strict complementarity holds), so

    u = (I - D_x T)^{-T} x_bar   (GMRES),     theta_bar = (D_theta T)^T u.

Both rules are exact at an exact solution; the gradient they give is as accurate as the solve.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.solvers import common
from manifold_opt.solvers.cost import Cost, _gradient_function

tmap = jax.tree_util.tree_map


def bind_args(cost, args):
    """The cost x -> cost(x, args) (a `Cost` keeps its derivatives: egrad(x, args),
    value_and_egrad(x, args), ehvp(x, u, args))."""
    if not isinstance(cost, Cost):
        return lambda x: cost(x, args)

    def bound(f, *leading):
        return None if f is None else (lambda *a: f(*a, args))

    return Cost(bound(cost.fn), egrad=bound(cost.egrad), value_and_egrad=bound(cost.value_and_egrad),
                ehvp=bound(cost.ehvp))


def tangent_cg(manifold, x, hess, rhs, max_iterations: int):
    """v with Hess[v] = rhs in T_x M by conjugate gradient in the metric of M (Hess is
    self-adjoint there), stopped at ||r|| <= eps^(2/3) ||rhs|| or at nonpositive curvature."""
    ip = lambda u, w: common.inner(manifold, x, u, w)  # noqa: E731
    r_r = ip(rhs, rhs)
    dtype = jnp.result_type(r_r)
    target = jnp.finfo(dtype).eps ** (2 / 3) * jnp.sqrt(r_r)

    def cond(state):
        _, _, _, r_r, j, curved = state
        return (jnp.sqrt(r_r) > target) & (j < max_iterations) & curved

    def body(state):
        v, r, p, r_r, j, _ = state
        hp = hess(p)
        p_h_p = ip(p, hp)
        curved = p_h_p > 0
        alpha = jnp.where(curved, r_r / jnp.where(curved, p_h_p, 1.0), 0.0)
        v = common.axpy(alpha, p, v)
        r = common.axpy(-alpha, hp, r)
        new_r_r = ip(r, r)
        p = common.axpy(new_r_r / jnp.where(r_r > 0, r_r, 1.0), p, r)
        return v, r, p, new_r_r, j + 1, curved

    zero = common.scale(0.0, rhs)
    return lax.while_loop(cond, body, (zero, rhs, rhs, r_r, jnp.int32(0), jnp.array(True)))[0]


def riemannian_solution(cost, manifold, x, args, owner=None):
    """x (a solution of min_M cost(., args)) whose VJP in `args` is the implicit one."""
    from manifold_opt.solvers.trust_regions import riemannian_hvp

    size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(x))

    @jax.custom_vjp
    def solution(x, args):
        return x

    def forward(x, args):
        return x, (x, args)

    def backward(saved, x_bar):
        x, args = saved
        common.check_hessian(owner, manifold, "the implicit gradient in args solves a Hessian system")
        _, hess = riemannian_hvp(bind_args(cost, args), manifold, x)
        v = tangent_cg(manifold, x, hess, manifold.egrad_to_rgrad(x, x_bar), size)
        _, vjp = jax.vjp(lambda a: _gradient_function(bind_args(cost, a))(x), args)
        return tmap(jnp.zeros_like, x), tmap(jnp.negative, vjp(v)[0])

    solution.defvjp(forward, backward)
    return solution(x, args)


def fixed_point_solution(cost, set, x, args, owner=None):
    """x (a solution of min_set cost(., args)) whose VJP in `args` is the implicit one, by the
    projected-gradient fixed point x = P(x - grad f(x, args)); needs `set.project`."""
    size = sum(leaf.size for leaf in jax.tree_util.tree_leaves(x))

    def fixed_point_map(y, a):
        g = jax.grad(bind_args(cost, a))(y)
        return set.project(tmap(jnp.subtract, y, g))

    @jax.custom_vjp
    def solution(x, args):
        return x

    def forward(x, args):
        return x, (x, args)

    def backward(saved, x_bar):
        x, args = saved
        _, vjp = jax.vjp(fixed_point_map, x, args)
        tol = float(jnp.finfo(jnp.result_type(*jax.tree_util.tree_leaves(x))).eps ** (2 / 3))
        restart = min(size, 50)
        u, _ = jax.scipy.sparse.linalg.gmres(  # maxiter counts restarts: twice the size in all
            lambda w: tmap(jnp.subtract, w, vjp(w)[0]), x_bar, tol=tol, atol=0.0, restart=restart,
            maxiter=2 * -(-size // restart),
        )
        return tmap(jnp.zeros_like, x), vjp(u)[1]

    solution.defvjp(forward, backward)
    return solution(x, args)


def not_differentiable(cost, geometry, x, args, owner=None):
    """x, with a VJP in `args` that raises: no implicit rule is implemented for this solver."""

    @jax.custom_vjp
    def solution(x, args):
        return x

    def backward(saved, x_bar):
        raise NotImplementedError(f"{owner}: differentiating the solution with respect to args is not implemented "
                                  f"(the implicit rules cover the unconstrained Riemannian solvers and frank_wolfe)")

    solution.defvjp(lambda x, args: (x, None), backward)
    return solution(x, args)


RULES = {"riemannian": riemannian_solution, "fixed_point": fixed_point_solution, "none": not_differentiable}

"""The autodiff Riemannian Hessian used by trust regions, against finite differences along
second-order curves, and the trust-region/line-search building blocks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo

from manifold_opt.manifolds import Euclidean, Grassmann, OrthogonalGroup, Sphere, Stiefel
from manifold_opt.solvers import common
from manifold_opt.solvers.common import inner, value_and_rgrad
from manifold_opt.solvers.line_search import backtracking, search
from manifold_opt.solvers.trust_regions import riemannian_hvp, truncated_cg

# manifold, second-order curve t -> c(t) with c(0) = x, c'(0) = u
CASES = {
    "sphere": (Sphere(6), lambda m, x, u: m.exp(x, u)),
    "stiefel_polar": (Stiefel(6, 2, retraction="polar"), lambda m, x, u: m.retract(x, u)),
    "grassmann": (Grassmann(6, 2), lambda m, x, u: m.exp(x, u)),
    "orthogonal": (OrthogonalGroup(4), lambda m, x, u: m.exp(x, u)),
}


def nonquadratic_cost(shape, seed, invariant):
    """tr(X^T A X) + 1/2 tr((X^T B X)^2) (invariant under X -> X Q, for Grassmann), plus
    sum(C X^3) unless `invariant` (the first two terms are constant on O(n))."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, shape[0], shape[0]))
    a, b = jnp.asarray(a + a.T), jnp.asarray(b + b.T)
    c = jnp.asarray(rng.standard_normal(shape))

    def cost(x):
        y = x.reshape(shape[0], -1)
        value = jnp.trace(y.T @ a @ y) + 0.5 * jnp.sum((y.T @ b @ y) ** 2)
        return value if invariant else value + jnp.sum(c * x**3)

    return cost


@pytest.mark.parametrize("case", list(CASES))
def test_hessian_matches_finite_differences_and_is_symmetric(case):
    manifold, curve = CASES[case]
    cost = nonquadratic_cost(manifold.shape, seed=len(case), invariant=case == "grassmann")
    keys = jax.random.split(jax.random.key(0), 3)
    x = manifold.random_point(keys[0], jnp.float64)
    u, v = manifold.random_tangent(keys[1], x), manifold.random_tangent(keys[2], x)
    _, hess = riemannian_hvp(cost, manifold, x)
    hu, hv = hess(u), hess(v)
    np.testing.assert_allclose(float(inner(manifold, x, hu, v)), float(inner(manifold, x, u, hv)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(manifold.proj(x, hu)), np.asarray(hu), atol=1e-12)  # tangent
    t = 1e-4
    along = jax.jit(jax.vmap(lambda s: cost(curve(manifold, x, s * u))))
    f_plus, f_zero, f_minus = np.asarray(along(jnp.asarray([t, 0.0, -t])))
    second_derivative = (f_plus - 2 * f_zero + f_minus) / t**2
    np.testing.assert_allclose(float(inner(manifold, x, u, hu)), second_derivative, rtol=1e-5, atol=1e-6)


def test_truncated_cg_solves_the_newton_system_inside_a_large_radius():
    manifold = Euclidean(6)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    a = a @ a.T + np.eye(6)  # positive definite: the model minimizer is the Newton step
    b = rng.standard_normal(6)
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)
    cost = lambda x: 0.5 * x @ a_j @ x + b_j @ x  # noqa: E731
    x = jnp.asarray(rng.standard_normal(6))
    grad, hess = riemannian_hvp(cost, manifold, x)
    eta, h_eta, at_boundary, _ = truncated_cg(manifold, x, grad, hess, 1e3, 100, 1e-12, 1.0)
    assert not bool(at_boundary)
    np.testing.assert_allclose(np.asarray(h_eta), a @ np.asarray(eta), atol=1e-10)
    np.testing.assert_allclose(np.asarray(eta), -np.linalg.solve(a, a @ np.asarray(x) + b), rtol=1e-8)
    small, _, at_boundary, _ = truncated_cg(manifold, x, grad, hess, 1e-3, 100, 0.1, 1.0)
    assert bool(at_boundary)
    np.testing.assert_allclose(float(jnp.sqrt(inner(manifold, x, small, small))), 1e-3, rtol=1e-10)


def test_backtracking_sufficient_decrease_and_failure():
    """On 1/2 ||x - a||^2 along -grad, f(x - t g) = (1 - t)^2 f(x): Armijo with c = 1e-4 accepts
    t <= 2 (1 - c), so halving from 100 stops at 100 / 2^6 = 1.5625."""
    manifold = Euclidean(5)
    rng = np.random.default_rng(1)
    target = jnp.asarray(rng.standard_normal(5))
    cost = lambda x: 0.5 * jnp.sum((x - target) ** 2)  # noqa: E731
    x = jnp.asarray(rng.standard_normal(5))
    value, grad = value_and_rgrad(cost, manifold, x)
    slope = -inner(manifold, x, grad, grad)
    t, y, fy, gy, _ = backtracking(cost, manifold, x, value, -grad, slope, 100.0)
    assert float(t) == 1.5625
    assert float(fy) <= float(value) + 1e-4 * float(t) * float(slope)
    np.testing.assert_allclose(float(fy), float(cost(y)), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(gy), np.asarray(y - target), rtol=1e-13)
    # an ascent direction never passes: no step, the point is unchanged
    t, y, fy, _, _ = backtracking(cost, manifold, x, value, grad, -slope, 1.0, max_steps=5)
    assert float(t) == 0.0 and float(fy) == float(value)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


@pytest.mark.parametrize("previous_step, trials, ascent", [(1e-3, 2, False), (50.0, 1, False), (1.0, 1, True)])
def test_search_returns_the_gradient_at_the_accepted_point(previous_step, trials, ascent):
    """The gradient `search` hands back (the accepted trial's, or the start's after a failed
    search) is the Riemannian gradient at the point it returns."""
    manifold = Stiefel(6, 2)
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.standard_normal((6, 6)))
    cost = lambda x: jnp.sum(x * (a @ x)) + jnp.sum(x**3)  # noqa: E731
    x = manifold.random_point(jax.random.key(3), dtype=jnp.float64)
    it = common.start(cost, manifold, x, False, 1)._replace(iteration=jnp.int32(1))
    direction = it.grad if ascent else -it.grad
    slope = inner(manifold, x, it.grad, direction)
    memory = (jnp.asarray(previous_step), jnp.int32(trials), slope)  # adaptive rule: first step 2 * 1e-3 or 2 * 50
    y, fy, gy, (t, used, _) = search(cost, manifold, it, direction, slope, memory, "adaptive", max_steps=30)
    expected_value, expected_grad = value_and_rgrad(cost, manifold, y)
    np.testing.assert_allclose(float(fy), float(expected_value), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(gy), np.asarray(expected_grad), rtol=1e-12, atol=1e-13)
    if ascent:
        assert float(t) == 0.0
    else:
        assert (int(used) == 1) == (previous_step < 1.0)


def test_tight_tolerance_converges_without_wandering():
    """Brockett on St(200, 5) at gradient tolerance 1e-9 (float64): near the solution, rounding
    in the Hessian-vector products stops truncated CG's progress long before its residual target;
    without the model-decrease stop (Manopt's tCG) CG wandered into spurious negative curvature,
    the steps were rejected and seed 1 ended COST_STALLED at |g| = 4e-9 after 32 iterations."""
    rng = np.random.default_rng(0)
    n, p = 200, 5
    b = rng.standard_normal((n, n))
    a = jnp.asarray((b + b.T) / 2)
    w = jnp.arange(p, 0, -1.0)
    f_star = float(np.sum(np.arange(p, 0, -1.0) * np.linalg.eigvalsh(np.asarray(a))[:p]))
    manifold = Stiefel(n, p)
    for seed in range(3):
        x0 = manifold.random_point(jax.random.PRNGKey(seed), dtype=jnp.float64)
        res = mo.solvers.trust_regions(lambda x: jnp.sum(x * (a @ x) * w), manifold, x0, tolerance=1e-9)
        assert mo.solvers.stop_reason_name(res.stop_reason) == "GRADIENT_TOLERANCE", seed
        assert float(res.gradient_norm) <= 1e-9 and int(res.iterations) <= 30, seed
        assert abs(float(res.value) - f_star) <= 1e-12 * abs(f_star), seed
        assert 0 < int(res.inner_iterations) <= int(res.iterations) * n * p

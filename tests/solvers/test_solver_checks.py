"""Issue 18, items 6 and 9: dtypes (points follow JAX's default float dtype, x0 follows the
cost's, no solver returns a point worse than its best), errors naming the solver, and the
Taylor-slope derivative checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import (
    Birkhoff, Euclidean, Grassmann, Oblique, OrthogonalGroup, Product, Sphere, Stiefel, SymmetricPositiveDefinite,
)
from manifold_opt.solvers import common

MANIFOLDS = [Euclidean(3), Sphere(4), Stiefel(10, 4), Grassmann(5, 2), Oblique(3, 4), OrthogonalGroup(3),
             SymmetricPositiveDefinite(3), Birkhoff(3), Product(Sphere(3), Stiefel(4, 2)),
             mo.manifolds.FixedRankEmbedded(5, 4, 2), mo.manifolds.PSDFixedRank(4, 2), mo.manifolds.Elliptope(4, 2),
             mo.manifolds.PoincareBall(3), mo.manifolds.Hyperboloid(3), mo.manifolds.Positive(2, 3),
             mo.manifolds.SymmetricEuclidean(3)]
COMPLEX = [mo.manifolds.PSDFixedRankComplex(4, 2), mo.manifolds.ComplexCircle(3), mo.manifolds.ComplexGrassmann(4, 2)]


@pytest.mark.parametrize("manifold", MANIFOLDS, ids=lambda m: type(m).__name__)
def test_random_point_follows_the_default_float_dtype(manifold):
    leaves = jax.tree_util.tree_leaves(manifold.random_point(jax.random.key(0)))
    assert {leaf.dtype for leaf in leaves} == {jnp.zeros(()).dtype} == {jnp.dtype("float64")}  # conftest: x64
    if isinstance(manifold, Stiefel):  # an explicit dtype still wins
        assert Stiefel(10, 4).random_point(jax.random.key(0), jnp.float32).dtype == jnp.float32


@pytest.mark.parametrize("manifold", COMPLEX, ids=lambda m: type(m).__name__)
def test_complex_random_point_follows_the_default_complex_dtype(manifold):
    leaves = jax.tree_util.tree_leaves(manifold.random_point(jax.random.key(0)))
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("complex128")}  # conftest: x64
    assert jax.tree_util.tree_leaves(manifold.random_point(jax.random.key(0), jnp.complex64))[0].dtype == jnp.complex64


def _brockett_problem():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((10, 10))
    a = jnp.asarray(a + a.T)
    n = jnp.diag(jnp.arange(4.0, 0.0, -1.0))
    optimum = float(np.sum(np.linalg.eigvalsh(np.asarray(a))[:4] * np.arange(4.0, 0.0, -1.0)))
    return a, n, optimum


def test_a_float32_x0_with_a_float64_cost_is_solved_in_float64():
    """The reproduction: trust_regions ran 1000 iterations in float32 and ended above its own best
    iterate; with a float64 hand-written egrad it crashed inside JAX."""
    a, n, optimum = _brockett_problem()
    cost = mo.solvers.Cost(lambda x: jnp.trace(x.T @ a @ x @ n), egrad=lambda x: 2 * a @ x @ n)
    x0 = Stiefel(10, 4).random_point(jax.random.key(0), jnp.float32)
    result = mo.solvers.trust_regions(cost, Stiefel(10, 4), x0, log=True)
    assert result.x.dtype == jnp.float64 and bool(result.converged)
    np.testing.assert_allclose(result.value, optimum, rtol=1e-12)
    assert float(result.value) <= float(np.nanmin(result.log.cost))
    assert float(jnp.abs(result.x.T @ result.x - jnp.eye(4)).max()) < 1e-12


def test_a_float64_x0_with_a_float32_cost_is_an_error_naming_both():
    x0 = Sphere(3).random_point(jax.random.key(0))
    with pytest.raises(TypeError, match=r"lbfgs: x0 is float64 but the cost returns float32"):
        mo.solvers.lbfgs(lambda x: jnp.sum(x.astype(jnp.float32) ** 3), Sphere(3), x0)


def test_the_loop_returns_its_best_iterate_when_the_last_accepted_step_raised_the_cost():
    """A step rule that accepts a cost increase (as trust regions' regularized ratio can)."""
    manifold = Euclidean(2)
    it = common.start(lambda x: jnp.sum(x**2), manifold, jnp.array([1.0, 0.0]), False, 3)

    def step(it, _):  # value 1 -> 0.25 -> 0.5625 -> 1: every step "accepted"
        x = it.x + jnp.array([-0.5, 0.0]) * (it.iteration == 0) + jnp.array([0.25, 0.0]) * (it.iteration > 0)
        return common.advance(manifold, it, x, jnp.sum(x**2), 2 * x), None

    result, _ = common.run(step, it, None, 3, 0.0, 0.0)
    np.testing.assert_allclose(result.x, [0.5, 0.0])
    np.testing.assert_allclose([result.value, result.gradient_norm], [0.25, 1.0])
    assert mo.solvers.stop_reason_name(result.stop_reason) == "MAX_ITERATIONS" and not bool(result.converged)


@pytest.mark.parametrize("solver, keyword, suggestion", [
    (mo.solvers.trust_regions, "max_iter", "max_iterations"),
    (mo.solvers.lbfgs, "tol", "tolerance"),
    (mo.solvers.frank_wolfe, "varaint", "variant"),
])
def test_a_keyword_typo_gets_a_did_you_mean(solver, keyword, suggestion):
    geometry = mo.sets.Simplex(1.0) if solver is mo.solvers.frank_wolfe else Sphere(3)
    with pytest.raises(TypeError, match=rf"{solver.__name__}: .*{keyword!r}.*did you mean .*{suggestion!r}"):
        solver(lambda x: jnp.sum(x**2), geometry, jnp.ones(3) / 3, **{keyword: 1})


def test_a_class_for_the_manifold_or_set_and_an_integer_x0_are_errors_naming_the_solver():
    cost = lambda x: jnp.sum(x**2)  # noqa: E731
    with pytest.raises(TypeError, match=r"conjugate_gradient: manifold must be an instance, got the class Stiefel"):
        mo.solvers.conjugate_gradient(cost, Stiefel, jnp.eye(4, 2))
    with pytest.raises(TypeError, match=r"frank_wolfe: set must be an instance, got the class Simplex"):
        mo.solvers.frank_wolfe(cost, mo.sets.Simplex, jnp.ones(3) / 3)
    with pytest.raises(TypeError, match=r"steepest_descent: x0 must be a floating-point array.*int"):
        mo.solvers.steepest_descent(cost, Euclidean(3), jnp.arange(3))


def _gradient_problem():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 8))
    a = jnp.asarray(a + a.T)
    return (lambda x: -jnp.trace(x.T @ a @ x)), a, Stiefel(8, 3).random_point(jax.random.key(1))


def test_check_gradient_passes_autodiff_and_reports_a_wrong_sign_hand_written_gradient():
    f, a, x = _gradient_problem()
    manifold = Stiefel(8, 3)
    right = mo.solvers.check_gradient(mo.solvers.Cost(f, egrad=lambda x: -2 * a @ x), manifold, x)
    assert right.ok and abs(right.slope - 2) < 0.1
    wrong = mo.solvers.check_gradient(mo.solvers.Cost(f, egrad=lambda x: 2 * a @ x), manifold, x)
    assert not wrong.ok and abs(wrong.slope - 1) < 0.1
    slightly = mo.solvers.check_gradient(mo.solvers.Cost(f, egrad=lambda x: -2.002 * a @ x), manifold, x)
    assert not slightly.ok
    assert mo.solvers.check_gradient(lambda x, c: c * jnp.sum(x**3), Sphere(4), jnp.ones(4) / 2, args=2.0).ok


def test_check_hessian_passes_a_right_hessian_and_reports_a_wrong_or_asymmetric_one():
    _, a, _ = _gradient_problem()
    f = lambda x: -jnp.vdot(x, a @ x)  # noqa: E731
    x = Sphere(8).random_point(jax.random.key(2))

    def check(ehvp):
        return mo.solvers.check_hessian(mo.solvers.Cost(f, egrad=lambda x: -2 * a @ x, ehvp=ehvp), Sphere(8), x)

    right = check(lambda x, u: -2 * a @ u)
    assert right.ok and abs(right.slope - 3) < 0.2
    wrong = check(lambda x, u: 2 * a @ u)
    assert not wrong.ok and abs(wrong.slope - 2) < 0.2
    asymmetric = check(lambda x, u: -2 * a @ u + 0.1 * jnp.tril(a) @ u)
    assert not asymmetric.ok and asymmetric.symmetry_residual > 1e-3

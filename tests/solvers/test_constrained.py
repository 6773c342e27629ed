"""augmented_lagrangian and exact_penalty (Liu & Boumal 2019) on problems with known solutions:
nonnegative PCA on the sphere and a minimum balanced cut on the oblique manifold against SciPy's
SLSQP, a Stiefel problem with linear constraints against its closed form; honest stop reasons."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

import manifold_opt as mo
from manifold_opt.manifolds import Oblique, Sphere, Stiefel

N = 6
_A = np.random.default_rng(0).standard_normal((N, N))
A = _A + _A.T


def _rayleigh(x):
    return -jnp.vdot(x, jnp.asarray(A) @ x)


def _negative(x):
    return -x


def _slsqp_nonnegative_pca(x0):
    result = minimize(lambda x: -x @ A @ x, x0, jac=lambda x: -2 * A @ x, method="SLSQP", bounds=[(0, None)] * N,
                      constraints=[dict(type="eq", fun=lambda x: x @ x - 1, jac=lambda x: 2 * x)],
                      options=dict(ftol=1e-15, maxiter=500))
    assert result.success
    return result.x


@pytest.mark.parametrize("solver, options", [
    ("augmented_lagrangian", dict(tolerance=1e-8, constraint_tolerance=1e-8)),
    ("exact_penalty", dict(smoothing="lse")),
    ("exact_penalty", dict(smoothing="pseudo_huber")),
])
def test_nonnegative_pca_on_the_sphere_matches_slsqp(solver, options):
    x0 = jnp.ones(N) / np.sqrt(N)
    reference = _slsqp_nonnegative_pca(np.asarray(x0))
    assert np.sum(reference > 1e-6) < N  # some constraints active: the problem is not the plain eigenvector
    result = getattr(mo.solvers, solver)(_rayleigh, Sphere(N), x0, ineq=_negative, **options)
    assert mo.solvers.stop_reason_name(result.stop_reason) == "GRADIENT_TOLERANCE" and bool(result.converged)
    np.testing.assert_allclose(result.x, reference, atol=1e-6)
    assert float(result.violation) <= 1e-6 and float(result.complementarity) <= 1e-6
    # the multipliers of the active bounds are SLSQP's too: grad f = -gamma on them (x >= 0 means g = -x)
    active = reference < 1e-6
    np.testing.assert_allclose(result.ineq_multipliers[~active], 0.0, atol=1e-5)


def _sum_of_columns(x):
    return jnp.sum(x, axis=0)


def test_a_stiefel_problem_with_linear_constraints_matches_its_closed_form():
    """min ||X - C||^2 on St(7, 3) with 1^T X = 0: the polar factor of (I - 11^T / 7) C."""
    rng = np.random.default_rng(1)
    c = rng.standard_normal((7, 3))
    u, _, vt = np.linalg.svd((np.eye(7) - 1 / 7) @ c, full_matrices=False)
    result = mo.solvers.augmented_lagrangian(lambda x: jnp.sum((x - jnp.asarray(c)) ** 2), Stiefel(7, 3),
                                             Stiefel(7, 3).random_point(jax.random.key(1)), eq=_sum_of_columns,
                                             tolerance=1e-8, constraint_tolerance=1e-8)
    assert bool(result.converged)
    np.testing.assert_allclose(result.x, u @ vt, atol=1e-6)


def test_a_minimum_balanced_cut_on_the_oblique_manifold_matches_slsqp():
    """min tr(X L X^T) over 2 x 8 matrices with unit columns and X 1 = 0 (Liu & Boumal's balanced
    cut); SLSQP from the same start reaches the same value."""
    rng = np.random.default_rng(0)
    n, r = 8, 2
    w = np.triu((rng.random((n, n)) < 0.5) * rng.random((n, n)), 1)
    laplacian = np.diag((w + w.T).sum(1)) - (w + w.T)
    x0 = Oblique(r, n).random_point(jax.random.key(0))
    reference = minimize(lambda v: np.trace(v.reshape(r, n) @ laplacian @ v.reshape(r, n).T), np.asarray(x0).ravel(),
                         method="SLSQP", options=dict(ftol=1e-15, maxiter=1000),
                         constraints=[dict(type="eq", fun=lambda v: np.r_[v.reshape(r, n).sum(1),
                                                                           (v.reshape(r, n) ** 2).sum(0) - 1])])
    assert reference.success
    result = mo.solvers.exact_penalty(lambda x: jnp.trace(x @ jnp.asarray(laplacian) @ x.T), Oblique(r, n), x0,
                                      eq=lambda x: jnp.sum(x, axis=1))
    assert bool(result.converged) and float(result.violation) <= 1e-6
    np.testing.assert_allclose(result.value, reference.fun, rtol=1e-6)


def test_an_infeasible_problem_is_not_reported_as_converged():
    """x on the sphere with sum(x) >= 3 > sqrt(2): the penalty grows until max_penalty."""
    result = mo.solvers.augmented_lagrangian(lambda x: jnp.sum(x**2), Sphere(2), jnp.array([1.0, 0.0]),
                                             ineq=lambda x: 3.0 - jnp.sum(x), max_penalty=1e4, max_iterations=50)
    assert not bool(result.converged)
    assert mo.solvers.stop_reason_name(result.stop_reason) == "STEP_TOO_SMALL"
    np.testing.assert_allclose(result.violation, 3 - np.sqrt(2), rtol=1e-3)
    with pytest.raises(NotImplementedError, match="augmented_lagrangian"):
        jax.grad(lambda s: mo.solvers.augmented_lagrangian(
            lambda x, s: s * jnp.sum(x**2), Sphere(2), jnp.array([1.0, 0.0]), args=s, max_iterations=2).x[0])(1.0)

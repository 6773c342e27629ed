"""Implicit differentiation through the solvers (`args=`): jax.grad of a function of result.x
with respect to the data of the cost, against closed forms differentiated another way (eigh,
the SVD polar factor, the simplex projection), central finite differences of the solver, and
differentiation through an unrolled fixed-step Riemannian gradient descent."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import Sphere, Stiefel



def _spectrum_problem(n=8, seed=0):
    """A = Q diag(9, 5, 4.5, ..., 1) Q^T (a gap of 4 below the top eigenvalue) and a symmetric B."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.r_[9.0, np.linspace(5, 1, n - 1)]) @ q.T
    b = rng.standard_normal((n, n))
    return jnp.asarray(a), jnp.asarray(b + b.T), jnp.asarray(rng.standard_normal(n)), jnp.asarray(q[:, 0])


def _rayleigh(x, t):
    a, b = t
    return -jnp.vdot(x, (a + b) @ x)


def _top_eigenvector_loss(t, w, x_like):
    """<w, v>^2 for v the top eigenvector of a + b (closed form, differentiated through eigh)."""
    _, vectors = jnp.linalg.eigh(t[0] + t[1])
    return jnp.vdot(w, vectors[:, -1]) ** 2


@pytest.mark.parametrize("name, tolerance", [("lbfgs", 1e-7), ("trust_regions", 1e-11)])
def test_implicit_gradient_of_a_top_eigenvector_matches_eigh(name, tolerance):
    """A line-search solver (Armijo's strict decrease ends it near |grad| ~ 1e-7 on this cost)
    and a second-order one; `args=` and the implicit rule are shared by every solver."""
    a, b, w, x0 = _spectrum_problem()
    args = (a, 0.1 * b)
    solver = getattr(mo.solvers, name)

    def loss(t, x0):
        result = solver(_rayleigh, Sphere(8), x0, args=t, tolerance=tolerance)
        return jnp.vdot(w, result.x) ** 2, result

    (value, result), (grad, grad_x0) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(args, x0)
    assert bool(result.converged)
    assert float(jnp.abs(grad_x0).max()) == 0.0  # a local minimum does not move with its start
    reference = jax.grad(_top_eigenvector_loss)(args, w, x0)
    for got, want in zip(grad, reference):
        # eigh's derivative of a symmetric matrix is the symmetric part; the cost sees only that too
        np.testing.assert_allclose(got + got.T, want + want.T, atol=1e-6 * float(jnp.abs(want).max()))
    np.testing.assert_allclose(value, _top_eigenvector_loss(args, w, x0), rtol=1e-9)


def test_implicit_gradient_matches_finite_differences_of_the_solver_and_of_its_value():
    a, b, w, x0 = _spectrum_problem(seed=1)

    def solve(s):
        return mo.solvers.trust_regions(_rayleigh, Sphere(8), x0, args=(a, s * b), tolerance=1e-12)

    def loss(s):
        result = solve(s)
        return jnp.vdot(w, result.x) ** 2 + result.value

    s, h = 0.2, 1e-5
    value_and_grad = jax.value_and_grad(loss)  # one compilation serves the values too
    grad = value_and_grad(s)[1]
    finite_difference = (value_and_grad(s + h)[0] - value_and_grad(s - h)[0]) / (2 * h)
    np.testing.assert_allclose(grad, finite_difference, rtol=1e-6)
    assert abs(grad) > 1e-3


def test_implicit_gradient_matches_unrolled_riemannian_gradient_descent():
    a, b, w, x0 = _spectrum_problem(seed=2)
    sphere = Sphere(8)

    def unrolled(t):  # 400 fixed steps of 1/L: differentiated step by step
        def body(_, x):
            return sphere.retract(x, -0.05 * sphere.egrad_to_rgrad(x, jax.grad(_rayleigh)(x, t)))

        return jnp.vdot(w, jax.lax.fori_loop(0, 400, body, x0)) ** 2

    def implicit(t):
        return jnp.vdot(w, mo.solvers.trust_regions(_rayleigh, sphere, x0, args=t, tolerance=1e-12).x) ** 2

    args = (a, 0.1 * b)
    (value, grad), (reference_value, reference) = jax.value_and_grad(implicit)(args), jax.value_and_grad(unrolled)(args)
    np.testing.assert_allclose(value, reference_value, rtol=1e-9)
    for got, want in zip(grad, reference):
        np.testing.assert_allclose(got, want, atol=1e-7 * float(jnp.abs(want).max()))


def test_implicit_gradient_of_a_procrustes_solution_matches_the_svd_polar_factor():
    """min_X ||X - C||^2 on St(6, 3) is X = polar(C); a hand-written gradient (Cost with args)."""
    rng = np.random.default_rng(3)
    c = jnp.asarray(rng.standard_normal((6, 3)))
    w = jnp.asarray(rng.standard_normal((6, 3)))
    cost = mo.solvers.Cost(lambda x, c: jnp.sum((x - c) ** 2), egrad=lambda x, c: 2 * (x - c))
    x0 = Stiefel(6, 3).random_point(jax.random.key(0))

    def loss(c):
        return jnp.sum(w * mo.solvers.trust_regions(cost, Stiefel(6, 3), x0, args=c, tolerance=1e-12).x)

    def polar(c):
        u, _, vt = jnp.linalg.svd(c, full_matrices=False)
        return jnp.sum(w * (u @ vt))

    (value, grad), (reference_value, reference) = jax.value_and_grad(loss)(c), jax.value_and_grad(polar)(c)
    np.testing.assert_allclose(value, reference_value, rtol=1e-10)
    np.testing.assert_allclose(grad, reference, atol=1e-7)


def _distance(x, y):
    return 0.5 * jnp.sum((x - y) ** 2)


def test_frank_wolfe_implicit_gradient_matches_the_simplex_projection():
    """min_{x in simplex} 1/2 ||x - y||^2 is the projection of y; the fixed-point rule against
    jax.grad through Simplex.project (a sort), and finite differences."""
    rng = np.random.default_rng(4)
    y = jnp.asarray(0.5 * rng.standard_normal(12))
    w = jnp.asarray(rng.standard_normal(12))
    simplex = mo.sets.Simplex(1.0)

    def loss(y):
        result = mo.solvers.frank_wolfe(_distance, simplex, jnp.ones(12) / 12,
                                        args=y, variant="blended_pairwise", tolerance=1e-13)
        return jnp.vdot(w, result.x)

    value_and_grad = jax.value_and_grad(loss)
    grad = value_and_grad(y)[1]
    reference = jax.grad(lambda y: jnp.vdot(w, simplex.project(y)))(y)
    np.testing.assert_allclose(grad, reference, atol=1e-9)
    assert jnp.abs(reference).max() > 0.1
    e, h = jnp.zeros(12).at[3].set(1.0), 1e-6
    finite_difference = (value_and_grad(y + h * e)[0] - value_and_grad(y - h * e)[0]) / (2 * h)
    np.testing.assert_allclose(finite_difference, grad[3], atol=1e-6)


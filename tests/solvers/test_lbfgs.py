"""L-BFGS's two-loop recursion against a dense BFGS matrix, hand-written derivatives (`Cost`)
against autodiff in every solver, and L-BFGS's honest stops and argument checks. (L-BFGS on the
reference problems: tests/solvers/test_solvers.py.)"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import Euclidean, Stiefel
from manifold_opt.solvers.cost import euclidean_grad_and_hvp, euclidean_value_and_grad
from manifold_opt.solvers.lbfgs import empty_memory, push, two_loop


def test_two_loop_equals_the_dense_bfgs_inverse_hessian():
    """Five pairs (s, A s) of a quadratic pushed into a memory of three: the two-loop product
    equals H g for the dense BFGS update H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T over
    the last three pairs, from H = gamma I with gamma = <s, y> / <y, y> of the newest."""
    n, size = 6, 3
    rng = np.random.default_rng(0)
    b = rng.standard_normal((n, n))
    a = b @ b.T + n * np.eye(n)
    pairs = [(s, a @ s) for s in rng.standard_normal((5, n))]
    manifold, x = Euclidean(n), jnp.zeros(n)
    memory = empty_memory(x, size, jnp.float64)
    for s, y in pairs:
        memory = push(memory, jnp.asarray(s), jnp.asarray(y), s @ y, y @ y)
    g = rng.standard_normal(n)
    s_new, y_new = pairs[-1]
    h = (s_new @ y_new) / (y_new @ y_new) * np.eye(n)
    for s, y in pairs[-size:]:
        rho = 1 / (s @ y)
        h = (np.eye(n) - rho * np.outer(s, y)) @ h @ (np.eye(n) - rho * np.outer(y, s)) + rho * np.outer(s, s)
    ours = two_loop(manifold, x, jnp.asarray(g), memory, memory.gamma)
    np.testing.assert_allclose(np.asarray(ours), h @ g, rtol=1e-12)
    # an empty memory gives gamma g
    np.testing.assert_allclose(np.asarray(two_loop(manifold, x, jnp.asarray(g), empty_memory(x, size, jnp.float64), 0.5)), g / 2)


@functools.lru_cache  # the same functions in every test, so compilations are shared
def brockett(n=10, p=3, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    a = jnp.asarray((b + b.T) / 2)
    w = jnp.arange(p, 0, -1.0)
    optimum = float(np.sum(np.asarray(w) * np.linalg.eigvalsh(np.asarray(a))[:p]))
    cost = lambda x: jnp.sum(x * (a @ x) * w)  # noqa: E731
    egrad = lambda x: 2 * (a @ x) * w  # noqa: E731
    ehvp = lambda x, u: 2 * (a @ u) * w  # noqa: E731
    return Stiefel(n, p), cost, egrad, ehvp, optimum


def test_cost_derivatives_match_autodiff():
    _, cost, egrad, ehvp, _ = brockett()
    x = jax.random.normal(jax.random.key(0), (10, 3), jnp.float64)
    u = jax.random.normal(jax.random.key(1), (10, 3), jnp.float64)
    value, grad = jax.value_and_grad(cost)(x)
    hvp = jax.jvp(jax.grad(cost), (x,), (u,))[1]
    costs = [mo.solvers.Cost(cost, egrad=egrad, ehvp=ehvp),
             mo.solvers.Cost(cost, value_and_egrad=lambda x: (cost(x), egrad(x))),  # HVP by linearizing egrad
             cost]
    for c in costs:
        v, g = euclidean_value_and_grad(c, x)
        g2, hvp_fn = euclidean_grad_and_hvp(c, x)
        np.testing.assert_allclose(float(v), float(value), rtol=1e-13)
        for ours, ref in ((g, grad), (g2, grad), (hvp_fn(u), hvp)):
            np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="Cost: fn"):
        mo.solvers.Cost(3)
    with pytest.raises(TypeError, match="Cost: ehvp"):
        mo.solvers.Cost(cost, ehvp="hessian")


@pytest.mark.parametrize("solver", ["steepest_descent", "conjugate_gradient", "trust_regions", "lbfgs"])
def test_hand_written_derivatives_drive_every_solver(solver):
    """The cost value is hidden from autodiff (stop_gradient), so only the hand-written gradient
    and HVP can move the iterates; the run equals the autodiff run on the plain cost."""
    manifold, cost, egrad, ehvp, optimum = brockett()
    x0 = manifold.random_point(jax.random.key(3), jnp.float64)
    hidden = mo.solvers.Cost(lambda x: jax.lax.stop_gradient(cost(x)), egrad=egrad, ehvp=ehvp)
    run = getattr(mo.solvers, solver)
    tolerance = 1e-9 if solver == "trust_regions" else 1e-5
    ours = run(hidden, manifold, x0, max_iterations=3000, tolerance=tolerance)
    assert bool(ours.converged), mo.solvers.stop_reason_name(ours.stop_reason)
    assert (float(ours.value) - optimum) / abs(optimum) < 1e-6
    # the first iterates agree with autodiff's (later ones drift apart by rounding)
    early, reference = (run(c, manifold, x0, max_iterations=3000, tolerance=1.0) for c in (hidden, cost))
    assert int(early.iterations) == int(reference.iterations) > 0
    np.testing.assert_allclose(np.asarray(early.x), np.asarray(reference.x), atol=1e-6)


def test_lbfgs_stops_honestly_and_checks_its_arguments():
    manifold, cost, _, _, optimum = brockett()
    x0 = manifold.random_point(jax.random.key(4), jnp.float64)
    unreachable = mo.solvers.lbfgs(cost, manifold, x0, max_iterations=3000, tolerance=0.0)
    assert not bool(unreachable.converged)
    assert int(unreachable.stop_reason) == mo.solvers.StopReason.STEP_TOO_SMALL
    assert (float(unreachable.value) - optimum) / abs(optimum) < 1e-12
    batched = jax.vmap(lambda x: mo.solvers.lbfgs(cost, manifold, x, max_iterations=3000, tolerance=1e-5))(
        manifold.random_point(jax.random.key(5), jnp.float64, batch_shape=(2,)))
    assert np.all(np.asarray(batched.converged))
    with pytest.raises(ValueError, match="lbfgs: memory"):
        mo.solvers.lbfgs(cost, manifold, x0, memory=0)
    with pytest.raises(ValueError, match="lbfgs.*x0"):
        mo.solvers.lbfgs(cost, manifold, 2 * x0)

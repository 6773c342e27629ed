"""Solvers never return a wrong answer silently: every stop has its honest StopReason (a NaN
ends the run at once, a line search or trust region that cannot progress says so, a stalled
float32 run is not `converged`), an off-manifold x0 raises unless projected, bad arguments
raise before any compilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import Sphere, Stiefel
from manifold_opt.solvers import StopReason

SOLVERS = [mo.solvers.steepest_descent, mo.solvers.conjugate_gradient, mo.solvers.trust_regions]
SPHERE = Sphere(4)
TARGET = np.array([0.1, 0.2, 0.8, -0.55]) / np.linalg.norm([0.1, 0.2, 0.8, -0.55])  # argmin of -<c, x>


def linear(x):
    return -(jnp.asarray(TARGET) @ x)


def nan_beyond(x):
    """-<c, x>, NaN where x_2 > 0.5: the minimizer (x_2 = 0.8) lies in the NaN region."""
    return jnp.where(x[2] > 0.5, jnp.nan, linear(x))


def nan_gradient_beyond(x):
    """-<c, x> with a finite cost everywhere but a NaN gradient where x_2 >= 0.5 (0 * sqrt'(0))."""
    return linear(x) + 0.0 * jnp.sqrt(jnp.maximum(0.5 - x[2], 0.0))


def on_sphere(*coordinates):
    return SPHERE.project(jnp.asarray(coordinates, jnp.float64))


def reason(result):
    return mo.solvers.stop_reason_name(result.stop_reason)


def check_honest(result, tolerance=1e-6):
    """`converged` is exactly "the gradient tolerance was met"."""
    assert bool(result.converged) == (reason(result) == "GRADIENT_TOLERANCE")
    if bool(result.converged):
        assert float(result.gradient_norm) <= tolerance


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_nan_cost_region_is_never_entered_and_ends_as_step_too_small(solver):
    """The minimizer lies where the cost is NaN: the line search / trust region rejects every NaN
    trial, the run ends STEP_TOO_SMALL at the region's edge with a finite cost (not converged).
    Started inside the region, the run ends at once (NON_FINITE)."""
    result = solver(nan_beyond, SPHERE, on_sphere(1.0, 0.3, -0.2, 0.1), max_iterations=400)
    check_honest(result)
    assert reason(result) == "STEP_TOO_SMALL" and int(result.iterations) < 400
    assert np.isfinite(float(result.value)) and np.isfinite(float(nan_beyond(result.x)))
    assert float(result.x[2]) <= 0.5 and float(result.x[2]) > 0.49  # stopped at the edge
    np.testing.assert_allclose(float(result.value), float(nan_beyond(result.x)), rtol=1e-12)
    inside = solver(nan_beyond, SPHERE, on_sphere(0.1, 0.2, 0.9, 0.1), max_iterations=400)  # NaN at x0
    check_honest(inside)
    assert reason(inside) == "NON_FINITE" and int(inside.iterations) == 0


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_nan_gradient_ends_the_run_at_once(solver):
    """A NaN gradient at x0 stops at iteration 0; one met mid-run stops at that iteration, both
    NON_FINITE and not converged (formerly: converged at iteration 1, or all iterations run)."""
    at_start = solver(nan_gradient_beyond, SPHERE, on_sphere(0.1, 0.1, 0.9, 0.1), max_iterations=300)
    check_honest(at_start)
    assert reason(at_start) == "NON_FINITE" and int(at_start.iterations) == 0
    midway = solver(nan_gradient_beyond, SPHERE, on_sphere(1.0, 0.3, -0.2, 0.1), max_iterations=300)
    check_honest(midway)
    assert reason(midway) == "NON_FINITE" and 1 <= int(midway.iterations) < 300
    assert np.isfinite(float(midway.value))
    assert float(midway.x[2]) >= 0.5  # the point where the gradient became NaN


def test_float32_stall_is_step_too_small_not_converged():
    """float32 Brockett cost with an unreachable tolerance: the line search runs out of float32
    decrease; the run says STEP_TOO_SMALL with its (large) gradient norm."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal((10, 10))
    a = jnp.asarray(b + b.T, jnp.float32)
    manifold = Stiefel(10, 3)
    x0 = manifold.random_point(jax.random.key(0), jnp.float32)
    result = mo.solvers.steepest_descent(lambda x: jnp.trace(x.T @ a @ x), manifold, x0, tolerance=1e-8)
    check_honest(result, 1e-8)
    assert reason(result) == "STEP_TOO_SMALL" and int(result.iterations) < 1000
    assert result.x.dtype == jnp.float32 and float(result.gradient_norm) > 1e-8
    optimum = np.sum(np.linalg.eigvalsh(np.asarray(a, np.float64))[:3])
    assert abs(float(result.value) - optimum) < 1e-3 * abs(optimum)  # close, honestly not converged


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_off_manifold_start_raises_before_jit(solver):
    manifold = Stiefel(10, 3)
    x0 = 3.0 * manifold.random_point(jax.random.key(0), jnp.float64)
    expected = rf"{solver.__name__}: x0 is not on the manifold Stiefel.*feasibility.*13.9.*project"
    with pytest.raises(ValueError, match=expected):
        solver(lambda x: jnp.sum(x**2), manifold, x0)
    with pytest.raises(ValueError, match="x0 is not on the manifold Sphere"):
        solver(linear, SPHERE, jnp.asarray([1.0, 0.0, 0.0, 1e-3], jnp.float64))


def test_project_x0_starts_from_the_projection():
    """project_x0=True solves from SPHERE.project(x0): the linear cost's minimizer is reached."""
    x0 = jnp.asarray([3.0, 1.0, -2.0, 0.5], jnp.float64)
    result = mo.solvers.steepest_descent(linear, SPHERE, x0, project_x0=True, max_iterations=300, log=True)
    check_honest(result)
    assert reason(result) == "GRADIENT_TOLERANCE"
    np.testing.assert_allclose(float(result.log.cost[0]), -TARGET @ (np.asarray(x0) / np.linalg.norm(x0)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(result.x), TARGET, atol=1e-6)
    # under vmap x0 is a tracer: no concrete check, the projection still applies
    batch = jax.vmap(lambda z: mo.solvers.steepest_descent(linear, SPHERE, z, project_x0=True, max_iterations=300))
    np.testing.assert_allclose(np.asarray(batch(jnp.stack([x0, -x0 + 0.1])).x), np.stack([TARGET, TARGET]), atol=1e-6)


@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: s.__name__)
def test_bad_arguments_name_the_solver_and_argument(solver):
    x0 = on_sphere(1.0, 0.0, 0.0, 0.0)
    name = solver.__name__
    with pytest.raises(ValueError, match=f"{name}: tolerance must be a nonnegative number"):
        solver(linear, SPHERE, x0, tolerance=-1e-6)
    with pytest.raises(ValueError, match=f"{name}: cost_tolerance must be a nonnegative number"):
        solver(linear, SPHERE, x0, cost_tolerance=jnp.asarray(-1.0))
    with pytest.raises(ValueError, match=f"{name}: max_iterations must be an int >= 1, got 0"):
        solver(linear, SPHERE, x0, max_iterations=0)
    with pytest.raises(TypeError, match=f"{name}: .*'max_iters'"):
        solver(linear, SPHERE, x0, max_iters=10)


def test_stop_reason_codes_are_stable():
    assert [(r.name, int(r)) for r in StopReason] == [
        ("RUNNING", 0), ("GRADIENT_TOLERANCE", 1), ("COST_STALLED", 2), ("STEP_TOO_SMALL", 3),
        ("MAX_ITERATIONS", 4), ("NON_FINITE", 5), ("GAP_TOLERANCE", 6)]

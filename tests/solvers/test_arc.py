"""ARC: the cubic subproblem against a multi-start SciPy minimization, and the solver on the
Brockett cost over canonical Stiefel (exact Riemannian Hessian through hand-written
derivatives) against the eigenvalue optimum."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

import manifold_opt as mo
from manifold_opt.manifolds import Stiefel
from manifold_opt.solvers.arc import cubic_subproblem


def test_cubic_subproblem_is_the_global_minimizer():
    rng = np.random.default_rng(0)
    b = rng.standard_normal((6, 6))
    t = (b + b.T) / 2  # indefinite
    for g_norm, sigma in ((1.3, 0.7), (1e-3, 50.0), (10.0, 1e-2)):
        model = lambda y: g_norm * y[0] + 0.5 * y @ t @ y + sigma / 3 * np.linalg.norm(y) ** 3  # noqa: E731
        ours = np.asarray(cubic_subproblem(jnp.asarray(t), g_norm, sigma))
        best = min(minimize(model, rng.standard_normal(6), method="BFGS", options={"gtol": 1e-12}).fun for _ in range(20))
        assert model(ours) <= best + 1e-10 * max(1.0, abs(best))


def test_arc_with_hand_written_derivatives_on_canonical_stiefel():
    n, p = 10, 3
    rng = np.random.default_rng(1)
    b = rng.standard_normal((n, n))
    a = jnp.asarray((b + b.T) / 2)
    w = jnp.arange(p, 0, -1.0)
    optimum = float(np.sum(np.asarray(w) * np.linalg.eigvalsh(np.asarray(a))[:p]))
    cost = mo.solvers.Cost(lambda x: jax.lax.stop_gradient(jnp.sum(x * (a @ x) * w)),  # autodiff sees nothing
                           egrad=lambda x: 2 * (a @ x) * w, ehvp=lambda x, u: 2 * (a @ u) * w)
    manifold = Stiefel(n, p, metric="canonical")
    x0 = manifold.random_point(jax.random.key(2), jnp.float64)
    result = mo.solvers.arc(cost, manifold, x0, tolerance=1e-9, log=True)
    assert bool(result.converged), mo.solvers.stop_reason_name(result.stop_reason)
    assert (float(result.value) - optimum) / abs(optimum) < 1e-10
    norms = np.asarray(result.log.gradient_norm[: int(result.iterations) + 1])
    assert norms[-1] < norms[-2] ** 1.5  # superlinear at the end: the exact Hessian

"""Birkhoff manifold (Fisher metric) against float64 NumPy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt.manifolds import Birkhoff

N = 4


def numpy_sinkhorn(k, iters=5000):
    for _ in range(iters):
        k = k / k.sum(0, keepdims=True)
        k = k / k.sum(1, keepdims=True)
    return k


def doubly_stochastic(rng, n=N):
    return numpy_sinkhorn(np.exp(rng.standard_normal((n, n))))


def numpy_fisher_projection(x, z):
    """z - (alpha 1^T + 1 beta^T) * x, with alpha, beta from a least-squares solve of the
    2n zero-row/column-sum conditions (Douik & Hassibi 2019)."""
    n = x.shape[0]
    rows = []
    for i in range(n):  # row sums of (alpha 1^T + 1 beta^T) * x
        r = np.zeros(2 * n)
        r[i] = x[i].sum()
        r[n:] = x[i]
        rows.append(r)
    for j in range(n):  # column sums
        r = np.zeros(2 * n)
        r[:n] = x[:, j]
        r[n + j] = x[:, j].sum()
        rows.append(r)
    rhs = np.concatenate([z.sum(1), z.sum(0)])
    ab = np.linalg.lstsq(np.array(rows), rhs, rcond=None)[0]
    return z - (ab[:n, None] + ab[None, n:]) * x


def test_proj_egrad_inner_match_reference():
    rng = np.random.default_rng(0)
    x, z, v = doubly_stochastic(rng), rng.standard_normal((N, N)), rng.standard_normal((N, N))
    m = Birkhoff(N)
    np.testing.assert_allclose(m.proj(x, z), numpy_fisher_projection(x, z), atol=1e-12)
    np.testing.assert_allclose(m.egrad_to_rgrad(x, z), numpy_fisher_projection(x, z * x), atol=1e-12)
    np.testing.assert_allclose(m.inner(x, z, v), np.sum(z * v / x), rtol=1e-12)


def test_retract_is_sinkhorn_of_x_exp_u_over_x():
    rng = np.random.default_rng(1)
    x = doubly_stochastic(rng)
    u = numpy_fisher_projection(x, 0.3 * rng.standard_normal((N, N)))
    np.testing.assert_allclose(Birkhoff(N).retract(x, u), numpy_sinkhorn(x * np.exp(u / x)), atol=1e-10)


def test_project_and_feasibility():
    rng = np.random.default_rng(2)
    a = np.abs(rng.standard_normal((N, N)))
    m = Birkhoff(N)
    np.testing.assert_allclose(m.project(a), numpy_sinkhorn(a), atol=1e-10)
    x = doubly_stochastic(rng)
    ref = max(np.abs(a.sum(0) - 1).max(), np.abs(a.sum(1) - 1).max())
    np.testing.assert_allclose(m.feasibility(a), ref, rtol=1e-12)
    neg = x.copy()
    neg[0, 0] += 0.1
    neg[0, 1] -= 0.1
    neg[1, 0] -= 0.1
    neg[1, 1] += 0.1  # sums still exact; maybe negative entries
    np.testing.assert_allclose(m.feasibility(neg), np.maximum(-neg, 0).sum(), atol=1e-12)


def test_boundary_points_give_no_nans_and_near_boundary_points_stay_feasible():
    m = Birkhoff(3)
    boundary = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    u = jnp.array([[0.0, 0.2, -0.2], [0.1, -0.3, 0.2], [-0.1, 0.1, 0.0]])
    for dtype in (jnp.float32, jnp.float64):
        x, ud = boundary.astype(dtype), u.astype(dtype)
        y = m.retract(x, ud)
        assert y.dtype == dtype and bool(jnp.all(jnp.isfinite(y))) and bool(jnp.all(y >= 0))
        assert bool(jnp.all(jnp.isfinite(m.inner(x, ud, ud))))
        assert bool(jnp.all(jnp.isfinite(m.project(jnp.zeros((3, 3), dtype)))))
        inside = m.project(x + 1e-4)  # strictly positive, smallest entry ~1e-4
        step = m.proj(inside, 1e-5 * ud)
        y = m.retract(inside, step)
        assert bool(jnp.all(y > 0)) and float(m.feasibility(y)) < 1e-5


def test_gradient_through_retraction_is_finite():
    m = Birkhoff(3)
    x = m.random_point(jax.random.PRNGKey(0), jnp.float64)
    u = m.random_tangent(jax.random.PRNGKey(1), x)
    g = jax.grad(lambda u: jnp.sum(m.retract(x, u) ** 2))(u)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_bad_input():
    with pytest.raises(ValueError, match="n"):
        Birkhoff(0)
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        Birkhoff(3, sinkhorn_iters=0)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3, 3\)"):
        Birkhoff(3).project(jnp.ones((3, 4)))

"""Sinkhorn: marginals, tolerance stop, implicit VJP vs unrolled gradients, tangent projection."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt import linalg


def numpy_sinkhorn(k, iters):
    for _ in range(iters):
        k = k / k.sum(-2, keepdims=True)
        k = k / k.sum(-1, keepdims=True)
    return k


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-11), (np.float32, 2e-6)])
def test_marginals_and_numpy_reference(dtype, atol):
    z = np.random.default_rng(0).standard_normal((3, 5, 5))
    p = linalg.sinkhorn(jnp.asarray(z, dtype), num_iters=1000)
    assert p.dtype == dtype
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=atol)
    np.testing.assert_allclose(p.sum(-2), 1.0, atol=atol)
    np.testing.assert_allclose(p, numpy_sinkhorn(np.exp(z), 1000), atol=atol)


def test_tolerance_stops_early():
    z = jnp.asarray(np.random.default_rng(1).standard_normal((6, 6)))
    loose = linalg.sinkhorn(z, num_iters=1000, tol=1e-3)
    err = float(jnp.max(jnp.abs(loose.sum(-2) - 1)))
    assert 1e-12 < err <= 1e-3  # stopped once within tol, well before full convergence
    tight = linalg.sinkhorn(z, num_iters=1000, tol=1e-13)
    assert float(jnp.max(jnp.abs(tight.sum(-2) - 1))) < 1e-12


@pytest.mark.parametrize("dtype, rtol", [(jnp.float64, 1e-8), (jnp.float32, 2e-3)])
def test_implicit_vjp_matches_unrolled_gradient(dtype, rtol):
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.standard_normal((2, 4, 4)), dtype)
    w = jnp.asarray(rng.standard_normal((2, 4, 4)), dtype)

    def loss(p):
        return jnp.sum(w * p) + jnp.sum(p**2)

    tol = 1e-14 if dtype == jnp.float64 else 1e-7
    g_implicit = jax.grad(lambda z: loss(linalg.sinkhorn(z, num_iters=2000, tol=tol)))(z)
    g_unrolled = jax.grad(lambda z: loss(linalg.sinkhorn(z, num_iters=300, implicit_diff=False)))(z)
    assert g_implicit.dtype == dtype
    np.testing.assert_allclose(g_implicit, g_unrolled, rtol=rtol, atol=rtol * 1e-1)


def test_tangent_projection_zero_sums_and_idempotent():
    rng = np.random.default_rng(3)
    p = numpy_sinkhorn(np.exp(rng.standard_normal((5, 5))), 2000)
    z = rng.standard_normal((5, 5))
    t = np.asarray(linalg.birkhoff_tangent_projection(jnp.asarray(p), jnp.asarray(z)))
    np.testing.assert_allclose(t.sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(t.sum(1), 0, atol=1e-12)
    np.testing.assert_allclose(linalg.birkhoff_tangent_projection(p, t), t, atol=1e-12)
    # the removed part (alpha 1^T + 1 beta^T) * p is Fisher-orthogonal to the tangent space
    v = np.asarray(linalg.birkhoff_tangent_projection(p, rng.standard_normal((5, 5))))
    np.testing.assert_allclose(np.sum((z - t) * v / p), 0, atol=1e-11)


def test_bad_input():
    with pytest.raises(ValueError, match="log_k must be square"):
        linalg.sinkhorn(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="num_iters"):
        linalg.sinkhorn(jnp.ones((3, 3)), num_iters=0)
    with pytest.raises(ValueError, match="tol"):
        linalg.sinkhorn(jnp.ones((3, 3)), tol=-1.0)

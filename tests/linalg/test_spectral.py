"""Top singular pair by power iteration vs numpy SVD."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt import linalg


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-8), (np.float32, 1e-4)])
def test_top_singular_matches_numpy_svd(dtype, rtol):
    rng = np.random.default_rng(0)
    u0 = np.linalg.qr(rng.standard_normal((2, 8, 8)))[0]
    v0 = np.linalg.qr(rng.standard_normal((2, 6, 6)))[0]
    s0 = np.array([5.0, 2.0, 1.5, 1.0, 0.5, 0.1])
    g = u0[..., :6] * s0 @ np.swapaxes(v0, -1, -2)  # gap 5 / 2: fast, reliable convergence
    sigma, u, v = linalg.top_singular(jnp.asarray(g, dtype), num_iters=30)
    assert sigma.dtype == dtype and sigma.shape == (2,)
    uu, ss, vvh = np.linalg.svd(g)
    np.testing.assert_allclose(sigma, ss[:, 0], rtol=rtol)
    np.testing.assert_allclose(np.abs(np.sum(np.asarray(u) * uu[..., 0], -1)), 1.0, rtol=rtol)
    np.testing.assert_allclose(np.abs(np.sum(np.asarray(v) * vvh[:, 0, :], -1)), 1.0, rtol=rtol)


def test_warm_start_and_bad_input():
    g = jax.random.normal(jax.random.PRNGKey(0), (5, 4), jnp.float64)
    sigma, _, v = linalg.top_singular(g, num_iters=200)
    sigma_warm, _, _ = linalg.top_singular(g, num_iters=1, v0=v)
    np.testing.assert_allclose(sigma_warm, sigma, rtol=1e-10)
    np.testing.assert_allclose(sigma, np.linalg.svd(np.asarray(g), compute_uv=False)[0], rtol=1e-8)
    with pytest.raises(ValueError, match="v0 must have shape"):
        linalg.top_singular(g, v0=jnp.ones(5))
    with pytest.raises(ValueError, match="num_iters"):
        linalg.top_singular(g, num_iters=0)
    with pytest.raises(ValueError, match="g must have at least 2 dimensions"):
        linalg.top_singular(jnp.ones(4))

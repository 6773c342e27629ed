"""Product manifold: factorwise operations, summed metric, tuple validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt.manifolds import Grassmann, Product, Sphere, Stiefel


def test_operations_are_factorwise_and_metric_is_summed():
    a, b = Sphere(4), Stiefel(5, 2, metric="canonical")
    m = Product(a, b)
    x = m.random_point(jax.random.PRNGKey(0), jnp.float64, (2,))
    u = m.random_tangent(jax.random.PRNGKey(1), x)
    z = (jnp.ones((2, 4)), jnp.arange(20.0).reshape(2, 5, 2))
    np.testing.assert_allclose(m.proj(x, z)[1], b.proj(x[1], z[1]))
    np.testing.assert_allclose(m.egrad_to_rgrad(x, z)[1], b.egrad_to_rgrad(x[1], z[1]))
    np.testing.assert_allclose(m.retract(x, u)[0], a.retract(x[0], u[0]))
    np.testing.assert_allclose(m.inner(x, u, z), a.inner(x[0], u[0], z[0]) + b.inner(x[1], u[1], z[1]))
    np.testing.assert_allclose(m.norm(x, u), 1.0, rtol=1e-12)
    assert m.dim == a.dim + b.dim and m.shape == ((4,), (5, 2))


def test_dist_combines_factor_distances():
    m = Product(Sphere(3), Grassmann(4, 2))
    x = m.random_point(jax.random.PRNGKey(2), jnp.float64)
    y = m.random_point(jax.random.PRNGKey(3), jnp.float64)
    ref = np.hypot(Sphere(3).dist(x[0], y[0]), Grassmann(4, 2).dist(x[1], y[1]))
    np.testing.assert_allclose(m.dist(x, y), ref, rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="manifolds"):
        Product()
    with pytest.raises(ValueError, match=r"manifolds\[1\]"):
        Product(Sphere(3), "sphere")
    m = Product(Sphere(3), Sphere(2))
    with pytest.raises(ValueError, match="x must be a tuple of 2 arrays"):
        m.project(jnp.ones(3))
    with pytest.raises(ValueError, match=r"u\[1\] must have shape"):
        m.proj((jnp.ones(3), jnp.ones(2)), (jnp.ones(3), jnp.ones(3)))

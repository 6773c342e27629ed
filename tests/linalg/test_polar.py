"""Exact polar factor vs scipy.linalg.polar; a basic Newton-Schulz sanity check (the
coefficient tables and their singular-value bands are tested with the optimizers)."""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from manifold_opt import linalg


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (2, 5, 5)])
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_polar_matches_scipy(shape, dtype, atol):
    g = np.random.default_rng(0).standard_normal(shape)
    got = linalg.polar(jnp.asarray(g, dtype))
    assert got.dtype == dtype
    flat = g.reshape((-1,) + shape[-2:])
    ref = np.stack([scipy.linalg.polar(a, side="right")[0] for a in flat]).reshape(shape)
    np.testing.assert_allclose(got, ref, atol=atol)


def test_newton_schulz_approaches_the_polar_factor():
    rng = np.random.default_rng(1)
    g = rng.standard_normal((16, 8))
    ref = scipy.linalg.polar(g)[0]
    got = np.asarray(linalg.newton_schulz(jnp.asarray(g), steps=8, coeffs="polar_express"))
    s = np.linalg.svd(got, compute_uv=False)
    assert s.min() > 0.7 and s.max() < 1.3
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 0.2
    assert np.trace(ref.T @ got) / 8 > 0.9


def test_bad_input():
    with pytest.raises(ValueError, match="g must have at least 2 dimensions"):
        linalg.polar(jnp.ones(3))
    with pytest.raises(ValueError, match="steps"):
        linalg.newton_schulz(jnp.ones((3, 3)), steps=0)

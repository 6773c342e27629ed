"""Newton-Schulz polar iteration: spectral mapping, coefficient bands, Polar Express, ROOT table,
dtypes, and the coupled Newton-Schulz inverse square root (SPECTRA's kernel)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from manifold_opt.linalg import inverse_sqrt, newton_schulz, ns_coefficients, polar
from manifold_opt.linalg.polar import COEFF_SETS, ROOT_SHAPE_COEFFS

RNG = np.random.default_rng(1234)
ns = jax.jit(newton_schulz, static_argnames=("steps", "coeffs", "eps", "compute_dtype"))


def with_condition(m, n, cond, batch=3):
    """Random (batch, m, n) matrices with log-spaced singular values from 1 down to 1/cond."""
    k = min(m, n)
    out = []
    for _ in range(batch):
        u, _ = np.linalg.qr(RNG.standard_normal((m, k)))
        v, _ = np.linalg.qr(RNG.standard_normal((n, k)))
        s = np.logspace(0, -np.log10(cond), k)
        out.append((u * RNG.permutation(s)) @ v.T)
    return np.stack(out)


def scalar_reference(sigma, table, safety):
    """The odd polynomial map applied to normalized singular values, in float64."""
    x = sigma / (safety * np.linalg.norm(sigma, axis=-1, keepdims=True))
    for a, b, c in table:
        x = a * x + b * x**3 + c * x**5
    return x


@pytest.mark.parametrize("coeffs", ["muon", "dion", "polar_express"])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])
def test_spectral_mapping_matches_scalar_reference(coeffs, shape):
    g = with_condition(*shape, cond=50.0)
    out = np.asarray(ns(jnp.asarray(g), steps=5, coeffs=coeffs, eps=0.0))
    u, s, vh = np.linalg.svd(g, full_matrices=False)
    table, safety = np.asarray(COEFF_SETS[coeffs][0]), COEFF_SETS[coeffs][1]
    table = table[np.minimum(np.arange(5), len(table) - 1)]
    expected = (u * scalar_reference(s, table, safety)[:, None, :]) @ vh
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_muon_band():
    """Muon's coefficients promise singular values in "roughly [0.7, 1.2]": precisely the
    polynomial's attracting band [0.682, 1.2024], reached in 5 steps once the normalized input
    singular values exceed ~2e-3. That holds for condition number 1e2; at 1e3 Frobenius
    normalization puts the smallest near 1e-3/sqrt(k) and 7 steps are needed."""
    for cond, steps in [(1e2, 5), (1e3, 7)]:
        g = with_condition(64, 96, cond)
        sv = np.linalg.svd(np.asarray(ns(jnp.asarray(g), steps)), compute_uv=False)
        assert 0.68 <= sv.min() and sv.max() <= 1.203, (cond, sv.min(), sv.max())
    sv5 = np.linalg.svd(np.asarray(ns(jnp.asarray(with_condition(64, 96, 1e3)), 5)), compute_uv=False)
    assert sv5.min() < 0.5  # the documented limit: 5 steps are not enough at condition number 1e3


def test_polar_express_approaches_polar():
    """The reference's full 8-polynomial table, then (15, -10, 3)/8 repeated: the error to the
    exact polar factor keeps falling (the old 5-step table plateaued near 3.5%), even at
    condition number 1e3; float32 reaches its rounding level."""
    g = jnp.asarray(with_condition(48, 80, 1e3))
    p = np.asarray(polar(g))
    errors = [np.linalg.norm(np.asarray(ns(g, steps, "polar_express")) - p) / np.linalg.norm(p) for steps in (5, 8, 10)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[1] < 1e-4 and errors[2] < 1e-11, errors
    g32 = jnp.asarray(with_condition(48, 80, 1e2), jnp.float32)
    p32 = np.asarray(polar(g32.astype(jnp.float64)))
    assert np.linalg.norm(np.asarray(ns(g32, 10, "polar_express")) - p32) / np.linalg.norm(p32) < 1e-5
    table, safety = ns_coefficients("polar_express", 10)
    assert safety == 1.01 and np.all(table[7:] == np.array([15, -10, 3]) / 8)


def test_root_per_shape_coefficients():
    for (lo, hi), triple in ROOT_SHAPE_COEFFS.items():
        for shape in [(lo, hi), (hi, lo), (4, lo, hi)]:
            table, safety = ns_coefficients("root", 5, shape)
            np.testing.assert_array_equal(table, np.tile(triple, (5, 1)))
            assert safety == 1.0
    np.testing.assert_array_equal(ns_coefficients("root", 2, (64, 96))[0], np.tile(COEFF_SETS["muon"][0], (2, 1)))
    g = jnp.asarray(with_condition(24, 40, 10.0))
    np.testing.assert_array_equal(ns(g, 5, "root"), ns(g, 5, "muon"))


def test_transposes_tall_zero_input_and_dtypes():
    g = jnp.asarray(with_condition(32, 20, 10.0, batch=2))
    np.testing.assert_allclose(ns(g), jnp.swapaxes(ns(jnp.swapaxes(g, -1, -2)), -1, -2), atol=1e-12)
    zero = ns(jnp.zeros((5, 7)))
    assert not np.any(np.isnan(zero)) and np.all(zero == 0)
    out64 = ns(g)
    for dtype, compute, tol in [(jnp.float32, None, 1e-4), (jnp.float32, jnp.bfloat16, 0.1), (jnp.bfloat16, None, 0.1)]:
        out = ns(g.astype(dtype), compute_dtype=compute)
        assert out.dtype == dtype
        assert float(jnp.max(jnp.abs(out.astype(jnp.float64) - out64))) < tol


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        newton_schulz(jnp.ones(3))
    with pytest.raises(ValueError, match="unknown coeffs"):
        newton_schulz(jnp.ones((3, 3)), coeffs="nope")
    with pytest.raises(ValueError, match="steps"):
        newton_schulz(jnp.ones((3, 3)), steps=0)
    with pytest.raises(ValueError, match="root"):
        ns_coefficients("root", 5)


def test_inverse_sqrt_matches_scipy():
    x = RNG.standard_normal((3, 12, 12))
    a = x @ np.swapaxes(x, -1, -2) / 12 + 0.05 * np.eye(12)
    out = np.asarray(inverse_sqrt(jnp.asarray(a), num_iters=25))
    for ai, oi in zip(a, out):
        np.testing.assert_allclose(oi, np.linalg.inv(scipy.linalg.sqrtm(ai).real), rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="square"):
        inverse_sqrt(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="num_iters"):
        inverse_sqrt(jnp.eye(3), num_iters=0)

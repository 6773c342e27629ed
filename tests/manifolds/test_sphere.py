"""Sphere against float64 NumPy closed forms."""
import numpy as np
import pytest

from manifold_opt.manifolds import Sphere


def unit(rng, shape):
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_exp_log_dist_match_closed_forms():
    rng = np.random.default_rng(0)
    x, y = unit(rng, (3, 6)), unit(rng, (3, 6))
    m = Sphere(6)
    theta = np.arccos(np.clip(np.sum(x * y, -1), -1, 1))
    np.testing.assert_allclose(m.dist(x, y), theta, rtol=1e-10)
    d = y - np.sum(x * y, -1, keepdims=True) * x
    ref_log = theta[:, None] * d / np.linalg.norm(d, axis=-1, keepdims=True)
    np.testing.assert_allclose(m.log(x, y), ref_log, atol=1e-10)
    u = rng.standard_normal((3, 6))
    u -= np.sum(x * u, -1, keepdims=True) * x
    t = np.linalg.norm(u, axis=-1, keepdims=True)
    np.testing.assert_allclose(m.exp(x, u), np.cos(t) * x + np.sin(t) * u / t, atol=1e-12)


def test_retract_and_project_normalize():
    rng = np.random.default_rng(1)
    x, z = unit(rng, (6,)), rng.standard_normal(6)
    m = Sphere(6)
    u = z - (x @ z) * x
    np.testing.assert_allclose(m.proj(x, z), u, atol=1e-12)
    np.testing.assert_allclose(m.retract(x, u), (x + u) / np.linalg.norm(x + u), atol=1e-12)
    np.testing.assert_allclose(m.feasibility(2 * x), 1.0, rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="n"):
        Sphere(0)
    with pytest.raises(ValueError, match=r"u must have shape \(\.\.\., 3\)"):
        Sphere(3).proj(np.ones(3), np.ones(4))

"""Stiefel manifold against float64 NumPy/SciPy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from manifold_opt.manifolds import Stiefel

N, P = 7, 3


def point_and_tangent(seed, n=N, p=P, batch=()):
    rng = np.random.default_rng(seed)
    x = np.linalg.qr(rng.standard_normal(batch + (n, p)))[0]
    z = rng.standard_normal(batch + (n, p))
    xtz = np.swapaxes(x, -1, -2) @ z
    u = z - x @ (xtz + np.swapaxes(xtz, -1, -2)) / 2
    return x, u, rng


def test_qr_retraction_matches_numpy_qr_with_positive_diagonal():
    x, u, _ = point_and_tangent(0)
    q, r = np.linalg.qr(x + u)
    ref = q * np.sign(np.diag(r))
    np.testing.assert_allclose(Stiefel(N, P).retract(x, u), ref, atol=1e-12)


def test_polar_retraction_matches_scipy_polar():
    x, u, _ = point_and_tangent(1, batch=(2,))
    got = Stiefel(N, P, retraction="polar").retract(x, u)
    for i in range(2):
        np.testing.assert_allclose(got[i], scipy.linalg.polar(x[i] + u[i])[0], atol=1e-12)


def test_polar_retraction_removes_orthogonality_drift():
    x, u, rng = point_and_tangent(2)
    drifted = x + 1e-3 * rng.standard_normal(x.shape)
    y = Stiefel(N, P, retraction="polar").retract(drifted, u)
    np.testing.assert_allclose(y, scipy.linalg.polar(drifted + u)[0], atol=1e-12)


def dense_cayley(x, u):
    """(I - W/2)^{-1} (I + W/2) X with the n x n W of Wen & Yin (2013)."""
    n = x.shape[0]
    px = np.eye(n) - x @ x.T / 2
    w = px @ u @ x.T - x @ u.T @ px
    return np.linalg.solve(np.eye(n) - w / 2, np.eye(n) + w / 2)


def test_cayley_retraction_and_transport_match_dense_reference():
    x, u, rng = point_and_tangent(3)
    v = point_and_tangent(4)[1]
    v = v - x @ (x.T @ v + v.T @ x) / 2
    q = dense_cayley(x, u)
    m = Stiefel(N, P, retraction="cayley")
    np.testing.assert_allclose(m.retract(x, u), q @ x, atol=1e-12)
    y, w = m.retract_transport(x, u, v)
    np.testing.assert_allclose(y, q @ x, atol=1e-12)
    np.testing.assert_allclose(w, q @ v, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(w), np.linalg.norm(v), rtol=1e-12)  # isometric


def test_cayley_preserves_orthogonality_error():
    x, u, rng = point_and_tangent(5)
    drifted = x + 1e-3 * rng.standard_normal(x.shape)
    y = np.asarray(Stiefel(N, P, retraction="cayley").retract(drifted, u))
    np.testing.assert_allclose(y.T @ y, drifted.T @ drifted, atol=1e-12)


def test_canonical_metric_and_gradient():
    x, u, rng = point_and_tangent(6)
    v = point_and_tangent(7)[1]
    v = v - x @ (x.T @ v + v.T @ x) / 2
    g = rng.standard_normal(x.shape)
    m = Stiefel(N, P, metric="canonical")
    ref_inner = np.trace(u.T @ (np.eye(N) - x @ x.T / 2) @ v)
    np.testing.assert_allclose(m.inner(x, u, v), ref_inner, rtol=1e-12)
    np.testing.assert_allclose(m.egrad_to_rgrad(x, g), g - x @ g.T @ x, atol=1e-12)
    # proj is the same orthogonal projection for both metrics, and differs from egrad_to_rgrad
    np.testing.assert_allclose(m.proj(x, g), Stiefel(N, P).proj(x, g), atol=1e-14)
    assert np.abs(np.asarray(m.proj(x, g) - m.egrad_to_rgrad(x, g))).max() > 1e-3


def test_project_is_scipy_polar_and_feasibility():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((N, P))
    m = Stiefel(N, P)
    np.testing.assert_allclose(m.project(a), scipy.linalg.polar(a)[0], atol=1e-12)
    np.testing.assert_allclose(m.feasibility(a), np.linalg.norm(a.T @ a - np.eye(P)), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(n=3, p=4), "p"),
        (dict(n=0, p=0), "n"),
        (dict(n=4, p=0), "p"),
        (dict(n=4.5, p=2), "n"),
        (dict(n=4, p=2, retraction="svd"), "retraction"),
        (dict(n=4, p=2, metric="fisher"), "metric"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Stiefel(**kwargs)


def test_methods_reject_wrong_shapes():
    m = Stiefel(4, 2)
    x = m.random_point(jax.random.PRNGKey(0), jnp.float64)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4, 2\)"):
        m.retract(jnp.zeros((2, 4)), x)
    with pytest.raises(ValueError, match="u must have shape"):
        m.proj(x, jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="v must have shape"):
        m.inner(x, x, jnp.zeros((4,)))
    with pytest.raises(ValueError, match="egrad must have shape"):
        Stiefel(4, 2, metric="canonical").egrad_to_rgrad(x, jnp.zeros((3, 2)))

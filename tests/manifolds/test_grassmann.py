"""Grassmann manifold against float64 NumPy/SciPy references."""
import numpy as np
import pytest
import scipy.linalg

from manifold_opt.manifolds import Grassmann

N, P = 7, 3


def basis(rng, n=N, p=P):
    return np.linalg.qr(rng.standard_normal((n, p)))[0]


def projector(y):
    return y @ y.T


def test_dist_matches_scipy_subspace_angles_and_ignores_representatives():
    rng = np.random.default_rng(0)
    x, y = basis(rng), basis(rng)
    r = np.linalg.qr(rng.standard_normal((P, P)))[0]
    ref = np.linalg.norm(scipy.linalg.subspace_angles(x, y))
    m = Grassmann(N, P)
    np.testing.assert_allclose(m.dist(x, y), ref, rtol=1e-10)
    np.testing.assert_allclose(m.dist(x, y @ r), ref, rtol=1e-10)
    np.testing.assert_allclose(m.log(x, y @ r), m.log(x, y), atol=1e-10)


def test_exp_matches_expm_of_the_block_generator():
    """Geodesic from X with velocity U = X_perp B: span of the first p columns of
    [X, X_perp] expm([[0, -B^T], [B, 0]])."""
    rng = np.random.default_rng(1)
    full = np.linalg.qr(rng.standard_normal((N, N)))[0]
    x, x_perp = full[:, :P], full[:, P:]
    b = 0.4 * rng.standard_normal((N - P, P))
    gen = np.block([[np.zeros((P, P)), -b.T], [b, np.zeros((N - P, N - P))]])
    ref = (full @ scipy.linalg.expm(gen))[:, :P]
    y = np.asarray(Grassmann(N, P).exp(x, x_perp @ b))
    np.testing.assert_allclose(projector(y), projector(ref), atol=1e-12)
    np.testing.assert_allclose(y.T @ y, np.eye(P), atol=1e-12)


def test_log_of_exp_and_principal_angle_limit():
    rng = np.random.default_rng(2)
    x = basis(rng)
    u = rng.standard_normal((N, P))
    u = u - x @ (x.T @ u)
    u *= 1.2 / np.linalg.norm(u, 2)  # largest principal angle 1.2 < pi/2
    m = Grassmann(N, P)
    np.testing.assert_allclose(m.log(x, m.exp(x, u)), u, atol=1e-10)
    np.testing.assert_allclose(m.dist(x, m.exp(x, u)), np.linalg.norm(u), rtol=1e-10)


def test_retract_spans_x_plus_u_and_proj_is_horizontal():
    rng = np.random.default_rng(3)
    x = basis(rng)
    z = rng.standard_normal((N, P))
    m = Grassmann(N, P)
    np.testing.assert_allclose(m.proj(x, z), z - x @ x.T @ z, atol=1e-12)
    u = np.asarray(m.proj(x, z))
    q = np.linalg.qr(x + u)[0]
    np.testing.assert_allclose(projector(np.asarray(m.retract(x, u))), projector(q), atol=1e-12)


@pytest.mark.parametrize("kwargs, word", [(dict(n=2, p=3), "p"), (dict(n=0, p=1), "n"), (dict(n=3, p=-1), "p")])
def test_constructor_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Grassmann(**kwargs)


def test_methods_reject_wrong_shapes():
    m = Grassmann(4, 2)
    x = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 2)))[0]
    with pytest.raises(ValueError, match="y must have shape"):
        m.log(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x must have shape"):
        m.exp(np.zeros((4,)), x)

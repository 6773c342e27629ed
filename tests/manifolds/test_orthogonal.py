"""Orthogonal group O(n) / SO(n) against float64 SciPy references (expm, logm, polar)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from manifold_opt.manifolds import OrthogonalGroup

N = 5


def rotation(rng, n=N):
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def skew(rng, n=N, scale=1.0):
    a = scale * rng.standard_normal((n, n))
    return (a - a.T) / 2


@pytest.mark.parametrize("retraction", ["qr", "polar", "cayley", "exp"])
def test_retractions_match_references(retraction):
    rng = np.random.default_rng(0)
    x, w = rotation(rng), skew(rng)
    u = x @ w
    ref = {
        "qr": lambda: np.linalg.qr(x + u)[0] * np.sign(np.diag(np.linalg.qr(x + u)[1])),
        "polar": lambda: scipy.linalg.polar(x + u)[0],
        "cayley": lambda: x @ np.linalg.solve(np.eye(N) - w / 2, np.eye(N) + w / 2),
        "exp": lambda: x @ scipy.linalg.expm(w),
    }[retraction]()
    y = OrthogonalGroup(N, special=True, retraction=retraction).retract(x, u)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(y), 1.0, atol=1e-12)  # stays in SO(n)


def test_exp_log_dist_match_scipy_expm_logm():
    rng = np.random.default_rng(1)
    x, y = rotation(rng), rotation(rng)
    m = OrthogonalGroup(N)
    ref_log = np.real(scipy.linalg.logm(x.T @ y))
    np.testing.assert_allclose(m.log(x, y), x @ ref_log, atol=1e-10)
    np.testing.assert_allclose(m.dist(x, y), np.linalg.norm(ref_log), rtol=1e-10)
    w = skew(rng)
    np.testing.assert_allclose(m.exp(x, x @ w), x @ scipy.linalg.expm(w), atol=1e-12)


def test_log_is_accurate_near_the_identity():
    rng = np.random.default_rng(2)
    x, w = rotation(rng), skew(rng, scale=1e-6)
    y = x @ scipy.linalg.expm(w)
    np.testing.assert_allclose(OrthogonalGroup(N).log(x, y), x @ w, atol=1e-14)


def test_special_random_point_and_project_have_det_one():
    m = OrthogonalGroup(4, special=True)
    x = np.asarray(m.random_point(jax.random.PRNGKey(0), jnp.float64, (8,)))
    np.testing.assert_allclose(np.linalg.det(x), 1.0, atol=1e-12)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 4))
    if np.linalg.det(a) > 0:
        a[:, 0] *= -1  # polar factor would be a reflection
    p = np.asarray(m.project(a))
    np.testing.assert_allclose(p.T @ p, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(p), 1.0, atol=1e-12)
    # nearest rotation: no random rotation is closer
    others = [rotation(rng, 4) for _ in range(200)]
    assert np.linalg.norm(p - a) <= min(np.linalg.norm(r - a) for r in others)
    np.testing.assert_allclose(OrthogonalGroup(4).project(a), scipy.linalg.polar(a)[0], atol=1e-12)
    assert float(m.feasibility(scipy.linalg.polar(a)[0])) > 1.0  # a reflection is not in SO(n)


def test_tangent_vectors_are_x_times_skew():
    rng = np.random.default_rng(4)
    x, z = rotation(rng), rng.standard_normal((N, N))
    xtz = x.T @ z
    np.testing.assert_allclose(OrthogonalGroup(N).proj(x, z), x @ (xtz - xtz.T) / 2, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, word",
    [(dict(n=0), "n"), (dict(n=3, retraction="svd"), "retraction"), (dict(n=3, special="yes"), "special")],
)
def test_constructor_rejects_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        OrthogonalGroup(**kwargs)


def test_methods_reject_non_square_points():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 3, 3\)"):
        OrthogonalGroup(3).feasibility(np.zeros((3, 2)))

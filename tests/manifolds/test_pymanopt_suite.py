"""Pymanopt 2.2's own manifold tests (pymanopt/tests/manifolds/test_*.py) for every manifold we
share with Pymanopt, rewritten against our
manifolds through the adapter (pymanopt_adapter.py): same sizes, same assertions, Pymanopt's
constructor arguments (`k` copies = a batch). Pymanopt itself is not needed here (see
test_pymanopt_compare.py for the side-by-side comparison); the multi-array helpers are written
out below."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from numpy import testing as npt

import manifold_opt as mo
from manifold_opt.manifolds import (
    ComplexCircle,
    ComplexEuclidean,
    ComplexGrassmann,
    Elliptope,
    Euclidean,
    FixedRankEmbedded,
    Grassmann,
    HermitianPositiveDefinite,
    Oblique,
    OrthogonalGroup,
    PoincareBall,
    Positive,
    PSDFixedRank,
    PSDFixedRankComplex,
    Product,
    SpecialHermitianPositiveDefinite,
    Sphere,
    SphereSubspaceComplementIntersection,
    SphereSubspaceIntersection,
    Stiefel,
    SymmetricEuclidean,
    SymmetricPositiveDefinite,
    UnitaryGroup,
)
from tests.manifolds.pymanopt_adapter import Triple, adapt, adapt_group


def hconj(a):
    return np.conj(np.swapaxes(a, -1, -2))


def herm(a):
    return (a + hconj(a)) / 2


def eye_stack(k, n):
    return np.tile(np.eye(n), (k, 1, 1))


def assert_exp_log_inverse(s):
    """Pymanopt's entrywise check exp_x(log_x(y)) = y at random points."""
    x, y = s.random_point(), s.random_point()
    npt.assert_array_almost_equal(y, s.exp(x, s.log(x, y)))


def assert_log_exp_inverse(s):
    """Pymanopt's entrywise check log_x(exp_x(u)) = u at a random point and tangent vector."""
    x = s.random_point()
    u = s.random_tangent_vector(x)
    npt.assert_array_almost_equal(u, s.log(x, s.exp(x, u)))


@pytest.fixture(autouse=True)
def seed():
    np.random.seed(42)


# ----- FixedRankEmbedded (test_fixed_rank.py) ------------------------------------------------
class TestFixedRankEmbedded:
    m, n, k = 10, 5, 3

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(FixedRankEmbedded(self.m, self.n, self.k))

    def dense(self, x, u):
        return x[0] @ u[1] @ x[2] + u[0] @ x[2] + x[0] @ u[2].T

    def test_dim(self):
        assert self.manifold.dim == (self.m + self.n - self.k) * self.k

    def test_typical_dist(self):
        assert self.manifold.dim == self.manifold.typical_dist

    def test_dist(self):
        a = self.manifold.random_point()
        with pytest.raises(NotImplementedError):
            self.manifold.dist(a, a)

    def test_inner_product(self):
        e = self.manifold
        x = e.random_point()
        a, b = e.random_tangent_vector(x), e.random_tangent_vector(x)
        npt.assert_almost_equal(np.sum(self.dense(x, a) * self.dense(x, b)), e.inner_product(x, a, b))

    def test_proj_range(self):
        x = self.manifold.random_point()
        g = self.manifold.projection(x, np.random.normal(size=(self.m, self.n)))
        npt.assert_allclose(g[0].T @ x[0], np.zeros((self.k, self.k)), atol=1e-6)
        npt.assert_allclose(g[2].T @ x[2].T, np.zeros((self.k, self.k)), atol=1e-6)

    def test_projection(self):
        e = self.manifold
        x = e.random_point()
        v = np.random.normal(size=(self.m, self.n))
        g = e.projection(x, v)
        g_disp = g + 0.01 * e.random_tangent_vector(x)
        dense = [(lambda t: t[0] @ t[1] @ t[2].T)(e.embedding(x, t)) for t in (g, g_disp)]
        assert np.linalg.norm(dense[0] - v) < np.linalg.norm(dense[1] - v)

    def test_proj_tangents(self):
        e = self.manifold
        x = e.random_point()
        u = e.random_tangent_vector(x)
        for a, b in zip(e.projection(x, e.embedding(x, u)), u):
            npt.assert_allclose(a, b, atol=1e-12)

    def test_norm(self):
        e = self.manifold
        x = e.random_point()
        u = e.random_tangent_vector(x)
        npt.assert_almost_equal(np.sqrt(e.inner_product(x, u, u)), e.norm(x, u))

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        assert x[0].shape == (self.m, self.k) and x[1].shape == (self.k,) and x[2].shape == (self.k, self.n)
        npt.assert_allclose(x[0].T @ x[0], np.eye(self.k), atol=1e-6)
        npt.assert_allclose(x[2] @ x[2].T, np.eye(self.k), atol=1e-6)
        assert all(np.linalg.norm(a - b) > 1e-6 for a, b in zip(x, y))

    def test_transport(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        u = s.random_tangent_vector(x)
        diff = s.transport(x, y, u) - s.projection(y, s.embedding(x, u))
        npt.assert_almost_equal(s.norm(y, diff), 0)

    def test_apply_ambient(self):
        z = np.random.normal(size=(self.m, self.n))
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        w = np.random.normal(size=(self.n, self.n))
        npt.assert_allclose(z @ w, self.manifold._apply_ambient(z, w))
        npt.assert_allclose(z @ w, self.manifold._apply_ambient((u, np.diag(s), vt.T), w))

    def test_apply_ambient_transpose(self):
        z = np.random.normal(size=(self.n, self.m))
        u, s, vt = np.linalg.svd(z, full_matrices=False)
        w = np.random.normal(size=(self.n, self.n))
        npt.assert_allclose(z.T @ w, self.manifold._apply_ambient_transpose(z, w))
        npt.assert_allclose(z.T @ w, self.manifold._apply_ambient_transpose((u, np.diag(s), vt.T), w))

    def test_embedding(self):
        x = self.manifold.random_point()
        z = self.manifold.random_tangent_vector(x)
        u, s, v = self.manifold.embedding(x, z)
        npt.assert_allclose(self.dense(x, z), u @ s @ v.T, atol=1e-12)

    def test_retraction(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        y = self.manifold.retraction(x, u)
        npt.assert_allclose(y[0].T @ y[0], np.eye(self.k), atol=1e-6)
        npt.assert_allclose(y[2] @ y[2].T, np.eye(self.k), atol=1e-6)
        u = u * 1e-6
        y = self.manifold.retraction(x, u)
        npt.assert_allclose(y[0] @ np.diag(y[1]) @ y[2], x[0] @ np.diag(x[1]) @ x[2] + self.dense(x, u), atol=1e-5)

    def test_euclidean_to_riemannian_gradient(self):
        x = self.manifold.random_point()
        u, s, vt = x
        f = 1 / (s[np.newaxis, :] ** 2 - s[:, np.newaxis] ** 2 + np.eye(self.k))
        du = np.random.normal(size=(self.m, self.k))
        ds = np.random.normal(size=self.k)
        dvt = np.random.normal(size=(self.k, self.n))
        up = (np.eye(self.m) - u @ u.T) @ du @ np.linalg.inv(np.diag(s))
        m = (f * (u.T @ du - du.T @ u) @ np.diag(s) + np.diag(s) @ f * (vt @ dvt.T - dvt @ vt.T) + np.diag(ds))
        vp = (np.eye(self.n) - vt.T @ vt) @ dvt.T @ np.linalg.inv(np.diag(s))
        for a, b in zip((up, m, vp), self.manifold.euclidean_to_riemannian_gradient(x, (du, ds, dvt))):
            npt.assert_allclose(a, b, atol=1e-12)

    def test_random_tangent_vector(self):
        e = self.manifold
        x = e.random_point()
        u, v = e.random_tangent_vector(x), e.random_tangent_vector(x)
        assert (u[0].shape, u[1].shape, u[2].shape) == ((self.m, self.k), (self.k, self.k), (self.n, self.k))
        npt.assert_allclose(u[0].T @ x[0], np.zeros((self.k, self.k)), atol=1e-6)
        npt.assert_allclose(u[2].T @ x[2].T, np.zeros((self.k, self.k)), atol=1e-6)
        npt.assert_almost_equal(e.norm(x, u), 1)
        assert e.norm(x, u - v) > 1e-6


# ----- PSDFixedRank, PSDFixedRankComplex (test_psd_fixedrank*.py) ---------------------------
@pytest.mark.parametrize("complex_", [False, True])
class TestPSDFixedRank:
    n, k = 50, 10

    @pytest.fixture(autouse=True)
    def setup(self, complex_):
        kind = PSDFixedRankComplex if complex_ else PSDFixedRank
        self.manifold = adapt(kind(self.n, self.k), complex_=complex_)
        self.complex_ = complex_

    def test_dist(self, complex_):
        a = self.manifold.random_point()
        q = scipy.stats.unitary_group.rvs(self.k) if complex_ else scipy.stats.ortho_group.rvs(self.k)
        npt.assert_almost_equal(self.manifold.dist(a, a @ q), 0)

    def test_exp_log_inverse(self, complex_):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        npt.assert_almost_equal(s.dist(y, s.exp(x, s.log(x, y))), 0)

    def test_log_exp_inverse(self, complex_):
        s = self.manifold
        x = s.random_point()
        u = s.random_tangent_vector(x)
        npt.assert_almost_equal(s.norm(x, u - s.log(x, s.exp(x, u))), 0)


def test_elliptope_constructs():
    """Pymanopt's Elliptope tests construct Elliptope(50, 10); every other test there is commented
    out (the property battery covers ours)."""
    assert adapt(Elliptope(50, 10)).dim == 50 * 9 - 45


# ----- PoincareBall (test_hyperbolic.py) --------------------------------------------------------
@pytest.mark.parametrize("k", [1, 20])
class TestPoincareBall:
    n = 50

    @pytest.fixture(autouse=True)
    def setup(self, k):
        self.manifold = adapt(PoincareBall(self.n), copies=k)
        self.k = k

    def rnorm(self, a):
        return np.linalg.norm(a, axis=-1)

    def test_dim(self, k):
        assert self.manifold.dim == k * self.n

    def test_conformal_factor(self, k):
        x = self.manifold.random_point() / 2
        npt.assert_allclose(1 - 2 / self.manifold.conformal_factor(x), np.linalg.norm(x, axis=-1, keepdims=True) ** 2)

    def test_inner_product(self, k):
        m = self.manifold
        x = m.random_point() / 2
        u, v = m.random_tangent_vector(x), m.random_tangent_vector(x)
        expected = np.sum((2 / (1 - self.rnorm(x) ** 2)) ** 2 * np.sum(u * v, axis=-1))
        npt.assert_allclose(expected, m.inner_product(x, u, v))
        if k == 1:  # angles are preserved
            cos_e = np.sum(u * v) / np.linalg.norm(u) / np.linalg.norm(v)
            npt.assert_allclose(m.inner_product(x, u, v) / m.norm(x, u) / m.norm(x, v), cos_e)
        npt.assert_allclose(m.inner_product(x, u, v), m.inner_product(x, v, u))

    def test_proj(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(u, self.manifold.projection(x, u))

    def test_norm(self, k):
        x = self.manifold.random_point() / 2
        u = self.manifold.random_tangent_vector(x)
        expected = np.sum((2 / (1 - self.rnorm(x) ** 2)) ** 2 * np.sum(u * u, axis=-1))
        npt.assert_allclose(expected, self.manifold.norm(x, u) ** 2)

    def test_random_point(self, k):
        x = self.manifold.random_point()
        npt.assert_array_less(self.rnorm(x), 1)
        assert not np.array_equal(x, self.manifold.random_point())

    def test_random_tangent_vector(self, k):
        x = self.manifold.random_point()
        assert not np.array_equal(self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x))

    def test_zero_vector(self, k):
        x = self.manifold.random_point()
        npt.assert_allclose(np.linalg.norm(self.manifold.zero_vector(x)), 0)

    def test_dist(self, k):
        x, y = self.manifold.random_point() / 2, self.manifold.random_point() / 2
        d = np.arccosh(1 + 2 * self.rnorm(x - y) ** 2 / (1 - self.rnorm(x) ** 2) / (1 - self.rnorm(y) ** 2))
        npt.assert_allclose(np.sum(d**2), self.manifold.dist(x, y) ** 2)

    def test_euclidean_to_riemannian_gradient(self, k):
        x = self.manifold.random_point()
        g = np.random.normal(size=x.shape)
        assert self.manifold.euclidean_to_riemannian_gradient(x, g).shape == g.shape

    def test_euclidean_to_riemannian_hessian(self, k):
        x = self.manifold.random_point()
        g, h = np.random.normal(size=x.shape), np.random.normal(size=x.shape)
        u = self.manifold.random_tangent_vector(x)
        assert self.manifold.euclidean_to_riemannian_hessian(x, g, h, u).shape == h.shape

    def test_retraction(self, k):
        x = self.manifold.random_point() / 2
        y = self.manifold.retraction(x, self.manifold.random_tangent_vector(x))
        npt.assert_array_less(self.rnorm(y), 1 + 1e-10)

    def test_mobius_addition(self, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_array_less(self.rnorm(self.manifold.mobius_addition(x, y)), 1 + 1e-10)

    def test_exp_log_inverse(self, k):
        x, y = self.manifold.random_point() / 2, self.manifold.random_point() / 2
        npt.assert_allclose(y, self.manifold.exp(x, self.manifold.log(x, y)))

    def test_log_exp_inverse(self, k):
        x = self.manifold.random_point() / 2
        u = self.manifold.random_tangent_vector(x) / self.manifold.dim
        npt.assert_allclose(u, self.manifold.log(x, self.manifold.exp(x, u)))

    def test_pair_mean(self, k):
        x, y = self.manifold.random_point() / 2, self.manifold.random_point() / 2
        z = self.manifold.pair_mean(x, y)
        npt.assert_allclose(self.manifold.dist(x, z), self.manifold.dist(y, z))


# ----- Positive (test_positive_matrices.py) -----------------------------------------------------
class TestPositive:
    m, n, k = 3, 1, 2

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(Positive(self.m, self.n), copies=self.k)

    def test_inner_product(self):
        x = self.manifold.random_point()
        g, h = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(self.manifold.inner_product(x, g, h), self.manifold.inner_product(x, h, g), rtol=1e-15)

    def test_norm(self):
        x = self.manifold.random_point()
        assert self.manifold.norm(x, self.manifold.random_tangent_vector(x)) > 0

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        assert (x > 0).all()
        assert self.manifold.dist(x, y) > 1e-6

    def test_random_tangent_vector(self):
        x = self.manifold.random_point()
        g, h = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        assert (np.linalg.norm(g - h, axis=(1, 2)) > 1e-6).all()

    def test_dist(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(self.manifold.norm(x, self.manifold.log(x, y)), self.manifold.dist(x, y))

    def test_exp_log_inverse(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(self.manifold.dist(y, self.manifold.exp(x, self.manifold.log(x, y))), 0)

    def test_log_exp_inverse(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(self.manifold.norm(x, u - self.manifold.log(x, self.manifold.exp(x, u))), 0)

    def test_retraction(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        assert (self.manifold.retraction(x, u) > 0).all()
        u = u * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)


# ----- Symmetric (test_symmetric.py) and Euclidean (test_euclidean.py, the real class) ---------
class TestSymmetric:
    """Pymanopt's Symmetric(10, k=5) tests; TestEuclidean below runs them for Euclidean(10, 5)
    with the identity in place of the symmetrization (as Pymanopt's Euclidean tests)."""

    n, k = 10, 5
    shape = (5, 10, 10)

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(SymmetricEuclidean(self.n), copies=self.k)

    def sym(self, a):
        return herm(a)

    def test_dim(self):
        assert self.manifold.dim == 0.5 * self.k * self.n * (self.n + 1)

    def test_typical_dist(self):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.manifold.dim))

    def test_dist(self):
        x, y = np.random.normal(size=(2,) + self.shape)
        npt.assert_almost_equal(self.manifold.dist(x, y), np.linalg.norm(x - y))

    def test_inner_product(self):
        e = self.manifold
        x = e.random_point()
        y, z = e.random_tangent_vector(x), e.random_tangent_vector(x)
        npt.assert_almost_equal(np.sum(y * z), e.inner_product(x, y, z))

    def test_projection(self):
        x = self.manifold.random_point()
        u = np.random.normal(size=self.shape)
        npt.assert_allclose(self.manifold.projection(x, u), self.sym(u))

    def test_euclidean_to_riemannian_hessian(self):
        e = self.manifold
        x = e.random_point()
        u = e.random_tangent_vector(x)
        egrad, ehess = np.random.normal(size=(2,) + self.shape)
        npt.assert_allclose(e.euclidean_to_riemannian_hessian(x, egrad, ehess, u), self.sym(ehess))

    def test_retraction(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)

    def test_euclidean_to_riemannian_gradient(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(self.manifold.euclidean_to_riemannian_gradient(x, u), u)

    def test_norm(self):
        x = self.manifold.random_point()
        u = self.sym(np.random.normal(size=self.shape))
        npt.assert_almost_equal(np.sqrt(np.sum(u**2)), self.manifold.norm(x, u))

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        assert x.shape == self.shape
        npt.assert_allclose(x, self.sym(x))
        assert np.linalg.norm(x - y) > 1e-6

    def test_random_tangent_vector(self):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        assert u.shape == self.shape
        npt.assert_allclose(u, self.sym(u))
        npt.assert_almost_equal(np.linalg.norm(u), 1)
        assert np.linalg.norm(u - v) > 1e-6

    def test_transport(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(self.manifold.transport(x, y, u), u)

    def test_exp_log_inverse(self):
        assert_exp_log_inverse(self.manifold)

    def test_log_exp_inverse(self):
        assert_log_exp_inverse(self.manifold)

    def test_pair_mean(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        z = self.manifold.pair_mean(x, y)
        npt.assert_array_almost_equal(self.manifold.dist(x, z), self.manifold.dist(y, z))


class TestEuclidean(TestSymmetric):
    m, n = 10, 5
    shape = (10, 5)

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(Euclidean((self.m, self.n)))

    def sym(self, a):
        return a

    def test_dim(self):
        assert self.manifold.dim == self.m * self.n


class TestComplexEuclidean(TestEuclidean):
    """Pymanopt's ComplexEuclidean(10, 5): its Euclidean tests with the dimension, typical
    distance, sampling and inner product of C^(10 x 5) = R^100."""

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(ComplexEuclidean((self.m, self.n)), complex_=True)

    def test_dim(self):
        assert self.manifold.dim == 2 * self.m * self.n

    def test_typical_dist(self):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(2 * self.m * self.n))

    def test_inner_product(self):
        e = self.manifold
        x = e.random_point()
        y, z = e.random_tangent_vector(x), e.random_tangent_vector(x)
        npt.assert_almost_equal(np.real(np.sum(y.conj() * z)), e.inner_product(x, y, z))

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        assert x.dtype == complex and np.shape(x) == self.shape
        assert np.linalg.norm(x - y) > 1e-6

    def test_random_tangent_vector(self):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        assert u.dtype == complex and np.shape(u) == self.shape
        npt.assert_almost_equal(np.linalg.norm(u), 1)
        assert np.linalg.norm(u - v) > 1e-6


# ----- Oblique (test_oblique.py) ------------------------------------------------------------------
class TestOblique:
    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(Oblique(100, 50))

    def test_exp_log_inverse(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        npt.assert_almost_equal(0, s.dist(y, s.exp(x, s.log(x, y))), decimal=6)

    def test_log_exp_inverse(self):
        s = self.manifold
        x = s.random_point()
        u = s.random_tangent_vector(x)
        npt.assert_almost_equal(0, s.norm(x, u - s.log(x, s.exp(x, u))))

    def test_pair_mean(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        z = s.pair_mean(x, y)
        npt.assert_array_almost_equal(s.dist(x, z), s.dist(y, z))


# ----- ComplexCircle (test_complex_circle.py) ---------------------------------------------------
def test_complex_circle_dim():
    assert adapt(ComplexCircle(50), complex_=True).dim == 50


# ----- ComplexGrassmann (test_complex_grassmann.py) ---------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
class TestComplexGrassmann:
    m, n = 5, 2

    @pytest.fixture(autouse=True)
    def setup(self, k):
        self.manifold = adapt(ComplexGrassmann(self.m, self.n), copies=k, complex_=True)
        self.k = k

    def test_dim(self, k):
        assert self.manifold.dim == k * 2 * (self.m * self.n - self.n**2)

    def test_typical_dist(self, k):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.n * k))

    def test_inner_product(self, k):
        x = self.manifold.random_point()
        g, h = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(np.real(np.sum(np.conj(g) * h)), self.manifold.inner_product(x, g, h))
        assert np.isreal(self.manifold.inner_product(x, g, h))

    def test_projection(self, k):
        x = self.manifold.random_point()
        shape = ((k,) if k > 1 else ()) + (self.m, self.n)
        u = np.random.normal(size=shape) + 1j * np.random.normal(size=shape)
        pu = self.manifold.projection(x, u)
        npt.assert_allclose(pu, self.manifold.projection(x, pu))
        npt.assert_allclose(hconj(x) @ pu, np.zeros(shape[:-2] + (self.n, self.n)), atol=1e-10)

    def test_norm(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(self.manifold.norm(x, u), np.linalg.norm(u))
        assert np.isreal(self.manifold.norm(x, u))

    def test_random_point(self, k):
        x = self.manifold.random_point()
        npt.assert_allclose(hconj(x) @ x, eye_stack(k, self.n) if k > 1 else np.eye(self.n), atol=1e-10)
        assert np.linalg.norm(x - self.manifold.random_point()) > 1e-6
        assert np.iscomplex(x).all()

    def test_random_tangent_vector(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(hconj(x) @ u), np.zeros_like(hconj(x) @ u), atol=1e-10)
        assert np.linalg.norm(u - self.manifold.random_tangent_vector(x)) > 1e-6
        assert np.iscomplex(u).all()

    def test_dist(self, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(self.manifold.dist(x, y), self.manifold.norm(x, self.manifold.log(x, y)))

    def test_exp_log_inverse(self, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        z = self.manifold.exp(x, self.manifold.log(x, y))
        npt.assert_almost_equal(0, self.manifold.dist(y, z), decimal=5)

    def test_log_exp_inverse(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        v = self.manifold.log(x, self.manifold.exp(x, u))
        npt.assert_almost_equal(0, self.manifold.norm(x, u - v))

    def test_retraction(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        y = self.manifold.retraction(x, u)
        npt.assert_allclose(hconj(y) @ y, eye_stack(k, self.n) if k > 1 else np.eye(self.n), atol=1e-10)
        u = u * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)


# ----- Grassmann (test_grassmann.py) -----------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
class TestGrassmann:
    m, n = 5, 2

    @pytest.fixture(autouse=True)
    def setup(self, k):
        self.manifold = adapt(Grassmann(self.m, self.n), copies=k)
        self.shape = ((k,) if k > 1 else ()) + (self.m, self.n)
        self.eye = eye_stack(k, self.n) if k > 1 else np.eye(self.n)

    def test_dim(self, k):
        assert self.manifold.dim == k * (self.m * self.n - self.n**2)

    def test_typical_dist(self, k):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.n * k))

    def test_dist(self, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(self.manifold.dist(x, y), self.manifold.norm(x, self.manifold.log(x, y)))

    def test_euclidean_to_riemannian_hessian(self, k):
        """Against proj(x, H + D_x proj(x, G)[u]) with the derivative by autodiff (as Pymanopt's
        tools.testing does with autograd)."""
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        egrad, ehess = np.random.normal(size=(2,) + self.shape)

        def projection(p, v):
            return v - p @ (jnp.swapaxes(p, -1, -2) @ v)

        d_proj = jax.jvp(lambda p: projection(p, egrad), (x,), (u,))[1]
        npt.assert_allclose(projection(x, ehess + d_proj), self.manifold.euclidean_to_riemannian_hessian(x, egrad, ehess, u),
                            atol=1e-12)

    def test_inner_product(self, k):
        x = self.manifold.random_point()
        a, b = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(np.sum(a * b), self.manifold.inner_product(x, a, b))

    def test_projection(self, k):
        x = self.manifold.random_point()
        h = np.random.normal(size=self.shape)
        npt.assert_allclose(h - x @ np.swapaxes(x, -1, -2) @ h, self.manifold.projection(x, h), atol=1e-12)

    def test_retraction(self, k):
        x = self.manifold.random_point()
        y = self.manifold.retraction(x, self.manifold.random_tangent_vector(x))
        npt.assert_allclose(np.swapaxes(y, -1, -2) @ y, self.eye, atol=1e-10)
        u = self.manifold.random_tangent_vector(x) * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)

    def test_norm(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(self.manifold.norm(x, u), np.linalg.norm(u))

    def test_random_point(self, k):
        x = self.manifold.random_point()
        npt.assert_allclose(np.swapaxes(x, -1, -2) @ x, self.eye, atol=1e-10)
        assert np.linalg.norm(x - self.manifold.random_point()) > 1e-6

    def test_random_tangent_vector(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(np.swapaxes(x, -1, -2) @ u), np.zeros(self.shape[:-2] + (self.n, self.n)), atol=1e-10)
        assert np.linalg.norm(u - self.manifold.random_tangent_vector(x)) > 1e-6

    def test_exp_log_inverse(self, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(0, self.manifold.dist(y, self.manifold.exp(x, self.manifold.log(x, y))), decimal=5)

    def test_log_exp_inverse(self, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(0, self.manifold.norm(x, u - self.manifold.log(x, self.manifold.exp(x, u))))


# ----- SymmetricPositiveDefinite (test_positive_definite.py, the real classes) ------------------
def geodesic(a, b, alpha):
    c = np.linalg.cholesky(a)
    ci = np.linalg.inv(c)
    w, v = np.linalg.eigh(ci @ b @ hconj(ci))
    return c @ (v * w**alpha) @ hconj(v) @ hconj(c)


@pytest.mark.parametrize("n, k", [(15, 1), (10, 3)])
class TestSymmetricPositiveDefinite:
    @pytest.fixture(autouse=True)
    def setup(self, n, k):
        self.manifold = adapt(SymmetricPositiveDefinite(n), copies=k)
        self.n, self.k = n, k
        self.shape = ((k,) if k > 1 else ()) + (n, n)

    def logm(self, x):
        w, v = np.linalg.eigh(x)
        return (v * np.log(w)[..., None, :]) @ hconj(v)

    def test_dim(self, n, k):
        npt.assert_equal(self.manifold.dim, 0.5 * k * n * (n + 1))

    def test_typical_dist(self, n, k):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.manifold.dim))

    def test_random_point(self, n, k):
        x = self.manifold.random_point()
        assert x.shape == self.shape
        npt.assert_allclose(x, herm(x))
        assert (np.linalg.eigvalsh(x) > 0).all()

    def test_dist(self, n, k):
        m = self.manifold
        x, y, z = m.random_point(), m.random_point(), m.random_point()
        npt.assert_almost_equal(m.dist(x, x), 0.0)
        npt.assert_almost_equal(m.dist(x, y), m.dist(y, x))
        assert m.dist(x, y) <= m.dist(x, z) + m.dist(z, y)
        if k == 1:  # Bhatia 2007, eq. 6.14
            npt.assert_almost_equal(m.dist(x, y), np.sqrt((np.log(scipy.linalg.eigvalsh(x, y)) ** 2).sum()))
        assert m.dist(x, y) >= np.linalg.norm(self.logm(x) - self.logm(y))
        npt.assert_almost_equal(m.dist(x, y), m.norm(x, m.log(x, y)))
        npt.assert_almost_equal(m.dist(x, y), m.dist(np.linalg.inv(y), np.linalg.inv(x)))
        a = np.random.normal(size=(n, n))
        npt.assert_almost_equal(m.dist(x, y), m.dist(a @ x @ a.T, a @ y @ a.T))
        alpha = np.random.uniform()
        g = np.stack([geodesic(p, q, alpha) for p, q in zip(x.reshape(-1, n, n), y.reshape(-1, n, n))]).reshape(x.shape)
        npt.assert_almost_equal(m.dist(x, g), alpha * m.dist(x, y))

    def test_inner_product(self, n, k):
        x = self.manifold.random_point()
        a, b = np.random.normal(size=(2,) + self.shape)
        npt.assert_almost_equal(np.sum(a * np.swapaxes(b, -1, -2)), self.manifold.inner_product(x, x @ a, x @ b))

    def test_projection(self, n, k):
        x = self.manifold.random_point()
        a = np.random.normal(size=self.shape)
        npt.assert_allclose(self.manifold.projection(x, a), herm(a))

    def test_euclidean_to_riemannian_gradient(self, n, k):
        x = self.manifold.random_point()
        u = np.random.normal(size=self.shape)
        npt.assert_allclose(self.manifold.euclidean_to_riemannian_gradient(x, u), x @ herm(u) @ x)

    def test_euclidean_to_riemannian_hessian(self, n, k):
        x = self.manifold.random_point()
        egrad, ehess = np.random.normal(size=(2,) + self.shape)
        u = self.manifold.random_tangent_vector(x)
        hess = x @ herm(ehess) @ x + 2 * herm(u @ herm(egrad) @ x) - herm(u @ herm(egrad) @ x)
        npt.assert_almost_equal(hess, self.manifold.euclidean_to_riemannian_hessian(x, egrad, ehess, u))

    def test_norm(self, n, k):
        x = self.manifold.random_point()
        eye = eye_stack(k, n) if k > 1 else np.eye(n)
        npt.assert_almost_equal(self.manifold.norm(eye, x), np.linalg.norm(x))

    def test_random_tangent_vector(self, n, k):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(u), u)
        npt.assert_almost_equal(1, self.manifold.norm(x, u))
        assert np.linalg.norm(u - v) > 1e-3

    def test_transport(self, n, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        w = self.manifold.transport(x, y, self.manifold.random_tangent_vector(x))
        npt.assert_allclose(w, self.manifold.projection(y, w))

    def test_exp(self, n, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        e = np.stack([scipy.linalg.expm(np.linalg.solve(p, t)) for p, t in zip(x.reshape(-1, n, n), u.reshape(-1, n, n))])
        npt.assert_allclose(x @ e.reshape(x.shape), self.manifold.exp(x, u))
        u = u * 1e-6
        npt.assert_allclose(self.manifold.exp(x, u), x + u)

    def test_retraction(self, n, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        y = self.manifold.retraction(x, u)
        assert y.shape == self.shape
        npt.assert_allclose(y, herm(y))
        assert (np.linalg.eigvalsh(y) > 0).all()
        u = u * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)

    def test_exp_log_inverse(self, n, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_allclose(self.manifold.exp(x, self.manifold.log(x, y)), y)

    def test_log_exp_inverse(self, n, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_allclose(self.manifold.log(x, self.manifold.exp(x, u)), u)


# ----- Sphere (test_sphere.py) ------------------------------------------------------------------
def ehess_by_autodiff(projection, x, egrad, ehess, u):
    """Pymanopt's tools.testing.euclidean_to_riemannian_hessian: proj(x, H + D_x proj(x, G)[u]),
    the derivative by autodiff (Pymanopt's by autograd's Jacobian)."""
    d_proj = jax.jvp(lambda p: projection(p, egrad), (jnp.asarray(x),), (jnp.asarray(u),))[1]
    return np.asarray(projection(x, ehess + d_proj))


class TestSphere:
    """Pymanopt's Sphere(100, 50): the unit Frobenius sphere of 100 x 50 matrices, ours on the
    flattened matrices (Sphere(5000))."""

    m, n = 100, 50

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(Sphere(self.m * self.n), shape=(self.m, self.n))

    @staticmethod
    def projection(x, u):
        return u - jnp.tensordot(x, u, np.ndim(u)) * x

    def random_unit(self):
        x = np.random.normal(size=(self.m, self.n))
        return x / np.linalg.norm(x, "fro")

    def test_dim(self):
        assert self.manifold.dim == self.m * self.n - 1

    def test_typical_dist(self):
        npt.assert_almost_equal(self.manifold.typical_dist, np.pi)

    def test_dist(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        npt.assert_almost_equal(np.arccos(np.tensordot(x, y)), s.dist(x, y))

    def test_inner_product(self):
        s = self.manifold
        x = s.random_point()
        u, v = s.random_tangent_vector(x), s.random_tangent_vector(x)
        npt.assert_almost_equal(np.sum(u * v), s.inner_product(x, u, v))

    def test_projection(self):
        x, h = self.random_unit(), np.random.normal(size=(self.m, self.n))
        npt.assert_array_almost_equal(h - x * np.trace(x.T @ h), self.manifold.projection(x, h))

    def test_euclidean_to_riemannian_gradient(self):
        x, h = self.random_unit(), np.random.normal(size=(self.m, self.n))
        npt.assert_array_almost_equal(h - x * np.trace(x.T @ h), self.manifold.euclidean_to_riemannian_gradient(x, h))

    def test_euclidean_to_riemannian_hessian(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        egrad, ehess = np.random.normal(size=(2, self.m, self.n))
        npt.assert_allclose(ehess_by_autodiff(self.projection, x, egrad, ehess, u),
                            self.manifold.euclidean_to_riemannian_hessian(x, egrad, ehess, u))

    def test_retraction(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(np.linalg.norm(self.manifold.retraction(x, u)), 1)
        u = u * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)

    def test_norm(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(self.manifold.norm(x, u), np.linalg.norm(u))

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_almost_equal(np.linalg.norm(x), 1)
        assert np.linalg.norm(x - y) > 1e-3

    def test_random_tangent_vector(self):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(np.tensordot(x, u), 0)
        assert np.linalg.norm(u - v) > 1e-3

    def test_transport(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        u = s.random_tangent_vector(x)
        npt.assert_allclose(s.transport(x, y, u), s.projection(y, u))

    def test_exp_log_inverse(self):
        assert_exp_log_inverse(self.manifold)

    def test_log_exp_inverse(self):
        assert_log_exp_inverse(self.manifold)

    def test_pair_mean(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        z = s.pair_mean(x, y)
        npt.assert_array_almost_equal(s.dist(x, z), s.dist(y, z))


@pytest.mark.parametrize("complement", [False, True])
class TestSphereSubspaceIntersections:
    """Pymanopt's SphereSubspaceIntersection and SphereSubspaceComplementIntersection classes (the
    two "...Gradient" classes there have no tests)."""

    n = 2

    @pytest.fixture(autouse=True)
    def setup(self, complement):
        self.kind = SphereSubspaceComplementIntersection if complement else SphereSubspaceIntersection
        # the line through (1, 1) / sqrt(2), or its orthogonal complement: two isolated points
        self.manifold = adapt(self.kind(np.ones((self.n, 1)) / np.sqrt(2)))
        self.p = np.array([-1.0, 1.0] if complement else [1.0, 1.0]) / np.sqrt(2)

    def test_dim(self, complement):
        assert self.manifold.dim == 0

    def test_random_point(self, complement):
        x = self.manifold.random_point()
        assert np.allclose(x, self.p) or np.allclose(x, -self.p)

    def test_projection(self, complement):
        h = np.random.normal(size=self.n)
        x = self.manifold.random_point()
        npt.assert_array_almost_equal(self.manifold.projection(x, h), np.zeros(self.n))

    def test_dim_1(self, complement):
        """The 1-sphere of the x-y plane: spanned by e_x, e_y, or the complement of e_z."""
        u = np.zeros((3, 1 if complement else 2))
        if complement:
            u[-1, -1] = 1
        else:
            u[0, 0] = u[1, 1] = 1
        manifold = adapt(self.kind(u))
        assert manifold.dim == 1
        npt.assert_almost_equal(manifold.random_point()[-1], 0)

    def test_dim_rand(self, complement):
        n = 100
        u = np.random.normal(size=(n, n // 3))
        rank = np.linalg.matrix_rank(u)
        manifold = adapt(self.kind(u))
        assert manifold.dim == (n - rank - 1 if complement else rank - 1)
        if complement:
            x = manifold.random_point()
            npt.assert_almost_equal(np.linalg.norm(x), 1)
            npt.assert_array_almost_equal(u.T @ x, np.zeros(u.shape[1]))


# ----- Stiefel (test_stiefel.py) ----------------------------------------------------------------
class TestSingleStiefel:
    """Pymanopt's Stiefel(20, 2, k=1), and with retraction="polar"; Pymanopt's m, n, k are our
    n, p and the batch."""

    m, n, k = 20, 2, 1

    @pytest.fixture(autouse=True)
    def setup(self):
        self.manifold = adapt(Stiefel(self.m, self.n), copies=self.k)
        self.manifold_polar = adapt(Stiefel(self.m, self.n, retraction="polar"), copies=self.k)
        self.shape = ((self.k,) if self.k > 1 else ()) + (self.m, self.n)
        self.eye = eye_stack(self.k, self.n) if self.k > 1 else np.eye(self.n)

    @staticmethod
    def projection(x, u):
        xt, ut = jnp.swapaxes(x, -1, -2), jnp.swapaxes(u, -1, -2)
        return u - x @ (xt @ u + ut @ x) / 2

    def test_dim(self):
        assert self.manifold.dim == 0.5 * self.k * self.n * (2 * self.m - self.n - 1)

    def test_inner_product(self):
        x = self.manifold.random_point()
        a, b = np.random.normal(size=(2,) + self.shape)
        npt.assert_allclose(np.sum(a * b), self.manifold.inner_product(x, a, b))

    def test_projection(self):
        x = self.manifold.random_point()
        h = np.random.normal(size=self.shape)
        npt.assert_allclose(self.projection(x, h), self.manifold.projection(x, h))

    def test_random_point(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        npt.assert_allclose(np.swapaxes(x, -1, -2) @ x, self.eye, atol=1e-10)
        assert np.linalg.norm(x - y) > 1e-6

    def test_random_tangent_vector(self):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(np.swapaxes(x, -1, -2) @ u), np.zeros_like(self.eye), atol=1e-10)
        assert np.linalg.norm(u - v) > 1e-6

    @pytest.mark.parametrize("manifold_attribute", ["manifold", "manifold_polar"])
    def test_retraction(self, manifold_attribute):
        manifold = getattr(self, manifold_attribute)
        x = manifold.random_point()
        u = manifold.random_tangent_vector(x)
        y = manifold.retraction(x, u)
        npt.assert_allclose(np.swapaxes(y, -1, -2) @ y, self.eye, atol=1e-10)
        u = u * 1e-6
        npt.assert_allclose(manifold.retraction(x, u), x + u)

    def test_euclidean_to_riemannian_hessian(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        egrad, ehess = np.random.normal(size=(2,) + self.shape)
        npt.assert_allclose(ehess_by_autodiff(self.projection, x, egrad, ehess, u),
                            self.manifold.euclidean_to_riemannian_hessian(x, egrad, ehess, u))

    def test_norm(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        npt.assert_almost_equal(self.manifold.norm(x, u), np.linalg.norm(u))

    def test_exp(self):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        y = self.manifold.exp(x, u)
        npt.assert_allclose(np.swapaxes(y, -1, -2) @ y, self.eye, atol=1e-10)
        u = u * 1e-6
        npt.assert_allclose(self.manifold.exp(x, u), x + u)


class TestMultiStiefel(TestSingleStiefel):
    """Pymanopt's Stiefel(10, 3, k=3): its tests are the single ones plus typical_dist (and the
    single class's Hessian test, which Pymanopt's multi class lacks)."""

    m, n, k = 10, 3, 3

    def test_typical_dist(self):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.n * self.k))

    def test_inner_product(self):
        x = self.manifold.random_point()
        a, b = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(np.sum(a * b), self.manifold.inner_product(x, a, b))


# ----- SpecialOrthogonalGroup, UnitaryGroup (test_group.py) ------------------------------------
class TestSpecialOrthogonalGroup:
    """Pymanopt's SpecialOrthogonalGroup(10), (10, k=3) and (10, retraction="polar") as our
    OrthogonalGroup(10, special=True); tangent vectors in Pymanopt's Lie-algebra form."""

    n, k = 10, 3

    @pytest.fixture(autouse=True)
    def setup(self):
        self.so_product = adapt_group(OrthogonalGroup(self.n, special=True), copies=self.k)
        self.so = adapt_group(OrthogonalGroup(self.n, special=True))
        self.so_polar = adapt_group(OrthogonalGroup(self.n, special=True, retraction="polar"))

    def test_random_point(self):
        x = self.so.random_point()
        assert x.shape == (self.n, self.n)
        npt.assert_almost_equal(x.T @ x - x @ x.T, 0)
        npt.assert_almost_equal(x.T @ x, np.eye(self.n))
        assert np.allclose(np.linalg.det(x), 1)

    def test_random_point_product(self):
        x = self.so_product.random_point()
        xt = np.swapaxes(x, -1, -2)
        assert x.shape == (self.k, self.n, self.n)
        npt.assert_almost_equal(xt @ x - x @ xt, 0)
        npt.assert_almost_equal(xt @ x, eye_stack(self.k, self.n))
        assert np.allclose(np.linalg.det(x), 1)

    def test_random_tangent_vector(self):
        x = self.so.random_point()
        u = self.so.random_tangent_vector(x)
        npt.assert_almost_equal(u, -u.T)

    def test_random_tangent_vector_product(self):
        x = self.so_product.random_point()
        u = self.so_product.random_tangent_vector(x)
        npt.assert_almost_equal(u, -np.swapaxes(u, -1, -2))

    @pytest.mark.parametrize("manifold_attribute", ["so", "so_polar"])
    def test_retraction(self, manifold_attribute):
        manifold = getattr(self, manifold_attribute)
        x = manifold.random_point()
        y = manifold.retraction(x, manifold.random_tangent_vector(x))
        npt.assert_almost_equal(y.T @ y - y @ y.T, 0)
        npt.assert_almost_equal(y.T @ y, np.eye(self.n))
        npt.assert_allclose(np.linalg.det(y), 1)

    def test_exp_log_inverse(self):
        assert_exp_log_inverse(self.so)

    def test_log_exp_inverse(self):
        assert_log_exp_inverse(self.so)


class TestUnitaryGroup:
    """Pymanopt's UnitaryGroup(10), (10, k=3) and (10, retraction="polar"); tangent vectors in
    Pymanopt's Lie-algebra form."""

    n, k = 10, 3

    @pytest.fixture(autouse=True)
    def setup(self):
        self.product_manifold = adapt_group(UnitaryGroup(self.n), copies=self.k, complex_=True)
        self.unitary_group = adapt_group(UnitaryGroup(self.n), complex_=True)
        self.unitary_group_polar = adapt_group(UnitaryGroup(self.n, retraction="polar"), complex_=True)

    def test_random_point(self):
        x = self.unitary_group.random_point()
        assert x.shape == (self.n, self.n)
        assert (x.imag > 0).any()
        npt.assert_almost_equal(hconj(x) @ x, np.eye(self.n))

    def test_random_point_product(self):
        x = self.product_manifold.random_point()
        assert x.shape == (self.k, self.n, self.n)
        assert (x.imag > 0).any()
        npt.assert_almost_equal(hconj(x) @ x, eye_stack(self.k, self.n))

    def test_random_tangent_vector(self):
        x = self.unitary_group.random_point()
        u = self.unitary_group.random_tangent_vector(x)
        assert (u.imag > 0).any()
        npt.assert_almost_equal(u, -hconj(u))

    def test_random_tangent_vector_product(self):
        x = self.product_manifold.random_point()
        u = self.product_manifold.random_tangent_vector(x)
        assert (u.imag > 0).any()
        npt.assert_almost_equal(u, -hconj(u))

    @pytest.mark.parametrize("manifold_attribute", ["unitary_group", "unitary_group_polar"])
    def test_retraction(self, manifold_attribute):
        manifold = getattr(self, manifold_attribute)
        x = manifold.random_point()
        y = manifold.retraction(x, manifold.random_tangent_vector(x))
        assert (y.imag > 0).any()
        npt.assert_almost_equal(hconj(y) @ y, np.eye(self.n))

    def test_exp_log_inverse(self):
        assert_exp_log_inverse(self.unitary_group)

    def test_log_exp_inverse(self):
        assert_log_exp_inverse(self.unitary_group)


# ----- Product (test_product.py) ----------------------------------------------------------------
class TestProduct:
    """Pymanopt's Product([Euclidean(100, 50), Sphere(50)]) as our Product(Euclidean((100, 50)),
    Sphere(50)); Pymanopt's cost fixture is unused by its tests and left out."""

    m, n = 100, 50

    @pytest.fixture(autouse=True)
    def setup(self):
        self.euclidean = adapt(Euclidean((self.m, self.n)))
        self.sphere = adapt(Sphere(self.n))
        self.manifold = adapt(Product(Euclidean((self.m, self.n)), Sphere(self.n)))

    def test_dim(self):
        npt.assert_equal(self.manifold.dim, self.m * self.n + self.n - 1)

    def test_typical_dist(self):
        npt.assert_equal(self.manifold.typical_dist, np.sqrt(self.m * self.n + np.pi**2))

    def test_dist(self):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        expected = np.sqrt(self.euclidean.dist(x[0], y[0]) ** 2 + self.sphere.dist(x[1], y[1]) ** 2)
        npt.assert_equal(self.manifold.dist(x, y), expected)

    def test_tangent_vector_multiplication(self):
        manifold = adapt(Product(Euclidean(12), Grassmann(12, 3)))
        x = manifold.random_point()
        eta = manifold.random_tangent_vector(x)
        eta_euclidean, eta_grassmann = eta
        eta_euclidean_scaled, eta_grassmann_scaled = eta * 42
        assert np.allclose(eta_euclidean * 42, eta_euclidean_scaled)
        assert np.allclose(eta_grassmann * 42, eta_grassmann_scaled)

    def test_exp_log_inverse(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        npt.assert_almost_equal(s.dist(y, s.exp(x, s.log(x, y))), 0)

    def test_log_exp_inverse(self):
        s = self.manifold
        x = s.random_point()
        u = s.random_tangent_vector(x)
        v = s.log(x, s.exp(x, u))
        npt.assert_array_almost_equal(u[0], v[0])
        npt.assert_array_almost_equal(u[1], v[1])

    def test_pair_mean(self):
        s = self.manifold
        x, y = s.random_point(), s.random_point()
        z = s.pair_mean(x, y)
        npt.assert_array_almost_equal(s.dist(x, z), s.dist(y, z))


class TestHermitianPositiveDefinite(TestSymmetricPositiveDefinite):
    """Pymanopt's HermitianPositiveDefinite(15) and (10, k=3) classes: its SPD tests with complex
    points, plus these. Pymanopt's test_dim asserts k n (n + 1), its own `dim`; the real dimension
    of the Hermitian n x n matrices is n^2 (n real diagonal entries, n (n - 1) / 2 complex ones
    above it), which ours reports and is asserted instead."""

    @pytest.fixture(autouse=True)
    def setup(self, n, k):
        self.manifold = adapt(HermitianPositiveDefinite(n), copies=k, complex_=True)
        self.n, self.k = n, k
        self.shape = ((k,) if k > 1 else ()) + (n, n)

    def test_dim(self, n, k):
        npt.assert_equal(self.manifold.dim, k * n**2)

    def test_typical_dist(self, n, k):
        npt.assert_almost_equal(self.manifold.typical_dist, np.sqrt(self.manifold.dim))

    def test_random_point(self, n, k):
        x = self.manifold.random_point()
        assert x.shape == self.shape and x.dtype == complex
        npt.assert_allclose(x, herm(x))
        assert (np.linalg.eigvalsh(x) > 0).all()

    def test_random_tangent_vector(self, n, k):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(u), u)
        npt.assert_almost_equal(1, self.manifold.norm(x, u))
        assert u.shape == self.shape and u.dtype == complex
        assert np.linalg.norm(u - v) > 1e-3


class TestSpecialHermitianPositiveDefinite(TestHermitianPositiveDefinite):
    """Pymanopt's SpecialHermitianPositiveDefinite(10) and (10, k=3) classes (here at the HPD
    classes' sizes, n = 15 single): its HPD tests with these overridden. Pymanopt's test_dim
    asserts k (n (n + 1) - 1); the real dimension is k (n^2 - 1). Pymanopt has no Riemannian
    Hessian (its test is `pass`); ours is checked by Taylor slopes instead."""

    @pytest.fixture(autouse=True)
    def setup(self, n, k):
        self.manifold = adapt(SpecialHermitianPositiveDefinite(n), copies=k, complex_=True)
        self.n, self.k = n, k
        self.shape = ((k,) if k > 1 else ()) + (n, n)

    def trace_of_solve(self, x, u):
        return np.real(np.trace(np.linalg.solve(x, u), axis1=-2, axis2=-1))

    def check_on_manifold(self, x):
        npt.assert_allclose(x, herm(x))
        assert (np.linalg.eigvalsh(x) > 0).all()
        npt.assert_allclose(np.linalg.det(x), 1)

    def test_dim(self, n, k):
        npt.assert_equal(self.manifold.dim, k * (n**2 - 1))

    def test_random_point(self, n, k):
        x, y = self.manifold.random_point(), self.manifold.random_point()
        assert x.shape == self.shape and x.dtype == complex
        self.check_on_manifold(x)
        assert np.linalg.norm(x - y) > 1e-3

    def test_random_tangent_vector(self, n, k):
        x = self.manifold.random_point()
        u, v = self.manifold.random_tangent_vector(x), self.manifold.random_tangent_vector(x)
        npt.assert_allclose(herm(u), u)
        npt.assert_allclose(self.trace_of_solve(x, u), 0, atol=1e-7)
        npt.assert_almost_equal(1, self.manifold.norm(x, u))
        assert np.linalg.norm(u - v) > 1e-3

    def test_projection(self, n, k):
        x = self.manifold.random_point()
        a = np.random.randn(*self.shape) + 1j * np.random.randn(*self.shape)
        p = self.manifold.projection(x, a)
        npt.assert_allclose(p, herm(p))
        npt.assert_allclose(self.trace_of_solve(x, p), 0, atol=1e-7)
        npt.assert_allclose(p, self.manifold.projection(x, p))

    def test_euclidean_to_riemannian_gradient(self, n, k):
        x = self.manifold.random_point()
        u = np.random.normal(size=self.shape)
        npt.assert_allclose(self.manifold.euclidean_to_riemannian_gradient(x, u),
                            self.manifold.projection(x, x @ u @ x))

    def test_euclidean_to_riemannian_hessian(self, n, k):
        if k > 1:
            pytest.skip("one Taylor check (k = 1) is enough; the batched path is HPD's, tested above")
        a = jnp.asarray(np.random.normal(size=(n, n)) + 1j * np.random.normal(size=(n, n)))
        x = jnp.asarray(self.manifold.random_point())
        check = mo.solvers.check_hessian(lambda x: jnp.sum(jnp.abs(a @ x) ** 2), self.manifold.ours, x)
        assert check.ok, check

    def test_exp(self, n, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        self.check_on_manifold(self.manifold.exp(x, u))
        u = u * 1e-6
        npt.assert_allclose(self.manifold.exp(x, u), x + u)

    def test_retraction(self, n, k):
        x = self.manifold.random_point()
        u = self.manifold.random_tangent_vector(x)
        y = self.manifold.retraction(x, u)
        assert y.shape == self.shape
        self.check_on_manifold(y)
        u = u * 1e-6
        npt.assert_allclose(self.manifold.retraction(x, u), x + u)

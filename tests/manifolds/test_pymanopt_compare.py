"""Our manifolds against Pymanopt 2.2 on the same inputs (float64 / complex128): every method
both libraries have, for the new manifolds, SPD, and Euclidean, Sphere, Oblique, Stiefel,
Grassmann, the sphere-subspace intersections, the special orthogonal and the unitary group. (Transports of the groups are not
compared: Pymanopt's keeps the Lie-algebra element, W at X -> W at Y, ours projects X W onto T_Y.)

Three Pymanopt methods are wrong and are checked against references written here instead:
Elliptope.projection (it solves the Lyapunov equation with the wrong sign: its output is neither
horizontal nor idempotent, asserted below), ComplexCircle.exp (it writes into a real array and
drops the imaginary parts) and UnitaryGroup.projection, which is also its Riemannian gradient (it
takes the skew-symmetric part of X^H Z, A - A^T, not the skew-Hermitian one: its output is not in
the Lie algebra u(n), asserted below).
"""
import numpy as np
import pytest
import scipy.linalg
from numpy import testing as npt

from manifold_opt import manifolds as M
from tests.manifolds.pymanopt_adapter import adapt, adapt_group

pm = pytest.importorskip("pymanopt.manifolds", reason="pymanopt not installed (pip install -e .[test])")

SPAN = np.random.default_rng(5).standard_normal((6, 3))  # the subspace of the sphere-subspace cases

# name: (ours, Pymanopt's, complex, methods compared)
BASIC = ("proj", "inner", "norm", "rgrad", "rhess", "retract", "transport")
CASES = {
    "fixed_rank": (M.FixedRankEmbedded(7, 5, 3), lambda: pm.FixedRankEmbedded(7, 5, 3), False,
                   ("proj", "inner", "norm", "rgrad", "retract", "transport", "embedding")),
    "psd_fixed_rank": (M.PSDFixedRank(7, 3), lambda: pm.PSDFixedRank(7, 3), False, BASIC + ("exp", "log", "dist")),
    "psd_fixed_rank_complex": (M.PSDFixedRankComplex(7, 3), lambda: pm.PSDFixedRankComplex(7, 3), True,
                               BASIC + ("exp", "log", "dist")),
    "elliptope": (M.Elliptope(7, 3), lambda: pm.Elliptope(7, 3), False, ("inner", "norm", "rgrad", "retract")),
    "poincare": (M.PoincareBall(5), lambda: pm.PoincareBall(5, k=3), False,
                 ("proj", "inner", "norm", "rgrad", "rhess", "retract", "exp", "log", "dist")),
    "positive": (M.Positive(4, 3), lambda: pm.Positive(4, 3, k=2), False, BASIC + ("exp", "log", "dist")),
    "symmetric": (M.SymmetricEuclidean(4), lambda: pm.Symmetric(4, k=2), False, BASIC + ("exp", "log", "dist")),
    "skew_symmetric": (M.SkewSymmetric(4), lambda: pm.SkewSymmetric(4, k=2), False, BASIC + ("exp", "log", "dist")),
    "complex_circle": (M.ComplexCircle(5), lambda: pm.ComplexCircle(5), True,
                       ("proj", "inner", "norm", "rhess", "retract", "transport", "log", "dist")),
    "complex_grassmann": (M.ComplexGrassmann(5, 2), lambda: pm.ComplexGrassmann(5, 2, k=2), True,
                          BASIC + ("exp", "log", "dist")),
    "spd": (M.SymmetricPositiveDefinite(4), lambda: pm.SymmetricPositiveDefinite(4, k=2), False,
            BASIC + ("exp", "log", "dist")),
    "hpd": (M.HermitianPositiveDefinite(4), lambda: pm.HermitianPositiveDefinite(4, k=2), True,
            BASIC + ("exp", "log", "dist")),
    "shpd": (M.SpecialHermitianPositiveDefinite(4), lambda: pm.SpecialHermitianPositiveDefinite(4, k=2), True,
             ("proj", "inner", "norm", "rgrad", "retract", "transport", "exp", "log", "dist")),
    # the manifolds we had before
    "euclidean": (M.Euclidean((4, 3)), lambda: pm.Euclidean(4, 3), False, BASIC + ("exp", "log", "dist")),
    "complex_euclidean": (M.ComplexEuclidean((4, 3)), lambda: pm.ComplexEuclidean(4, 3), True,
                          BASIC + ("exp", "log", "dist")),
    "sphere": (M.Sphere(5), lambda: pm.Sphere(5), False, BASIC + ("exp", "log", "dist")),
    "oblique": (M.Oblique(4, 3), lambda: pm.Oblique(4, 3), False, BASIC + ("exp", "log", "dist")),
    "stiefel": (M.Stiefel(5, 2), lambda: pm.Stiefel(5, 2, k=2), False, BASIC + ("exp",)),
    "grassmann": (M.Grassmann(5, 2), lambda: pm.Grassmann(5, 2, k=2), False, BASIC + ("exp", "log", "dist")),
    "special_orthogonal": (M.OrthogonalGroup(4, special=True), lambda: pm.SpecialOrthogonalGroup(4, k=2), False,
                           ("proj", "inner", "norm", "rgrad", "rhess", "retract", "exp", "log", "dist")),
    "sphere_subspace": (M.SphereSubspaceIntersection(SPAN), lambda: pm.SphereSubspaceIntersection(SPAN), False,
                        BASIC + ("exp", "log", "dist")),
    "sphere_subspace_complement": (M.SphereSubspaceComplementIntersection(SPAN),
                                   lambda: pm.SphereSubspaceComplementIntersection(SPAN), False,
                                   BASIC + ("exp", "log", "dist")),
    "unitary": (M.UnitaryGroup(4), lambda: pm.UnitaryGroup(4, k=2), True,
                ("inner", "norm", "rhess", "retract", "exp", "log", "dist")),
}
COPIES = {"poincare": 3, "positive": 2, "symmetric": 2, "complex_grassmann": 2, "spd": 2, "stiefel": 2, "grassmann": 2,
          "special_orthogonal": 2, "unitary": 2, "hpd": 2, "shpd": 2,
          "skew_symmetric": 2}


def close(a, b):
    if isinstance(a, (tuple, list)):
        for p, q in zip(a, b):
            close(p, q)
        return
    npt.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)


def gaussian(shape, complex_):
    g = np.random.normal(size=shape)
    return g + 1j * np.random.normal(size=shape) if complex_ else g


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_results_as_pymanopt(name):
    ours_manifold, theirs_factory, complex_, methods = CASES[name]
    np.random.seed(0)
    theirs = theirs_factory()
    ours = (adapt_group if name in ("special_orthogonal", "unitary") else adapt)(ours_manifold, COPIES.get(name, 1), complex_)
    x = theirs.random_point()
    y = theirs.random_point()
    if name == "poincare":  # inside radius 1/2, as Pymanopt's tests do
        x, y = x / 2, y / 2
    u = theirs.random_tangent_vector(x)
    v = theirs.random_tangent_vector(x)
    if name == "fixed_rank":
        ambient = (gaussian((7, 5), False))
        egrad = (np.random.normal(size=(7, 3)), np.random.normal(size=3), np.random.normal(size=(3, 5)))
        ehess = None
    else:
        ambient = gaussian(np.shape(x), complex_)
        # horizontal gradients on the quotients (what an invariant cost has)
        egrad = ours.projection(x, ambient) if name.startswith(("psd", "elliptope")) else ambient
        ehess = gaussian(np.shape(x), complex_)
    z = theirs.retraction(x, u)
    # Grassmann points are compared as subspaces (Pymanopt retracts by polar, we by QR)
    # and fixed-rank points as matrices (their factors are unique up to signs)
    subspace = lambda p: p @ np.conj(np.swapaxes(p, -1, -2))  # noqa: E731
    span = {"complex_grassmann": subspace, "grassmann": subspace,
            "fixed_rank": lambda p: (p[0] * p[1]) @ p[2]}.get(name, lambda p: p)
    checks = {
        "proj": lambda m: m.projection(x, ambient),
        "inner": lambda m: m.inner_product(x, u, v),
        "norm": lambda m: m.norm(x, u),
        "rgrad": lambda m: m.euclidean_to_riemannian_gradient(x, egrad),
        "rhess": lambda m: m.euclidean_to_riemannian_hessian(x, egrad, ehess, u),
        "retract": lambda m: span(m.retraction(x, u)),
        "transport": lambda m: m.transport(x, z, v),
        "embedding": lambda m: m.embedding(x, u),
        "exp": lambda m: span(m.exp(x, u)),
        "log": lambda m: m.log(x, y),
        "dist": lambda m: m.dist(x, y),
    }
    for method in methods:
        close(checks[method](ours), checks[method](theirs))


def test_elliptope_projection_against_lyapunov_reference():
    """Ours: row-wise projection, then Y^T U made symmetric by U - Y Omega with Omega skew
    solving (Y^T Y) Omega + Omega (Y^T Y) = Y^T U - U^T Y (scipy's Lyapunov solver)."""
    np.random.seed(1)
    theirs = pm.Elliptope(7, 3)
    ours = adapt(M.Elliptope(7, 3))
    x = theirs.random_point()
    z = np.random.normal(size=(7, 3))
    rows = z - np.sum(x * z, axis=1, keepdims=True) * x
    omega = scipy.linalg.solve_continuous_lyapunov(x.T @ x, x.T @ rows - rows.T @ x)
    close(ours.projection(x, z), rows - x @ omega)
    wrong = theirs.projection(x, z)  # Pymanopt's: not horizontal
    assert np.abs(x.T @ wrong - wrong.T @ x).max() > 1e-3
    u = theirs.random_tangent_vector(x)
    close(ours.euclidean_to_riemannian_hessian(x, rows, z, u),
          ours.projection(x, z - np.sum(rows * x, axis=1, keepdims=True) * u))


def test_complex_circle_exp_against_closed_form():
    np.random.seed(2)
    theirs = pm.ComplexCircle(5)
    x = theirs.random_point()
    u = theirs.random_tangent_vector(x)
    t = np.abs(u)
    close(adapt(M.ComplexCircle(5), complex_=True).exp(x, u), np.cos(t) * x + np.sin(t) * u / t)


def test_unitary_projection_against_the_skew_hermitian_part():
    np.random.seed(3)
    theirs = pm.UnitaryGroup(4)
    x = theirs.random_point()
    z = np.random.normal(size=(4, 4)) + 1j * np.random.normal(size=(4, 4))
    a = np.conj(x.T) @ z
    ours = adapt_group(M.UnitaryGroup(4), complex_=True)
    close(ours.projection(x, z), (a - np.conj(a.T)) / 2)
    close(ours.euclidean_to_riemannian_gradient(x, z), (a - np.conj(a.T)) / 2)
    wrong = theirs.projection(x, z)  # Pymanopt's: not skew-Hermitian
    assert np.abs(wrong + np.conj(wrong.T)).max() > 1e-3

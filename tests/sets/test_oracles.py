"""FrankWolfe.jl's oracles (issue 21.4) against the same LP/SDP solved another way: the
hypersimplex, K-norm ball and a product set against scipy.optimize.linprog and vertex enumeration,
the spectraplex and Fantope against eigenvalue closed forms (r lambda_min, Ky Fan's sum of the k
smallest), the ellipsoid against SLSQP; projections against their variational inequality;
block-coordinate Frank-Wolfe over a product against the projection."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from manifold_opt.sets import (
    Ellipsoid,
    Fantope,
    Hypersimplex,
    KNormBall,
    L2Ball,
    ProductSet,
    Simplex,
    Spectraplex,
)
from manifold_opt.solvers import StopReason, frank_wolfe
from tests.sets.test_sets import projection_certificate

N = 6
RNG = np.random.default_rng(21)
ELLIPSOID_A = (lambda m: m @ m.T + 0.5 * np.eye(4))(RNG.normal(size=(4, 4)))
ELLIPSOID = Ellipsoid(ELLIPSOID_A, RNG.normal(size=4))


def linprog_min(g, a_ub=None, b_ub=None, a_eq=None, b_eq=None, bounds=None, extra=0):
    """min <g, x> over the polyhedron (x padded with `extra` auxiliary variables of cost 0)."""
    c = np.concatenate([g, np.zeros(extra)])
    res = scipy.optimize.linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun


def knorm_lp(g, k, r):
    """||x||_(k) = min_t k t + sum (|x_i| - t)_+: variables (x, s, t) with -(s + t) <= x <= s + t,
    s >= 0, k t + sum s <= r."""
    n = g.size
    eye, ones = np.eye(n), np.ones((n, 1))
    a_ub = np.block([[eye, -eye, -ones], [-eye, -eye, -ones], [np.zeros((1, n)), np.ones((1, n)), np.full((1, 1), k)]])
    b_ub = np.concatenate([np.zeros(2 * n), [r]])
    bounds = [(None, None)] * n + [(0, None)] * n + [(None, None)]
    return linprog_min(g, a_ub, b_ub, bounds=bounds, extra=n + 1)


def test_polyhedral_oracles_against_linprog_and_enumeration():
    hyper, knorm = Hypersimplex(2, 0.7), KNormBall(2, 1.3)
    product = ProductSet(Simplex(1.7), Hypersimplex(3, 0.5))
    for _ in range(3):
        g = RNG.normal(size=N)
        lp = linprog_min(g, a_eq=np.ones((1, N)), b_eq=[2 * 0.7], bounds=[(0, 0.7)] * N)
        np.testing.assert_allclose(float(jnp.vdot(g, hyper.lmo(jnp.asarray(g)))), lp, rtol=1e-9)
        np.testing.assert_allclose(float(jnp.vdot(g, knorm.lmo(jnp.asarray(g)))), knorm_lp(g, 2, 1.3), rtol=1e-9)
        h = RNG.normal(size=N)
        a_eq = np.block([[np.ones((1, N)), np.zeros((1, N))], [np.zeros((1, N)), np.ones((1, N))]])
        lp = linprog_min(np.concatenate([g, h]), a_eq=a_eq, b_eq=[1.7, 1.5], bounds=[(0, None)] * N + [(0, 0.5)] * N)
        s = product.lmo((jnp.asarray(g), jnp.asarray(h)))
        np.testing.assert_allclose(float(jnp.vdot(g, s[0]) + jnp.vdot(h, s[1])), lp, rtol=1e-9)
        assert float(product.feasibility(s)) <= 1e-12
    # vertices: the hypersimplex's k-subsets, the K-norm ball's +-r e_i and (r / k) sign patterns
    hyper_v = np.array([0.7 * np.isin(np.arange(N), c) for c in itertools.combinations(range(N), 2)])
    knorm_v = np.concatenate([1.3 * np.eye(N), -1.3 * np.eye(N),
                              1.3 / 2 * np.array(list(itertools.product((-1.0, 1.0), repeat=N)))])
    for c, verts in ((hyper, hyper_v), (knorm, knorm_v)):
        g = RNG.normal(size=(4, N))
        s = jax.vmap(c.lmo)(jnp.asarray(g))
        np.testing.assert_allclose(np.sum(g * s, 1), np.min(g @ verts.T, 1), rtol=1e-12, err_msg=type(c).__name__)
        dist = np.linalg.norm(verts[:, None] - verts[None], axis=-1).max()
        np.testing.assert_allclose(c.diameter((N,)), dist, rtol=1e-12, err_msg=type(c).__name__)
        assert np.all(np.asarray(jax.vmap(c.feasibility)(s)) <= 1e-12)
        assert float(c.feasibility(jnp.asarray(3.0 * verts[0]))) > 0.1
    code = hyper.atom_code(jnp.asarray(g[0]))
    np.testing.assert_allclose(hyper.atom(code, jnp.zeros(N)), hyper.lmo(jnp.asarray(g[0])))
    np.testing.assert_allclose(hyper.atom_scores(jnp.asarray(g[0]), code[None]), [np.min(g[0] @ hyper_v.T)], rtol=1e-12)


def test_spectral_oracles_against_eigenvalues_and_ellipsoid_against_slsqp():
    g = RNG.normal(size=(2, 5, 5))  # a batch of two (non-symmetric) gradients
    sym = 0.5 * (g + np.swapaxes(g, -1, -2))
    eigenvalues = np.linalg.eigvalsh(sym)
    for c, value in ((Spectraplex(1.5), 1.5 * eigenvalues[:, 0]), (Fantope(2), eigenvalues[:, :2].sum(1))):
        s = c.lmo(jnp.asarray(g))
        np.testing.assert_allclose(np.sum(g * s, axis=(-2, -1)), value, rtol=1e-10, err_msg=type(c).__name__)
        assert np.all(np.asarray(c.feasibility(s)) <= 1e-12)
        # no random point of the set does better (the set's projection of random matrices)
        others = c.project(jnp.asarray(3 * RNG.normal(size=(50, 5, 5))))
        assert np.all(np.einsum("ij,bij->b", g[0], np.asarray(others)) >= value[0] - 1e-10)
        assert float(jnp.max(c.feasibility(jnp.asarray(g)))) > 0.1
    np.testing.assert_allclose(Spectraplex(1.5).diameter((5, 5)), 1.5 * np.sqrt(2))
    np.testing.assert_allclose(Fantope(2).diameter((5, 5)), np.linalg.norm(np.diag([1, 1, 0, 0, 0]) - np.diag([0, 0, 1, 1, 0])))
    for _ in range(2):
        g = RNG.normal(size=4)
        center = ELLIPSOID.center
        res = scipy.optimize.minimize(lambda x: g @ x, center, jac=lambda x: g, method="SLSQP", options={"ftol": 1e-14},
                                      constraints=[{"type": "ineq", "fun": lambda x: 1 - (x - center) @ ELLIPSOID_A @ (x - center)}])
        np.testing.assert_allclose(float(jnp.vdot(g, ELLIPSOID.lmo(jnp.asarray(g)))), res.fun, rtol=1e-7)
        assert float(ELLIPSOID.feasibility(ELLIPSOID.lmo(jnp.asarray(g)))) <= 1e-12
    np.testing.assert_allclose(ELLIPSOID.diameter(), 2 / np.sqrt(np.linalg.eigvalsh(ELLIPSOID_A)[0]))


PROJECTED = [  # (set, point shape, dtype)
    (Hypersimplex(2, 0.7), (N,), jnp.float64), (KNormBall(2, 1.3), (3, 4), jnp.float64), (ELLIPSOID, (4,), jnp.float64),
    (Spectraplex(1.5), (5, 5), jnp.float64), (Fantope(2), (5, 5), jnp.float64),
    (KNormBall(3, 0.4), (N,), jnp.float32), (Fantope(2), (5, 5), jnp.float32),
]


def test_projections_satisfy_the_variational_inequality():
    """The certificate of tests/sets/test_sets.py at points inside (scale 0.1) and outside (3)."""
    points = [jnp.asarray(np.array([0.1, 3.0]).reshape((2,) + (1,) * len(shape)) * RNG.normal(size=(2,) + shape), dtype)
              for _, shape, dtype in PROJECTED]
    certify = jax.jit(lambda xs: [jax.vmap(lambda x, c=c: projection_certificate(c, x))(x)
                                  for (c, _, _), x in zip(PROJECTED, xs)])
    for (c, _, dtype), x, (p, inner, feas, moved) in zip(PROJECTED, points, certify(points)):
        tol = 1e-9 if dtype == jnp.float64 else 1e-4
        assert p.dtype == dtype
        assert np.all(np.asarray(inner) <= tol * (1 + np.sum(np.asarray(x, np.float64) ** 2))), type(c).__name__
        assert np.all(np.asarray(feas) <= tol) and np.all(np.asarray(moved) <= 10 * tol), type(c).__name__


def test_block_coordinate_frank_wolfe_over_a_product_finds_the_projection():
    """min 0.5 ||x - y||^2 over C is proj_C(y): a product of an L2 ball and the ellipsoid with y
    outside both (strongly convex sets, on which FW converges linearly), one block per iteration."""
    product = ProductSet(L2Ball(1.0), ELLIPSOID)
    y = (jnp.asarray(3 * RNG.normal(size=3)), jnp.asarray(ELLIPSOID.center + 3 * RNG.normal(size=4)))
    cost = lambda x: sum(0.5 * jnp.sum((a - b) ** 2) for a, b in zip(x, y))
    r = frank_wolfe(cost, product, (jnp.zeros(3), jnp.asarray(ELLIPSOID.center)), variant="block_coordinate",
                    tolerance=1e-10)
    assert bool(r.converged) and int(r.stop_reason) == StopReason.GAP_TOLERANCE
    assert 0 <= float(r.gap) <= 1e-10
    for a, b in zip(r.x, product.project(y)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="block_coordinate' needs a ProductSet"):
        frank_wolfe(cost, L2Ball(1.0), jnp.zeros(3), variant="block_coordinate")


def test_validation_names_the_set_and_argument():
    cases = [
        (lambda: Hypersimplex(0, 1.0), "Hypersimplex: k"),
        (lambda: Hypersimplex(7, 1.0).lmo(jnp.ones(3)), "Hypersimplex: k = 7 exceeds"),
        (lambda: KNormBall(2, -1.0), "KNormBall: radius"),
        (lambda: Fantope(4).lmo(jnp.ones((3, 3))), "Fantope: k = 4 exceeds"),
        (lambda: Spectraplex(1.0).lmo(jnp.ones((3, 4))), r"Spectraplex: g must have shape \(..., n, n\)"),
        (lambda: Ellipsoid(-np.eye(2)), "Ellipsoid: A must be positive definite"),
        (lambda: Ellipsoid(np.ones((2, 3))), "Ellipsoid: A must be a finite symmetric"),
        (lambda: Ellipsoid(np.eye(2)).lmo(jnp.ones(3)), r"Ellipsoid: g must have shape \(2,\)"),
        (lambda: ProductSet(), "ProductSet: expected one or more constraint sets"),
        (lambda: ProductSet(L2Ball(1.0), Simplex()).lmo(jnp.ones(3)), "ProductSet: g must be a tuple of 2"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()

"""ehess_to_rhess on every manifold against an independent reference (float64):

1. the Riemannian Hessian in local coordinates, Hess_ij = d_ij F - Gamma^k_ij d_k F with
   F = f o phi: in normal coordinates phi(a) = Exp_x(sum_i a_i B_i) (second derivatives along
   geodesics, Gamma = 0 at x), or, where the manifold is open in an affine space (Birkhoff,
   SPD), phi(a) = x + sum_i a_i B_i with the Christoffel symbols of the metric by autodiff.
   This holds for every metric and so checks the connection terms of canonical Stiefel,
   Birkhoff's Fisher metric and SPD (the matrix is symmetric, so the operator is checked whole);
2. that the result is tangent.

Plus the Stiefel exponential against the geodesic equations of Edelman, Arias & Smith (1998),
the canonical Stiefel logarithm (Zimmermann 2017) against the exponential,
and typical_dist everywhere.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt.manifolds import (
    Birkhoff,
    Euclidean,
    Grassmann,
    Hyperboloid,
    Oblique,
    OrthogonalGroup,
    PoincareBall,
    Product,
    Sphere,
    Stiefel,
    SymmetricPositiveDefinite,
)

AFFINE = (Birkhoff, Euclidean, PoincareBall, SymmetricPositiveDefinite)  # open subsets of an affine space
CASES = {
    "sphere": Sphere(4),
    "stiefel_euclidean": Stiefel(4, 2),
    "stiefel_canonical": Stiefel(4, 2, metric="canonical"),
    "grassmann": Grassmann(4, 2),
    "birkhoff": Birkhoff(3),
    "spd": SymmetricPositiveDefinite(3),
    "poincare": PoincareBall(3),
    "hyperboloid": Hyperboloid(3),
}


def cost_for(name, shape, seed=0):
    """A non-quadratic cost; invariant under X -> X Q on the Grassmann manifold."""
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.standard_normal((shape[0], shape[0])))
    w = jnp.asarray(rng.standard_normal(shape))
    if name == "grassmann":
        a = a + a.T
        return lambda x: jnp.trace(x.T @ a @ x) + 0.5 * jnp.sum((x.T @ a.T @ a @ x) ** 2)
    return lambda x: jnp.sum(jnp.sin(w * x)) + jnp.sum(x * (a @ x)) + jnp.sum(x**3) / 3


def tangent_basis(m, x):
    """m.dim tangent vectors at x spanning T_x (projections of the ambient unit vectors)."""
    size = x.size
    images = jax.vmap(lambda e: m.proj(x, e.reshape(x.shape)))(jnp.eye(size, dtype=x.dtype))
    _, s, vh = np.linalg.svd(np.asarray(images).reshape(size, size))
    assert np.sum(s > 1e-8) == m.dim
    return jnp.asarray(vh[: m.dim]).reshape((m.dim,) + x.shape)


def geodesic_hessian(m, f, x, basis):
    """<Hess f(x)[B_i], B_j>_x by polarization, (q(B_i + B_j) - q(B_i - B_j)) / 4, of the second
    derivatives q(w) = d^2/dt^2 f(Exp_x(t w)) at t = 0 (fourth-order central differences)."""
    plus = basis[:, None] + basis[None, :]
    minus = basis[:, None] - basis[None, :]
    h = 1e-3
    steps = h * jnp.asarray([-2.0, -1.0, 0.0, 1.0, 2.0], x.dtype)
    weights = jnp.asarray([-1.0, 16.0, -30.0, 16.0, -1.0], x.dtype) / (12 * h**2)
    q = jax.vmap(jax.vmap(lambda w: weights @ jax.vmap(lambda t: f(m.exp(x, t * w)))(steps)))
    return (q(plus) - q(minus)) / 4


def coordinate_hessian(m, f, x, basis):
    """The matrix <Hess f(x)[B_i], B_j>_x in coordinates a -> x + sum_i a_i B_i where the
    manifold is open in an affine space (Christoffel symbols from the metric), else in normal
    coordinates a -> Exp_x(sum_i a_i B_i) (where they vanish)."""
    if not isinstance(m, AFFINE):
        return geodesic_hessian(m, f, x, basis)

    def metric(a):
        z = x + jnp.tensordot(a, basis, axes=1)
        return jax.vmap(lambda u: jax.vmap(lambda v: m.inner(z, u, v))(basis))(basis)

    a0 = jnp.zeros(len(basis), x.dtype)
    g_inv = jnp.linalg.inv(metric(a0))
    dg = jax.jacfwd(metric)(a0)  # dg[i, j, l] = d_l g_ij
    christoffel = 0.5 * (jnp.einsum("kl,jli->kij", g_inv, dg) + jnp.einsum("kl,ilj->kij", g_inv, dg)
                         - jnp.einsum("kl,ijl->kij", g_inv, dg))
    fa = lambda a: f(x + jnp.tensordot(a, basis, axes=1))  # noqa: E731
    return jax.hessian(fa)(a0) - jnp.einsum("kij,k->ij", christoffel, jax.grad(fa)(a0))


@pytest.mark.parametrize("name", list(CASES))
def test_ehess_to_rhess_matches_second_derivatives_in_coordinates(name):
    m = CASES[name]
    f = cost_for(name, m.shape)
    x = m.random_point(jax.random.key(1), jnp.float64)
    basis = tangent_basis(m, x)

    @jax.jit
    def checks(x, basis):
        egrad = jax.grad(f)(x)
        rhess = lambda v: m.ehess_to_rhess(x, egrad, jax.jvp(jax.grad(f), (x,), (v,))[1], v)  # noqa: E731
        hessians = jax.vmap(rhess)(basis)
        ours = jax.vmap(lambda h: jax.vmap(lambda b: m.inner(x, b, h))(basis))(hessians)
        return ours, coordinate_hessian(m, f, x, basis), hessians

    ours, reference, hessians = checks(x, basis)
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7 * float(jnp.max(jnp.abs(reference))))
    np.testing.assert_allclose(np.asarray(m.proj(x, hessians)), np.asarray(hessians), atol=1e-10)  # tangent


def test_hessians_that_reduce_to_checked_ones_and_typical_dists():
    """Product: factorwise; Oblique: the sphere's per column; O(n): St(n, n)'s (same metric)."""
    rng = np.random.default_rng(3)
    x, g, h, u = (jnp.asarray(a) for a in rng.standard_normal((4, 4, 3)))
    x = Oblique(4, 3).project(x)
    u = Oblique(4, 3).proj(x, u)
    per_column = jax.vmap(Sphere(4).ehess_to_rhess, in_axes=-1, out_axes=-1)(x, g, h, u)
    np.testing.assert_allclose(np.asarray(Oblique(4, 3).ehess_to_rhess(x, g, h, u)), np.asarray(per_column), rtol=1e-13)
    q = OrthogonalGroup(4).random_point(jax.random.key(0), jnp.float64)
    g, h, w = (jnp.asarray(a) for a in rng.standard_normal((3, 4, 4)))
    w = OrthogonalGroup(4).proj(q, w)
    np.testing.assert_allclose(np.asarray(OrthogonalGroup(4).ehess_to_rhess(q, g, h, w)),
                               np.asarray(Stiefel(4, 4).ehess_to_rhess(q, g, h, w)), rtol=1e-12, atol=1e-13)

    factors = (Sphere(4), SymmetricPositiveDefinite(3))
    m = Product(*factors)
    keys = jax.random.split(jax.random.key(2), 4)
    x = m.random_point(keys[0], jnp.float64)
    u = m.random_tangent(keys[1], x)
    g = tuple(jax.random.normal(k, xi.shape, xi.dtype) for k, xi in zip(keys[2:], x))
    out = m.ehess_to_rhess(x, g, g, u)
    for fac, o, xi, gi, ui in zip(factors, out, x, g, u):
        np.testing.assert_allclose(np.asarray(o), np.asarray(fac.ehess_to_rhess(xi, gi, gi, ui)))
    expected = {
        Euclidean((3, 2)): 6**0.5, Sphere(4): np.pi, Oblique(4, 3): np.pi * 3**0.5, Stiefel(5, 3): 3**0.5,
        Grassmann(5, 3): 3**0.5, OrthogonalGroup(4): 2 * np.pi, Birkhoff(3): 3.0,
        SymmetricPositiveDefinite(3): 6**0.5, m: (np.pi**2 + 6) ** 0.5,
    }
    for manifold, dist in expected.items():
        np.testing.assert_allclose(manifold.typical_dist, dist, rtol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "canonical"])
def test_stiefel_exp_solves_the_geodesic_equation(metric):
    """Edelman et al. (1998): euclidean metric X'' + X (X'^T X') = 0 (eq. 2.7); canonical
    X'' + X' X'^T X + X ((X^T X')^2 + X'^T X') = 0 (eq. 2.41); X(0) = x, X'(0) = u, X(t) on
    the manifold and the speed constant."""
    m = Stiefel(5, 2, metric=metric)
    x = m.random_point(jax.random.key(3), jnp.float64)
    u = 0.8 * m.random_tangent(jax.random.key(4), x)
    curve = jax.jit(jax.vmap(lambda t: m.exp(x, t * u)))
    h, t = 1e-4, 0.9
    before, at, after = curve(jnp.asarray([t - h, t, t + h]))
    velocity = (after - before) / (2 * h)
    acceleration = (after - 2 * at + before) / h**2
    if metric == "euclidean":
        residual = acceleration + at @ (velocity.T @ velocity)
    else:
        xtv = at.T @ velocity
        residual = acceleration + velocity @ velocity.T @ at + at @ (xtv @ xtv + velocity.T @ velocity)
    assert float(jnp.max(jnp.abs(residual))) < 1e-5
    np.testing.assert_allclose(np.asarray(at.T @ at), np.eye(2), atol=1e-12)
    np.testing.assert_allclose(float(m.norm(at, velocity)), float(m.norm(x, u)), rtol=1e-7)
    start = curve(jnp.asarray([-h, 0.0, h]))
    np.testing.assert_allclose(np.asarray(start[1]), np.asarray(x), atol=1e-14)
    np.testing.assert_allclose(np.asarray((start[2] - start[0]) / (2 * h)), np.asarray(u), atol=1e-8)


def test_stiefel_canonical_log_inverts_exp():
    m = Stiefel(6, 2, metric="canonical")
    x = m.random_point(jax.random.key(6), jnp.float64, batch_shape=(2,))
    u = 1.5 * m.random_tangent(jax.random.key(7), x)
    log = jax.jit(lambda x, u: m.log(x, m.exp(x, u)))(x, u)
    np.testing.assert_allclose(np.asarray(log), np.asarray(u), atol=1e-10)
    np.testing.assert_allclose(np.asarray(m.norm(x, log)), 1.5, rtol=1e-10)
    with pytest.raises(NotImplementedError, match="canonical"):
        Stiefel(6, 2).log(x, x)

"""One property battery for every manifold (every retraction / metric option), float64 unless
stated, with a float32 pass at looser tolerances.

Membership and tangency are checked with conditions written out here (X^T X = I, zero row and
column sums, ...), independent of the manifolds' own `feasibility`.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt.manifolds import (
    Birkhoff,
    ComplexCircle,
    ComplexGrassmann,
    Elliptope,
    Grassmann,
    HermitianPositiveDefinite,
    Hyperboloid,
    Oblique,
    OrthogonalGroup,
    PoincareBall,
    Positive,
    Product,
    PSDFixedRank,
    PSDFixedRankComplex,
    SkewSymmetric,
    SpecialHermitianPositiveDefinite,
    Sphere,
    SphereSubspaceComplementIntersection,
    SphereSubspaceIntersection,
    Stiefel,
    SymmetricEuclidean,
    SymmetricPositiveDefinite,
    UnitaryGroup,
)

SUBSPACE_SPAN = np.random.default_rng(7).standard_normal((5, 3))

# Shapes are shared across cases (n = 5 rows) so compiled kernels are reused between tests.
# HermitianPositiveDefinite and SkewSymmetric are left out for time: SpecialHermitianPositiveDefinite
# runs every HPD method through super(), SkewSymmetric is SymmetricEuclidean with skew for sym
# (both are compared with Pymanopt in test_pymanopt_compare.py).
CASES = {
    "sphere5": Sphere(5),
    "sphere_subspace5": SphereSubspaceIntersection(SUBSPACE_SPAN),
    "oblique5x3": Oblique(5, 3),
    "grassmann5x3": Grassmann(5, 3),
    "birkhoff5": Birkhoff(5),
    "product": Product(Sphere(5), Stiefel(5, 3)),
    "o5_qr": OrthogonalGroup(5),
    "o5_polar": OrthogonalGroup(5, retraction="polar"),
    "o5_cayley": OrthogonalGroup(5, retraction="cayley"),
    "o5_exp": OrthogonalGroup(5, retraction="exp"),
    "so5_qr": OrthogonalGroup(5, special=True),
    "u5_qr": UnitaryGroup(5),
    "stiefel5x3_qr_euclidean": Stiefel(5, 3),
    "stiefel5x3_polar_canonical": Stiefel(5, 3, retraction="polar", metric="canonical"),
    "stiefel5x3_cayley_euclidean": Stiefel(5, 3, retraction="cayley"),
    "stiefel5x3_cayley_canonical": Stiefel(5, 3, retraction="cayley", metric="canonical"),
    "stiefel5x5_polar_euclidean": Stiefel(5, 5, retraction="polar"),
    "spd5": SymmetricPositiveDefinite(5),
    "shpd5": SpecialHermitianPositiveDefinite(5),
    "symmetric5": SymmetricEuclidean(5),
    "positive5x3": Positive(5, 3),
    "poincare5": PoincareBall(5),
    "hyperboloid4": Hyperboloid(4),
    "complex_circle5": ComplexCircle(5),
    "complex_grassmann5x3": ComplexGrassmann(5, 3),
    "psd_fixed_rank5x3": PSDFixedRank(5, 3),
    "psd_fixed_rank_complex5x3": PSDFixedRankComplex(5, 3),
    "elliptope5x3": Elliptope(5, 3),
}
IDS = sorted(CASES)
HAS_EXP = [i for i in IDS if isinstance(CASES[i], (
    Sphere, SphereSubspaceIntersection, Oblique, Grassmann, OrthogonalGroup, SymmetricPositiveDefinite,
    SymmetricEuclidean, Positive, PoincareBall, Hyperboloid, ComplexCircle))]
COMPLEX = (ComplexCircle, ComplexGrassmann, PSDFixedRankComplex, UnitaryGroup, HermitianPositiveDefinite)
# open subsets of their ambient space (or quotients of one): a small perturbation stays feasible
OPEN = (Positive, PoincareBall, PSDFixedRank)


def real_dtype_for(m, dtype):
    """dtype, or its complex counterpart for a complex manifold."""
    if isinstance(m, COMPLEX):
        return jnp.complex64 if dtype == jnp.float32 else jnp.complex128
    return dtype

tmap = jax.tree_util.tree_map


def leaves(t):
    return jax.tree_util.tree_leaves(t)


def max_abs(t):
    return max(float(jnp.max(jnp.abs(a))) for a in leaves(t))


def max_diff(a, b):
    return max_abs(tmap(lambda p, q: p - q, a, b))


def frob_inner(m, a, b):
    """Euclidean <a, b> per point (summing over each factor's point axes)."""
    if isinstance(m, Product):
        return sum(frob_inner(f, p, q) for f, p, q in zip(m.manifolds, a, b))
    return jnp.real(jnp.sum(jnp.conj(a) * b, axis=tuple(range(-len(m.shape), 0))))


def hconj(x):
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def gram_error(x):
    return hconj(x) @ x - jnp.eye(x.shape[-1], dtype=x.dtype)


def lorentz(a, b):
    return jnp.sum(a * b, -1) - 2 * a[..., 0] * b[..., 0]


def off_subspace(v):
    """The largest residual of v's least-squares fit by SUBSPACE_SPAN's columns (0 in its span)."""
    columns = np.asarray(v, np.float64).reshape(-1, SUBSPACE_SPAN.shape[0]).T
    coefficients = np.linalg.lstsq(SUBSPACE_SPAN, columns, rcond=None)[0]
    return float(np.max(np.abs(SUBSPACE_SPAN @ coefficients - columns)))


def membership_residual(m, x):
    """Max violation of the defining equations, written independently of m.feasibility."""
    if isinstance(m, Product):
        return max(membership_residual(f, xi) for f, xi in zip(m.manifolds, x))
    if isinstance(m, SphereSubspaceIntersection):
        return max_abs(jnp.linalg.norm(x, axis=-1) - 1) + off_subspace(x)
    if isinstance(m, Sphere):
        return max_abs(jnp.linalg.norm(x, axis=-1) - 1)
    if isinstance(m, Oblique):
        return max_abs(jnp.linalg.norm(x, axis=-2) - 1)
    if isinstance(m, (Stiefel, Grassmann)):
        return max_abs(gram_error(x))
    if isinstance(m, OrthogonalGroup):
        err = max_abs(gram_error(x))
        return max(err, max_abs(jnp.linalg.det(x) - 1)) if m.special else err
    if isinstance(m, Birkhoff):
        sums = max(max_abs(jnp.sum(x, -1) - 1), max_abs(jnp.sum(x, -2) - 1))
        return sums + float(jnp.sum(jnp.maximum(-x, 0)))
    if isinstance(m, SpecialHermitianPositiveDefinite):
        return membership_residual(HermitianPositiveDefinite(m.n), x) + max_abs(jnp.linalg.det(x) - 1)
    if isinstance(m, SymmetricPositiveDefinite):
        asym = max_abs(x - hconj(x))
        return asym + max(0.0, -float(jnp.min(np.linalg.eigvalsh(np.asarray(x)))))
    if isinstance(m, SymmetricEuclidean):
        return max_abs(x - jnp.swapaxes(x, -1, -2))
    if isinstance(m, Positive):
        return 0.0 if float(jnp.min(x)) > 0 else 1.0
    if isinstance(m, PoincareBall):
        return 0.0 if float(jnp.max(jnp.linalg.norm(x, axis=-1))) < 1 else 1.0
    if isinstance(m, Hyperboloid):
        return max_abs(lorentz(x, x) + 1) + (0.0 if float(jnp.min(x[..., 0])) > 0 else 1.0)
    if isinstance(m, ComplexCircle):
        return max_abs(jnp.abs(x) - 1)
    if isinstance(m, PSDFixedRank):
        return 0.0 if float(np.min(np.linalg.svd(np.asarray(x), compute_uv=False))) > 1e-6 else 1.0
    if isinstance(m, Elliptope):
        return max_abs(jnp.linalg.norm(x, axis=-1) - 1)
    raise TypeError(m)


def tangent_residual(m, x, u):
    """Max violation of the tangent-space equations at x."""
    if isinstance(m, Product):
        return max(tangent_residual(f, xi, ui) for f, xi, ui in zip(m.manifolds, x, u))
    if isinstance(m, SphereSubspaceIntersection):
        return max_abs(jnp.sum(x * u, -1)) + off_subspace(u)
    if isinstance(m, Sphere):
        return max_abs(jnp.sum(x * u, -1))
    if isinstance(m, Oblique):
        return max_abs(jnp.sum(x * u, -2))
    if isinstance(m, (Stiefel, OrthogonalGroup)):
        xtu = hconj(x) @ u
        return max_abs(xtu + hconj(xtu))
    if isinstance(m, Grassmann):
        return max_abs(hconj(x) @ u)
    if isinstance(m, Birkhoff):
        return max(max_abs(jnp.sum(u, -1)), max_abs(jnp.sum(u, -2)))
    if isinstance(m, SpecialHermitianPositiveDefinite):
        trace = jnp.trace(jnp.linalg.solve(x, u), axis1=-2, axis2=-1)
        return max_abs(u - hconj(u)) + max_abs(jnp.real(trace))
    if isinstance(m, (SymmetricPositiveDefinite, SymmetricEuclidean)):
        return max_abs(u - hconj(u))
    if isinstance(m, (Positive, PoincareBall)):
        return 0.0
    if isinstance(m, Hyperboloid):
        return max_abs(lorentz(x, u))
    if isinstance(m, ComplexCircle):
        return max_abs(jnp.real(jnp.conj(x) * u))
    if isinstance(m, (PSDFixedRank, Elliptope)):  # horizontal: Y^H U Hermitian (and rows tangent)
        xu = hconj(x) @ u
        rows = max_abs(jnp.sum(x * u, -1)) if isinstance(m, Elliptope) else 0.0
        return max(max_abs(xu - hconj(xu)), rows)
    raise TypeError(m)


def ambient(key, x):
    """A Gaussian ambient array (or tuple) shaped like x."""
    xs = leaves(x)
    keys = jax.random.split(key, len(xs))
    out = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, xs)]
    return tuple(out) if isinstance(x, tuple) else out[0]


def setup(name, dtype=jnp.float64, batch_shape=(2,), seed=0):
    m = CASES[name]
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = m.random_point(k1, real_dtype_for(m, dtype), batch_shape)
    u = m.random_tangent(k2, x)
    return m, x, u, k3


def scaled(t, u):
    return tmap(lambda a: t * a, u)


@pytest.mark.parametrize("name", IDS)
def test_random_point_and_tangent(name):
    m, x, u, _ = setup(name)
    assert membership_residual(m, x) < 1e-10
    assert float(jnp.max(m.feasibility(x))) < 1e-10
    assert tangent_residual(m, x, u) < 1e-10
    if m.dim > 0:
        np.testing.assert_allclose(m.norm(x, u), 1.0, rtol=1e-10)


@pytest.mark.parametrize("name", IDS)
def test_proj_is_idempotent_metric_orthogonal_projection(name):
    m, x, v, key = setup(name)
    z = ambient(key, x)
    u = m.proj(x, z)
    assert tangent_residual(m, x, u) < 1e-10
    assert max_diff(m.proj(x, u), u) < 1e-10
    normal = tmap(lambda a, b: a - b, z, u)
    assert max_abs(m.inner(x, normal, v)) < 1e-9


@pytest.mark.parametrize("name", IDS)
def test_retraction_is_feasible_and_first_order(name):
    m, x, u, _ = setup(name)
    assert max_diff(m.retract(x, scaled(0.0, u)), x) < 1e-10
    y = m.retract(x, u)
    assert membership_residual(m, y) < 1e-9
    if m.dim == 0:
        return
    errs = [max_abs(tmap(lambda r, a, b: r - a - t * b, m.retract(x, scaled(t, u)), x, u)) for t in (1e-2, 5e-3)]
    assert errs[0] < 1e-13 or 3.0 < errs[0] / errs[1] < 5.0, errs  # x + u itself on flat manifolds


@pytest.mark.parametrize("name", IDS)
def test_riesz_representation_of_the_gradient(name):
    m, x, v, key = setup(name)
    g = ambient(key, x)
    np.testing.assert_allclose(
        m.inner(x, m.egrad_to_rgrad(x, g), v), frob_inner(m, g, v), rtol=1e-9, atol=1e-10
    )
    assert tangent_residual(m, x, m.egrad_to_rgrad(x, g)) < 1e-10


@pytest.mark.parametrize("name", IDS)
def test_riemannian_gradient_matches_finite_differences_along_retraction(name):
    m, x, v, key = setup(name)
    x, v = tmap(lambda a: a[0], (x, v))
    weights = ambient(key, x)

    def f(p):
        return sum(jnp.sum(jnp.sin(jnp.real(w * a)) + 0.5 * jnp.real(a) ** 3 + jnp.imag(a) ** 3)
                   for w, a in zip(leaves(weights), leaves(p)))

    egrad = tmap(jnp.conj, jax.grad(f)(x))  # jax.grad returns the conjugate gradient for complex x
    rgrad = m.egrad_to_rgrad(x, egrad)
    h = 1e-5
    fd = (f(m.retract(x, scaled(h, v))) - f(m.retract(x, scaled(-h, v)))) / (2 * h)
    np.testing.assert_allclose(m.inner(x, rgrad, v), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", IDS)
def test_transport_lands_in_tangent_space_at_target(name):
    m, x, u, key = setup(name)
    v = m.proj(x, ambient(key, x))
    y = m.retract(x, u)
    assert tangent_residual(m, y, m.transport(x, y, v)) < 1e-9
    y2, w = m.retract_transport(x, u, v)
    assert max_diff(y2, y) < 1e-9
    assert tangent_residual(m, y, w) < 1e-9


@pytest.mark.parametrize("name", HAS_EXP)
def test_exp_log_are_inverse_and_dist_is_geodesic_length(name):
    m, x, u, _ = setup(name)
    if m.dim == 0:
        return
    t = 0.7
    y = m.exp(x, scaled(t, u))
    assert membership_residual(m, y) < 1e-9
    assert max_diff(m.exp(x, scaled(0.0, u)), x) < 1e-10
    assert max_diff(m.log(x, y), scaled(t, u)) < 1e-8
    np.testing.assert_allclose(m.dist(x, y), t, rtol=1e-8)
    assert max_abs(m.dist(x, x)) < 1e-7


@pytest.mark.parametrize("name", IDS)
def test_batched_equals_loop_and_jit_vmap_agree(name):
    m, x, u, key = setup(name)
    g = ambient(key, x)
    ops = {
        "proj": lambda x, u, g: m.proj(x, g),
        "rgrad": lambda x, u, g: m.egrad_to_rgrad(x, g),
        "retract": lambda x, u, g: m.retract(x, u),
        "inner": lambda x, u, g: m.inner(x, u, g),
        "feas": lambda x, u, g: m.feasibility(x),
    }
    batched = {k: op(x, u, g) for k, op in ops.items()}
    jitted = jax.jit(lambda x, u, g: {k: op(x, u, g) for k, op in ops.items()})(x, u, g)
    vmapped = jax.vmap(lambda x, u, g: {k: op(x, u, g) for k, op in ops.items()})(x, u, g)
    for i in range(2):
        one = {k: op(*tmap(lambda a: a[i], (x, u, g))) for k, op in ops.items()}
        assert max_diff(tmap(lambda a: a[i], batched), one) < 1e-9
    assert max_diff(jitted, batched) < 1e-9
    assert max_diff(vmapped, batched) < 1e-9


@pytest.mark.parametrize("name", IDS)
def test_float32_preserves_dtype_and_stays_feasible(name):
    m, x, u, key = setup(name, dtype=jnp.float32)
    g = ambient(key, x)
    y = m.retract(x, scaled(0.5, u))
    outs = [x, u, y, m.proj(x, g), m.egrad_to_rgrad(x, g), m.transport(x, y, u),
            m.inner(x, u, g), m.feasibility(y), m.project(y)]
    assert all(a.dtype in (jnp.float32, jnp.complex64) for a in leaves(outs))
    assert all(a.dtype == jnp.float32 for a in leaves([m.inner(x, u, g), m.feasibility(y)]))
    assert membership_residual(m, y) < 1e-5
    assert tangent_residual(m, x, m.proj(x, g)) < 1e-5


@pytest.mark.parametrize("name", IDS)
def test_project_snaps_perturbed_points_back(name):
    m, x, _, key = setup(name)
    noisy = tmap(lambda a, e: a + 1e-3 * jnp.abs(a) * e, x, ambient(key, x))
    p = m.project(noisy)
    assert membership_residual(m, p) < 1e-9
    assert max_diff(p, x) < 1e-2 * max(1.0, max_abs(x))
    assert max_diff(m.project(x), x) < 1e-8
    if not isinstance(m, OPEN):
        assert float(jnp.min(m.feasibility(noisy))) > 0


@pytest.mark.parametrize(
    "manifold, dim",
    [
        (Sphere(5), 4),
        (SphereSubspaceIntersection(np.eye(5)[:, :3]), 2),
        (SphereSubspaceComplementIntersection(np.eye(5)[:, :3]), 1),
        (Oblique(4, 3), 9),
        (Stiefel(6, 3), 12),
        (Stiefel(5, 5), 10),
        (Grassmann(6, 2), 8),
        (OrthogonalGroup(5), 10),
        (OrthogonalGroup(5, special=True), 10),
        (UnitaryGroup(5), 25),
        (Birkhoff(4), 9),
        (SymmetricPositiveDefinite(4), 10),
        (HermitianPositiveDefinite(4), 16),
        (SpecialHermitianPositiveDefinite(4), 15),
        (Product(Sphere(3), Stiefel(4, 2)), 7),
        (SymmetricEuclidean(4), 10),
        (SkewSymmetric(4), 6),
        (Positive(4, 3), 12),
        (PoincareBall(5), 5),
        (Hyperboloid(5), 5),
        (ComplexCircle(5), 5),
        (ComplexGrassmann(5, 2), 12),
        (PSDFixedRank(6, 3), 15),
        (PSDFixedRankComplex(6, 3), 27),
        (Elliptope(6, 3), 9),
    ],
)
def test_dimension(manifold, dim):
    assert manifold.dim == dim


@pytest.mark.parametrize("name", IDS)
def test_manifolds_are_hashable_static_arguments(name):
    m = CASES[name]
    assert hash(m) == hash(CASES[name]) and m == CASES[name]
    x = m.random_point(jax.random.PRNGKey(0), real_dtype_for(m, jnp.float64))
    out = jax.jit(lambda man, x: man.feasibility(x), static_argnums=0)(m, x)
    assert float(out) < 1e-10


def wrong_shape(x):
    """x with one extra column/entry in its last axis (factorwise for a Product)."""
    return tmap(lambda a: jnp.concatenate([a, a[..., :1]], axis=-1), x)


@pytest.mark.parametrize("name", IDS)
def test_methods_reject_wrong_shapes_naming_the_argument(name):
    m, x, u, _ = setup(name)
    bad = wrong_shape(x)
    calls = {
        "x": [lambda: m.proj(bad, u), lambda: m.retract(bad, u), lambda: m.feasibility(bad),
              lambda: m.project(bad), lambda: m.random_tangent(jax.random.PRNGKey(0), bad)],
        "u": [lambda: m.proj(x, bad), lambda: m.retract(x, bad), lambda: m.inner(x, bad, u)],
        "v": [lambda: m.inner(x, u, bad), lambda: m.transport(x, x, bad)],
        "egrad": [lambda: m.egrad_to_rgrad(x, bad)],
    }
    if name in HAS_EXP:
        calls["y"] = [lambda: m.log(x, bad), lambda: m.dist(x, bad)]
    for arg, fns in calls.items():
        for fn in fns:
            with pytest.raises(ValueError, match=rf"{arg}(\[\d\])? must"):
                fn()

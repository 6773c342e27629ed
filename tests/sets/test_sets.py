"""Constraint sets against brute force: LMOs against vertex enumeration / SVD / SciPy's
linear_sum_assignment, projections against their variational inequality, diameters against the
largest vertex distance."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import manifold_opt as mo
from manifold_opt.sets import (
    BirkhoffPolytope,
    Box,
    ConvexHull,
    KSparse,
    L1Ball,
    L2Ball,
    LInfBall,
    NuclearNormBall,
    Simplex,
    SpectralNormBall,
    sets_from_init,
)

N = 6


def signed_vertices(n, k, r):
    """All vertices of the K-sparse polytope (k = 1: the L1 ball)."""
    out = []
    for support in itertools.combinations(range(n), k):
        for signs in itertools.product((-1.0, 1.0), repeat=k):
            v = np.zeros(n)
            v[list(support)] = r * np.array(signs)
            out.append(v)
    return np.array(out)


def vertices(c, n):
    """Brute-force vertex lists of the polytopes in R^n."""
    if isinstance(c, Simplex):
        return c.radius * np.eye(n)
    if isinstance(c, KSparse):
        return signed_vertices(n, c.k, c.radius)
    if isinstance(c, L1Ball):
        return signed_vertices(n, 1, c.radius)
    if isinstance(c, LInfBall):
        return c.radius * np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
    lower, upper = np.broadcast_to(c.lower, n), np.broadcast_to(c.upper, n)
    return np.array([np.where(np.array(bits), upper, lower) for bits in itertools.product((0, 1), repeat=n)])


POLYTOPES = [Simplex(1.7), L1Ball(2.0), KSparse(2, 0.8), LInfBall(0.5), Box(np.linspace(-1, 0, N), 1.5)]


def test_vector_polytopes_lmo_diameter_feasibility_against_enumeration():
    rng = np.random.default_rng(0)
    for c in POLYTOPES:
        verts = vertices(c, N)
        g = rng.normal(size=(4, N))
        s, feas = jax.jit(jax.vmap(lambda g: (c.lmo(g), c.feasibility(c.lmo(g)))))(jnp.asarray(g))
        np.testing.assert_allclose(np.sum(g * s, 1), np.min(g @ verts.T, 1), rtol=1e-12, err_msg=type(c).__name__)
        assert np.all(np.asarray(feas) <= 1e-12)
        pairwise = np.linalg.norm(verts[:, None] - verts[None], axis=-1)
        np.testing.assert_allclose(c.diameter((N,)), pairwise.max(), rtol=1e-12, err_msg=type(c).__name__)
        outside = 3.0 * verts[0] + 1.0 * np.sign(verts[0] + 0.1) + 2.0 * np.abs(verts).max()
        assert float(c.feasibility(jnp.asarray(outside))) > 0.1


def test_l2_ball_lmo_closed_form_and_matrix_points():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 4))
    s = L2Ball(2.0).lmo(jnp.asarray(g))
    np.testing.assert_allclose(np.sum(g * s), -2.0 * np.linalg.norm(g), rtol=1e-12)
    np.testing.assert_allclose(L2Ball(2.0).lmo(jnp.zeros(3)), 0.0)  # a zero gradient gives a feasible s
    big = L2Ball(2.0).lmo(jnp.full(3, 1e30, jnp.float32))  # ||g||^2 overflows float32; s does not
    np.testing.assert_allclose(big, np.full(3, -2.0 / np.sqrt(3)), rtol=1e-6)


def test_matrix_lmos_against_svd_and_linear_sum_assignment():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(2, 7, 5))  # a batch of two matrices
    sv = np.linalg.svd(g, compute_uv=False)
    for nuc in (NuclearNormBall(1.5, num_iters=200), NuclearNormBall(1.5, method="svd")):
        s = nuc.lmo(jnp.asarray(g))
        np.testing.assert_allclose(np.sum(g * s, axis=(-2, -1)), -1.5 * sv[:, 0], rtol=1e-8)
        assert np.all(np.asarray(nuc.feasibility(s)) <= 1e-10)
    nuc = NuclearNormBall(1.5, num_iters=5)
    factors, v = nuc.lmo_factored(jnp.asarray(g))
    for _ in range(40):  # warm starts continue the power iteration
        factors, v = nuc.lmo_factored(jnp.asarray(g), v)
    s = nuc.vertex(factors)
    np.testing.assert_allclose(np.sum(g * s, axis=(-2, -1)), -1.5 * sv[:, 0], rtol=1e-8)
    spec = SpectralNormBall(0.7)
    s = spec.lmo(jnp.asarray(g))
    np.testing.assert_allclose(np.sum(g * s, axis=(-2, -1)), -0.7 * sv.sum(-1), rtol=1e-10)
    s_ns = SpectralNormBall(0.7, method="newton_schulz", steps=15).lmo(jnp.asarray(g))
    np.testing.assert_allclose(np.sum(g * s_ns, axis=(-2, -1)), -0.7 * sv.sum(-1), rtol=1e-3)
    assert np.all(np.asarray(spec.feasibility(s_ns)) <= 1e-12)
    assert np.asarray(SpectralNormBall(0.7, method="newton_schulz", steps=15).lmo(jnp.asarray(g, jnp.float32))).dtype == np.float32

    costs = rng.normal(size=(3, 1, 8, 8))  # two batch axes
    for method, batch in (("scipy", costs), ("hungarian", costs[:1, 0])):
        p = np.asarray(BirkhoffPolytope(method).lmo(jnp.asarray(batch))).reshape(batch.shape)
        for c, perm in zip(batch.reshape(-1, 8, 8), p.reshape(-1, 8, 8)):
            rows, cols = scipy.optimize.linear_sum_assignment(c)
            np.testing.assert_allclose(np.sum(c * perm), c[rows, cols].sum(), rtol=1e-12)
            assert set(np.unique(perm)) == {0.0, 1.0}
    assert np.all(np.asarray(BirkhoffPolytope().feasibility(jnp.asarray(p))) == 0)
    perms = np.array([np.eye(4)[list(q)] for q in itertools.permutations(range(4))])
    dist = np.linalg.norm(perms[:, None] - perms[None], axis=(-2, -1))
    np.testing.assert_allclose(BirkhoffPolytope().diameter((4, 4)), dist.max())
    np.testing.assert_allclose(SpectralNormBall(0.7).diameter((7, 5)), 2 * 0.7 * np.sqrt(5))


def test_convex_hull_of_pytrees_against_enumeration():
    rng = np.random.default_rng(3)
    verts = {"w": jnp.asarray(rng.normal(size=(5, 3, 2))), "b": jnp.asarray(rng.normal(size=(5, 2)))}
    hull = ConvexHull(verts)
    flat = np.concatenate([np.asarray(verts["b"]), np.asarray(verts["w"]).reshape(5, -1)], axis=1)
    g = {"w": jnp.asarray(rng.normal(size=(3, 2))), "b": jnp.asarray(rng.normal(size=2))}
    gflat = np.concatenate([np.asarray(g["b"]), np.asarray(g["w"]).ravel()])
    s = hull.lmo(g)
    i = int(np.argmin(flat @ gflat))
    np.testing.assert_allclose(s["w"], verts["w"][i])
    np.testing.assert_allclose(s["b"], verts["b"][i])
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1)
    np.testing.assert_allclose(hull.diameter(), dist.max(), rtol=1e-10)
    with pytest.raises(ValueError, match="ConvexHull: g must be shaped like one vertex"):
        hull.lmo({"w": jnp.zeros((3, 2))})


def projection_certificate(c, x):
    """p = proj_C(x) iff p in C and <x - p, v - p> <= 0 for all v in C, i.e. for v = lmo(p - x);
    also returns the feasibility of p and how far projecting p moves it (0: idempotent)."""
    p = c.project(x)
    v = c.lmo(p - x)
    return p, jnp.sum((x - p) * (v - p)), jnp.max(c.feasibility(p)), jnp.max(jnp.abs(c.project(p) - p))


PROJECTED = [  # (set, point shape, dtype)
    (Simplex(1.7), (3, 4), jnp.float64), (L1Ball(2.0), (3, 4), jnp.float64), (L2Ball(1.0), (3, 4), jnp.float64),
    (LInfBall(0.5), (3, 4), jnp.float64), (Box(-0.2, 0.3), (3, 4), jnp.float64), (KSparse(2, 0.8), (3, 4), jnp.float64),
    (NuclearNormBall(1.5, method="svd"), (5, 4), jnp.float64), (SpectralNormBall(0.7), (5, 4), jnp.float64),
    (L1Ball(2.0), (3, 4), jnp.float32), (NuclearNormBall(1.5, method="svd"), (5, 4), jnp.float32),
]


def test_projections_satisfy_the_variational_inequality():
    """Every set's certificate at a point inside (scale 0.1) and outside (scale 3), in one jit."""
    rng = np.random.default_rng(4)
    points = [jnp.asarray(np.array([0.1, 3.0])[:, None, None] * rng.normal(size=(2,) + shape), dtype)
              for _, shape, dtype in PROJECTED]
    certify = jax.jit(lambda xs: [jax.vmap(lambda x, c=c: projection_certificate(c, x))(x)
                                  for (c, _, _), x in zip(PROJECTED, xs)])
    for (c, _, dtype), x, (p, inner, feas, moved) in zip(PROJECTED, points, certify(points)):
        tol = 1e-9 if dtype == jnp.float64 else 1e-4
        assert p.dtype == dtype
        assert np.all(np.asarray(inner) <= tol * (1 + np.sum(np.asarray(x, np.float64) ** 2))), type(c).__name__
        assert np.all(np.asarray(feas) <= tol) and np.all(np.asarray(moved) <= 10 * tol), type(c).__name__
    x = rng.normal(size=7)
    np.testing.assert_allclose(Simplex(2.0).project(jnp.asarray(x)), optax.projections.projection_simplex(jnp.asarray(x), 2.0))


def test_validation_names_the_argument():
    cases = [
        (lambda: L2Ball(-1.0), "L2Ball: radius"),
        (lambda: Simplex(0.0), "Simplex: radius"),
        (lambda: KSparse(0, 1.0), "KSparse: k"),
        (lambda: KSparse(7, 1.0).lmo(jnp.ones(3)), "KSparse: k = 7 exceeds"),
        (lambda: BirkhoffPolytope().lmo(jnp.ones((3, 4))), r"BirkhoffPolytope: g must have shape \(..., n, n\)"),
        (lambda: NuclearNormBall(1.0).lmo(jnp.ones(3)), "NuclearNormBall: g must have shape"),
        (lambda: SpectralNormBall(1.0, method="qr"), "SpectralNormBall: unknown method"),
        (lambda: Box(1.0, 0.0), "Box: lower must be <= upper"),
        (lambda: BirkhoffPolytope("auction"), "BirkhoffPolytope: unknown method"),
        (lambda: ConvexHull({"a": jnp.ones((3, 2)), "b": jnp.ones((4,))}), "ConvexHull: every leaf"),
        (lambda: sets_from_init({"w": jnp.ones(3)}, kind="l3"), "sets_from_init: unknown kind"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
    assert L2Ball(1.0) == L2Ball(1.0) and hash(L2Ball(1.0)) == hash(L2Ball(1.0))


def test_sets_are_leaves_of_the_manifold_tree_and_sized_from_init():
    params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}, "mixer": jnp.eye(3)}
    tree = mo.manifold_tree(params, {"*/kernel": L2Ball(1.0), "mixer": BirkhoffPolytope()})
    assert tree["dense"]["kernel"] == L2Ball(1.0) and tree["dense"]["bias"] is None
    with pytest.raises(ValueError, match="BirkhoffPolytope"):
        mo.manifold_tree({"mixer": jnp.ones((3, 4))}, {"mixer": BirkhoffPolytope()})
    sized = sets_from_init(params["dense"], kind="ksparse", width=10.0, k_fraction=0.5)
    assert sized["bias"] is None  # zero initialization: left to another optimizer
    kernel = sized["kernel"]
    assert kernel.k == 6
    np.testing.assert_allclose(kernel.diameter((4, 3)), 2 * 10.0 * np.linalg.norm(np.ones((4, 3))))
    for kind in ("l2", "l1", "linf"):
        c = sets_from_init(params["dense"], kind=kind, width=10.0)["kernel"]
        np.testing.assert_allclose(c.diameter((4, 3)), 2 * 10.0 * np.sqrt(12.0))


def test_sets_from_nnx_state_train_a_model_under_nnx_optimizer():
    """Issue 18.5: sets sized from `nnx.state(model, nnx.Param)` are plain sets and None (no
    Param wrappers), so `partition_labels` keeps the bias leaves under nnx.Optimizer: one step
    moves each kernel to x + lr (LMO(g) - x) and each bias by SGD."""
    from flax import nnx

    model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(8, 2, rngs=nnx.Rngs(1)))
    params = nnx.state(model, nnx.Param)
    sets = sets_from_init(params, "l1", width=0.5)
    leaves = jax.tree_util.tree_leaves(sets, is_leaf=lambda s: s is None)
    assert [type(s).__name__ for s in leaves] == ["NoneType", "L1Ball", "NoneType", "L1Ball"]
    tx = optax.partition({"manifold": mo.frank_wolfe(0.3, sets), "free": optax.sgd(0.1)}, mo.partition_labels(sets))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)))
    before = jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.Param))
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
    optimizer.update(model, grads)
    after = nnx.state(model, nnx.Param)
    for layer in (0, 2):
        g = grads["layers"][layer]
        w0, radius = before["layers"][layer]["kernel"].get_value(), sets["layers"][layer]["kernel"].radius
        s = np.zeros_like(w0)
        i = np.unravel_index(np.argmax(np.abs(g["kernel"].get_value())), w0.shape)
        s[i] = -radius * np.sign(g["kernel"].get_value()[i])
        np.testing.assert_allclose(after["layers"][layer]["kernel"].get_value(), w0 + 0.3 * (s - w0), rtol=1e-12)
        np.testing.assert_allclose(after["layers"][layer]["bias"].get_value(),
                                   before["layers"][layer]["bias"].get_value() - 0.1 * g["bias"].get_value(), rtol=1e-12)
        assert np.any(g["bias"].get_value() != 0)

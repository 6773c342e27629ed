"""Parameters whose points are tuples of arrays (FixedRankEmbedded's (U, s, Vt), Product's
factors) in parameter trees, under the Riemannian optax transforms and nnx.Optimizer: the best
rank-k approximation against the SVD (Eckart-Young), Adam against a loop written out with the
manifold's methods, the moments' tangent structure, and the errors."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.manifolds import FixedRankEmbedded, Product, Sphere, Stiefel

M_ROWS, N_COLS, RANK = 10, 7, 3
MANIFOLD = FixedRankEmbedded(M_ROWS, N_COLS, RANK)


class Factors(NamedTuple):
    u: jax.Array
    s: jax.Array
    vt: jax.Array


def target():
    """A 10 x 7 matrix with singular values 5, 4, 3, 1, 0.7, 0.4, 0.2 (a clear gap after 3)."""
    rng = np.random.default_rng(0)
    left = np.linalg.qr(rng.standard_normal((M_ROWS, N_COLS)))[0]
    right = np.linalg.qr(rng.standard_normal((N_COLS, N_COLS)))[0]
    return left @ np.diag([5.0, 4.0, 3.0, 1.0, 0.7, 0.4, 0.2]) @ right.T


def best_rank_k(a):
    """Eckart-Young: the SVD truncated to RANK and the residual 0.5 ||A - A_k||^2."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return (u[:, :RANK] * s[:RANK]) @ vt[:RANK], 0.5 * np.sum(s[RANK:] ** 2)


def dense(point):
    u, s, vt = point
    return (u * s) @ vt


def loss(params, a):
    return 0.5 * jnp.sum((dense(params["low"]) - a) ** 2) + 0.5 * jnp.sum((params["bias"] - 1) ** 2)


def start():
    return {"low": Factors(*MANIFOLD.random_point(jax.random.key(0), jnp.float64)), "bias": jnp.zeros(3)}


def check_on_manifold(point, atol=1e-12):
    u, s, vt = (np.asarray(a) for a in point)
    np.testing.assert_allclose(u.T @ u, np.eye(RANK), atol=atol)
    np.testing.assert_allclose(vt @ vt.T, np.eye(RANK), atol=atol)
    assert np.all(s > 0)


@pytest.mark.parametrize("name, tx, steps", [
    ("sgd", mo.riemannian_sgd(0.5, {"low": MANIFOLD, "bias": None}), 200),
    ("adam_partition", mo.riemannian_partition(  # bias by optax.adam through optax.partition
        mo.riemannian_adam(optax.cosine_decay_schedule(0.3, 400), {"low": MANIFOLD, "bias": None}),
        optax.adam(optax.cosine_decay_schedule(0.1, 400)), {"low": MANIFOLD, "bias": None}), 400),
])
def test_best_rank_k_approximation_matches_the_svd(name, tx, steps):
    a = jnp.asarray(target())
    reference, best = best_rank_k(target())
    params = start()

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p, a), state, p)
        return (optax.apply_updates(p, updates), state), (loss(p, a), MANIFOLD.feasibility(p["low"]))

    (final, _), (losses, feasibility) = jax.jit(
        lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps))(params)
    assert isinstance(final["low"], Factors)  # the updates kept the params' named tuple
    assert float(losses[0]) > best + 10
    np.testing.assert_allclose(float(loss(final, a)), best, rtol=1e-10)
    np.testing.assert_allclose(dense(final["low"]), reference, atol=1e-6)
    np.testing.assert_allclose(final["bias"], 1.0, atol=1e-6)
    assert float(jnp.max(feasibility)) < 1e-12
    check_on_manifold(final["low"])


def test_adam_matches_the_loop_written_out_and_keeps_moments_tangent():
    """Three Riemannian Adam steps against the algorithm written out with the manifold's own
    methods; the first moment is a tangent vector (Up, M, Vp) at the current point (U^T Up = 0,
    V^T Vp = 0) and the second moment one number per point."""
    a = jnp.asarray(target())
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    tree = {"low": MANIFOLD, "bias": None}
    tx = mo.riemannian_adam(lr, tree, b1=b1, b2=b2, eps=eps)
    params = start()
    state = tx.init(params)
    update = jax.jit(lambda grads, state, params: tx.update(grads, state, params))
    rgrad, inner, retract, transport = (jax.jit(getattr(MANIFOLD, name))
                                        for name in ("egrad_to_rgrad", "inner", "retract", "transport"))
    x = tuple(params["low"])
    mu, nu = MANIFOLD.zero_tangent(x), 0.0
    for t in range(1, 4):
        grads = jax.grad(loss)(params, a)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        # the reference: g Riemannian, moments, bias correction, retraction and transport
        g = rgrad(x, tuple(grads["low"]))
        mu = tuple(b1 * m + (1 - b1) * gi for m, gi in zip(mu, g))
        nu = b2 * nu + (1 - b2) * float(inner(x, g, g))
        scale = -lr / ((1 - b1**t) * (np.sqrt(nu / (1 - b2**t)) + eps))
        y = retract(x, tuple(scale * m for m in mu))
        mu, x = transport(x, y, mu), y
        for ours, ref in zip(params["low"], x):
            np.testing.assert_allclose(ours, ref, atol=1e-13)
        moment = state.mu["low"]
        assert [m.shape for m in moment] == [(M_ROWS, RANK), (RANK, RANK), (N_COLS, RANK)]
        for ours, ref in zip(moment, mu):
            np.testing.assert_allclose(ours, ref, atol=1e-13)
        u, _, vt = params["low"]
        np.testing.assert_allclose(u.T @ moment[0], 0, atol=1e-13)
        np.testing.assert_allclose(vt @ moment[2], 0, atol=1e-13)
        assert state.nu["low"].shape == ()
        np.testing.assert_allclose(state.nu["low"], nu, rtol=1e-12)


def test_weight_decay_shrinks_the_matrix():
    """With a zero gradient, decoupled decay is a step along -grad ||X||_F^2 / 2 = -(0, diag(s), 0),
    which stays on the manifold: X+ = (1 - lr wd) X exactly."""
    params = start()
    tx = mo.riemannian_sgd(0.5, {"low": MANIFOLD, "bias": None}, weight_decay=0.2)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(dense(new["low"]), 0.9 * dense(params["low"]), atol=1e-13)
    np.testing.assert_allclose(new["bias"], 0.0)


def test_nnx_optimizer_on_a_factored_parameter():
    a = jnp.asarray(target())
    reference, best = best_rank_k(target())

    class LowRank(nnx.Module):
        def __init__(self):
            self.factors = nnx.Param(MANIFOLD.random_point(jax.random.key(0), jnp.float64))

        def __call__(self):
            return dense(self.factors.get_value())

    model = LowRank()
    manifolds = mo.manifold_tree(nnx.state(model, nnx.Param), {"factors": MANIFOLD})  # Param holds a tuple
    optimizer = nnx.Optimizer(model, mo.riemannian_sgd(0.2, manifolds, momentum=0.5), wrt=nnx.Param)

    @nnx.jit
    def train(model, optimizer):
        def body(_, carry):
            model, optimizer = carry
            grads = nnx.grad(lambda m: 0.5 * jnp.sum((m() - a) ** 2))(model)
            optimizer.update(model, grads)
            return model, optimizer

        nnx.fori_loop(0, 200, body, (model, optimizer))

    train(model, optimizer)
    np.testing.assert_allclose(model(), reference, atol=1e-6)
    np.testing.assert_allclose(0.5 * float(jnp.sum((model() - a) ** 2)), best, rtol=1e-10)
    check_on_manifold(model.factors.get_value())


def test_product_points_in_a_tree():
    """A Product leaf over a tuple parameter: the smallest eigenvalue of A on the sphere and the
    sum of the two smallest of B on St(5, 2), against numpy's eigvalsh."""
    rng = np.random.default_rng(1)
    sa, sb = rng.standard_normal((4, 4)), rng.standard_normal((5, 5))
    a, b = jnp.asarray(sa + sa.T), jnp.asarray(sb + sb.T)
    manifold = Product(Sphere(4), Stiefel(5, 2))
    params = {"pair": manifold.random_point(jax.random.key(2), jnp.float64), "w": jnp.ones(2)}
    tx = mo.riemannian_sgd(0.05, {"pair": manifold, "w": None}, momentum=0.5)

    def cost(p):
        x, y = p["pair"]
        return x @ a @ x + jnp.trace(y.T @ b @ y) + jnp.sum(p["w"] ** 2)

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(cost)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    final = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=600)[0][0])(params)
    expected = np.linalg.eigvalsh(np.asarray(a))[0] + np.sum(np.linalg.eigvalsh(np.asarray(b))[:2])
    np.testing.assert_allclose(float(cost(final)), expected, atol=1e-8)
    assert float(manifold.feasibility(final["pair"])) < 1e-12


def test_project_params_keeps_the_named_tuple():
    params = start()
    low = params["low"]
    drifted = {"low": Factors(low.u + 1e-3, low.s, low.vt), "bias": params["bias"]}
    projected = mo.project_params({"low": MANIFOLD, "bias": None}, drifted)
    assert isinstance(projected["low"], Factors)
    check_on_manifold(projected["low"])


def test_errors_name_the_parameter():
    params = start()
    with pytest.raises(ValueError, match=r"at 'low': one manifold leaf covers 2 arrays, FixedRankEmbedded.* have 3"):
        mo.riemannian_sgd(0.1, {"low": MANIFOLD, "bias": None}).init({"low": params["low"][:2], "bias": params["bias"]})
    factors_in_a_dict = {"low": dict(params["low"]._asdict()), "bias": params["bias"]}  # flattened by sorted keys
    with pytest.raises(ValueError, match=r"at 'low'"):
        mo.riemannian_adam(0.1, {"low": MANIFOLD, "bias": None}).init(factors_in_a_dict)
    x = tuple(params["low"])
    for solver in (mo.solvers.trust_regions, mo.solvers.arc, mo.solvers.check_hessian):
        with pytest.raises(ValueError, match=f"{solver.__name__}: FixedRankEmbedded has no Riemannian Hessian"):
            solver(lambda x: jnp.sum(x[1]), MANIFOLD, x)
    with pytest.raises(ValueError, match="steepest_descent: FixedRankEmbedded has no Riemannian Hessian.*implicit"):
        jax.eval_shape(jax.grad(lambda c: mo.solvers.steepest_descent(  # traced, not compiled
            lambda x, c: c * jnp.sum(x[1]), MANIFOLD, x, args=c, max_iterations=1).x[1][0]), 1.0)


def test_rules_and_a_single_manifold_cover_tuple_points():
    pair_manifold = Product(Sphere(3), Stiefel(4, 2))
    params = {"low": start()["low"], "pair": pair_manifold.random_point(jax.random.key(1), jnp.float64),
              "bias": jnp.zeros(3)}
    assert mo.manifold_tree(params, {"low": MANIFOLD, "pair": pair_manifold}) == {
        "low": MANIFOLD, "pair": pair_manifold, "bias": None}
    # a tuple no rule claims as a whole is walked array by array
    assert mo.manifold_tree(params, {"low": MANIFOLD, "pair/0": Sphere(3)})["pair"] == (Sphere(3), None)
    # one manifold whose points are tuples covers the whole params: one SGD step by hand
    x = tuple(params["low"])
    grads = tuple(jnp.full_like(a, 0.3) for a in x)
    tx = mo.riemannian_sgd(0.1, MANIFOLD)
    updates, _ = tx.update(grads, tx.init(x), x)
    expected = MANIFOLD.retract(x, tuple(-0.1 * g for g in MANIFOLD.egrad_to_rgrad(x, grads)))
    for new, ref in zip(optax.apply_updates(x, updates), expected):
        np.testing.assert_allclose(new, ref, atol=1e-14)

"""Hyper-connections: constraints hold after training, n = 1 identity is a plain residual block,
implicit Sinkhorn gradients match unrolled ones and finite differences, implicit memory is flat."""
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import manifold_opt as mo
from manifold_opt.nn import mixers

N, D = 4, 8
STATIC = ("unconstrained", "birkhoff", "orthostochastic", "stiefel", "grassmann", "spectral_sphere")
RIEMANNIAN = ("birkhoff", "grassmann")  # orthostochastic and stiefel share O(n)
DYNAMIC = ("birkhoff", "spectral_sphere")


class Stack(nnx.Module):
    """One hyper-connection layer per configuration, each around its own Linear block."""

    def __init__(self, configs, dtype, rngs):
        self.hcs = nnx.List([mo.nn.HyperConnections(N, layer_index=i, dim=D, param_dtype=dtype, rngs=rngs, **c)
                             for i, c in enumerate(configs)])
        self.blocks = nnx.List([nnx.Linear(D, D, param_dtype=dtype, rngs=rngs) for _ in configs])

    def __call__(self, x):
        h = mo.nn.expand_streams(x, N)
        for hc, block in zip(self.hcs, self.blocks):
            h = hc(h, lambda z, block=block: jnp.tanh(block(z)))
        return mo.nn.reduce_streams(h)


def test_every_mixer_satisfies_its_constraint_after_100_float32_steps():
    configs = ([dict(mixer=m) for m in STATIC] + [dict(mixer=m, riemannian=True) for m in RIEMANNIAN]
               + [dict(mixer=m, dynamic=True) for m in DYNAMIC])
    model = Stack(configs, jnp.float32, nnx.Rngs(0))
    before = [np.asarray(hc.residual_matrix()) for hc in model.hcs]
    tree = mo.nn.manifold_tree_of(model)  # read off the `manifold` metadata of the mixers
    optimizer = nnx.Optimizer(model, mo.riemannian_adam(0.01, tree), wrt=nnx.Param)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (64, D), jnp.float32)
    y = jnp.roll(x, 1, axis=-1) * 2.0 + jax.random.normal(ky, (64, D), jnp.float32)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(100)]
    assert losses[-1] < 0.5 * losses[0]
    h = mo.nn.expand_streams(x, N) + 0.1 * jax.random.normal(ky, (64, N, D), jnp.float32)
    for config, hc, m0 in zip(configs, model.hcs, before):
        m = hc.residual_matrix(h) if config.get("dynamic") else hc.residual_matrix()
        assert m.dtype == jnp.float32
        if config["mixer"] == "spectral_sphere":  # judge sHC by the exact norm, not its own estimate
            residual = np.max(np.abs(np.linalg.norm(np.asarray(m, np.float64), 2, axis=(-2, -1)) - 1.0))
        else:
            residual = float(hc.spec.feasibility(m))
        # Sinkhorn on a per-token mixer stops at its sweep budget: a token whose trained logits span
        # 18 (near-decomposable) was 2.2e-4 from doubly stochastic after 1000 sweeps (1.7e-5 after
        # 10000) once sHC's exact default changed this stack's trajectory; 1e-5 held by chance.
        assert residual <= (1e-3 if config == dict(mixer="birkhoff", dynamic=True) else 1e-5), (config, residual)
        moved = np.max(np.abs(np.asarray(m) - m0))
        assert moved > 1e-3, (config, "the mixer did not train")
        if config["mixer"] == "grassmann":
            assert np.linalg.matrix_rank(np.asarray(m[..., :, :], np.float64), tol=1e-4) == hc.spec.p
        if config.get("dynamic"):
            assert m.shape == (64, N, N) and np.ptp(np.asarray(m), axis=0).max() > 0  # per token


def test_n1_identity_is_exactly_the_plain_residual_block():
    block = nnx.Linear(D, D, rngs=nnx.Rngs(0))
    hc = mo.nn.HyperConnections(1, mixer="identity", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, D))
    out = mo.nn.reduce_streams(hc(mo.nn.expand_streams(x, 1), block))
    np.testing.assert_array_equal(out, x + block(x))

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(D)
            return dense(x), mo.nn.reduce_streams(mo.nn.HyperConnectionsLinen(1, mixer="identity")(
                mo.nn.expand_streams(x, 1), dense))

    variables = Linen().init(jax.random.PRNGKey(0), x)
    branch, out = Linen().apply(variables, x)
    np.testing.assert_array_equal(out, x + branch)


@pytest.mark.parametrize("mixer, options", [("unconstrained", {}), ("birkhoff", {}), ("stiefel", {}),
                                             ("spectral_sphere", {}), ("spectral_sphere", {"power_iters": 2})])
def test_dynamic_equals_static_at_init_and_linen_equals_nnx(mixer, options):
    block = nnx.Linear(D, D, rngs=nnx.Rngs(0))
    h = jax.random.normal(jax.random.PRNGKey(0), (3, N, D))
    static = mo.nn.HyperConnections(N, mixer=mixer, layer_index=2, rngs=nnx.Rngs(5), **options)
    dynamic = mo.nn.HyperConnections(N, mixer=mixer, layer_index=2, dynamic=True, dim=D, rngs=nnx.Rngs(5), **options)
    np.testing.assert_allclose(dynamic(h, block), static(h, block), rtol=1e-12, atol=1e-12)
    linen = mo.nn.HyperConnectionsLinen(N, mixer=mixer, layer_index=2, param_dtype=jnp.float64, **options)
    variables = linen.init(jax.random.PRNGKey(1), h, block)
    params = {"pre": static.pre[...], "post": static.post[...], "residual": static.residual[...]}
    warm = hasattr(static, "power_v")
    assert warm == ("power_iters" in options) == ("power_iteration" in variables)
    if warm:  # the NNX call advanced its warm start: restart both from one v
        variables = {"power_iteration": {"v": static.power_v[...]}}
        static.power_v[...] = variables["power_iteration"]["v"]
    expected = static(h, block)
    out = linen.apply({"params": params, **{k: v for k, v in variables.items() if k != "params"}}, h, block)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_shc_holds_its_spectral_norm_to_1e_3_while_adam_moves_it_fast():
    """Issue 18: with 2 warm-started power sweeps (the former default) the mixers four sHC
    layers used in 50 Adam steps at lr 0.1 reached |sigma_max - 1| = 3e-3 to 8e-3 (float32,
    seeds 0-1); the default (exact SVD) holds 1e-6. Each step's mixer is checked by NumPy."""
    layers = [dict(mixer="spectral_sphere")] * 4
    model = Stack(layers, jnp.float32, nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)
    kx, ky = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (64, D), jnp.float32)
    y = jnp.roll(x, 1, axis=-1) * 2.0 + jax.random.normal(ky, (64, D), jnp.float32)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss, [hc.residual_matrix() for hc in model.hcs]  # the mixers after the update

    worst, moved = 0.0, 0.0
    for _ in range(50):
        _, mixers_after = step(model, optimizer)
        for m in mixers_after:
            worst = max(worst, np.max(np.abs(np.linalg.norm(np.asarray(m, np.float64), 2) - 1.0)))
            moved = max(moved, np.max(np.abs(np.asarray(m) - np.eye(N))))
    assert moved > 0.1  # the mixers moved far from their identity init
    assert worst <= 1e-3, worst


def test_static_mixers_start_near_the_identity_and_hc_follows_its_init():
    hc = mo.nn.HyperConnections(N, mixer="unconstrained", layer_index=6, rngs=nnx.Rngs(0))
    pre, post = hc.width_weights()
    np.testing.assert_array_equal(pre, np.eye(N)[6 % N])
    np.testing.assert_array_equal(post, np.ones(N))
    for mixer in ("stiefel", "grassmann", "spectral_sphere", "unconstrained"):
        m = mo.nn.HyperConnections(N, mixer=mixer, rngs=nnx.Rngs(0)).residual_matrix()
        expected = np.diag([1.0] * (N - 1) + [0.0 if mixer == "grassmann" else 1.0])
        np.testing.assert_allclose(m, expected, atol=1e-6)


def sinkhorn_loss(implicit_diff, iters, tokens=4):
    """Loss of a dynamic mHC layer (per-token Sinkhorn) as a function of its params."""
    hc = mo.nn.HyperConnections(N, mixer="birkhoff", dynamic=True, dim=D, sinkhorn_iters=iters,
                                implicit_diff=implicit_diff, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    block = nnx.Linear(D, D, param_dtype=jnp.float64, rngs=nnx.Rngs(1))
    key = jax.random.PRNGKey(2)
    h = jax.random.normal(key, (tokens, N, D), jnp.float64)
    target = jax.random.normal(jax.random.fold_in(key, 1), (tokens, N, D), jnp.float64)
    graphdef, params, rest = nnx.split(hc, nnx.Param, ...)
    # move off the symmetric init: random raw residual and a visible dynamic term
    params["residual"][...] = params["residual"][...] + jax.random.normal(jax.random.fold_in(key, 2), (N, N))
    params["phi_res"][...] = 0.1 * jax.random.normal(jax.random.fold_in(key, 3), (N * D, N * N))
    params["alpha"][...] = jnp.ones(3)

    def loss(params):
        return jnp.sum((nnx.merge(graphdef, params, rest)(h, block) - target) ** 2 * jnp.arange(1, D + 1))

    return loss, params


def test_implicit_sinkhorn_gradient_matches_unrolled_and_finite_differences():
    loss_i, params = sinkhorn_loss(True, 1000)  # converged: the implicit VJP is exact there
    loss_u, _ = sinkhorn_loss(False, 1000)
    g_i = jax.jit(jax.grad(loss_i))(params)
    g_u = jax.jit(jax.grad(loss_u))(params)
    for a, b in zip(jax.tree.leaves(g_i), jax.tree.leaves(g_u)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.max(np.abs(b)))
    flat, unravel = ravel_pytree(params)
    g_flat = ravel_pytree(g_i)[0]
    f = jax.jit(lambda v: loss_i(unravel(v)))
    for k in range(3):  # central differences along random directions, float64
        u = jax.random.normal(jax.random.PRNGKey(10 + k), flat.shape, jnp.float64)
        eps = 1e-6
        fd = (f(flat + eps * u) - f(flat - eps * u)) / (2 * eps)
        np.testing.assert_allclose(fd, g_flat @ u, rtol=1e-6)


def test_implicit_sinkhorn_memory_is_flat_and_unrolled_grows():
    tokens = 256
    z = jax.random.normal(jax.random.PRNGKey(0), (tokens, N, N), jnp.float64)
    weights = jax.random.normal(jax.random.PRNGKey(1), (N, N), jnp.float64)

    def temp_bytes(implicit_diff, iters):  # the per-token mixers of a dynamic mHC layer
        spec = mixers.MixerSpec("birkhoff", N, sinkhorn_iters=iters, implicit_diff=implicit_diff)
        loss = lambda z: jnp.sum(spec.residual(z)[0] * weights)  # noqa: E731
        return jax.jit(jax.grad(loss)).lower(z).compile().memory_analysis().temp_size_in_bytes

    implicit = [temp_bytes(True, t) for t in (10, 50, 200)]
    unrolled = [temp_bytes(False, t) for t in (10, 50, 200)]
    assert implicit[0] == implicit[1] == implicit[2]
    assert unrolled[0] < unrolled[1] < unrolled[2]
    per_sweep = N * N * tokens * 8  # one float64 n x n matrix per token is stored per sweep
    assert unrolled[2] - unrolled[1] >= 150 * per_sweep
    assert unrolled[2] > 10 * implicit[2]


def test_composite_gain_matches_the_numpy_product():
    rng = np.random.default_rng(0)
    ms = rng.normal(size=(5, N, N))
    row_sums, spectral = mo.nn.composite_gain(jnp.asarray(ms))
    prod = np.eye(N)
    for l in range(5):
        prod = ms[l] @ prod
        assert row_sums[l] == pytest.approx(np.abs(prod).sum(1).max(), rel=1e-10)
        assert spectral[l] == pytest.approx(np.linalg.svd(prod, compute_uv=False)[0], rel=1e-10)
    q = mo.nn.HyperConnections(N, mixer="stiefel", rngs=nnx.Rngs(0)).spec.residual(jnp.asarray(ms))[0]
    np.testing.assert_allclose(mo.nn.composite_gain(q)[1], 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mixer="sinkhorn"), "mixer must be one of"),
        (dict(mixer="birkhoff", dynamic=True), "needs dim"),
        (dict(mixer="identity", dynamic=True, dim=D), "no dynamic variant"),
        (dict(mixer="stiefel", rank=2), "rank applies to the 'grassmann'"),
        (dict(mixer="grassmann", rank=5), "rank must be an int"),
        (dict(mixer="spectral_sphere", riemannian=True), "riemannian=True needs a mixer on a manifold"),
        (dict(mixer="birkhoff", sinkhorn_iters=0), "sinkhorn_iters must be a positive int"),
    ],
)
def test_bad_options_name_the_module_and_argument(kwargs, match):
    with pytest.raises(ValueError, match=f"HyperConnections: .*{match}"):
        mo.nn.HyperConnections(N, rngs=nnx.Rngs(0), **kwargs)


def test_bad_shapes_raise():
    hc = mo.nn.HyperConnections(N, mixer="stiefel", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"HyperConnections: h must be streams \(\.\.\., n_streams=4"):
        hc(jnp.ones((2, 3, D)), lambda x: x)
    with pytest.raises(ValueError, match="expand_streams: n must be a positive int"):
        mo.nn.expand_streams(jnp.ones(D), 0)
    with pytest.raises(ValueError, match="reduce_streams"):
        mo.nn.reduce_streams(jnp.ones(D))

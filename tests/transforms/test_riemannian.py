"""Riemannian optax transforms against float64 NumPy references, in optax chains, Flax nnx,
lax.scan and vmap; feasibility after 10^4 float32 steps; bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.manifolds import Grassmann, OrthogonalGroup, Sphere, Stiefel


# ----- float64 NumPy references (Euclidean metric, projection transport) ----------------------
def np_qr(a):
    q, r = np.linalg.qr(a)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def np_stiefel_proj(x, u):
    s = x.T @ u
    return u - x @ (s + s.T) / 2


def np_sphere_proj(x, u):
    return u - np.sum(x * u, -1, keepdims=True) * x


def np_stiefel_retract(x, u):
    return np_qr(x + u)


def np_sphere_retract(x, u):
    y = x + u
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def random_stiefel(rng, n, p):
    return np_qr(rng.standard_normal((n, p)))


@pytest.mark.parametrize("nesterov", [False, True])
def test_riemannian_sgd_matches_numpy(nesterov):
    rng = np.random.default_rng(0)
    manifold, lr, mu = Stiefel(7, 3), 0.1, 0.8
    x = random_stiefel(rng, 7, 3)
    grads = [rng.standard_normal((7, 3)) for _ in range(3)]
    tx = mo.riemannian_sgd(lr, manifold, momentum=mu, nesterov=nesterov)
    params, state = jnp.asarray(x), tx.init(jnp.asarray(x))
    m = np.zeros_like(x)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        rg = np_stiefel_proj(x, g)
        m = mu * m + rg
        d = rg + mu * m if nesterov else m
        x = np_qr(x - lr * d)
        m = np_stiefel_proj(x, m)
        np.testing.assert_allclose(np.asarray(params), x, atol=1e-12)
        np.testing.assert_allclose(np.asarray(state.momentum), m, atol=1e-12)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_riemannian_adam_matches_numpy_and_optax_adam(amsgrad):
    """Stiefel leaf and a batch of sphere points against NumPy; the unconstrained leaf against
    optax.adam (Riemannian Adam on R reduces to Adam)."""
    rng = np.random.default_rng(1)
    lr, b1, b2, eps = 0.05, 0.9, 0.99, 1e-8
    manifolds = {"w": Stiefel(6, 2), "s": Sphere(4), "b": None}
    x = {"w": random_stiefel(rng, 6, 2), "s": np_sphere_retract(rng.standard_normal((3, 4)), 0.0),
         "b": rng.standard_normal(5)}
    tx = mo.riemannian_adam(lr, manifolds, b1=b1, b2=b2, eps=eps, amsgrad=amsgrad)
    adam = optax.amsgrad(lr, b1=b1, b2=b2, eps=eps) if amsgrad else optax.adam(lr, b1=b1, b2=b2, eps=eps)
    params = jax.tree.map(jnp.asarray, x)
    state, adam_state, b = tx.init(params), adam.init(params["b"]), params["b"]
    m = {"w": 0.0, "s": 0.0}
    v = {"w": 0.0, "s": np.zeros(3)}
    v_max = {"w": 0.0, "s": np.zeros(3)}
    for t in range(1, 4):
        g = {k: rng.standard_normal(val.shape) for k, val in x.items()}
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
        b_updates, adam_state = adam.update(jnp.asarray(g["b"]), adam_state, b)
        b = optax.apply_updates(b, b_updates)
        for key, proj, retract, sq in (
            ("w", np_stiefel_proj, np_stiefel_retract, lambda r: np.sum(r * r)),
            ("s", np_sphere_proj, np_sphere_retract, lambda r: np.sum(r * r, -1)),
        ):
            rg = proj(x[key], g[key])
            m[key] = b1 * m[key] + (1 - b1) * rg
            v[key] = b2 * v[key] + (1 - b2) * sq(rg)
            v_hat = v[key] / (1 - b2**t)
            v_max[key] = np.maximum(v_max[key], v_hat) if amsgrad else v_hat
            denom = np.sqrt(v_max[key]) + eps
            step = -lr / (1 - b1**t) * m[key] / (denom[..., None] if key == "s" else denom)
            x[key] = retract(x[key], step)
            m[key] = proj(x[key], m[key])
            np.testing.assert_allclose(np.asarray(params[key]), x[key], atol=1e-12)
        np.testing.assert_allclose(np.asarray(params["b"]), np.asarray(b), atol=1e-12)


def test_building_blocks_compose_to_riemannian_gradient_descent():
    rng = np.random.default_rng(2)
    manifold = Grassmann(8, 3)
    x = jnp.asarray(random_stiefel(rng, 8, 3))
    g = jnp.asarray(rng.standard_normal((8, 3)))
    chain = optax.chain(mo.project_to_tangent(manifold), optax.scale(-0.3), mo.retract(manifold))
    updates, _ = chain.update(g, chain.init(x), x)
    expected = np_qr(np.asarray(x) - 0.3 * (np.asarray(g) - np.asarray(x) @ (np.asarray(x).T @ np.asarray(g))))
    np.testing.assert_allclose(np.asarray(optax.apply_updates(x, updates)), expected, atol=1e-12)
    sgd = mo.riemannian_sgd(0.3, manifold)
    sgd_updates, _ = sgd.update(g, sgd.init(x), x)
    np.testing.assert_allclose(np.asarray(sgd_updates), np.asarray(updates), atol=1e-12)


def brockett_problem(n=10, p=3, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    a = (b + b.T) / 2
    w = np.arange(p, 0, -1.0)
    a_j, w_j = jnp.asarray(a), jnp.asarray(w)
    return (lambda x: jnp.sum(x * (a_j @ x) * w_j)), np.sum(w * np.linalg.eigvalsh(a)[:p])


def train(tx, cost, x0, steps):
    """`steps` optimizer steps inside one lax.scan; returns the final point."""

    def step(carry, _):
        x, state = carry
        updates, state = tx.update(jax.grad(cost)(x), state, x)
        return (optax.apply_updates(x, updates), state), None

    return jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)[0][0]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_brockett_in_scan_reaches_optimum(name):
    cost, optimum = brockett_problem()
    manifold = Stiefel(10, 3)
    tx = {
        "sgd": mo.riemannian_sgd(0.02, manifold, momentum=0.9, nesterov=True),
        "adam": mo.riemannian_adam(optax.cosine_decay_schedule(0.1, 1000), manifold),
    }[name]
    x = jax.jit(lambda x0: train(tx, cost, x0, 1000))(manifold.random_point(jax.random.key(0), jnp.float64))
    assert (float(cost(x)) - optimum) / abs(optimum) < 1e-4
    assert float(manifold.feasibility(x)) < 1e-12


def test_vmap_over_a_batch_of_problems():
    manifold = Stiefel(10, 3)
    tx = mo.riemannian_adam(optax.cosine_decay_schedule(0.1, 1000), manifold)
    rng = np.random.default_rng(4)
    mats = rng.standard_normal((3, 10, 10))
    mats = (mats + np.swapaxes(mats, 1, 2)) / 2
    w = np.arange(3, 0, -1.0)

    def solve(a, key):
        cost = lambda x: jnp.sum(x * (a @ x) * w)  # noqa: E731
        return train(tx, cost, manifold.random_point(key, jnp.float64), 1000)

    xs = jax.jit(jax.vmap(solve))(jnp.asarray(mats), jax.random.split(jax.random.key(1), 3))
    for a, x in zip(mats, np.asarray(xs)):
        optimum = np.sum(w * np.linalg.eigvalsh(a)[:3])
        assert (np.sum(x * (a @ x) * w) - optimum) / abs(optimum) < 1e-4


def test_float32_feasibility_after_ten_thousand_adam_steps():
    manifolds = {
        "stiefel_qr": Stiefel(8, 3),
        "stiefel_polar": Stiefel(8, 3, retraction="polar"),
        "grassmann": Grassmann(7, 2),
        "orthogonal": OrthogonalGroup(4),
        "spheres": Sphere(5),
        "free": None,
    }
    keys = jax.random.split(jax.random.key(0), 2 * len(manifolds))
    params, targets = {}, {}
    for i, (name, m) in enumerate(manifolds.items()):
        shape = (3, 5) if name == "spheres" else (4,) if m is None else m.shape
        params[name] = jax.random.normal(keys[i], shape, jnp.float32) if m is None else m.random_point(
            keys[i], jnp.float32, batch_shape=shape[:-len(m.shape)])
        targets[name] = jax.random.normal(keys[len(manifolds) + i], shape, jnp.float32)

    def cost(p):  # random pulls toward off-manifold targets, with oscillating terms: the iterates keep moving
        return sum(jnp.sum((p[k] - targets[k]) ** 2 + jnp.sin(5 * p[k] * targets[k])) for k in p)

    tx = mo.riemannian_adam(1e-2, manifolds)
    final = jax.jit(lambda p: train(tx, cost, p, 10_000))(params)
    for name, m in manifolds.items():
        assert final[name].dtype == jnp.float32
        if m is not None:
            assert float(jnp.max(m.feasibility(final[name]))) < 1e-5, name


def test_chain_with_clipping_and_schedule_and_partition():
    rng = np.random.default_rng(5)
    params = {"kernel": jnp.asarray(random_stiefel(rng, 6, 3)), "bias": jnp.asarray(rng.standard_normal(3))}
    grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape) * 10), params)
    manifolds = mo.manifold_tree(params, {"kernel": Stiefel(6, 3)})
    schedule = optax.linear_schedule(0.1, 0.01, 10)
    # clipping before the Riemannian transform == the transform on clipped gradients
    chained = optax.chain(optax.clip_by_global_norm(1.0), mo.riemannian_adam(schedule, manifolds))
    updates, _ = chained.update(grads, chained.init(params), params)
    clipped, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    alone = mo.riemannian_adam(schedule, manifolds)
    expected, _ = alone.update(clipped, alone.init(params), params)
    for key in params:
        np.testing.assert_allclose(np.asarray(updates[key]), np.asarray(expected[key]), atol=1e-12)
    # partition: the full manifold tree inside; masked leaves are skipped
    labels = {"kernel": "riemannian", "bias": "adam"}
    tx = optax.partition({"riemannian": mo.riemannian_sgd(0.1, manifolds, momentum=0.5),
                          "adam": optax.adam(0.01)}, labels)
    updates, _ = tx.update(grads, tx.init(params), params)
    sgd = mo.riemannian_sgd(0.1, Stiefel(6, 3), momentum=0.5)
    k_updates, _ = sgd.update(grads["kernel"], sgd.init(params["kernel"]), params["kernel"])
    b_updates, _ = optax.adam(0.01).update(grads["bias"], optax.adam(0.01).init(params["bias"]))
    np.testing.assert_allclose(np.asarray(updates["kernel"]), np.asarray(k_updates), atol=1e-12)
    np.testing.assert_allclose(np.asarray(updates["bias"]), np.asarray(b_updates), atol=1e-12)


def test_flax_nnx_optimizer_keeps_a_stiefel_kernel_feasible():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(6, 3, rngs=rngs, param_dtype=jnp.float32)

        def __call__(self, x):
            return self.dense(x)

    model = Model(nnx.Rngs(0))
    kernel = Stiefel(6, 3)
    model.dense.kernel[...] = kernel.random_point(jax.random.key(1), jnp.float32)
    manifolds = mo.manifold_tree(nnx.as_pure(nnx.state(model, nnx.Param)), {"*/kernel": kernel})
    optimizer = nnx.Optimizer(model, mo.riemannian_adam(1e-2, manifolds), wrt=nnx.Param)
    x = jax.random.normal(jax.random.key(2), (32, 6))
    y = jax.random.normal(jax.random.key(3), (32, 3))
    loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)  # noqa: E731

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    first = float(step(model, optimizer))
    for _ in range(20):
        last = float(step(model, optimizer))
    assert last < first
    assert float(kernel.feasibility(model.dense.kernel[...])) < 1e-5


def test_bad_input_raises():
    x = {"a": jnp.zeros((5, 2)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match="'b'"):
        mo.riemannian_adam(0.1, {"a": Stiefel(5, 2)}).init(x)
    with pytest.raises(ValueError, match="'a'"):
        mo.riemannian_sgd(0.1, {"a": Stiefel(4, 2), "b": None}).init(x)
    tx = mo.riemannian_sgd(0.1, {"a": Stiefel(5, 2), "b": None})
    with pytest.raises(ValueError, match="params"):
        tx.update(x, tx.init(x))
    with pytest.raises(ValueError, match="params"):
        mo.retract(Stiefel(5, 2)).update(x["a"], optax.EmptyState())
    with pytest.raises(ValueError, match="momentum"):
        mo.riemannian_sgd(0.1, None, momentum=1.5)
    with pytest.raises(ValueError, match="b2"):
        mo.riemannian_adam(0.1, None, b2=1.0)

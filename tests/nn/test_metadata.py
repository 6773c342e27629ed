"""Manifold initializers and metadata in NNX and linen, read back with manifold_tree_of and
trained with riemannian_partition (nnx.Optimizer; boxed and unboxed linen params)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.manifolds import Sphere, Stiefel
from tests.nn.helpers import mse_step, regression

KERNEL, DIRECTION = Stiefel(6, 4), Sphere(4)


class Model(nnx.Module):
    """A tagged Stiefel kernel, a raw Param tagged like a hyper-connection mixer, a free head."""

    def __init__(self, rngs):
        self.dense = nnx.Linear(6, 4, kernel_init=mo.nn.with_manifold(KERNEL), rngs=rngs)
        self.direction = nnx.Param(DIRECTION.random_point(rngs.params()), manifold=DIRECTION)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.dense(x)) * self.direction[...])


def test_manifold_init_draws_points_of_the_right_shape_and_dtype():
    points = mo.nn.manifold_init(KERNEL)(jax.random.key(0), (3, 6, 4), jnp.float64)
    assert points.shape == (3, 6, 4) and points.dtype == jnp.float64
    gram = np.einsum("bij,bik->bjk", points, points)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(4), gram.shape), atol=1e-12)
    assert np.abs(np.asarray(points[0] - points[1])).max() > 0.1  # independent draws
    with pytest.raises(ValueError, match="manifold_init.*\\(4, 6\\)"):
        mo.nn.manifold_init(KERNEL)(jax.random.key(0), (4, 6))
    with pytest.raises(TypeError, match="with_manifold: manifold"):
        mo.nn.with_manifold("stiefel")


def test_nnx_metadata_gives_the_manifold_tree_and_rules_read_the_state_directly():
    model = Model(nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    tree = mo.nn.manifold_tree_of(model)
    assert tree == mo.manifold_tree(state, {"dense/kernel": KERNEL, "direction": DIRECTION})
    assert nnx.to_pure_dict(tree) == {
        "dense": {"bias": None, "kernel": KERNEL}, "direction": DIRECTION, "head": {"bias": None, "kernel": None}
    }
    assert float(KERNEL.feasibility(model.dense.kernel[...])) < 1e-6
    with pytest.raises(ValueError, match="container types differ.*nnx.to_pure_dict"):  # a dict tree for a State
        mo.riemannian_adam(0.1, nnx.to_pure_dict(tree)).init(state)
    model.head.kernel.set_metadata("manifold", "sphere")
    with pytest.raises(TypeError, match="manifold_tree_of.*'head/kernel'"):
        mo.nn.manifold_tree_of(model)
    model.head.kernel.set_metadata("manifold", Stiefel(5, 2))
    with pytest.raises(ValueError, match="manifold_tree_of.*'head/kernel'"):
        mo.nn.manifold_tree_of(model)


def test_riemannian_partition_under_nnx_optimizer_matches_plain_dicts_and_stays_feasible():
    model = Model(nnx.Rngs(0))
    x, y = regression(6, 2)
    model.dense.kernel[...] = 1.5 * model.dense.kernel[...]  # off the manifold: snap it back
    nnx.update(model, mo.project_params(mo.nn.manifold_tree_of(model), nnx.state(model, nnx.Param)))
    graphdef, start = nnx.split(model)
    start = nnx.to_pure_dict(start)  # arrays: a snapshot the optimizer cannot mutate
    tree = mo.nn.manifold_tree_of(model)
    make_tx = lambda t: mo.riemannian_partition(mo.riemannian_adam(0.05, t), optax.adamw(0.05), t)  # noqa: E731
    optimizer, step = nnx.Optimizer(model, make_tx(tree), wrt=nnx.Param), mse_step(x, y)
    losses = [float(step(model, optimizer)) for _ in range(6)]
    # the reference: the same transforms on nnx.to_pure_dict params, through plain optax

    tx = make_tx(nnx.to_pure_dict(tree))

    def reference_step(_, carry):
        params, state = carry
        grads = jax.grad(lambda p: jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params, _ = jax.jit(lambda p: jax.lax.fori_loop(0, 6, reference_step, (p, tx.init(p))))(start)
    assert losses[-1] < losses[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 nnx.to_pure_dict(nnx.state(model, nnx.Param)), params)
    assert float(KERNEL.feasibility(model.dense.kernel[...])) < 1e-5
    assert float(DIRECTION.feasibility(model.direction[...])) < 1e-5
    assert model.dense.kernel.get_metadata()["manifold"] == KERNEL  # metadata survives updates


class LinenModel(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(4, kernel_init=mo.nn.linen.with_manifold(KERNEL))(x))
        return nn.Dense(2)(h)


def test_linen_boxed_metadata_and_riemannian_partition_on_boxed_and_unboxed_params():
    x, y = regression(6, 2)
    variables = LinenModel().init(jax.random.key(0), x)
    tree = mo.nn.manifold_tree_of(variables)
    assert tree == mo.manifold_tree(variables, {"params/Dense_0/kernel": KERNEL})
    assert tree["params"]["Dense_1"] == {"bias": None, "kernel": None}
    tx = mo.riemannian_partition(mo.riemannian_adam(0.05, tree), optax.adam(0.05), tree)
    loss_fn = lambda v: jnp.mean((LinenModel().apply(v, x) - y) ** 2)  # noqa: E731

    def step(_, carry):
        variables, state = carry
        updates, state = tx.update(jax.grad(loss_fn)(variables), state, variables)
        return optax.apply_updates(variables, updates), state

    train = jax.jit(lambda v: jax.lax.fori_loop(0, 5, step, (v, tx.init(v)))[0])

    boxed, unboxed = train(variables), train(nn.meta.unbox(variables))
    assert isinstance(boxed["params"]["Dense_0"]["kernel"], mo.nn.linen.ManifoldBoxed)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), nn.meta.unbox(boxed), unboxed)
    assert float(KERNEL.feasibility(unboxed["params"]["Dense_0"]["kernel"])) < 1e-5
    assert float(loss_fn(unboxed)) < float(loss_fn(variables))


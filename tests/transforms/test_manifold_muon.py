"""Manifold Muon (19.4): the dual-ascent direction against an exact solve of the same subproblem
(KKT by a root finder, certified by a zero duality gap; O(n) by its closed form), the optimizer
against the float64 NumPy reference of its rule, and training on the manifold under nnx.Optimizer."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.transforms.manifold_muon import manifold_muon_direction
from tests.transforms import reference as ref

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("shape", [(8, 4), (12, 5), (5, 11)])
def test_direction_solves_the_tangent_spectral_subproblem(shape):
    w = ref.polar(RNG.standard_normal(shape))
    g = RNG.standard_normal(shape)
    tall = shape[0] >= shape[1]
    exact, gap, residual = ref.tangent_steepest_direction(*((w, g) if tall else (w.T, g.T)))
    exact = exact if tall else exact.T
    assert gap < 1e-10 and residual < 1e-10  # the reference is optimal
    ours = np.asarray(jax.jit(lambda w, g: manifold_muon_direction(w, g, msign=mo.linalg.polar))(w, g))
    np.testing.assert_allclose(ours, exact, atol=1e-3)
    np.testing.assert_allclose(ours, ref.manifold_muon_direction(w, g), atol=1e-10)
    if shape == (8, 4):  # Newton-Schulz msign (the default) lands on the same direction
        ns = np.asarray(manifold_muon_direction(jnp.asarray(w), jnp.asarray(g),
                                                msign=lambda x: mo.linalg.newton_schulz(x, 10, "polar_express")))
        np.testing.assert_allclose(ns, exact, atol=1e-3)


def test_orthogonal_group_direction_is_the_closed_form():
    w = ref.polar(RNG.standard_normal((6, 6)))
    g = RNG.standard_normal((6, 6))
    skew = 0.5 * (w.T @ g - g.T @ w)
    np.testing.assert_allclose(manifold_muon_direction(w, g, msign=mo.linalg.polar), w @ ref.polar(skew), atol=1e-10)


def test_optimizer_matches_reference_and_stays_on_the_manifold():
    params = {"w": jnp.asarray(ref.polar(RNG.standard_normal((8, 4)))),
              "v": jnp.asarray(ref.polar(RNG.standard_normal((3, 7)))), "b": jnp.asarray(RNG.standard_normal(4))}
    tx = optax.inject_hyperparams(mo.manifold_muon)(learning_rate=0.1, msign="svd", adam_learning_rate=0.01)
    state, update, rstate = tx.init(params), jax.jit(tx.update), {"w": {}, "v": {}}
    adam = optax.adamw(0.01, b1=0.9, b2=0.95, weight_decay=0.0)
    astate = adam.init(params["b"])
    for _ in range(2):
        grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
        upd, state = update(grads, state, params)
        for key in ("w", "v"):
            rstate[key], expected = ref.manifold_muon(rstate[key], np.asarray(grads[key]), np.asarray(params[key]), 0.1)
            np.testing.assert_allclose(upd[key], expected, atol=1e-9, err_msg=key)
        expected_b, astate = adam.update(grads["b"], astate, params["b"])
        np.testing.assert_allclose(upd["b"], expected_b, rtol=1e-9)
        params = optax.apply_updates(params, upd)
    np.testing.assert_allclose(params["w"].T @ params["w"], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(params["v"] @ params["v"].T, np.eye(3), atol=1e-12)


class Net(nnx.Module):
    def __init__(self, rngs):
        self.rotate = nnx.Linear(6, 6, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.down(jnp.tanh(self.rotate(x)))


def test_manifold_tree_under_nnx_optimizer():
    """A manifold tree puts `rotate` on O(6) and `down` on St(6, 3); the loss falls and both stay
    on their manifolds; the bias goes to AdamW."""
    model = Net(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    manifolds = mo.manifold_tree(params, {"rotate/kernel": mo.manifolds.OrthogonalGroup(6),
                                          "down/kernel": mo.manifolds.Stiefel(6, 3), "*": None})
    nnx.update(model, mo.project_params(manifolds, params))
    tx = mo.manifold_muon(0.05, manifolds, dual_steps=20, msign="svd", adam_learning_rate=0.02)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.asarray(RNG.standard_normal((64, 6)))
    y = jnp.asarray(RNG.standard_normal((64, 3))) * 0.3 + x[:, :3]

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    first = float(step(model, optimizer))
    for _ in range(20):
        last = float(step(model, optimizer))
    assert last < 0.7 * first, (first, last)
    for kernel, n in ((model.rotate.kernel[...], 6), (model.down.kernel[...], 3)):  # float32 params
        np.testing.assert_allclose(kernel.T @ kernel, np.eye(n), atol=1e-5)


def test_bad_arguments():
    params = {"w": jnp.ones((4, 3))}
    with pytest.raises(ValueError, match="mo.manifold_muon: manifolds must hold Stiefel"):
        mo.manifold_muon(0.1, {"w": mo.manifolds.Sphere(4)}).init(params)
    with pytest.raises(ValueError, match="mo.manifold_muon: hyperball"):
        mo.manifold_muon(0.1, hyperball=True)
    with pytest.raises(ValueError, match="msign"):
        mo.manifold_muon(0.1, msign="qr")
    with pytest.raises(ValueError, match="dual_learning_rate"):
        mo.manifold_muon(0.1, dual_learning_rate=-1.0)

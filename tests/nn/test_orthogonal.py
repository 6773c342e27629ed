"""OrthogonalDense (NNX and linen) against float64 NumPy/SciPy references: outputs equal x W + b
with W orthogonal, orthogonality kept by training, gradients by finite differences."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from flax import nnx
from jax.test_util import check_grads

import manifold_opt as mo
from manifold_opt.manifolds import Stiefel
from tests.nn.helpers import mse_step, regression

N, P = 6, 4


def rotation_reference(a, parameterization):
    s = a - a.T
    eye = np.eye(len(a))
    return np.linalg.solve(eye - s, eye + s) if parameterization == "cayley" else scipy.linalg.expm(s)


@pytest.mark.parametrize("parameterization", ["cayley", "exp"])
def test_parameterized_kernel_equals_the_reference_and_has_exact_gradients(parameterization):
    layer = mo.nn.OrthogonalDense(N, P, parameterization=parameterization, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    a, b = 0.3 * rng.standard_normal((N, N)), rng.standard_normal(P)
    layer.generator[...], layer.bias[...] = jnp.asarray(a), jnp.asarray(b)
    x, y = regression(N, P, jnp.float64)
    w = rotation_reference(a, parameterization) @ np.asarray(layer.base[...])
    np.testing.assert_allclose(w.T @ w, np.eye(P), atol=1e-12)
    np.testing.assert_allclose(layer.orthogonal_kernel(), w, atol=1e-12)
    np.testing.assert_allclose(layer(x), np.asarray(x) @ w + b, atol=1e-10)
    assert nnx.to_pure_dict(mo.nn.manifold_tree_of(layer)) == {"bias": None, "generator": None}  # nothing to constrain

    graphdef, state = nnx.split(layer)
    params = nnx.to_pure_dict(state)
    loss = jax.jit(lambda g: jnp.mean((nnx.merge(graphdef, {**params, "generator": g})(x) - y) ** 2))
    check_grads(loss, (jnp.asarray(a),), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-7)


def test_training_keeps_the_kernel_orthogonal_in_float32():
    """Riemannian Adam on the tagged kernel; plain Adam on the Cayley / expm generator."""
    x, y = regression(N, P, jnp.float32)
    for parameterization in ("riemannian", "cayley", "exp"):
        layer = mo.nn.OrthogonalDense(N, P, parameterization=parameterization, rngs=nnx.Rngs(0))
        tree = mo.nn.manifold_tree_of(layer)
        if parameterization == "riemannian":
            assert tree["kernel"] == Stiefel(N, P)
            tx = mo.riemannian_partition(mo.riemannian_adam(0.05, tree), optax.adam(0.05), tree)
        else:
            tx = optax.adam(0.05)  # any optimizer: W = Q(A - A^T) W0 is orthogonal for every A
        optimizer, step = nnx.Optimizer(layer, tx, wrt=nnx.Param), mse_step(x, y)
        losses = [float(step(layer, optimizer)) for _ in range(12)]
        w = np.asarray(layer.orthogonal_kernel(), np.float64)
        assert np.abs(w.T @ w - np.eye(P)).max() < 1e-5, parameterization
        assert losses[-1] < 0.9 * losses[0], parameterization
        np.testing.assert_allclose(layer(x), np.asarray(x) @ w + np.asarray(layer.bias[...]), atol=1e-5)


def test_linen_layer_matches_the_reference_and_boxes_its_riemannian_kernel():
    x, _ = regression(N, P, jnp.float64)
    layer = mo.nn.linen.OrthogonalDense(P, parameterization="cayley", param_dtype=jnp.float64)
    variables = layer.init(jax.random.key(0), x)
    a = 0.3 * np.random.default_rng(1).standard_normal((N, N))
    variables["params"]["generator"] = jnp.asarray(a)
    w = rotation_reference(a, "cayley") @ np.asarray(variables["orthogonal_base"]["base"])
    np.testing.assert_allclose(layer.apply(variables, x), np.asarray(x) @ w, atol=1e-10)

    riemannian = mo.nn.linen.OrthogonalDense(N)  # square: the kernel lives on O(6)
    variables = riemannian.init(jax.random.key(0), x)
    assert mo.nn.manifold_tree_of(variables)["params"]["kernel"] == mo.manifolds.OrthogonalGroup(N)
    w = np.asarray(nn.meta.unbox(variables)["params"]["kernel"])
    np.testing.assert_allclose(w.T @ w, np.eye(N), atol=1e-6)
    np.testing.assert_allclose(riemannian.apply(variables, x), np.asarray(x) @ w, atol=1e-6)


def test_bad_shapes_and_options_raise():
    with pytest.raises(ValueError, match="OrthogonalDense: orthonormal columns need out_features <= in_features"):
        mo.nn.OrthogonalDense(3, 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="OrthogonalDense: parameterization"):
        mo.nn.OrthogonalDense(5, 3, parameterization="householder", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="linen.OrthogonalDense: orthonormal columns"):
        mo.nn.linen.OrthogonalDense(8).init(jax.random.key(0), jnp.ones((1, 4)))

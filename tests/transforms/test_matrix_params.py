"""Parameter selection: default 2-D rule, dimension numbers with batch axes, label functions,
conv kernels by reshaping, and the AdamW partition."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from manifold_opt.transforms import DimensionNumbers, matrix_labels, resolve_dimension_numbers
from manifold_opt.transforms.matrix_params import from_matrices, to_matrices
from tests.transforms import reference as ref

RNG = np.random.default_rng(3)


def test_default_labels_and_label_function():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4), "conv": jnp.ones((3, 3, 2, 5)), "emb": jnp.ones((7, 3))}
    assert matrix_labels(params) == {"w": "matrix", "b": "other", "conv": "other", "emb": "matrix"}
    label_fn = lambda p: {"w": True, "b": False, "conv": True, "emb": None}  # noqa: E731
    assert matrix_labels(params, label_fn) == {"w": "matrix", "b": "other", "conv": "matrix", "emb": "other"}
    dims = resolve_dimension_numbers(params, label_fn)
    assert dims["conv"] == DimensionNumbers((0, 1, 2), 3)
    # a prefix tree: one entry for a whole subtree
    nested = {"blocks": {"a": jnp.ones((2, 3)), "c": jnp.ones((4, 2))}, "b": jnp.ones(3)}
    assert matrix_labels(nested, {"blocks": True, "b": None}) == {"blocks": {"a": "matrix", "c": "matrix"}, "b": "other"}


def test_reshape_round_trip_with_batch_axes():
    x = jnp.asarray(RNG.standard_normal((4, 3, 5, 2)))
    dims = DimensionNumbers(reduction_axis=(1, 3), output_axis=2)  # axis 0 is a batch axis
    m = to_matrices(x, dims)
    assert m.shape == (4, 6, 5)
    np.testing.assert_array_equal(m[1], np.transpose(np.asarray(x)[1], (0, 2, 1)).reshape(6, 5))
    np.testing.assert_array_equal(from_matrices(m, x, dims), x)


def test_stacked_layers_and_conv_kernels_match_per_matrix_reference():
    """A (layers, in, out) stack with the layer axis batched, and a conv kernel reshaped to
    (kh kw in, out), give each matrix its own Newton-Schulz, as the NumPy reference does."""
    params = {"stack": jnp.asarray(RNG.standard_normal((3, 6, 4))), "conv": jnp.asarray(RNG.standard_normal((3, 3, 2, 5)))}
    grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
    spec = {"stack": DimensionNumbers(1, 2), "conv": True}
    tx = mo.muon(0.1, weight_dimension_numbers=spec)
    upd, _ = tx.update(grads, tx.init(params), params)
    for i in range(3):
        _, expected = ref.muon({}, np.asarray(grads["stack"][i]), np.asarray(params["stack"][i]), lr=0.1, wd=0.0)
        np.testing.assert_allclose(upd["stack"][i], expected, rtol=1e-9, atol=1e-12)
    _, expected = ref.muon({}, np.asarray(grads["conv"]).reshape(18, 5), np.asarray(params["conv"]).reshape(18, 5),
                           lr=0.1, wd=0.0)
    np.testing.assert_allclose(upd["conv"], expected.reshape(3, 3, 2, 5), rtol=1e-9, atol=1e-12)


def test_partition_sends_other_leaves_to_adamw():
    params = {"w": jnp.asarray(RNG.standard_normal((4, 6))), "b": jnp.asarray(RNG.standard_normal(6))}
    grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
    tx = mo.muon(0.1, weight_dimension_numbers={"w": None, "b": None}, adam_learning_rate=0.01)
    adam = optax.adamw(0.01, b1=0.9, b2=0.95, weight_decay=0.0)
    upd, _ = tx.update(grads, tx.init(params), params)
    expected, _ = adam.update(grads, adam.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), upd, expected)


def test_bad_specs():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        resolve_dimension_numbers(params, {"w": True, "b": True})
    with pytest.raises(ValueError, match="disjoint"):
        resolve_dimension_numbers(params, {"w": DimensionNumbers(0, 0), "b": None})
    with pytest.raises(ValueError, match="out of range"):
        resolve_dimension_numbers(params, {"w": DimensionNumbers(0, 2), "b": None})
    with pytest.raises(TypeError, match="DimensionNumbers, SplitMatrix, None or bool"):
        resolve_dimension_numbers(params, {"w": "matrix", "b": None})
    with pytest.raises(ValueError, match="weight_dimension_numbers"):
        resolve_dimension_numbers(params, {"w": True})

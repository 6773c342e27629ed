"""project_params against float64 NumPy nearest points; partition_labels on plain pytrees."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import OrthogonalGroup, Sphere, Stiefel


def polar_reference(x):
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    return u @ vt


def test_project_params_snaps_each_leaf_to_its_nearest_point():
    rng = np.random.default_rng(0)
    params = {
        "kernel": jnp.asarray(3.0 * rng.standard_normal((7, 3))),
        "rotation": jnp.asarray(rng.standard_normal((4, 4))),
        "directions": jnp.asarray(rng.standard_normal((2, 5))),  # a batch of two sphere points
        "bias": jnp.asarray(rng.standard_normal(3)),
    }
    manifolds = {"kernel": Stiefel(7, 3), "rotation": OrthogonalGroup(4), "directions": Sphere(5), "bias": None}
    out = mo.project_params(manifolds, params)
    np.testing.assert_allclose(out["kernel"], polar_reference(np.asarray(params["kernel"])), atol=1e-12)
    np.testing.assert_allclose(out["rotation"], polar_reference(np.asarray(params["rotation"])), atol=1e-12)
    d = np.asarray(params["directions"])
    np.testing.assert_allclose(out["directions"], d / np.linalg.norm(d, axis=-1, keepdims=True), atol=1e-12)
    assert out["bias"] is params["bias"]
    # nearest: no random point of St(7, 3) is closer than the projection
    others = Stiefel(7, 3).random_point(jax.random.key(0), jnp.float64, batch_shape=(200,))
    gap = np.linalg.norm(np.asarray(params["kernel"]) - np.asarray(out["kernel"]))
    assert gap <= np.linalg.norm(np.asarray(params["kernel"]) - np.asarray(others), axis=(-2, -1)).min()
    with pytest.raises(ValueError, match="project_params.*'kernel'"):
        mo.project_params({**manifolds, "kernel": Stiefel(6, 3)}, params)


def test_partition_labels_mark_constrained_leaves_as_a_prefix_tree():
    params = {"a": jnp.ones((3, 2)), "b": {"c": jnp.ones(4), "d": jnp.ones(4)}}
    labels = mo.partition_labels({"a": Stiefel(3, 2), "b": {"c": Sphere(4), "d": None}})
    assert labels(params) == {"a": "manifold", "b": {"c": "manifold", "d": "free"}}
    assert mo.partition_labels(Sphere(4), "riem", "rest")(params["b"]) == {"c": "riem", "d": "riem"}
    assert mo.partition_labels(None)(params) == {"a": "free", "b": {"c": "free", "d": "free"}}
    with pytest.raises(ValueError, match="partition_labels.*'b/e'"):
        labels({"a": params["a"], "b": {"c": params["b"]["c"], "d": params["b"]["d"], "e": jnp.ones(1)}})
    with pytest.raises(TypeError, match="partition_labels: manifolds"):
        mo.partition_labels({"a": "stiefel"})
    with pytest.raises(ValueError, match="partition_labels: constrained and free"):
        mo.partition_labels(None, "x", "x")

"""The manifold-tree walker: rules, validation messages, mapping with None leaves."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.manifolds import Euclidean, Sphere, Stiefel, check_manifold_tree, map_manifold_tree
from manifold_opt.manifolds.tree import UNCONSTRAINED


def make_params():
    rng = np.random.default_rng(0)
    return {
        "block_0": {"mixer": jnp.asarray(rng.standard_normal((4, 4))), "dense_in": {"kernel": jnp.ones((6, 3))}},
        "block_1": {"mixer": jnp.asarray(rng.standard_normal((2, 4, 4))), "bias": jnp.zeros(3)},
        "head": [jnp.ones((5,)), jnp.ones((2, 5))],
    }


def test_rules_first_match_wins_and_default_is_unconstrained():
    params = make_params()
    tree = mo.manifold_tree(params, {"*/mixer": Stiefel(4, 4), "*kernel": Stiefel(6, 3), "head/*": Sphere(5)})
    assert tree["block_0"]["mixer"] == Stiefel(4, 4)
    assert tree["block_1"]["mixer"] == Stiefel(4, 4)  # batched: leading dims allowed
    assert tree["block_0"]["dense_in"]["kernel"] == Stiefel(6, 3)  # '*' crosses '/'
    assert tree["block_1"]["bias"] is None
    assert tree["head"] == [Sphere(5), Sphere(5)]


def test_rule_errors():
    params = make_params()
    with pytest.raises(ValueError, match="'typo/\\*'"):
        mo.manifold_tree(params, {"typo/*": Sphere(5)})
    with pytest.raises(ValueError, match="'block_0/mixer'"):  # shadowed by the first rule
        mo.manifold_tree(params, {"*/mixer": Stiefel(4, 4), "block_0/mixer": Euclidean((4, 4))})
    with pytest.raises(ValueError, match="block_1/bias"):
        mo.manifold_tree(params, {"*bias": Sphere(4)})
    with pytest.raises(TypeError, match="rules"):
        mo.manifold_tree(params, [("*", Sphere(5))])
    with pytest.raises(TypeError, match="'head/\\*'"):
        mo.manifold_tree(params, {"head/*": "sphere"})


def test_check_names_the_first_mismatching_path():
    params = {"a": jnp.zeros((3, 2)), "b": {"c": jnp.zeros(4), "d": jnp.zeros(4)}}
    check_manifold_tree({"a": Stiefel(3, 2), "b": {"c": Sphere(4), "d": None}}, params)
    with pytest.raises(ValueError, match="'b/d'"):
        check_manifold_tree({"a": Stiefel(3, 2), "b": {"c": Sphere(4)}}, params)
    with pytest.raises(ValueError, match="'b/e'"):
        check_manifold_tree({"a": None, "b": {"c": None, "d": None, "e": None}}, params)
    with pytest.raises(ValueError, match="'a'.*\\(\\.\\.\\., 4, 3\\)"):
        check_manifold_tree({"a": Stiefel(4, 3), "b": None}, params)
    with pytest.raises(ValueError, match="'b/c'.*Manifold or None"):
        check_manifold_tree({"a": None, "b": {"c": "sphere", "d": None}}, params)
    with pytest.raises(ValueError, match="'b'.*2 arrays"):
        check_manifold_tree({"a": None, "b": Sphere(4)}, params)


def test_map_with_none_leaves_single_manifold_and_multiple_outputs():
    rng = np.random.default_rng(1)
    params = {"s": jnp.asarray(rng.standard_normal((3, 4))), "free": jnp.asarray(rng.standard_normal(5))}
    norms = map_manifold_tree(lambda m, x: m.norm(x, x), {"s": Sphere(4), "free": None}, params)
    np.testing.assert_allclose(np.asarray(norms["s"]), np.linalg.norm(np.asarray(params["s"]), axis=-1))
    np.testing.assert_allclose(np.asarray(norms["free"]), np.abs(np.asarray(params["free"])))  # per entry
    assert UNCONSTRAINED.shape == ()
    # a single manifold applies to every leaf; tuples come back as a tuple of trees
    twice, neg = map_manifold_tree(lambda m, x, y: (x + y, -x), Sphere(4), [params["s"], params["s"][0]],
                                   [params["s"], params["s"][0]], num_outputs=2)
    np.testing.assert_allclose(np.asarray(twice[1]), 2 * np.asarray(params["s"][0]))
    np.testing.assert_allclose(np.asarray(neg[0]), -np.asarray(params["s"]))


def test_masked_nodes_and_flax_variables():
    params = {"k": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    masked = {"k": params["k"], "b": optax.MaskedNode()}
    tree = {"k": Stiefel(3, 2), "b": None}
    check_manifold_tree(tree, masked)
    out = map_manifold_tree(lambda m, x: x + 1, tree, masked)
    assert isinstance(out["b"], optax.MaskedNode)

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    pure = nnx.as_pure(nnx.state(model, nnx.Param))
    tree = mo.manifold_tree(pure, {"kernel": Stiefel(3, 2)})
    check_manifold_tree(tree, nnx.state(model, nnx.Param))  # Variables wrap the arrays
    doubled = map_manifold_tree(lambda m, x: 2 * x, tree, nnx.state(model, nnx.Param))
    np.testing.assert_allclose(np.asarray(jax.tree.leaves(doubled)[1]), 2 * np.asarray(model.kernel[...]))

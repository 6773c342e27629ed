"""Merging baselines against NumPy references written from the papers' definitions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt import merging

SHAPES = {"dense": {"kernel": (6, 5), "bias": (5,)}, "head": (4, 3)}


def random_tree(rng, dtype=np.float64):
    return jax.tree.map(lambda s: rng.standard_normal(s).astype(dtype), SHAPES, is_leaf=lambda s: isinstance(s, tuple))


def pool(seed=0, n=5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    pretrained = random_tree(rng, dtype)
    finetuned = [jax.tree.map(lambda p, d: p + 0.5 * d, pretrained, random_tree(rng, dtype)) for _ in range(n)]
    return pretrained, finetuned


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def unflat(vector, like):
    leaves, treedef = jax.tree_util.tree_flatten(like)
    sizes = np.cumsum([np.size(x) for x in leaves])[:-1]
    parts = np.split(vector, sizes)
    return jax.tree_util.tree_unflatten(treedef, [p.reshape(np.shape(x)) for p, x in zip(parts, leaves)])


def ties_reference(pretrained, finetuned, density, scaling):
    """TIES from the paper: trim (top-k magnitude per task vector), elect sign by summed mass,
    mean over the entries agreeing with the elected sign."""
    taus = np.stack([flat(f) - flat(pretrained) for f in finetuned])
    k = max(1, int(density * taus.shape[1]))
    trimmed = np.zeros_like(taus)
    for i, tau in enumerate(taus):
        threshold = np.sort(np.abs(tau))[-k]
        trimmed[i] = np.where(np.abs(tau) >= threshold, tau, 0.0)
    elected = np.sign(trimmed.sum(0))
    merged = np.zeros(taus.shape[1])
    for j in range(taus.shape[1]):
        agree = [t for t in trimmed[:, j] if t != 0 and np.sign(t) == elected[j]]
        merged[j] = np.mean(agree) if agree else 0.0
    return flat(pretrained) + scaling * merged


def assert_tree_close(tree, reference_flat, atol=1e-12):
    np.testing.assert_allclose(flat(jax.device_get(tree)), reference_flat, atol=atol, rtol=0)


def test_average_and_task_arithmetic_match_numpy():
    pretrained, finetuned = pool()
    assert_tree_close(merging.average(finetuned), np.mean([flat(f) for f in finetuned], 0))
    taus = sum(flat(f) - flat(pretrained) for f in finetuned)
    assert_tree_close(merging.task_arithmetic(pretrained, finetuned, 0.3), flat(pretrained) + 0.3 * taus)


@pytest.mark.parametrize("density", [0.2, 0.7])
def test_ties_matches_numpy_reference(density):
    pretrained, finetuned = pool(seed=1)
    merged = merging.ties(pretrained, finetuned, density=density, scaling=1.0)
    assert_tree_close(merged, ties_reference(pretrained, finetuned, density, 1.0))


def test_trim_keeps_exactly_the_top_k_entries():
    tau = random_tree(np.random.default_rng(2))
    trimmed = flat(jax.device_get(merging.trim_top_k(tau, 0.25)))
    k = int(0.25 * trimmed.size)
    assert np.count_nonzero(trimmed) == k
    kept = np.abs(flat(tau))[trimmed != 0]
    assert kept.min() >= np.sort(np.abs(flat(tau)))[-k]


def test_dare_drops_rescales_and_preserves_the_expectation():
    tau = jax.tree.map(jnp.asarray, random_tree(np.random.default_rng(3)))
    p = 0.7
    keys = jax.random.split(jax.random.key(0), 1000)
    samples = jax.jit(jax.vmap(lambda k: flat_jax(merging.drop_and_rescale(tau, k, p))))(keys)
    samples = np.asarray(samples)
    t = flat(tau)
    # every entry is dropped (0) or rescaled by 1/(1 - p)
    assert np.all(np.isclose(samples, 0.0) | np.isclose(samples, t / (1 - p)))
    assert abs(np.mean(samples != 0) - (1 - p)) < 0.02
    # E[drop_and_rescale(tau)] = tau: the sample mean is within 4 standard errors
    stderr = np.abs(t) * np.sqrt(p / (1 - p) / len(keys))
    assert np.all(np.abs(samples.mean(0) - t) < 4 * stderr + 1e-12)


def flat_jax(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_dare_is_the_chosen_merge_of_dropped_task_vectors():
    pretrained, finetuned = pool(seed=4, n=3)
    key = jax.random.key(7)
    dropped = [
        jax.tree.map(lambda p, d: p + d, pretrained,
                     jax.device_get(merging.drop_and_rescale(jax.tree.map(lambda f, q: f - q, f, pretrained),
                                                             jax.random.fold_in(key, i), 0.5)))
        for i, f in enumerate(finetuned)
    ]
    ta = merging.dare(pretrained, finetuned, key, drop_rate=0.5, scaling=0.3)
    assert_tree_close(ta, flat(pretrained) + 0.3 * sum(flat(d) - flat(pretrained) for d in dropped))
    ties = merging.dare(pretrained, finetuned, key, drop_rate=0.5, scaling=1.0, combine="ties", density=0.3)
    assert_tree_close(ties, ties_reference(pretrained, dropped, 0.3, 1.0))


def test_float32_kept_and_checkpoint_pool_streams_the_same_result(tmp_path):
    pretrained, finetuned = pool(seed=5, n=3, dtype=np.float32)
    merged = merging.ties(pretrained, finetuned, density=0.5)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(merged))
    lazy = merging.save_pool(str(tmp_path / "pool"), finetuned)
    assert isinstance(lazy, merging.CheckpointPool) and len(lazy) == 3
    assert_tree_close(merging.ties(pretrained, lazy, density=0.5), flat(jax.device_get(merged)), atol=0)


def test_bad_inputs_name_the_function_and_argument():
    pretrained, finetuned = pool(n=2)
    with pytest.raises(ValueError, match="ties: density"):
        merging.ties(pretrained, finetuned, density=0.0)
    with pytest.raises(ValueError, match="dare: drop_rate"):
        merging.dare(pretrained, finetuned, jax.random.key(0), drop_rate=1.0)
    with pytest.raises(ValueError, match="dare: combine"):
        merging.dare(pretrained, finetuned, jax.random.key(0), combine="mean")
    with pytest.raises(TypeError, match="task_arithmetic: candidates"):
        merging.task_arithmetic(pretrained, (f for f in finetuned))
    with pytest.raises(ValueError, match="average: candidates must hold"):
        merging.average([])
    bad = [finetuned[0], {**finetuned[1], "head": np.zeros((3, 3))}]
    with pytest.raises(ValueError, match=r"task_arithmetic: candidates\[1\]"):
        merging.task_arithmetic(pretrained, bad)

"""Breadcrumbs, DELLA, SLERP, Karcher mean and Model Stock against float64 NumPy references
written from mergekit's rules (mergekit/sparsify.py, merge_methods/{slerp,karcher,model_stock,
generalized_task_arithmetic}.py), with each convention difference named where it applies."""
import jax
import numpy as np
import pytest

from manifold_opt import merging
from tests.merging.test_baselines import flat

SHAPES = {"dense": {"kernel": (7, 5), "bias": (5,)}, "head": {"kernel": (5, 3)}}


def random_tree(rng, scale=1.0, dtype=np.float64):
    return jax.tree.map(lambda s: (scale * rng.standard_normal(s)).astype(dtype), SHAPES,
                        is_leaf=lambda s: isinstance(s, tuple))


def pool(seed=0, n=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    pretrained = random_tree(rng, dtype=dtype)
    return pretrained, [jax.tree.map(lambda p, d: p + d, pretrained, random_tree(rng, 0.3, dtype)) for _ in range(n)]


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def assert_leaves_close(tree, reference, atol=1e-12):
    for got, want in zip(leaves(jax.device_get(tree)), reference):
        np.testing.assert_allclose(got, want, atol=atol, rtol=0)


# --- Breadcrumbs -----------------------------------------------------------------------------

def breadcrumbs_mask_reference(tau, density, gamma):
    """mergekit's magnitude_outliers mask, except the slice end: mergekit keeps
    sorted[n_bottom:-n_top], which is empty when n_top = 0; we keep sorted[n_bottom:n - n_top]."""
    n = tau.size
    target, n_top = int(density * n), int(gamma * n)
    n_bottom = n - target - n_top
    if n_bottom < 0:
        n_top, n_bottom = n_top + n_bottom, 0
    order = np.argsort(np.abs(tau).ravel(), kind="stable")
    mask = np.zeros(n, bool)
    mask[order[n_bottom:n - n_top]] = True
    return mask.reshape(tau.shape)


@pytest.mark.parametrize("density,gamma", [(0.6, 0.1), (0.95, 0.1), (0.5, 0.0)])
def test_breadcrumbs_matches_mergekit_rule(density, gamma):
    pretrained, finetuned = pool(seed=1)
    merged = merging.breadcrumbs(pretrained, finetuned, density=density, gamma=gamma, scaling=0.7)
    reference = []
    for j, p in enumerate(leaves(pretrained)):
        total = sum(np.where(breadcrumbs_mask_reference(t, density, gamma), t, 0.0)
                    for t in (leaves(f)[j] - p for f in finetuned))
        reference.append(p + 0.7 * total)
    assert_leaves_close(merged, reference)


def test_breadcrumbs_mask_drops_the_outliers_and_the_smallest():
    tau = np.random.default_rng(2).standard_normal((10, 10))
    mask = np.asarray(merging.breadcrumbs_mask(tau, 0.5, 0.1))
    assert mask.sum() == 50
    magnitudes = np.sort(np.abs(tau).ravel())
    assert np.all(np.abs(tau[mask]) >= magnitudes[40]) and np.all(np.abs(tau[mask]) <= magnitudes[89])


# --- DELLA -----------------------------------------------------------------------------------

def della_probability_reference(tau, density, epsilon):
    """mergekit's della_magprune probabilities: ranks within each row of a torch weight
    (out, in). Our kernels are Flax (in, out), so mergekit's rows are our columns: rank along
    axis 0 of the (-1, out) reshape; a vector is one row in both."""
    rows = tau.reshape(-1, tau.shape[-1]).T if tau.ndim >= 2 else tau.reshape(1, -1)
    ranks = np.argsort(np.argsort(np.abs(rows), axis=1), axis=1) + 1.0
    lo, hi = ranks.min(1, keepdims=True), ranks.max(1, keepdims=True)
    probs = density - epsilon + (ranks - lo) / (hi - lo) * 2 * epsilon
    return (probs.T if tau.ndim >= 2 else probs).reshape(tau.shape)


def test_della_keep_probability_is_mergekits_rank_rule():
    rng = np.random.default_rng(3)
    for shape in [(6, 4), (9,), (2, 3, 5)]:
        tau = rng.standard_normal(shape)
        np.testing.assert_allclose(np.asarray(merging.della_keep_probability(tau, 0.6, 0.2)),
                                   della_probability_reference(tau, 0.6, 0.2), atol=1e-15)


def ties_merge_reference(taus):
    """TIES' elect (sign of the sum) and disjoint mean over a list of arrays."""
    stacked = np.stack(taus)
    elected = np.sign(stacked.sum(0))
    agree = (np.sign(stacked) == elected) & (stacked != 0)
    return np.where(agree, stacked, 0).sum(0) / np.maximum(agree.sum(0), 1)


def test_della_is_magprune_rescale_then_ties():
    """The paper's rescale 1 / p_keep per entry (mergekit's `della` rescales by the L1-norm
    ratio ||tau||_1 / ||masked||_1 instead); its elect + disjoint mean equals mergekit's `della`
    with unit weights and normalize=True. The Bernoulli draws use our documented keys."""
    pretrained, finetuned = pool(seed=4)
    key = jax.random.key(5)
    density, epsilon = 0.6, 0.2
    merged = merging.della(pretrained, finetuned, key, density=density, epsilon=epsilon, scaling=0.8)
    pre = leaves(pretrained)
    pruned = []
    for i, f in enumerate(finetuned):
        keys = jax.random.split(jax.random.fold_in(key, i), len(pre))
        taus = [c - p for c, p in zip(leaves(f), pre)]
        probs = [della_probability_reference(t, density, epsilon) for t in taus]
        masks = [np.asarray(jax.random.bernoulli(k, q)) for k, q in zip(keys, probs)]
        pruned.append([np.where(m, t / q, 0.0) for m, t, q in zip(masks, taus, probs)])
    reference = [p + 0.8 * ties_merge_reference([pr[j] for pr in pruned]) for j, p in enumerate(pre)]
    assert_leaves_close(merged, reference)
    kept = np.mean([np.mean(m != 0) for pr in pruned for m in pr])
    assert 0.4 < kept < 0.8  # about `density` of the entries survive


# --- SLERP -----------------------------------------------------------------------------------

def slerp_reference(t, v0, v1, threshold=0.9995, eps=1e-8):
    """mergekit's slerp (one tensor)."""
    u0 = v0 / np.linalg.norm(v0) if np.linalg.norm(v0) > eps else v0
    u1 = v1 / np.linalg.norm(v1) if np.linalg.norm(v1) > eps else v1
    dot = np.sum(u0 * u1)
    if abs(dot) > threshold:
        return (1 - t) * v0 + t * v1
    theta = np.arccos(dot)
    return np.sin(theta - theta * t) / np.sin(theta) * v0 + np.sin(theta * t) / np.sin(theta) * v1


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_slerp_matches_mergekit_rule_and_falls_back_to_lerp_when_colinear(t):
    _, (a, b) = pool(seed=6, n=2)
    b = {**b, "head": {"kernel": 2.0 * a["head"]["kernel"]}}  # colinear leaf: lerp
    merged = merging.slerp(a, b, t)
    assert_leaves_close(merged, [slerp_reference(t, x, y) for x, y in zip(leaves(a), leaves(b))])


# --- Karcher mean ----------------------------------------------------------------------------

def karcher_reference(tensors, alphas, max_iter=10, tol=1e-5):
    """mergekit's karcher_merge_tensors (one tensor)."""
    norms = [np.linalg.norm(t) for t in tensors]
    units = [t / n if n > 0 else np.zeros_like(t) for t, n in zip(tensors, norms)]
    valid = [i for i, n in enumerate(norms) if n > tol]
    weights = np.array([alphas[i] for i in valid]) / sum(alphas[i] for i in valid)
    units_v = [units[i] for i in valid]
    u = sum(w * x for w, x in zip(weights, units_v))
    u = units_v[0] if np.linalg.norm(u) < tol else u / np.linalg.norm(u)
    for _ in range(max_iter):
        tangent = np.zeros_like(u)
        for w, x in zip(weights, units_v):
            dot = np.clip(np.sum(u * x), -1, 1)
            theta = np.arccos(dot)
            if theta >= tol:
                tangent += w * theta / np.sin(theta) * (x - dot * u)
        size = np.linalg.norm(tangent)
        if size < tol:
            break
        u = np.cos(size) * u + np.sin(size) * tangent / size
        if np.linalg.norm(u) > tol:
            u = u / np.linalg.norm(u)
    return sum(a * n for a, n in zip(alphas, norms)) * u


def test_karcher_mean_matches_mergekit_rule():
    _, models = pool(seed=7, n=3)
    weights = [0.2, 0.3, 0.5]  # summing to 1: mergekit's scale sum_i alpha_i |x_i| uses them as given
    merged = merging.karcher_mean(models, weights, max_iter=10, tol=1e-5)
    per_leaf = zip(*(leaves(m) for m in models))
    assert_leaves_close(merged, [karcher_reference(list(xs), weights) for xs in per_leaf])


def test_karcher_mean_of_two_equal_norm_points_is_their_slerp_midpoint():
    _, (a, b) = pool(seed=8, n=2)
    b = jax.tree.map(lambda x, y: y * np.linalg.norm(x) / np.linalg.norm(y), a, b)
    merged = merging.karcher_mean([a, b], max_iter=50, tol=1e-12)
    assert_leaves_close(merged, leaves(merging.slerp(a, b, 0.5)), atol=1e-9)


# --- Model Stock -----------------------------------------------------------------------------

def model_stock_reference(w0, ws):
    """mergekit's model_stock (filter_wise=False): the mean pairwise cosine of the flattened task
    vectors (mergekit clamps the norm product at 1e-6; irrelevant for these non-tiny vectors)."""
    offsets = [w.ravel() - w0.ravel() for w in ws]
    cosines = [np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
               for i, a in enumerate(offsets) for b in offsets[i + 1:]]
    cos = np.mean(cosines)
    t = len(ws) * cos / (1 + (len(ws) - 1) * cos)
    return t * np.mean(ws, 0) + (1 - t) * w0


def test_model_stock_matches_mergekit_rule():
    rng = np.random.default_rng(9)
    pretrained, finetuned = pool(seed=9, n=4)
    shared = random_tree(rng, 0.3)  # a common direction so the cosines are well away from 0
    finetuned = [jax.tree.map(lambda f, s: f + s, f, shared) for f in finetuned]
    merged = merging.model_stock(pretrained, finetuned)
    per_leaf = zip(leaves(pretrained), *(leaves(f) for f in finetuned))
    assert_leaves_close(merged, [model_stock_reference(p, list(ws)) for p, *ws in per_leaf])


def test_bad_inputs_name_the_function_and_argument():
    pretrained, finetuned = pool(n=2)
    with pytest.raises(ValueError, match="breadcrumbs: gamma"):
        merging.breadcrumbs(pretrained, finetuned, gamma=1.0)
    with pytest.raises(ValueError, match="della: epsilon"):
        merging.della(pretrained, finetuned, jax.random.key(0), density=0.5, epsilon=0.5)
    with pytest.raises(TypeError, match="della: key"):
        merging.della(pretrained, finetuned, 0)
    with pytest.raises(ValueError, match="slerp: t"):
        merging.slerp(finetuned[0], finetuned[1], float("nan"))
    with pytest.raises(ValueError, match="model_stock: needs at least 2"):
        merging.model_stock(pretrained, finetuned[:1])
    with pytest.raises(ValueError, match="karcher_mean: weights"):
        merging.karcher_mean(finetuned, [1.0, -1.0])


def test_float32_is_kept():
    pretrained, finetuned = pool(seed=10, dtype=np.float32)
    p64, f64 = pool(seed=10)
    for run in (lambda p, f: merging.breadcrumbs(p, f, 0.6, 0.1), lambda p, f: merging.model_stock(p, f),
                lambda p, f: merging.karcher_mean(f), lambda p, f: merging.slerp(f[0], f[1], 0.4)):
        got = run(pretrained, finetuned)
        assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(got))
        np.testing.assert_allclose(flat(jax.device_get(got)), flat(jax.device_get(run(p64, f64))), atol=2e-5)

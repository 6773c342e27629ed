"""AdaMerging-style soft merging: layer-wise coefficients against a NumPy reconstruction."""
import jax
import numpy as np
import pytest

from manifold_opt import merging
from tests.merging.test_fw import RELEVANT, loss_fn, synthetic_pool


def summed_loss(params, targets):
    return sum(loss_fn(params, t) for t in targets)


def test_adamerging_fits_layerwise_coefficients_over_the_whole_pool():
    pretrained, candidates, targets = synthetic_pool(seed=4)
    result = merging.adamerging(pretrained, candidates, summed_loss, targets, steps=300, learning_rate=0.05)
    coefficients = np.asarray(result.coefficients)
    assert coefficients.shape == (2, len(candidates))  # leaves 'b', 'w' x candidates
    # theta(lambda) = theta_pre + sum_j lambda_{l, j} tau_{j, l}, leaf by leaf
    for l, (got, pre) in enumerate(zip(jax.tree_util.tree_leaves(result.params), jax.tree_util.tree_leaves(pretrained))):
        taus = [jax.tree_util.tree_leaves(c)[l] - pre for c in candidates]
        np.testing.assert_allclose(got, pre + sum(w * t for w, t in zip(coefficients[l], taus)), atol=1e-10)
    # the optimum: 1/3 on each relevant task vector, 0 on the irrelevant (orthogonal) ones
    irrelevant = [i for i in range(len(candidates)) if i not in RELEVANT]
    np.testing.assert_allclose(coefficients[:, list(RELEVANT)], 1 / 3, atol=0.02)
    np.testing.assert_allclose(coefficients[:, irrelevant], 0.0, atol=0.02)
    assert result.losses[-1] < result.losses[0]


def test_prediction_entropy_matches_numpy():
    logits = np.random.default_rng(0).standard_normal((5, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(merging.prediction_entropy(logits), np.mean(-(p * np.log(p)).sum(1)), rtol=1e-12)


def test_bad_options_name_the_argument():
    pretrained, candidates, targets = synthetic_pool()
    with pytest.raises(ValueError, match="adamerging: steps"):
        merging.adamerging(pretrained, candidates, summed_loss, targets, steps=0)
    with pytest.raises(TypeError, match="adamerging: objective"):
        merging.adamerging(pretrained, candidates, None, targets)

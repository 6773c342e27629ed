"""FW-Merging on a synthetic pool whose relevant candidates are known, and its flat memory."""
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt import merging

SHAPES = {"w": (8, 6), "b": (24,)}
RELEVANT = (1, 4, 6)  # of 8 candidates; the others are irrelevant (orthogonal task vectors)


def synthetic_pool(seed=0, n=8):
    """Pretrained params, candidates whose task vectors are orthonormal per leaf, and one proxy
    target per relevant candidate: L(theta) = sum_k 0.5 ||theta - (theta_pre + tau_k)||^2 is
    minimized at theta_pre + mean of the relevant task vectors, inside their hull."""
    rng = np.random.default_rng(seed)
    pretrained = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    directions = {k: np.linalg.qr(rng.standard_normal((int(np.prod(s)), n)))[0] for k, s in SHAPES.items()}
    taus = [{k: 2.0 * directions[k][:, i].reshape(s) for k, s in SHAPES.items()} for i in range(n)]
    candidates = [jax.tree.map(np.add, pretrained, tau) for tau in taus]
    targets = [candidates[i] for i in RELEVANT]
    return pretrained, candidates, targets


def loss_fn(params, target):
    return sum(0.5 * jnp.sum((params[k] - target[k]) ** 2) for k in SHAPES)


def optimal_loss(targets):
    """L at its minimizer, the mean of the targets."""
    mean = jax.tree.map(lambda *t: np.mean(t, 0), *targets)
    return sum(float(loss_fn(mean, t)) for t in targets)


def reconstruct(weights, start, candidates):
    """sum_i weights[l, i] vertex_i per leaf l (tree order of the dict: 'b', 'w')."""
    vertices = [start] + candidates
    leaves = [np.stack([jax.tree_util.tree_leaves(v)[l] for v in vertices]) for l in range(weights.shape[0])]
    return [np.tensordot(weights[l], leaves[l], axes=1) for l in range(weights.shape[0])]


def assert_in_hull_of_relevant(result, start, candidates):
    weights = result.weights
    assert np.all(weights >= -1e-12) and np.allclose(weights.sum(1), 1.0)
    irrelevant = [i + 1 for i in range(len(candidates)) if i not in RELEVANT]
    assert np.all(weights[:, irrelevant] == 0.0)
    for got, want in zip(jax.tree_util.tree_leaves(result.params), reconstruct(weights, start, candidates)):
        np.testing.assert_allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_hard_merging_picks_the_relevant_candidates_and_closes_the_gap(granularity):
    pretrained, candidates, targets = synthetic_pool()
    result = merging.fw_merge(pretrained, candidates, loss_fn, targets, granularity=granularity, iterations=20,
                              init_scaling=0.0, step_size=1.0, scaling=1.0)
    assert set(np.unique(result.selected)) == set(RELEVANT)
    assert_in_hull_of_relevant(result, pretrained, candidates)
    assert np.all(result.gaps >= -1e-12)
    assert result.gaps[-1] < 0.15 * result.gaps[0]
    assert np.mean(result.gaps[-5:]) < np.mean(result.gaps[:5])
    excess = result.losses - optimal_loss(targets)
    assert 0 <= excess[-1] < 0.05 * excess[0]


def test_hard_merging_from_task_arithmetic_with_the_papers_step():
    pretrained, candidates, targets = synthetic_pool(seed=1)
    result = merging.fw_merge(pretrained, candidates, loss_fn, targets, iterations=3)  # gamma_t = 2/(t+2) * 0.03
    start = jax.device_get(merging.task_arithmetic(pretrained, candidates, 0.3))
    assert set(np.unique(result.selected)) <= set(RELEVANT)
    np.testing.assert_allclose(result.weights[:, 0], (1 - 0.03) * (1 - 0.02) * (1 - 0.015))
    for got, want in zip(jax.tree_util.tree_leaves(result.params), reconstruct(result.weights, start, candidates)):
        np.testing.assert_allclose(got, want, atol=1e-10)
    assert np.all(np.diff(result.losses) < 0)
    # the paper's code measures relevance against the checkpoints themselves; same picks here
    paper = merging.fw_merge(pretrained, candidates, loss_fn, targets, iterations=3, relevance="checkpoint")
    assert set(np.unique(paper.selected)) <= set(RELEVANT)


def test_soft_merging_picks_one_relevant_candidate_per_task_and_fits_coefficients():
    pretrained, candidates, targets = synthetic_pool(seed=2)
    result = merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="soft", iterations=3, soft_steps=300,
                              soft_learning_rate=0.05)
    assert result.selected.shape == (3, len(RELEVANT)) and result.gaps.shape == (3,) and result.losses.shape == (4,)
    np.testing.assert_array_equal(result.selected[0], RELEVANT)  # task k's own expert
    excess = result.losses - optimal_loss(targets)
    assert 0 <= excess[-1] < 1e-3 * excess[0]
    assert np.allclose(result.weights.sum(1), 1.0)
    irrelevant = [i + 1 for i in range(len(candidates)) if i not in RELEVANT]
    assert np.all(result.weights[:, irrelevant] == 0.0)
    for got, want in zip(jax.tree_util.tree_leaves(result.params), reconstruct(result.weights, pretrained, candidates)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # the optimum is theta_pre + mean of the relevant task vectors: every coefficient near 1/3
    np.testing.assert_allclose(result.weights[:, [i + 1 for i in RELEVANT]], 1 / 3, atol=0.02)


def two_candidate_target(seed=5, n=8, big=1, small=4):
    """One task whose optimum (theta_big + theta_small) / 2 needs two candidates: at theta_pre the
    gradient favours the larger task vector (norm 3 against 2), so one pick misses `small`."""
    pretrained, candidates, _ = synthetic_pool(seed=seed, n=n)
    candidates[big] = jax.tree.map(lambda c, p: p + 1.5 * (c - p), candidates[big], pretrained)
    target = jax.tree.map(lambda a, b: (a + b) / 2, candidates[big], candidates[small])
    return pretrained, candidates, [target]


def test_soft_iterations_pick_up_the_candidate_a_single_pick_at_theta_pre_misses():
    pretrained, candidates, targets = two_candidate_target()
    options = dict(mode="soft", soft_steps=300, soft_learning_rate=0.05)
    single = merging.fw_merge(pretrained, candidates, loss_fn, targets, iterations=1, **options)
    result = merging.fw_merge(pretrained, candidates, loss_fn, targets, iterations=6, **options)
    assert single.selected.tolist() == [[1]]  # the one relevance pick at theta_pre: the larger expert only
    np.testing.assert_array_equal(result.selected[:2, 0], [1, 4])  # the gradient at theta_1 points to the other
    assert set(result.selected[:, 0]) == {1, 4}
    assert len(result.gaps) == 6 and len(result.losses) == 7
    assert np.all(result.gaps > 0) and result.gaps[-1] < 0.2 * result.gaps[0]
    assert np.all(np.diff(result.losses) < 0)
    # one pick stalls at the best point on the line through theta_big (loss 0.5 ||tau_small / 2||^2 per leaf);
    # the second iteration's best step toward theta_small, lambda = 8 / 25, leaves 0.5 (0.16^2 9 + 0.18^2 4) per leaf
    np.testing.assert_allclose(single.losses, [3.25, 1.0], rtol=1e-3)
    np.testing.assert_allclose(result.losses[:3], [3.25, 1.0, 0.36], rtol=1e-3)
    assert result.losses[-1] < 0.15 * single.losses[-1]
    irrelevant = [i + 1 for i in range(len(candidates)) if i not in (1, 4)]
    assert np.all(result.weights[:, irrelevant] == 0.0) and np.allclose(result.weights.sum(1), 1.0)
    for got, want in zip(jax.tree_util.tree_leaves(result.params), reconstruct(result.weights, pretrained, candidates)):
        np.testing.assert_allclose(got, want, atol=1e-10)


def reference_soft_fw(pretrained, candidates, targets, iterations, steps, learning_rate, init, later_init):
    """Soft FW for loss_fn written out with loops: per-task gradients theta - target_k, relevance
    sum_l cos(g_kl, c_il - p_l) with distinct picks, the gap max_i <g, theta - c_i>, and Adam
    (optax defaults) on the per-leaf coefficients of sum_k 0.5 ||theta + D_l lambda_l - t_kl||^2."""
    flat = lambda tree: [np.ravel(x) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    pre, cands, tgts = flat(pretrained), [flat(c) for c in candidates], [flat(t) for t in targets]
    theta, picks_all, gaps, losses = [p.copy() for p in pre], [], [], []
    leaves = range(len(pre))
    loss = lambda th: sum(0.5 * np.sum((th[l] - t[l]) ** 2) for t in tgts for l in leaves)  # noqa: E731
    for t in range(iterations):
        grads = [[theta[l] - tk[l] for l in leaves] for tk in tgts]
        losses.append(loss(theta))
        picks = []
        for g in grads:
            best, best_i = np.inf, None
            for i, c in enumerate(cands):
                tau = [c[l] - pre[l] for l in leaves]
                score = sum(g[l] @ tau[l] / (np.linalg.norm(g[l]) * np.linalg.norm(tau[l])) for l in leaves)
                if i not in picks and score < best:
                    best, best_i = score, i
            picks.append(best_i)
        total = [sum(g[l] for g in grads) for l in leaves]
        gaps.append(max(sum(total[l] @ (theta[l] - c[l]) for l in leaves) for c in cands))
        directions = [np.stack([cands[i][l] - theta[l] for i in picks], 1) for l in leaves]
        lam = np.full((len(pre), len(picks)), init if t == 0 else later_init)
        m, v = np.zeros_like(lam), np.zeros_like(lam)
        for step in range(1, steps + 1):
            grad = np.stack([directions[l].T @ sum(theta[l] + directions[l] @ lam[l] - tk[l] for tk in tgts)
                             for l in leaves])
            m, v = 0.9 * m + 0.1 * grad, 0.999 * v + 0.001 * grad ** 2
            lam = lam - learning_rate * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        theta = [theta[l] + directions[l] @ lam[l] for l in leaves]
        picks_all.append(picks)
    losses.append(loss(theta))
    return theta, np.array(picks_all), np.array(gaps), np.array(losses)


def test_soft_iterations_match_a_loop_reference():
    pretrained, candidates, targets = synthetic_pool(seed=6)
    # the third task's best candidate is the first task's own: it must take its second best (6)
    targets = targets[:2] + [jax.tree.map(lambda a, b: 0.7 * a + 0.3 * b, candidates[1], candidates[6])]
    result = merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="soft", iterations=2, soft_steps=25,
                              soft_learning_rate=0.05, soft_init=0.2, soft_later_init=0.01)
    theta, picks, gaps, losses = reference_soft_fw(pretrained, candidates, targets, 2, 25, 0.05, 0.2, 0.01)
    np.testing.assert_array_equal(result.selected, picks)
    np.testing.assert_array_equal(result.selected[0], [1, 4, 6])
    np.testing.assert_allclose(result.gaps, gaps, rtol=1e-10)
    np.testing.assert_allclose(result.losses, losses, rtol=1e-10)
    for got, want in zip(jax.tree_util.tree_leaves(result.params), theta):
        np.testing.assert_allclose(np.ravel(got), want, rtol=1e-10, atol=1e-12)


class RecordingPool(Sequence):
    """Host (NumPy) candidates; records the device bytes alive whenever one is read."""

    def __init__(self, candidates):
        self.candidates, self.live = candidates, []

    def __len__(self):
        return len(self.candidates)

    def __getitem__(self, i):
        self.live.append(sum(x.nbytes for x in jax.live_arrays()))
        return self.candidates[i]


def test_device_memory_is_flat_in_the_pool_size_while_stacking_grows():
    rng = np.random.default_rng(3)
    shapes = {"kernel": (128, 128), "bias": (128,)}
    pretrained = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    target = jax.tree.map(lambda p: p + 0.1, pretrained)
    model_bytes = sum(x.nbytes for x in pretrained.values())
    peaks, soft_peaks, stacked = {}, {}, {}
    for n in (4, 8, 16):
        candidates = [jax.tree.map(lambda p: p + rng.standard_normal(p.shape).astype(np.float32), pretrained)
                      for _ in range(n)]
        pool = RecordingPool(candidates)
        before = sum(x.nbytes for x in jax.live_arrays())
        merging.fw_merge(pretrained, pool, loss_fn_big, [target], iterations=2)
        peaks[n] = max(pool.live) - before
        if n != 8:
            pool = RecordingPool(candidates)
            merging.fw_merge(pretrained, pool, loss_fn_big, [target], mode="soft", iterations=2, soft_steps=2)
            soft_peaks[n] = max(pool.live) - before
        naive = jax.tree.map(lambda *c: jnp.stack(c), *candidates)  # the whole pool on the device
        stacked[n] = sum(x.nbytes for x in jax.live_arrays()) - before
        del naive
    print("live device bytes while streaming:", peaks, "soft:", soft_peaks, "stacked pool:", stacked, "model:", model_bytes)
    assert 0 < peaks[16] <= 1.1 * peaks[4] and peaks[8] <= 1.1 * peaks[4]
    assert peaks[16] < 6 * model_bytes  # theta, gradient, best vertex and a few per-step buffers
    # soft: the iterate, the task gradients and one pick per target task, whatever the pool size
    assert 0 < soft_peaks[16] <= 1.1 * soft_peaks[4] and soft_peaks[16] < 6 * model_bytes
    assert stacked[16] >= 3.5 * stacked[4] and stacked[16] >= 16 * model_bytes


def loss_fn_big(params, target):
    return sum(0.5 * jnp.sum((params[k] - target[k]) ** 2) for k in params)


def test_bad_inputs_name_the_argument():
    pretrained, candidates, targets = synthetic_pool()
    with pytest.raises(ValueError, match="fw_merge: mode"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="medium")
    with pytest.raises(ValueError, match="fw_merge: granularity"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, granularity="row")
    with pytest.raises(ValueError, match="fw_merge: relevance"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, relevance="weights")
    with pytest.raises(ValueError, match="fw_merge: iterations"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, iterations=0)
    with pytest.raises(ValueError, match="granularity must be 'task'"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="soft", granularity="layer")
    with pytest.raises(ValueError, match="fw_merge: soft_steps"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="soft", soft_steps=0)
    with pytest.raises(ValueError, match="fw_merge: soft_later_init"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets, mode="soft", soft_later_init=float("nan"))
    with pytest.raises(TypeError, match="fw_merge: proxy_data"):
        merging.fw_merge(pretrained, candidates, loss_fn, targets[0])

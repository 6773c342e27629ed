"""TSV-M/TSV-C, Iso-C/Iso-CTS, DC-Merge, RegMean, OTA + Fast Fisher Grafting, DO-Merging and
continual merging (OPCM) against float64 NumPy references written from the papers (and, where
the paper leaves a detail open, the authors' code, named in each reference)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from manifold_opt import merging
from tests.merging.test_sparse_geometric import assert_leaves_close, leaves, pool


def polar(x):
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    return u @ vh


def per_leaf(pretrained, finetuned, matrix_rule, other_rule=lambda taus: np.mean(taus, 0)):
    """Apply matrix_rule(task matrices) to 2-D leaves and other_rule(task vectors) elsewhere;
    return the merged task-vector leaves."""
    out = []
    for j, p in enumerate(leaves(pretrained)):
        taus = [leaves(f)[j] - p for f in finetuned]
        out.append(matrix_rule(taus) if p.ndim == 2 else other_rule(taus))
    return out


def truncations(taus, k):
    factors = []
    for tau in taus:
        u, s, vh = np.linalg.svd(tau, full_matrices=False)
        factors.append((u[:, :k], s[:k], vh[:k]))
    return factors


def tsv_reference(taus):
    """TSV-M (Gargiulo et al. 2025, Eq. 7-8)."""
    k = max(1, min(taus[0].shape) // len(taus))
    us, ss, vhs = zip(*truncations(taus, k))
    return polar(np.concatenate(us, 1)) @ np.diag(np.concatenate(ss)) @ polar(np.concatenate(vhs, 0))


def iso_c_reference(taus):
    """Iso-C (Marczak et al. 2025, Eq. 6)."""
    u, s, vh = np.linalg.svd(sum(taus), full_matrices=False)
    return s.mean() * u @ vh


def iso_cts_reference(taus, fraction=0.8):
    """Iso-CTS (Marczak et al. 2025, Alg. 1; the rank split as in the authors' code)."""
    r, t = min(taus[0].shape), len(taus)
    common = r - round((r - int(r * fraction)) / t) * t
    per_task = (r - common) // t
    u, s, vh = np.linalg.svd(sum(taus), full_matrices=False)
    us, ss, vhs = [u[:, :common]], [s[:common]], [vh[:common]]
    for tau in taus:
        ut, st, vht = np.linalg.svd(tau - u[:, :common] @ u[:, :common].T @ tau, full_matrices=False)
        us.append(ut[:, :per_task]), ss.append(st[:per_task]), vhs.append(vht[:per_task])
    return np.concatenate(ss).mean() * polar(np.concatenate(us, 1)) @ polar(np.concatenate(vhs, 0))


def smoothed(s, smoothing, rho):
    """DC-Merge's energy smoothing of the top-k singular values (the authors' LoRA DC_utils:
    'avg' -> sum(s) / k each; 'linear' -> sum(s) * linspace(q, 1, k) / sum(linspace(q, 1, k)),
    q = min(rho, s_1 / s_k))."""
    if smoothing == "average":
        return np.full_like(s, s.sum() / len(s))
    if smoothing == "linear":
        ramp = np.linspace(min(rho, s[0] / s[-1]), 1.0, len(s))
        return s.sum() * ramp / ramp.sum()
    return s


def dc_reference(taus, density, smoothing="none", rho=5.0):
    """DC-Merge (Zhang et al. 2026, Sec. 3; keep_topk_percent, ties_small and the block mask as in
    the authors' DC_utils.dc_merge)."""
    t = len(taus)
    k = max(1, min(taus[0].shape) // t)
    factors = [(u, smoothed(s, smoothing, rho), vh) for u, s, vh in truncations(taus, k)]
    cover_u = polar(np.concatenate([f[0] for f in factors], 1))
    cover_vh = polar(np.concatenate([f[2] for f in factors], 0))
    ms = []
    for u, s, vh in factors:
        m = cover_u.T @ (u @ np.diag(s) @ vh) @ cover_vh.T
        keep = max(1, int(density * m.size))
        ms.append(np.where(np.abs(m) >= np.sort(np.abs(m).ravel())[-keep], m, 0))
    stacked = np.stack(ms)
    total = stacked.sum(0)
    agree = np.sign(stacked) == np.sign(total)
    agg = np.where(total == 0, 0, (stacked * agree).sum(0) / np.maximum(agree.sum(0), 1))
    mask = np.kron(np.eye(t), np.ones((k, k)))
    return cover_u @ (agg * mask) @ cover_vh


def test_tsv_iso_and_dc_merge_match_references():
    pretrained, finetuned = pool(seed=11, n=3)
    pre = leaves(pretrained)
    cases = [
        (merging.tsv_merge(pretrained, finetuned, scaling=0.9), 0.9, tsv_reference),
        (merging.iso_c(pretrained, finetuned, scaling=0.7), 0.7, iso_c_reference),
        (merging.iso_cts(pretrained, finetuned, scaling=0.6), 0.6, iso_cts_reference),
        (merging.dc_merge(pretrained, finetuned, density=0.3), 1.0, lambda taus: dc_reference(taus, 0.3)),
    ]
    for merged, scaling, rule in cases:
        merged_tv = per_leaf(pretrained, finetuned, rule)
        assert_leaves_close(merged, [p + scaling * d for p, d in zip(pre, merged_tv)], atol=1e-11)



def test_dc_merge_smoothings_match_reference():
    """k = 3 directions per task, so the smoothing acts; rho = 1.3 caps the linear ramp."""
    rng = np.random.default_rng(12)
    pretrained = {"kernel": rng.standard_normal((13, 10)), "bias": rng.standard_normal(10)}
    finetuned = [jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape), pretrained) for _ in range(3)]
    for smoothing, rho, density in (("average", 5.0, 1.0), ("linear", 5.0, 1.0), ("linear", 1.3, 0.4)):
        merged = merging.dc_merge(pretrained, finetuned, 0.9, density=density, smoothing=smoothing, rho=rho)
        want = per_leaf(pretrained, finetuned, lambda taus: dc_reference(taus, density, smoothing, rho))
        assert_leaves_close(merged, [p + 0.9 * d for p, d in zip(leaves(pretrained), want)], atol=1e-11)
    ratios = [(lambda s: s[0] / s[2])(np.linalg.svd(f["kernel"] - pretrained["kernel"], compute_uv=False))
              for f in finetuned]
    assert min(ratios) > 1.3 and max(ratios) < 5.0  # the cap binds at rho = 1.3 and not at 5

def test_tsv_of_orthogonal_tasks_recovers_their_sum_and_compress_truncates():
    """Rank-2 task matrices in mutually orthogonal subspaces (k = 6 // 3 = 2 kept per task):
    TSV-M keeps each exactly, so the merge is their sum; TSV-C with rank_fraction 1/r keeps the
    top singular triplet of each."""
    rng = np.random.default_rng(12)
    q_left, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    q_right, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    pretrained = {"w": rng.standard_normal((8, 6))}
    taus = [sum((3.0 + i - c) * np.outer(q_left[:, 2 * i + c], q_right[:, 2 * i + c]) for c in range(2))
            for i in range(3)]
    finetuned = [{"w": pretrained["w"] + t} for t in taus]
    np.testing.assert_allclose(merging.tsv_merge(pretrained, finetuned)["w"], pretrained["w"] + sum(taus), atol=1e-12)
    noisy = [{"w": f["w"] + 1e-3 * rng.standard_normal((8, 6))} for f in finetuned]
    compressed = merging.tsv_compress(pretrained, noisy, rank_fraction=1 / 6)
    for c, f in zip(compressed, noisy):
        u, s, vh = np.linalg.svd(f["w"] - pretrained["w"])
        np.testing.assert_allclose(c["w"], pretrained["w"] + s[0] * np.outer(u[:, 0], vh[0]), atol=1e-12)


def test_regmean_solves_the_least_squares_merge():
    """alpha = 1: W* minimizes sum_i ||X_i W - X_i W_i||^2 (Jin et al. 2023, Eq. 2), checked by
    a stacked lstsq; alpha < 1: the closed form with shrunk off-diagonals; biases averaged."""
    pretrained, finetuned = pool(seed=13, n=3)
    rng = np.random.default_rng(13)
    inputs = [{"dense": rng.standard_normal((20, 7)), "head": rng.standard_normal((15, 5))} for _ in finetuned]
    grams = [{"dense": {"kernel": x["dense"].T @ x["dense"], "bias": None}, "head": {"kernel": x["head"].T @ x["head"]}}
             for x in inputs]
    merged = merging.regmean(pretrained, finetuned, grams, alpha=1.0)
    for layer in ("dense", "head"):
        x = np.concatenate([i[layer] for i in inputs])
        y = np.concatenate([i[layer] @ f[layer]["kernel"] for i, f in zip(inputs, finetuned)])
        np.testing.assert_allclose(merged[layer]["kernel"], np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-10)
    np.testing.assert_allclose(merged["dense"]["bias"], np.mean([f["dense"]["bias"] for f in finetuned], 0), atol=1e-14)
    shrunk = merging.regmean(pretrained, finetuned, grams, alpha=0.5)
    gs = [0.5 * g["head"]["kernel"] + 0.5 * np.diag(np.diag(g["head"]["kernel"])) for g in grams]
    want = np.linalg.solve(sum(gs), sum(g @ f["head"]["kernel"] for g, f in zip(gs, finetuned)))
    np.testing.assert_allclose(shrunk["head"]["kernel"], want, atol=1e-10)
    with pytest.raises(ValueError, match=r"regmean: grams\[0\] has a Gram matrix of shape"):
        merging.regmean(pretrained, finetuned, [{**g, "head": {"kernel": np.eye(3)}} for g in grams])


def test_ota_merge_and_fisher_grafting_match_reference():
    """OTA (Eq. of Sec. 3: sum_i P_i theta_i / sum_i P_i, P_i = v_i^power + eps) on the fine-tunes
    grafted by FFG (top round(density n) of v_i tau_i^2 per tensor, as in the authors' ffg.py)."""
    pretrained, finetuned = pool(seed=14, n=3)
    rng = np.random.default_rng(14)
    moments = [jax.tree.map(lambda p: rng.uniform(0.01, 2.0, np.shape(p)), pretrained) for _ in finetuned]
    merged = merging.ota_merge(pretrained, finetuned, moments, density=0.4, power=0.5, epsilon=1e-8)
    reference = []
    for j, p in enumerate(leaves(pretrained)):
        num = den = 0.0
        for f, v in zip(finetuned, moments):
            tau, vj = leaves(f)[j] - p, leaves(v)[j]
            k = max(1, round(0.4 * tau.size))
            keep = np.zeros(tau.size, bool)
            keep[np.argsort(-(vj * tau**2).ravel())[:k]] = True
            grafted = p + np.where(keep.reshape(tau.shape), tau, 0)
            num, den = num + (vj**0.5 + 1e-8) * grafted, den + vj**0.5 + 1e-8
        reference.append(num / den)
    assert_leaves_close(merged, reference)
    plain = merging.ota_merge(pretrained, finetuned, [jax.tree.map(np.ones_like, m) for m in moments])
    assert_leaves_close(plain, leaves(merging.average(finetuned)))  # equal curvature: the average


def test_adam_second_moments_reads_optax_state():
    params = {"w": jnp.ones((2, 3))}
    opt = optax.adamw(1e-3)
    state = opt.init(params)
    _, state = opt.update({"w": 2 * jnp.ones((2, 3))}, state, params)
    np.testing.assert_allclose(merging.adam_second_moments(state)["w"], 0.001 * 4 * np.ones((2, 3)))
    with pytest.raises(ValueError, match="adam_second_moments"):
        merging.adam_second_moments(())


def do_merge_reference(pretrained, factors, steps, lr, gamma, scaling):
    """DO-Merging (Zheng et al. 2025, Sec. 3): gradient descent with the hand-derived gradients
    d/da_i = 4 sum_{j != i} a_j a_j^T a_i + 2 gamma (a_i - a_i^0) (and b_i b_j^T b_j for b),
    then the decoupled magnitude/direction merge."""
    a0, b0 = np.stack([f[0] for f in factors]), np.stack([f[1] for f in factors])
    a, b = a0.copy(), b0.copy()
    for _ in range(steps):
        ga = np.stack([4 * sum(a[j] @ a[j].T @ a[i] for j in range(len(a)) if j != i) + 2 * gamma * (a[i] - a0[i])
                       for i in range(len(a))])
        gb = np.stack([4 * sum(b[i] @ b[j].T @ b[j] for j in range(len(b)) if j != i) + 2 * gamma * (b[i] - b0[i])
                       for i in range(len(b))])
        a, b = a - lr * ga, b - lr * gb
    ws = [x @ y for x, y in zip(a, b)]
    ms = [np.linalg.norm(w, axis=0) for w in ws]
    direction = sum(w / m for w, m in zip(ws, ms))
    return pretrained + scaling * np.mean(ms, 0) * direction / np.linalg.norm(direction, axis=0)


def test_do_merge_matches_reference():
    rng = np.random.default_rng(15)
    pretrained = {"attn": {"kernel": rng.standard_normal((7, 5)), "bias": rng.standard_normal(5)}}
    factors = [(0.5 * rng.standard_normal((7, 2)), 0.5 * rng.standard_normal((2, 5))) for _ in range(3)]
    adapters = [{"attn": {"kernel": f, "bias": None}} for f in factors]
    merged = merging.do_merge(pretrained, adapters, scaling=0.8, orthogonal_steps=20, learning_rate=0.05, gamma=0.5)
    want = do_merge_reference(pretrained["attn"]["kernel"], factors, 20, 0.05, 0.5, 0.8)
    np.testing.assert_allclose(merged["attn"]["kernel"], want, atol=1e-11)
    np.testing.assert_array_equal(merged["attn"]["bias"], pretrained["attn"]["bias"])
    a, _ = merging.orthogonalize_factors(jnp.stack([f[0] for f in factors]), jnp.stack([f[1] for f in factors]),
                                          steps=200, learning_rate=0.05, gamma=0.1)
    cross = lambda s: sum(np.sum((s[i].T @ s[j]) ** 2) for i in range(3) for j in range(3) if i != j)  # noqa: E731
    assert cross(np.asarray(a)) < 0.5 * cross(np.stack([f[0] for f in factors]))


def opcm_reference(pretrained, finetuned, alpha):
    """OPCM (Tang et al. 2025, Eq. 4-7; the projection as in FusionBench's opcm.py)."""
    pre = leaves(pretrained)
    taus = [[c - p for c, p in zip(leaves(f), pre)] for f in finetuned]
    norm = lambda tv: np.sqrt(sum(np.sum(x * x) for x in tv))  # noqa: E731
    delta, lam, norms = taus[0], 1.0, [norm(taus[0])]
    for tau in taus[1:]:
        norms.append(norm(tau))
        combined = []
        for d, t in zip(delta, tau):
            if d.ndim == 2:
                u, s, vh = np.linalg.svd(d, full_matrices=True)
                split = int(np.argmax(np.cumsum(s) / s.sum() > alpha))
                p = u.T @ t @ vh.T
                np.fill_diagonal(p, 0)
                p[:split, :split] = 0
                t = u @ p @ vh
            combined.append(lam * d + t)
        lam = norm(combined) / np.mean(norms)
        delta = [c / lam for c in combined]
    return [p + d for p, d in zip(pre, delta)]


def test_continual_merge_matches_opcm_reference():
    pretrained, finetuned = pool(seed=16, n=4)
    merger = merging.continual_merge(pretrained, alpha=0.5)
    assert_leaves_close(merger.update(finetuned[0]), leaves(finetuned[0]))
    for i, f in enumerate(finetuned[1:], start=2):
        merged = merger.update(f)
        assert_leaves_close(merged, opcm_reference(pretrained, finetuned[:i], 0.5), atol=1e-11)
    assert merger.count == 4
    with pytest.raises(ValueError, match="continual_merge: alpha"):
        merging.continual_merge(pretrained, alpha=1.0)


def test_checkpoint_pool_streams_the_same_merges_and_float32_is_kept(tmp_path):
    pretrained, finetuned = pool(seed=17, n=3, dtype=np.float32)
    lazy = merging.save_pool(str(tmp_path / "pool"), finetuned)
    for run in (merging.tsv_merge, merging.iso_cts, merging.dc_merge, merging.model_stock,
                lambda p, f: merging.karcher_mean(f, max_iter=2), lambda p, f: merging.breadcrumbs(p, f, 0.6, 0.1)):
        from_list = run(pretrained, finetuned)
        assert all(x.dtype == np.float32 for x in jax.tree_util.tree_leaves(from_list))
        assert_leaves_close(run(pretrained, lazy), leaves(from_list), atol=0)


def test_bad_inputs_name_the_function_and_argument():
    pretrained, finetuned = pool(n=2)
    with pytest.raises(ValueError, match="dc_merge: smoothing"):
        merging.dc_merge(pretrained, finetuned, smoothing="exponential")
    with pytest.raises(ValueError, match="dc_merge: rho"):
        merging.dc_merge(pretrained, finetuned, smoothing="linear", rho=0.5)
    with pytest.raises(ValueError, match="iso_cts: common_fraction"):
        merging.iso_cts(pretrained, finetuned, common_fraction=0.0)
    with pytest.raises(ValueError, match="tsv_merge: scaling"):
        merging.tsv_merge(pretrained, finetuned, scaling=float("inf"))
    with pytest.raises(ValueError, match="ota_merge: second_moments must hold one tree per candidate"):
        merging.ota_merge(pretrained, finetuned, finetuned[:1])
    with pytest.raises(ValueError, match="regmean: alpha"):
        merging.regmean(pretrained, finetuned, [None, None], alpha=1.5)
    with pytest.raises(ValueError, match="do_merge: LoRA factors"):
        merging.do_merge({"w": np.zeros((4, 3))}, [{"w": (np.ones((4, 2)), np.ones((2, 5)))}], orthogonal_steps=0)

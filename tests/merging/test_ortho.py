"""OrthoMerge against SciPy's matrix logarithm and exponential."""
import numpy as np
import pytest
import scipy.linalg

from manifold_opt import merging


def rotation(rng, n, angle_scale=0.6):
    a = angle_scale * rng.standard_normal((n, n)) / np.sqrt(n)
    return scipy.linalg.expm(a - a.T)


def orthogonality_error(r):
    r = np.asarray(r, np.float64)
    return np.linalg.norm(r.T @ r - np.eye(r.shape[0]))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-6), (np.float32, 1e-5)])
def test_merged_rotations_are_orthogonal(dtype, tol):
    rng = np.random.default_rng(0)
    rotations = [rotation(rng, 6).astype(dtype) for _ in range(4)]
    merged = merging.merge_rotations(rotations, weights=[0.1, 0.2, 0.3, 0.4])
    assert merged.dtype == dtype
    assert orthogonality_error(merged) < tol


def test_two_rotations_merge_to_the_geodesic_midpoint():
    rng = np.random.default_rng(1)
    q = scipy.linalg.qr(rng.standard_normal((6, 6)))[0]
    planes = np.zeros((6, 6))
    planes[0, 1], planes[2, 3] = 1.0, 0.4  # two rotation planes; R1, R2 turn in both
    r1 = q @ scipy.linalg.expm(0.3 * (planes - planes.T)) @ q.T
    r2 = q @ scipy.linalg.expm(1.1 * (planes - planes.T)) @ q.T
    midpoint = r1 @ scipy.linalg.expm(0.5 * np.real(scipy.linalg.logm(r1.T @ r2)))  # on the geodesic R1 -> R2
    np.testing.assert_allclose(merging.merge_rotations([r1, r2]), midpoint, atol=1e-10)
    # non-commuting rotations: exp of the averaged generators (SciPy logm/expm)
    r3, r4 = rotation(rng, 6), rotation(rng, 6)
    expected = scipy.linalg.expm(0.5 * np.real(scipy.linalg.logm(r3) + scipy.linalg.logm(r4)))
    np.testing.assert_allclose(merging.merge_rotations([r3, r4], magnitude_correction=False), expected, atol=1e-10)
    # with the correction the generator keeps the mean norm of the two
    corrected = np.real(scipy.linalg.logm(np.asarray(merging.merge_rotations([r3, r4]))))
    mean_norm = (np.linalg.norm(scipy.linalg.logm(r3)) + np.linalg.norm(scipy.linalg.logm(r4))) / 2
    assert np.isclose(np.linalg.norm(corrected), mean_norm, rtol=1e-8)


def test_procrustes_recovers_a_planted_rotation_and_orthomerge_decouples():
    rng = np.random.default_rng(2)
    w_pre = rng.standard_normal((6, 10))
    planted = [rotation(rng, 6, 0.4) for _ in range(2)]
    np.testing.assert_allclose(merging.procrustes_rotation(planted[0] @ w_pre, w_pre), planted[0], atol=1e-10)
    noisy = planted[0] @ w_pre + 1e-3 * rng.standard_normal((6, 10))
    assert np.linalg.norm(merging.procrustes_rotation(noisy, w_pre) - planted[0]) < 1e-2

    pretrained = {"kernel": w_pre, "bias": rng.standard_normal(10)}
    residuals = [0.01 * rng.standard_normal((6, 10)) for _ in range(2)]
    # pure orthogonal fine-tunes merge to the merged rotation; biases average additively
    finetuned = [{"kernel": r @ w_pre, "bias": pretrained["bias"] + i + 1.0} for i, r in enumerate(planted)]
    merged = merging.orthomerge(pretrained, finetuned)
    expected_rotation = np.asarray(merging.merge_rotations(planted))
    np.testing.assert_allclose(merged["kernel"], expected_rotation @ w_pre, atol=1e-10)
    np.testing.assert_allclose(merged["bias"], pretrained["bias"] + 1.5, atol=1e-12)
    assert orthogonality_error(expected_rotation) < 1e-10

    # a general fine-tune: W_i = R_i W_pre + E_i; the Procrustes split gives back W_i exactly
    general = [{"kernel": r @ w_pre + e, "bias": pretrained["bias"]} for r, e in zip(planted, residuals)]
    single = merging.orthomerge(pretrained, general[:1])
    np.testing.assert_allclose(single["kernel"], general[0]["kernel"], atol=1e-10)
    rotations = [np.asarray(merging.procrustes_rotation(g["kernel"], w_pre)) for g in general]
    split = [g["kernel"] - r @ w_pre for g, r in zip(general, rotations)]
    reference = np.asarray(merging.merge_rotations(rotations)) @ w_pre + (split[0] + split[1]) / 2
    np.testing.assert_allclose(merging.orthomerge(pretrained, general)["kernel"], reference, atol=1e-10)


def test_bad_inputs_name_the_function():
    with pytest.raises(ValueError, match="merge_rotations: rotations must be square"):
        merging.merge_rotations([np.ones((3, 4))])
    with pytest.raises(ValueError, match="orthomerge: weights"):
        merging.orthomerge({"k": np.eye(3)}, [{"k": np.eye(3)}], weights=[0.5, 0.5])

"""The hyperconnections experiment: generated tasks are right, the quick config tunes every mixer
through the protocol and writes its fields, tables and plot; bad config values name their key."""
import json

import numpy as np
import pytest

import manifold_opt as mo
from configs import hyperconnections as hc_config
from experiments import harness, hyperconnections, registry


def config_with(**values):
    config = hc_config.get_config()
    for k, v in values.items():
        config[k] = v
    return harness.resolve(config)


def test_tasks_solve_hand_checked_grids():
    grid = np.array([[1, 0, 2], [0, 0, 3], [4, 0, 0]])
    np.testing.assert_array_equal(hyperconnections.solve("rotate", grid, 6), [[4, 0, 1], [0, 0, 0], [0, 3, 2]])
    np.testing.assert_array_equal(hyperconnections.solve("reflect", grid, 6), [[2, 0, 1], [3, 0, 0], [0, 0, 4]])
    np.testing.assert_array_equal(hyperconnections.solve("colormap", grid, 6), [[5, 0, 1], [0, 0, 2], [3, 0, 0]])
    np.testing.assert_array_equal(hyperconnections.solve("count", grid, 6), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(hyperconnections.solve("gravity", grid, 6), [[0, 0, 0], [1, 0, 2], [4, 0, 3]])


def test_quick_run_tunes_every_mixer_and_writes_the_protocol_fields(tmp_path):
    config = config_with(quick=True)
    results = registry.get("hyperconnections")(config, str(tmp_path))
    table = json.loads((tmp_path / "results.json").read_text())
    assert list(table["arms"]) == list(config.mixers)
    for mixer, row in table["arms"].items():
        assert set(row) >= {"grid", "chosen", "at_edge", "seeds", "metrics"}
        assert row["chosen"]["learning_rate"] in row["grid"]["learning_rate"]
        assert row["seeds"] == list(config.seeds)
        for metric in ("loss", "exact_match", "steps_to_threshold", "mixer_distance", "jacobian_m1@2", "predicted_m1@2"):
            assert set(row["metrics"][metric]) >= {"mean", "std", "ci95"}
            assert np.all(np.isfinite(row["metrics"][metric]["values"]))
        assert np.mean(row["metrics"]["loss"]["values"]) < np.log(config.colors)  # it learned past chance
    # identity: no mixer to move, and the mixer-only prediction is exactly 1 at every depth
    assert table["arms"]["identity"]["metrics"]["mixer_distance"]["values"] == [0.0, 0.0]
    assert results["identity/predicted_m1@2"] == pytest.approx(1.0)
    assert results["spectral_sphere/mixer_distance"] > 0  # trained off its identity init
    assert [c["text"] for c in table["claims"]] == list(config.claims)
    assert table["claims"][0]["verdict"] in ("agrees", "disagrees", "inconclusive")
    assert "| spectral_sphere |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "jacobian_depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_jacobian_prediction_matches_the_measured_law_for_a_linear_orthogonal_recursion():
    """Sanity check of the measured-vs-predicted comparison: with the block F = 0 (the mixer
    alone), streams after r recursions are (H_att H_mlp)^r H0, whose Jacobian's mean squared
    singular value the free-probability prediction gives exactly."""
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))[0]
    scaled = np.stack([0.9 * q, q.T @ q])  # one contraction, one isometry
    depth = 3
    product = np.linalg.matrix_power(scaled[1] @ scaled[0], depth)
    measured = np.mean(np.linalg.svd(product, compute_uv=False) ** 2)
    predicted = mo.nn.predict_jacobian_spectrum(np.tile(scaled, (depth, 1, 1)), num_moments=1)[0]
    assert predicted == pytest.approx(measured, rel=1e-9)


@pytest.mark.parametrize(
    "values, key",
    [(dict(mixers=("birkhoff", "sinkhorn")), "config.mixers"), (dict(tasks=("rotate", "paint")), "config.tasks"),
     (dict(d_model=15), "config.d_model"), (dict(density=1.5), "config.density"),
     (dict(spectrum_depths=(1, 99)), "config.spectrum_depths"), (dict(eval_every=7), "config.eval_every")],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        hyperconnections.validate(config_with(**values))

"""The hyperconnections experiment: generated tasks are right, the quick config trains every
mixer and the stress run, and writes its tables and plots; bad config values name their key."""
import json

import numpy as np
import pytest

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


def test_quick_run_trains_every_mixer_and_writes_tables_and_plots(tmp_path):
    config = config_with(quick=True)
    results = registry.get("hyperconnections")(config, str(tmp_path))
    table = json.loads((tmp_path / "results.json").read_text())
    assert list(table["rows"]) == list(config.mixers) and list(table["stress"]) == list(config.stress_mixers)
    for mixer in config.mixers:
        history = harness.read_history(str(tmp_path / mixer / "seed0"))
        losses = [r["train/loss"] for r in history if "train/loss" in r]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]  # it learns
        assert results[f"{mixer}/constraint"] <= 1e-5
    assert results["identity/gain_trained"] == 1.0
    assert results["spectral_sphere/gain_init"] == pytest.approx(1.0, abs=1e-5)
    assert results["spectral_sphere/params"] == results["identity/params"] + 2 * (16 + 8)  # n^2 + 2n per connection
    assert "| spectral_sphere |" in (tmp_path / "results.md").read_text()
    for name in ("curves.png", "composite_gain.png", "jacobian_spectra.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "values, key",
    [(dict(mixers=("birkhoff", "sinkhorn")), "config.mixers"), (dict(tasks=("rotate", "paint")), "config.tasks"),
     (dict(d_model=30), "config.d_model"), (dict(density=1.5), "config.density")],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        hyperconnections.validate(config_with(**values))

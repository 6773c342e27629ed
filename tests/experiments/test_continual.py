"""The continual-learning experiment: the canvas tasks, the metrics, Sculpting Subspaces'
adaptive rank, and the quick run through the protocol (its fields, and protection that keeps
task 0); bad configs name the key."""
import json

import jax
import numpy as np
import pytest

from configs import continual as continual_config
from experiments import continual, registry
from tests.experiments.configs import resolved


def config_with(**values):
    return resolved(continual_config, **values)


def test_canvas_tasks_splits_and_metrics():
    tasks = continual.make_tasks(3, seed=0)
    first, second = tasks[0]["train"]["x"], tasks[1]["train"]["x"]
    assert first.shape[1] == 256
    canvas = first.reshape(-1, 16, 16)
    assert np.all(canvas[:, :4] == 0) and np.all(canvas[:, :, 12:] == 0)  # the digit sits in the middle
    np.testing.assert_array_equal(np.sort(second, 1), np.sort(first, 1))  # same pixels, permuted
    assert not np.array_equal(second, first)
    sizes = {k: len(tasks[0][k]["y"]) for k in ("train", "selection", "report")}
    assert sum(sizes.values()) == 1797 and min(sizes.values()) > 150
    acc = np.array([[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.6, 0.5, 0.9]])
    average, forgetting = continual.summarize(acc)
    assert average == pytest.approx((0.6 + 0.5 + 0.9) / 3) and forgetting == pytest.approx((0.3 + 0.3) / 2)


def test_layer_importance_is_linear_cka():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 256)).astype(np.float32)
    params = continual.init_params(jax.random.key(0), 20)
    importance = jax.device_get(continual.layer_importance(params, x))
    h = {"fc1": x}
    h["fc2"] = np.maximum(h["fc1"] @ np.asarray(params["fc1"]["kernel"]), 0)
    h["head"] = np.maximum(h["fc2"] @ np.asarray(params["fc2"]["kernel"]), 0)
    for k in continual.LAYERS:
        a = h[k] @ h[k].T
        y = h[k] @ np.asarray(params[k]["kernel"])
        b = y @ y.T
        assert float(importance[k]) == pytest.approx(np.sum(a * b) / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-4)
        assert 0 < float(importance[k]) <= 1


def test_quick_run_goes_through_the_protocol_and_protection_keeps_task0(tmp_path):
    config = config_with(quick=True)
    results = registry.get("continual")(config, str(tmp_path))
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    assert set(saved["arms"]) == set(config.methods)
    for name, arm in saved["arms"].items():
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert set(arm["chosen"]) == {"learning_rate"} and arm["seeds"] == list(config.seeds)
        for metric in ("accuracy", "forgetting"):
            assert {"mean", "std", "ci95"} <= set(arm["metrics"][metric])
        assert 0.0 <= results[f"{name}/accuracy"] <= 1.0
    # the mechanism: protected subspaces keep task 0 (a margin seen over the quick run's seeds)
    assert results["gpm/forgetting"] < 0.5 * results["finetune/forgetting"]
    assert results["fot/forgetting"] < results["fedavg/forgetting"]
    assert [c["text"] for c in saved["claims"]] == list(config.claims)
    assert all(c["verdict"] in ("agrees", "disagrees", "inconclusive") for c in saved["claims"])
    assert "| gpm |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("values, key", [
    (dict(methods=("finetune", "ewc")), "config.methods"),
    (dict(num_tasks=11), "config.num_tasks"),
    (dict(gpm_thresholds=(0.95, 1.5, 0.99)), "config.gpm_thresholds"),
    (dict(gpm_thresholds=(0.95, 0.99)), "config.gpm_thresholds"),
    (dict(sculpt_retention=(0.3, 0.1)), "config.sculpt_retention"),
    (dict(local_steps=7), "config.local_steps"),
    (dict(learning_rates=(0.1, -1.0)), "config.learning_rates"),
    (dict(parallel="pmap"), "config.parallel"),
])
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        continual.validate(config_with(**values))

"""The continual-learning experiment: the quick run protects old tasks (less forgetting than
fine-tuning / FedAvg), writes its table, plot and summary; bad configs name the key."""
import json

import numpy as np
import pytest

from configs import continual as continual_config
from experiments import continual, harness, registry
from tests.experiments.configs import resolved


def config_with(**values):
    return resolved(continual_config, **values)


def test_quick_run_protected_subspaces_forget_less_and_write_artifacts(tmp_path):
    config = config_with(quick=True)
    results = registry.get("continual")(config, str(tmp_path))
    for method in config.methods:
        assert 0.0 <= results[f"permuted/{method}/accuracy"] <= 1.0
    assert results["permuted/gpm/forgetting"] < 0.5 * results["permuted/finetune/forgetting"]
    assert results["permuted/fot/forgetting"] < 0.5 * results["permuted/fedavg/forgetting"]
    assert results["permuted/gpm/accuracy"] > results["permuted/finetune/accuracy"]
    with open(tmp_path / "results.json") as f:
        rows = json.load(f)["rows"]
    assert [r["method"] for r in rows] == list(config.methods)
    assert "| permuted | gpm |" in (tmp_path / "results.md").read_text()
    with open(tmp_path / "permuted_forgetting.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    history = harness.read_history(str(tmp_path / "permuted" / "gpm" / "seed0"))
    acc = continual.accuracy_matrix(history, config.num_tasks, config.steps_per_task)
    assert acc.shape == (3, 3) and acc[0, 0] > 0.8  # task 0 is learned before the others arrive


def test_tasks_and_metrics():
    permuted = continual.make_tasks("permuted", 3, seed=0)
    split = continual.make_tasks("split", 5, seed=0)
    np.testing.assert_array_equal(np.sort(permuted[1][0]["x"], 1), np.sort(permuted[0][0]["x"], 1))  # same pixels
    assert not np.array_equal(permuted[1][0]["x"], permuted[0][0]["x"])
    assert all(set(np.unique(train["y"])) == {0, 1} for train, _ in split)
    assert sum(len(test["y"]) for _, test in split) == len(permuted[0][1]["y"])
    acc = np.array([[0.9, 0.0, 0.0], [0.7, 0.8, 0.0], [0.6, 0.5, 0.9]])
    average, forgetting = continual.summarize(acc)
    assert average == pytest.approx((0.6 + 0.5 + 0.9) / 3) and forgetting == pytest.approx((0.3 + 0.3) / 2)


@pytest.mark.parametrize("values, key", [
    (dict(methods=("finetune", "ewc")), "config.methods"),
    (dict(num_tasks=7), "config.num_tasks"),
    (dict(threshold=1.5), "config.threshold"),
    (dict(local_steps=7), "config.local_steps"),
    (dict(parallel="pmap"), "config.parallel"),
])
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        continual.validate(config_with(**values))

"""The merging experiment: a quick run writes every artifact, and a rerun resumes from them."""
import json
import os

import pytest

from configs import merging as merging_config
from experiments import harness, merging


def quick_config(**values):
    config = merging_config.get_config()
    config.quick = True
    config.update(values)
    return harness.resolve(config, explicit=set(values))  # as on the command line: explicit keys win


def test_quick_run_writes_artifacts_and_a_rerun_reuses_them(tmp_path):
    # TIES, DARE and AdaMerging are checked in tests/merging and run in notebook 06
    config = quick_config(methods=("pretrained", "task_arithmetic", "fw_hard", "fw_soft"))
    summary = merging.run(config, str(tmp_path))
    for method in config.methods:
        for n in config.pool_sizes:
            assert 0.0 <= summary[f"{method}/pool_{n}/accuracy"] <= 1.0
    # the irrelevant-model effect, already in the quick variant: FW-soft holds, task arithmetic drops
    accuracy = lambda method, n: summary[f"{method}/pool_{n}/accuracy"]  # noqa: E731
    assert accuracy("fw_soft", 4) > accuracy("pretrained", 4) + 0.05
    assert accuracy("fw_soft", 8) >= accuracy("fw_soft", 4) - 0.02
    assert accuracy("task_arithmetic", 8) < accuracy("task_arithmetic", 4) - 0.05
    seed_dir = tmp_path / f"seed_{config.seed}"
    assert len(os.listdir(seed_dir / "pool")) == max(config.pool_sizes)  # one orbax checkpoint per candidate
    assert [r["step"] for r in harness.read_history(str(seed_dir))] == list(config.pool_sizes)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(seed_dir))
    with open(tmp_path / merging.PLOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "| task_arithmetic |" in (tmp_path / harness.RESULTS_MD).read_text()
    with open(tmp_path / "summary.json") as f:
        assert json.load(f) == pytest.approx(summary)

    # the seed's history is complete: a rerun reads it back without training or merging
    os.remove(tmp_path / "summary.json")
    assert merging.run(config, str(tmp_path)) == summary
    # without its history, the seed is merged again from the saved orbax pool: the same numbers
    os.remove(seed_dir / "metrics.jsonl")
    assert merging.run(config, str(tmp_path)) == summary
    assert "task arithmetic" in (tmp_path / harness.RESULTS_MD).read_text()


@pytest.mark.parametrize(
    "values, key",
    [(dict(pool_sizes=(2,)), "config.pool_sizes"), (dict(methods=("soup",)), "config.methods"),
     (dict(ties_density=1.5), "config.ties_density"), (dict(dare_drop_rate=1.0), "config.dare_drop_rate")],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        merging.validate(quick_config(**values))

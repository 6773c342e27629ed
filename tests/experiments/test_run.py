"""The CLI runner: a quick run writes every artifact; bad configs fail at start naming the key."""
import glob
import json
import os
import subprocess
import sys

import pytest

from configs import quickstart as quickstart_config
from experiments import harness, quickstart, registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(workdir, *overrides):
    cmd = [sys.executable, "-m", "experiments.run", "--config", "configs/quickstart.py", "--workdir", str(workdir)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(cmd + list(overrides), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_quick_run_writes_scalars_summary_plot_and_checkpoints(tmp_path):
    proc = run_cli(tmp_path, "--config.quick=True")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "riemannian_adam" in proc.stdout and "adamw" in proc.stdout
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    for arm in ("riemannian_adam", "adamw"):
        assert summary[f"{arm}/test/accuracy"] > 0.8  # 10 classes: chance is 0.1
        assert glob.glob(str(tmp_path / arm / "events.out.tfevents.*"))
        assert os.path.isdir(tmp_path / arm / "checkpoints" / "200")
        history = harness.read_history(str(tmp_path / arm))
        assert [r["step"] for r in history if "test/accuracy" in r] == [50, 100, 150, 200]
    # Riemannian Adam stays on O(64) x St(64, 32); AdamW from the same start leaves it.
    assert summary["riemannian_adam/feasibility"] < 1e-4
    assert summary["adamw/feasibility"] > 1e-2
    with open(tmp_path / "comparison.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "override, key",
    [
        ("--config.no_such_key=1", "no_such_key"),
        ("--config.parallel=everywhere", "config.parallel"),
        ("--config.num_steps=ten", "config.num_steps"),
    ],
)
def test_cli_rejects_bad_config_naming_the_key(tmp_path, override, key):
    proc = run_cli(tmp_path, override)
    assert proc.returncode != 0
    assert key in proc.stderr
    assert not os.path.exists(tmp_path / "summary.json")


def config_with(**values):
    config = quickstart_config.get_config()
    for k, v in values.items():
        config[k] = v
    return harness.resolve(config)


@pytest.mark.parametrize(
    "values, key",
    [
        (dict(mesh_shape=(3, 0)), "config.mesh_shape"),
        (dict(batch_size=0), "config.batch_size"),
        (dict(checkpoint_every=-1), "config.checkpoint_every"),
        (dict(optimizers=("sgd",)), "config.optimizers"),
        (dict(dtype="float16"), "config.dtype"),
        (dict(learning_rate=-0.1), "config.learning_rate"),
        (dict(hidden=16, bottleneck=32), "config.hidden"),
        (dict(test_fraction=1.5), "config.test_fraction"),
        (dict(parallel="jit_sharded", mesh_shape=(3, -1)), "config.mesh_shape"),
        (dict(parallel="pmap", batch_size=100), "config.batch_size"),
    ],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        quickstart.validate(config_with(**values))


def test_quick_overrides_apply_and_config_stays_locked():
    config = config_with(quick=True)
    assert config.num_steps == config.quick_overrides.num_steps < quickstart_config.get_config().num_steps
    with pytest.raises(AttributeError):
        config.no_such_key = 1


def test_registry_names_unknown_experiment():
    assert registry.get("quickstart") is quickstart.run
    with pytest.raises(ValueError, match="config.experiment"):
        registry.get("no_such_experiment")

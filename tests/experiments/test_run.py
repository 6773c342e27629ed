"""The CLI runner: a quick run writes every artifact; bad configs fail at start naming the key."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from configs import quickstart as quickstart_config
from experiments import harness, quickstart, registry
from tests.experiments.test_resume import assert_same_state, final_state

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli_command(workdir, *overrides):
    cmd = [sys.executable, "-m", "experiments.run", "--config", "configs/quickstart.py", "--workdir", str(workdir)]
    return cmd + list(overrides), dict(os.environ, PYTHONPATH=ROOT)


def run_cli(workdir, *overrides):
    cmd, env = cli_command(workdir, *overrides)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def kill_after_first_checkpoint(workdir, *overrides):
    """Start a CLI run and SIGKILL it once its first checkpoint (step 100) is on disk."""
    cmd, env = cli_command(workdir, *overrides)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(str(workdir), "riemannian_adam", "checkpoints", "100")
    deadline = time.monotonic() + 240
    while not os.path.isdir(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_quick_run_writes_artifacts_and_a_killed_run_resumes_to_the_same_result(tmp_path):
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(killed, "--config.quick=True")
    assert not os.path.exists(killed / "summary.json")  # killed mid-run
    assert not os.path.isdir(killed / "riemannian_adam" / "checkpoints" / "200")
    resumed = run_cli(killed, "--config.quick=True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    proc = run_cli(tmp_path, "--config.quick=True")  # uninterrupted
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

    # the killed-and-resumed run ends bit-identical, with the same curves and final metrics
    for arm in ("riemannian_adam", "adamw"):
        assert_same_state(final_state(str(killed), 200, arm), final_state(str(tmp_path), 200, arm))
        assert harness.read_history(str(killed / arm)) == harness.read_history(str(tmp_path / arm))
    with open(killed / "summary.json") as f:
        resumed_summary = json.load(f)
    drop_rates = lambda d: {k: v for k, v in d.items() if "steps_per_second" not in k}  # noqa: E731
    assert drop_rates(resumed_summary) == drop_rates(summary)


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
        (dict(distributed=True), "config.parallel"),  # multi-host needs jit_sharded
        (dict(num_processes=2, process_id=2), "config.process_id"),
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


def test_explicit_flags_win_over_quick_overrides():
    from experiments.run import explicit_config_keys

    explicit = explicit_config_keys(["run", "--config", "c.py", "--config.quick=True", "--config.num_steps", "7"])
    assert explicit == {"quick", "num_steps"}
    config = quickstart_config.get_config()
    config.quick, config.num_steps = True, 7
    resolved = harness.resolve(config, explicit=explicit)
    assert resolved.num_steps == 7
    assert resolved.eval_every == config.quick_overrides.eval_every  # the other overrides still apply


def test_registry_names_unknown_experiment():
    assert registry.get("quickstart") is quickstart.run
    with pytest.raises(ValueError, match="config.experiment"):
        registry.get("no_such_experiment")

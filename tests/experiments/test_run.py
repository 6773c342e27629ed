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
from tests.experiments.test_resume import assert_same_state, final_state, run_dirs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli_command(workdir, *overrides):
    cmd = [sys.executable, "-m", "experiments.run", "--config", "configs/quickstart.py", "--workdir", str(workdir)]
    return cmd + list(overrides), dict(os.environ, PYTHONPATH=ROOT)


def run_cli(workdir, *overrides):
    cmd, env = cli_command(workdir, *overrides)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def kill_after_first_checkpoint(workdir, *overrides):
    """Start a CLI run and SIGKILL it once the first checkpoint (step 50) of its first protocol
    run (riemannian_adam, the lowest learning rate, seed 0) is on disk."""
    cmd, env = cli_command(workdir, *overrides)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = os.path.join(str(workdir), "protocol", "*", "riemannian_adam", "*", "seed0", "checkpoints", "50")
    deadline = time.monotonic() + 240
    while not glob.glob(pattern) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    (checkpoint,) = glob.glob(pattern)
    return os.path.dirname(os.path.dirname(checkpoint))


def test_quick_run_writes_artifacts_and_a_killed_run_resumes_to_the_same_result(tmp_path):
    killed = tmp_path / "killed"
    first_run = kill_after_first_checkpoint(killed, "--config.quick=True")
    assert not os.path.exists(killed / "results.json")  # killed mid-run
    assert not os.path.isdir(os.path.join(first_run, "checkpoints", "100"))
    resumed = run_cli(killed, "--config.quick=True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    proc = run_cli(tmp_path, "--config.quick=True")  # uninterrupted
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "riemannian_adam" in proc.stdout and "adamw" in proc.stdout
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert (tmp_path / "results.md").read_text().startswith("### Digits")
    assert [c["text"] for c in results["claims"]] == ["riemannian_adam > adamw on accuracy"]
    assert results["claims"][0]["verdict"] in ("agrees", "disagrees", "inconclusive")
    assert results["quick"] is True
    for arm in ("riemannian_adam", "adamw"):
        found = results["arms"][arm]
        assert found["grid"]["learning_rate"] == [3e-3, 1e-2, 3e-2]  # max_grid_extensions = 0 in quick
        assert found["chosen"]["learning_rate"] in found["grid"]["learning_rate"] and found["seeds"] == [0, 1]
        metrics = found["metrics"]
        assert sorted(metrics) == ["accuracy", "feasibility", "loss"] and metrics["accuracy"]["n"] == 2
        assert metrics["accuracy"]["mean"] > 0.8  # 10 classes: chance is 0.1
        for seed in (0, 1):
            rundir = quickstart.run_dir(str(tmp_path), results, arm, seed)
            assert glob.glob(os.path.join(rundir, "events.out.tfevents.*"))
            assert os.path.isdir(os.path.join(rundir, "checkpoints", "100"))
            history = harness.read_history(rundir)
            assert [r["step"] for r in history if "selection/accuracy" in r] == [25, 50, 75, 100]
    # Riemannian Adam stays on O(64) x St(64, 32); AdamW from the same start leaves it.
    assert max(results["arms"]["riemannian_adam"]["metrics"]["feasibility"]["values"]) < 1e-4
    assert min(results["arms"]["adamw"]["metrics"]["feasibility"]["values"]) > 1e-2
    with open(tmp_path / "summary.json") as f:
        summary = json.load(f)
    assert summary["riemannian_adam/accuracy"] == results["arms"]["riemannian_adam"]["metrics"]["accuracy"]["mean"]
    with open(tmp_path / "comparison.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # the killed-and-resumed run ends bit-identical: every run's final state, curves and scores
    assert run_dirs(str(killed)) == run_dirs(str(tmp_path)) and len(run_dirs(str(tmp_path))) == 8
    for run in run_dirs(str(tmp_path)):
        assert_same_state(final_state(str(killed / run), 100), final_state(str(tmp_path / run), 100))
        assert harness.read_history(str(killed / run)) == harness.read_history(str(tmp_path / run))
    with open(killed / "results.json") as f:
        resumed_results = json.load(f)
    assert resumed_results["arms"] == results["arms"] and resumed_results["claims"] == results["claims"]


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
        (dict(learning_rates=dict(riemannian_adam=(1e-2, 0.0), adamw=(1e-2, 3e-2))), "config.learning_rates.riemannian_adam"),
        (dict(learning_rates=dict(riemannian_adam=(1e-2,), adamw=(1e-2, 3e-2))), "grid budget"),
        (dict(claims=("riemannian_adam > sgd on accuracy",)), "config.claims"),
        (dict(selection_fraction=0.0), "config.selection_fraction"),
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

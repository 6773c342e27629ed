"""An interrupted run resumed in the same workdir ends bit-identical to an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import quickstart as quickstart_config
from experiments import harness, quickstart


def small_config(**values):
    config = quickstart_config.get_config()
    config.update(
        dict(optimizers=("riemannian_adam",), num_steps=30, checkpoint_every=10, eval_every=10, log_every=5, **values)
    )
    return harness.resolve(config)


def final_state(workdir, step=30, arm="riemannian_adam"):
    path = os.path.join(workdir, arm, "checkpoints")
    with ocp.CheckpointManager(os.path.abspath(path)) as manager:
        return manager.restore(step, args=ocp.args.StandardRestore())


def assert_same_state(a, b):
    leaves_a, leaves_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
    assert leaves_a.keys() == leaves_b.keys()
    for key in leaves_a:
        np.testing.assert_array_equal(np.asarray(leaves_a[key]), np.asarray(leaves_b[key]), err_msg=str(key))


@pytest.mark.parametrize("parallel", ["none", "jit_sharded"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, parallel):
    full = quickstart.run(small_config(parallel=parallel), str(tmp_path / "full"))
    interrupted = str(tmp_path / "interrupted")
    with pytest.raises(harness.Preempted):  # stops at step 17; the last checkpoint is step 10
        quickstart.run(small_config(parallel=parallel, stop_after=17), interrupted)
    assert sorted(os.listdir(os.path.join(interrupted, "riemannian_adam", "checkpoints"))) == ["10"]
    resumed = quickstart.run(small_config(parallel=parallel), interrupted)

    assert_same_state(final_state(str(tmp_path / "full")), final_state(interrupted))
    assert {k: v for k, v in full.items() if "steps_per_second" not in k} == {
        k: v for k, v in resumed.items() if "steps_per_second" not in k
    }
    history = lambda d: harness.read_history(os.path.join(d, "riemannian_adam"))  # noqa: E731
    assert history(str(tmp_path / "full")) == history(interrupted)
    assert [r["step"] for r in history(interrupted) if "train/loss" in r] == [5, 10, 15, 20, 25, 30]


def test_cli_run_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ["--config.optimizers=('adamw',)", "--config.num_steps=400", "--config.checkpoint_every=50", "--config.eval_every=50"]

    def cli(workdir):
        cmd = [sys.executable, "-m", "experiments.run", "--config", "configs/quickstart.py", "--workdir", workdir]
        env = dict(os.environ, PYTHONPATH=root)
        return subprocess.Popen(cmd + args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    killed_dir = str(tmp_path / "killed")
    proc = cli(killed_dir)
    first = os.path.join(killed_dir, "adamw", "checkpoints", "50")
    deadline = time.monotonic() + 120
    while not os.path.isdir(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    saved = [int(d) for d in os.listdir(os.path.dirname(first)) if d.isdigit()]
    assert 0 < max(saved) < 400  # killed mid-run, after at least one checkpoint
    for workdir in (killed_dir, str(tmp_path / "full")):
        proc = cli(workdir)
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    assert_same_state(final_state(killed_dir, 400, "adamw"), final_state(str(tmp_path / "full"), 400, "adamw"))
    with open(os.path.join(killed_dir, "summary.json")) as f, open(tmp_path / "full" / "summary.json") as g:
        drop_rate = lambda d: {k: v for k, v in d.items() if "steps_per_second" not in k}  # noqa: E731
        assert drop_rate(json.load(f)) == drop_rate(json.load(g))

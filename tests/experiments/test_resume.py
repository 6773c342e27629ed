"""An interrupted run resumed in the same workdir ends bit-identical to an uninterrupted one."""
import glob
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import quickstart as quickstart_config
from experiments import harness, quickstart


def small_config(**values):
    """One arm at one learning rate on one seed: a single protocol run of 30 steps."""
    config = quickstart_config.get_config()
    config.update(
        dict(optimizers=("riemannian_adam",), num_steps=30, checkpoint_every=10, eval_every=10, log_every=5,
             seeds=(0,), claims=(), **values)
    )
    config.learning_rates.riemannian_adam = (1e-2,)
    return harness.resolve(config)


def run_dirs(workdir):
    """Every protocol run directory under `workdir`, relative to it, sorted."""
    return sorted(os.path.relpath(d, workdir) for d in glob.glob(os.path.join(workdir, "protocol", "*", "*", "*", "seed*")))


def final_state(rundir, step=30):
    with ocp.CheckpointManager(os.path.abspath(os.path.join(rundir, "checkpoints"))) as manager:
        return manager.restore(step, args=ocp.args.StandardRestore())


def assert_same_state(a, b):
    leaves_a, leaves_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
    assert leaves_a.keys() == leaves_b.keys()
    for key in leaves_a:
        np.testing.assert_array_equal(np.asarray(leaves_a[key]), np.asarray(leaves_b[key]), err_msg=str(key))


# "none" is covered by the CLI kill-and-resume test in test_run.py.
@pytest.mark.parametrize("parallel", ["jit_sharded"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, parallel):
    full = quickstart.run(small_config(parallel=parallel), str(tmp_path / "full"))
    interrupted = str(tmp_path / "interrupted")
    with pytest.raises(harness.Preempted):  # stops at step 17; the last checkpoint is step 10
        quickstart.run(small_config(parallel=parallel, stop_after=17), interrupted)
    (run,) = run_dirs(interrupted)  # stop_after is not hashed: the rerun finds this run directory
    assert sorted(os.listdir(os.path.join(interrupted, run, "checkpoints"))) == ["10"]
    resumed = quickstart.run(small_config(parallel=parallel), interrupted)

    assert run_dirs(str(tmp_path / "full")) == [run]
    assert_same_state(final_state(str(tmp_path / "full" / run)), final_state(os.path.join(interrupted, run)))
    assert full == resumed
    history = lambda d: harness.read_history(os.path.join(d, run))  # noqa: E731
    assert history(str(tmp_path / "full")) == history(interrupted)
    assert [r["step"] for r in history(interrupted) if "train/loss" in r] == [5, 10, 15, 20, 25, 30]

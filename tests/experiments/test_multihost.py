"""Multi-host: the quickstart run by two processes on loopback (jax.distributed, gloo), each
with 4 virtual CPU devices, on a (2, 4) mesh, against the single-process 8-device run."""
import glob
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments import harness, quickstart
from tests.experiments.test_resume import run_dirs, small_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 30  # small_config: riemannian_adam only, checkpoints every 10 steps, logs every 5
OVERRIDES = (
    "--config.optimizers=('riemannian_adam',)", f"--config.num_steps={STEPS}", "--config.checkpoint_every=10",
    "--config.eval_every=10", "--config.log_every=5", "--config.parallel=jit_sharded", "--config.mesh_shape=(2,4)",
    "--config.learning_rates.riemannian_adam=(0.01,)", "--config.seeds=(0,)", "--config.claims=()",
)


def the_run(workdir) -> str:
    """The one protocol run directory (riemannian_adam, lr 0.01, seed 0) of a small_config run."""
    (run,) = run_dirs(str(workdir))
    return os.path.join(str(workdir), run)


def final_state(rundir, step=STEPS):
    """The checkpoint at `step`, saved by two processes, read here onto one device."""
    path = os.path.join(rundir, "checkpoints", str(step), "default")
    with ocp.StandardCheckpointer() as checkpointer:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        metadata = checkpointer.metadata(path).item_metadata
        like = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
        return checkpointer.restore(path, like)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_two_processes(workdir, *overrides, script=None, timeout=240):
    """Start processes 0 and 1 (4 CPU devices each) of one distributed run; wait for both.
    Returns their (returncode, stdout, stderr); kills both if either hangs."""
    address = f"localhost:{free_port()}"
    env = dict(os.environ, PYTHONPATH=ROOT, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    procs = []
    for pid in range(2):
        if script is None:
            cmd = [sys.executable, "-m", "experiments.run", "--config", "configs/quickstart.py", "--config.quick=True",
                   "--workdir", str(workdir), "--config.distributed=True", f"--config.coordinator_address={address}",
                   "--config.num_processes=2", f"--config.process_id={pid}", *OVERRIDES, *overrides]
        else:
            cmd = [sys.executable, script, address, str(pid)]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
        return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_process_run_resumes_and_matches_one_process(tmp_path):
    """An interrupted two-process run, restarted by a fresh pair, ends where the single-process
    run on the same (2, 4) mesh ends (bit-identical resume itself is tested in test_resume.py)."""
    reference = str(tmp_path / "one_process")  # 8 devices of this process, same (2, 4) mesh
    quickstart.run(small_config(parallel="jit_sharded", mesh_shape=(2, 4)), reference)

    runs = tmp_path / "two_processes"  # stops after step 17; the last checkpoint is step 10
    for code, out, err in run_two_processes(runs, "--config.stop_after=17"):
        assert code == 1 and "rerun with workdir" in err, err[-3000:]
    arm = the_run(runs)
    assert sorted(os.listdir(os.path.join(arm, "checkpoints"))) == ["10"]
    outputs = run_two_processes(runs)  # a fresh pair restores step 10 and finishes
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
    assert "final metrics" in outputs[0][1] and "final metrics" not in outputs[1][1]  # process 0 alone reports
    assert len(glob.glob(os.path.join(arm, "events.out.tfevents.*"))) >= 1  # and logs
    for name in ("summary.json", "results.json", "results.md", "comparison.png"):
        assert os.path.exists(runs / name), name

    history = harness.read_history(arm)
    reference_history = harness.read_history(the_run(reference))
    assert [r["step"] for r in history] == [r["step"] for r in reference_history]
    for key in ("train/loss", "selection/loss", "selection/accuracy"):
        ours, theirs = ([r[key] for r in h if key in r] for h in (history, reference_history))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=key)
    # float32 state after 30 Adam steps; the two runs reduce across devices in different orders
    ours, theirs = (ocp.tree.to_flat_dict(final_state(run)) for run in (arm, the_run(reference)))
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_allclose(np.asarray(ours[key]), np.asarray(theirs[key]), rtol=1e-4, atol=1e-5, err_msg=str(key))


def test_distributed_settings_come_from_config_then_environment(monkeypatch):
    from experiments.harness import distributed

    config = small_config()
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.settings(config) == {"coordinator_address": None, "num_processes": None, "process_id": 3}
    config.unlock()
    config.update(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=1)
    assert distributed.settings(config) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 1}
    distributed.initialize_distributed(small_config())  # distributed=False: nothing happens
    assert not jax.distributed.is_initialized() and harness.is_main_process()

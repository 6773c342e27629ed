"""The parallel helpers on a two-process mesh (jax.distributed on loopback, 4 CPU devices each)."""
import os

from tests.experiments.test_multihost import run_two_processes

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multihost_worker.py")


def test_fsdp_and_sharded_orthogonalizer_span_two_processes(tmp_path):
    for code, out, err in run_two_processes(tmp_path, script=WORKER, timeout=120):
        assert code == 0 and out.strip().endswith("ok"), err[-3000:]

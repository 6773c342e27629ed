"""The harness every experiment uses: config checks, compiled (parallel) steps, the train loop
with orbax checkpoints and resume, metric writers (TensorBoard + JSON), plots and progress."""
from experiments.harness.config import check_common, resolve
from experiments.harness.distributed import initialize_distributed, is_main_process
from experiments.harness.loop import Preempted, TrainResult, train
from experiments.harness.metrics import RESULTS_JSON, RESULTS_MD, MetricWriter, read_history, write_results, write_summary
from experiments.harness.parallel import CompiledStep, check_parallel, compile_step, make_update
from experiments.harness.plots import plot_curves

__all__ = [
    "RESULTS_JSON",
    "RESULTS_MD",
    "CompiledStep",
    "MetricWriter",
    "Preempted",
    "TrainResult",
    "check_common",
    "check_parallel",
    "compile_step",
    "initialize_distributed",
    "is_main_process",
    "make_update",
    "plot_curves",
    "read_history",
    "resolve",
    "train",
    "write_results",
    "write_summary",
]

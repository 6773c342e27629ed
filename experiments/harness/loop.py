"""The generic train loop every experiment uses: step, log, evaluate, checkpoint, resume."""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import jax

from experiments.harness.checkpoints import Checkpointer
from experiments.harness.metrics import MetricWriter
from experiments.harness.parallel import CompiledStep
from experiments.harness.progress import Progress


class Preempted(RuntimeError):
    """Raised when a run stops early by `stop_after`; rerun with the same workdir to resume."""


class TrainResult(NamedTuple):
    state: object  # logical train state after the last step
    history: list  # metric records {"step": s, key: value, ...}
    steps_per_second: float  # of this invocation (0 when resumed at the end)


def train(
    state,
    compiled: CompiledStep,
    batch_fn: Callable[[int], object],
    num_steps: int,
    *,
    workdir: str,
    name: str = "train",
    log_every: int = 10,
    checkpoint_every: int = 0,
    stop_after: int = 0,
    evaluate: Callable | None = None,
    eval_every: int = 0,
) -> TrainResult:
    """Run steps [start, num_steps) of `compiled.step` on `batch_fn(step)`.

    `start` is the latest checkpoint in workdir/checkpoints (0 if none); batches must be a
    deterministic function of the step so a resumed run reproduces an uninterrupted one
    bit for bit. Every `log_every` steps the step's metrics are written; every `eval_every`
    steps `evaluate(logical_state) -> dict` is; checkpoints every `checkpoint_every` steps and
    at the end. `stop_after > 0` raises Preempted after that many steps of this invocation.
    """
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    start = checkpointer.latest_step() or 0
    placed = compiled.place_state(state)
    if start:
        placed = compiled.place_state(checkpointer.restore(start, compiled.to_logical(placed)))
    writer = MetricWriter(workdir, start_step=start)
    progress = Progress(name, start, num_steps)
    try:
        for step in range(start + 1, num_steps + 1):
            placed, metrics = compiled.step(placed, compiled.place_batch(batch_fn(step - 1)))
            scalars = {}
            if step % log_every == 0 or step == num_steps:
                scalars.update({f"train/{k}": v for k, v in jax.device_get(metrics).items()})
            if evaluate is not None and eval_every and (step % eval_every == 0 or step == num_steps):
                scalars.update(jax.device_get(evaluate(compiled.to_logical(placed))))
            if scalars:
                writer.write(step, scalars)
            if step == num_steps or (checkpoint_every and step % checkpoint_every == 0):
                checkpointer.save(step, compiled.to_logical(placed))
            progress.update(step, {k: v for k, v in scalars.items() if k.endswith("loss")})
            if stop_after and step - start >= stop_after and step < num_steps:
                raise Preempted(f"{name}: stopped after step {step}; rerun with workdir {workdir} to resume")
        return TrainResult(compiled.to_logical(placed), writer.history, progress.steps_per_second())
    finally:
        progress.close()
        writer.close()
        checkpointer.close()

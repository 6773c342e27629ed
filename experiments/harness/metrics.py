"""Metric recording: TensorBoard scalars, a JSON-lines history (resumable) and a JSON summary."""
from __future__ import annotations

import json
import math
import os

from tensorboardX import SummaryWriter

from experiments.harness.distributed import is_main_process

HISTORY_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
RESULTS_MD, RESULTS_JSON = "results.md", "results.json"


class MetricWriter:
    """Writes scalars of one run under `logdir`. Resuming at `start_step` drops the history
    recorded after it (and tells TensorBoard to purge those steps), so the curves of an
    interrupted-and-resumed run equal those of an uninterrupted one. In a multi-host run only
    process 0 writes files; the others keep the history in memory."""

    def __init__(self, logdir: str, start_step: int = 0):
        self.logdir = logdir
        self.history = [r for r in read_history(logdir) if r["step"] <= start_step]
        self._tb = None
        if is_main_process():
            os.makedirs(logdir, exist_ok=True)
            with open(os.path.join(logdir, HISTORY_FILE), "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.history)
            self._tb = SummaryWriter(logdir, purge_step=start_step + 1)

    def write(self, step: int, scalars: dict) -> None:
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self.history.append(record)
        if self._tb is None:
            return
        with open(os.path.join(self.logdir, HISTORY_FILE), "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in scalars.items():
            self._tb.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_history(logdir: str) -> list[dict]:
    """The records written by MetricWriter in `logdir` (empty when there are none)."""
    path = os.path.join(logdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` in a history."""
    rows = [(r["step"], r[key]) for r in history if key in r]
    return [s for s, _ in rows], [v for _, v in rows]


def write_summary(workdir: str, metrics: dict) -> str:
    """Write final metrics (NaN/inf as strings) to workdir/summary.json (process 0 only in a
    multi-host run); return the path."""
    path = os.path.join(workdir, SUMMARY_FILE)
    if not is_main_process():
        return path
    os.makedirs(workdir, exist_ok=True)
    clean = {k: (float(v) if math.isfinite(float(v)) else str(float(v))) for k, v in metrics.items()}
    with open(path, "w") as f:
        json.dump(clean, f, indent=2, sort_keys=True)
    return path


def write_results(workdir: str, text: str, payload) -> str:
    """Print an experiment's results table (Markdown `text`) and write it to workdir/results.md,
    with `payload` (JSON-serializable; numpy scalars become floats) to workdir/results.json;
    process 0 only in a multi-host run. Returns the Markdown path."""
    path = os.path.join(workdir, RESULTS_MD)
    if not is_main_process():
        return path
    print(text)
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")
    with open(os.path.join(workdir, RESULTS_JSON), "w") as f:
        json.dump(payload, f, indent=2, default=float)
    return path

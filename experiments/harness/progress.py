"""Progress display: a tqdm bar with steps/s on a terminal, absl logging otherwise."""
from __future__ import annotations

import sys
import time

from absl import logging
from tqdm import tqdm

from experiments.harness.distributed import is_main_process


class Progress:
    """Reports steps [start, total) of a run named `name`; steps/s counts from the first
    completed step, so compilation is left out. Silent on all but process 0 of a multi-host run."""

    def __init__(self, name: str, start: int, total: int, log_seconds: float = 10.0):
        self.name, self.step, self.total = name, start, total
        self._silent = not is_main_process()
        self._bar = tqdm(total=total, initial=start, desc=name, unit="step") if sys.stderr.isatty() and not self._silent else None
        self._t0 = self._last_log = time.perf_counter()
        self._start = None
        self._log_seconds = log_seconds

    def update(self, step: int, scalars: dict | None = None) -> None:
        scalars = {k: f"{float(v):.4g}" for k, v in (scalars or {}).items()}
        if self._start is None:
            self._start, self._t0 = step, time.perf_counter()
        if self._bar is not None:
            self._bar.update(step - self.step)
            if scalars:
                self._bar.set_postfix(scalars, refresh=False)
        elif not self._silent:
            now = time.perf_counter()
            if now - self._last_log >= self._log_seconds or step == self.total:
                rate = (step - self._start) / max(now - self._t0, 1e-9)
                logging.info("%s: step %d/%d, %.1f steps/s %s", self.name, step, self.total, rate, scalars)
                self._last_log = now
        self.step = step

    def steps_per_second(self) -> float:
        if self._start is None or self.step == self._start:
            return 0.0
        return (self.step - self._start) / max(time.perf_counter() - self._t0, 1e-9)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

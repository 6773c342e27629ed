"""Shared timing helper for benchmarks: median wall time after warm-up."""
from __future__ import annotations

import statistics
import time

import jax


def median_time(fn, *args, warmup=2, repeats=10) -> float:
    """Median seconds of `fn(*args)` over `repeats` calls after `warmup` untimed calls,
    waiting for device results with `block_until_ready`."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)

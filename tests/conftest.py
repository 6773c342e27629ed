"""Test-wide JAX settings: float64 enabled (float32 paths are tested by passing dtypes), and 8
virtual CPU devices so sharded, shard_map and pmap code is tested without accelerators.

Compilation dominates the suite's time on CPU, so the suite (and the subprocesses it starts:
CLI runs, notebooks, multi-host pairs, which inherit the environment) compiles without LLVM's
backend optimizations and shares one persistent compilation cache per test run. Neither changes
a result beyond rounding; the speed of our code is measured by experiments/benchmarks, not here.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
# one cache per pytest run, shared by its xdist workers (they share PYTEST_XDIST_TESTRUNUID)
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"manifold_opt-jax-cache-{_run}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (must follow the XLA_FLAGS setting)

jax.config.update("jax_enable_x64", True)

# The longest tests (subprocess runs, experiments' quick variants, notebooks, the docs build) go
# first, so that `-n 2` workers share them and finish together instead of one idling at the end.
LONG_FIRST = ("tests/experiments/", "tests/notebooks/", "tests/docs/", "tests/parallel/", "tests/test_readme.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))  # stable within each group

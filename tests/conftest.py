"""Test-wide JAX settings: float64 enabled (float32 paths are tested by passing dtypes), and 8
virtual CPU devices so sharded, shard_map and pmap code is tested without accelerators."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402  (must follow the XLA_FLAGS setting)

jax.config.update("jax_enable_x64", True)

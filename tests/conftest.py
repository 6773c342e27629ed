"""Tests run with float64 enabled; float32 paths are exercised by passing dtypes explicitly."""
import jax

jax.config.update("jax_enable_x64", True)

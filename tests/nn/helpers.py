"""Shared pieces of the Flax tests: a small regression problem and its nnx.jit training step."""
import jax
import jax.numpy as jnp
from flax import nnx


def regression(n_in: int, n_out: int, dtype=jnp.float32):
    """Random inputs (16, n_in) and targets (16, n_out)."""
    kx, ky = jax.random.split(jax.random.key(1))
    return jax.random.normal(kx, (16, n_in), dtype), jax.random.normal(ky, (16, n_out), dtype)


def mse_step(x, y):
    """An nnx.jit step(model, optimizer) -> loss: one optimizer update on mean((model(x) - y)^2)."""

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    return step

"""Feasibility after 10^4 float32 retraction steps with random tangent steps (inside lax.scan):
re-normalizing retractions (QR, polar, Sinkhorn) must not let rounding accumulate."""
import jax
import jax.numpy as jnp
import pytest

from manifold_opt.manifolds import Birkhoff, Stiefel

STEPS = 10_000


def random_walk(m, step_size, key):
    x0 = m.random_point(key, jnp.float32)

    def step(x, k):
        return m.retract(x, step_size * m.random_tangent(k, x)), None

    x, _ = jax.lax.scan(step, x0, jax.random.split(jax.random.PRNGKey(1), STEPS))
    return x0, x


@pytest.mark.parametrize(
    "manifold, step_size",
    [
        (Stiefel(64, 16, retraction="qr"), 0.5),
        (Stiefel(64, 16, retraction="polar"), 0.5),
        # The boundary is at finite Fisher distance (the metric is the sphere's in sqrt(x)
        # coordinates); longer walks reach it, where float32 entries underflow to 0.
        (Birkhoff(8), 0.01),
    ],
    ids=["stiefel_qr", "stiefel_polar", "birkhoff"],
)
def test_ten_thousand_float32_steps_stay_feasible(manifold, step_size):
    x0, x = jax.jit(random_walk, static_argnums=(0, 1))(manifold, step_size, jax.random.PRNGKey(0))
    assert x.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(x - x0))) > 0.05  # it really moved
    assert float(manifold.feasibility(x)) < 1e-5

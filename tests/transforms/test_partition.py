"""riemannian_partition equals the two transforms applied to their own leaves, under jit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import Stiefel


def test_riemannian_partition_matches_separate_transforms():
    kernel = Stiefel(5, 2)
    key_x, key_g = jax.random.split(jax.random.key(0))
    params = {"kernel": kernel.random_point(key_x, jnp.float64), "bias": jnp.arange(3.0)}
    manifolds = {"kernel": kernel, "bias": None}
    tx = mo.riemannian_partition(mo.riemannian_adam(0.1, manifolds), optax.adamw(0.05, weight_decay=0.1), manifolds)
    riem, free = mo.riemannian_adam(0.1, kernel), optax.adamw(0.05, weight_decay=0.1)

    @jax.jit
    def run(params, grads):
        """Three steps of tx, and of the reference (each transform on its own leaf)."""
        state, ref, r_state, f_state = tx.init(params), dict(params), riem.init(params["kernel"]), free.init(params["bias"])
        for g in grads:
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
            k_up, r_state = riem.update(g["kernel"], r_state, ref["kernel"])
            b_up, f_state = free.update(g["bias"], f_state, ref["bias"])
            ref = {"kernel": ref["kernel"] + k_up, "bias": ref["bias"] + b_up}
        return params, ref

    grads = [{"kernel": jax.random.normal(k, (5, 2), jnp.float64), "bias": jax.random.normal(k, (3,), jnp.float64)}
             for k in jax.random.split(key_g, 3)]
    params, ref = run(params, grads)
    np.testing.assert_allclose(params["kernel"], ref["kernel"], atol=1e-12)
    np.testing.assert_allclose(params["bias"], ref["bias"], atol=1e-12)
    assert float(kernel.feasibility(params["kernel"])) < 1e-12
    with pytest.raises(TypeError, match="riemannian_partition: other"):
        mo.riemannian_partition(riem, "adamw", manifolds)

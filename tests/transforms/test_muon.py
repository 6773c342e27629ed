"""Muon's options (optax.contrib.muon parity: test_optax_machinery.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo

RNG = np.random.default_rng(11)


def test_reference_momentum_and_consistent_rms():
    """Default: lerp momentum without bias correction; consistent_rms scales by r sqrt(max fan)."""
    p = {"w": jnp.asarray(RNG.standard_normal((6, 10)))}
    g1, g2 = ({"w": jnp.asarray(RNG.standard_normal((6, 10)))} for _ in range(2))
    beta = 0.9
    for consistent_rms, factor in [(None, np.sqrt(10 / 6)), (0.2, 0.2 * np.sqrt(10))]:
        tx = mo.muon(1.0, beta=beta, consistent_rms=consistent_rms)
        s, update = tx.init(p), jax.jit(tx.update)
        _, s = update(g1, s, p)
        u, _ = update(g2, s, p)
        m = beta * (1 - beta) * g1["w"] + (1 - beta) * g2["w"]
        direction = (1 - beta) * g2["w"] + beta * m
        expected = -factor * mo.linalg.newton_schulz(direction)
        np.testing.assert_allclose(u["w"], expected, rtol=1e-10, atol=1e-12)


def test_bf16_newton_schulz_option():
    p = {"w": jnp.asarray(RNG.standard_normal((16, 32)), jnp.float32)}
    g = {"w": jnp.asarray(RNG.standard_normal((16, 32)), jnp.float32)}
    full, _ = jax.jit(mo.muon(1.0).update)(g, mo.muon(1.0).init(p), p)
    tx = mo.muon(1.0, ns_dtype=jnp.bfloat16)
    half, _ = jax.jit(tx.update)(g, tx.init(p), p)
    assert half["w"].dtype == jnp.float32
    assert float(jnp.linalg.norm(half["w"] - full["w"]) / jnp.linalg.norm(full["w"])) < 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        mo.muon(beta=1.5)
    with pytest.raises(ValueError, match="unknown coeffs"):
        mo.muon(ns_coeffs="fast")
    with pytest.raises(ValueError, match="steps"):
        mo.scale_by_muon(ns_steps=0)
    core = mo.scale_by_muon()
    with pytest.raises(ValueError, match="non-matrix leaf"):
        core.update({"b": jnp.ones(3)}, core.init({"b": jnp.ones(3)}))

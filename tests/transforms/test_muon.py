"""mo.muon against optax.contrib.muon with matched settings, and Muon's options."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo

RNG = np.random.default_rng(11)


def mlp_params(dtype):
    shapes = {"w1": (8, 24), "b1": (24,), "w2": (24, 16), "b2": (16,), "w3": (16, 4), "b3": (4,)}
    return {k: jnp.asarray(RNG.standard_normal(s) / np.sqrt(s[0]), dtype) for k, s in shapes.items()}


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    return jnp.mean((h @ params["w3"] + params["b3"] - y) ** 2)


def test_matches_optax_contrib_muon_on_mlp(weight_decay=0.1):
    """Settings matched to optax's: EMA momentum with its bias correction, NS eps 1e-8 and no
    safety factor, AdamW branch with the same lr, b2 0.999 and optax's inherited nesterov."""
    params = mlp_params(jnp.float32)
    x = jnp.asarray(RNG.standard_normal((32, 8)), jnp.float32)
    y = jnp.asarray(RNG.standard_normal((32, 4)), jnp.float32)
    theirs = optax.contrib.muon(0.02, weight_decay=weight_decay)
    ours = mo.muon(0.02, weight_decay=weight_decay, bias_correction=True, ns_eps=1e-8,
                   adam_learning_rate=0.02, adam_b2=0.999, adam_nesterov=True)

    def run(tx):
        @jax.jit
        def step(p, s):
            u, s = tx.update(jax.grad(mlp_loss)(p, x, y), s, p)
            return optax.apply_updates(p, u), s, u

        p, s, history = params, tx.init(params), []
        for _ in range(10):
            p, s, u = step(p, s)
            history.append(u)
        return history

    for u_theirs, u_ours in zip(run(theirs), run(ours)):
        for a, b in zip(jax.tree.leaves(u_theirs), jax.tree.leaves(u_ours)):
            assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(a)) < 1e-5


def test_reference_momentum_and_consistent_rms():
    """Default: lerp momentum without bias correction; consistent_rms scales by r sqrt(max fan)."""
    p = {"w": jnp.asarray(RNG.standard_normal((6, 10)))}
    g1, g2 = ({"w": jnp.asarray(RNG.standard_normal((6, 10)))} for _ in range(2))
    beta = 0.9
    for consistent_rms, factor in [(None, np.sqrt(10 / 6)), (0.2, 0.2 * np.sqrt(10))]:
        tx = mo.muon(1.0, beta=beta, consistent_rms=consistent_rms)
        s = tx.init(p)
        _, s = tx.update(g1, s, p)
        u, _ = tx.update(g2, s, p)
        m = beta * (1 - beta) * g1["w"] + (1 - beta) * g2["w"]
        direction = (1 - beta) * g2["w"] + beta * m
        expected = -factor * mo.linalg.newton_schulz(direction)
        np.testing.assert_allclose(u["w"], expected, rtol=1e-10, atol=1e-12)


def test_bf16_newton_schulz_option():
    p = {"w": jnp.asarray(RNG.standard_normal((16, 32)), jnp.float32)}
    g = {"w": jnp.asarray(RNG.standard_normal((16, 32)), jnp.float32)}
    full, _ = mo.muon(1.0).update(g, mo.muon(1.0).init(p), p)
    tx = mo.muon(1.0, ns_dtype=jnp.bfloat16)
    half, _ = tx.update(g, tx.init(p), p)
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

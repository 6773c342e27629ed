"""optax.contrib.muon's newer options on mo.muon (issue 19.5): AOL preconditioning (Turbo-Muon)
and adaptive dual-norm scaling, against a NumPy reference and against optax itself."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from tests.transforms import reference as ref

RNG = np.random.default_rng(31)


def test_aol_newton_schulz_matches_reference_and_beats_frobenius_start():
    g = RNG.standard_normal((3, 12, 7))
    ours = mo.linalg.newton_schulz(jnp.asarray(g), 5, preconditioning="aol", eps=1e-8)
    for i in range(3):
        np.testing.assert_allclose(ours[i], ref.ns_aol(g[i]), rtol=1e-10, atol=1e-12)
    # the AOL start is closer to the polar factor after the same few steps (Turbo-Muon's claim)
    polar = np.asarray(mo.linalg.polar(jnp.asarray(g)))
    err = lambda x: float(np.max(np.linalg.norm(np.asarray(x) - polar, axis=(1, 2))))  # noqa: E731
    assert err(mo.linalg.newton_schulz(jnp.asarray(g), 2, "polar_express", preconditioning="aol")) < err(
        mo.linalg.newton_schulz(jnp.asarray(g), 2, "polar_express"))
    with pytest.raises(ValueError, match="newton_schulz: preconditioning"):
        mo.linalg.newton_schulz(jnp.asarray(g), preconditioning="spectral")


def test_aol_adaptive_gram_muon_matches_reference():
    params = {"w": jnp.asarray(RNG.standard_normal((6, 10))), "v": jnp.asarray(RNG.standard_normal((12, 5)))}
    tx = mo.muon(0.05, weight_decay=0.1, preconditioning="aol", adaptive=True, gram_newton_schulz=True)
    state, update, rstate = tx.init(params), jax.jit(tx.update), {"w": {}, "v": {}}
    for _ in range(2):
        grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
        upd, state = update(grads, state, params)
        for key in params:
            rstate[key], expected = ref.muon_aol_adaptive(rstate[key], np.asarray(grads[key]), np.asarray(params[key]),
                                                         lr=0.05, wd=0.1)
            np.testing.assert_allclose(upd[key], expected, rtol=1e-8, atol=1e-11)
        params = optax.apply_updates(params, upd)


def test_optax_convention_matches_optax_aol_adaptive():
    params = {"w": jnp.asarray(RNG.standard_normal((6, 10)), jnp.float32),
              "b": jnp.asarray(RNG.standard_normal(10), jnp.float32)}
    ours = mo.muon(0.02, weight_decay=0.1, convention="optax", preconditioning="aol", adaptive=True)
    theirs = optax.contrib.muon(0.02, weight_decay=0.1, preconditioning="aol", adaptive=True)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape), jnp.float32), params)
        u_ours, s_ours = jax.jit(ours.update)(grads, s_ours, params)
        u_theirs, s_theirs = jax.jit(theirs.update)(grads, s_theirs, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), u_ours, u_theirs)  # float32
        params = optax.apply_updates(params, u_ours)
    with pytest.raises(ValueError, match="mo.scale_by_muon.*preconditioning"):
        mo.muon(preconditioning="schatten")


@pytest.mark.parametrize("coeffs", ["muon", "polar_express"])
def test_gram_newton_schulz_is_the_same_polynomial(coeffs):
    g = jnp.asarray(RNG.standard_normal((2, 6, 20)))
    for x in (g, jnp.swapaxes(g, -1, -2)):  # wide and tall
        np.testing.assert_allclose(mo.linalg.newton_schulz(x, 6, coeffs, gram=True),
                                   mo.linalg.newton_schulz(x, 6, coeffs), rtol=1e-9, atol=1e-11)

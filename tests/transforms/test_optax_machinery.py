"""The Muon family with optax's own machinery: exact optax.contrib.muon parity
(convention="optax"), optax.inject_hyperparams under jit, and keyword typos naming the public
function."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo

RNG = np.random.default_rng(21)


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    return jnp.mean((h @ params["w3"] + params["b3"] - y) ** 2)


def test_optax_convention_trains_exactly_like_optax_contrib_muon():
    """30 float32 training steps of mo.muon(convention="optax") and optax.contrib.muon on the
    same MLP (2-D kernels to Muon, biases to Adam): the losses agree to 1e-6."""
    shapes = {"w1": (8, 24), "b1": (24,), "w2": (24, 16), "b2": (16,), "w3": (16, 4), "b3": (4,)}
    params = {k: jnp.asarray(RNG.standard_normal(s) / np.sqrt(s[0]), jnp.float32) for k, s in shapes.items()}
    x = jnp.asarray(RNG.standard_normal((64, 8)), jnp.float32)
    y = jnp.asarray(RNG.standard_normal((64, 4)), jnp.float32)

    def losses(tx, params):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(mlp_loss)(p, x, y)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        return jax.lax.scan(step, (params, tx.init(params)), length=30)[1]

    theirs, ours = jax.jit(lambda p: (losses(optax.contrib.muon(0.02, weight_decay=0.1), p),
                                      losses(mo.muon(0.02, weight_decay=0.1, convention="optax"), p)))(params)
    assert ours.dtype == jnp.float32 and float(theirs[-1]) < 0.8 * float(theirs[0])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


# constructor -> the names of its float hyperparameters other than the learning rate
HYPERPARAMS = {
    "muon": {"beta": 0.9, "weight_decay": 0.1, "adam_learning_rate": 0.01},
    "auon": {"beta": 0.9, "weight_decay": 0.1, "gamma": 1.2},
    "hybrid_auon": {"beta": 0.9, "weight_decay": 0.1},
    "normuon": {"beta": 0.9, "beta2": 0.8, "weight_decay": 0.1},
    "conda": {"b1": 0.8, "b2": 0.9, "weight_decay": 0.1, "update_proj_gap": 2},
    "root": {"mu": 0.9, "weight_decay": 0.1, "quantile": 0.8},
    "spectral_clip": {"b1": 0.8, "b2": 0.9, "weight_decay": 0.1, "c": 2.0},
    "dion2": {"ef_decay": 0.9, "weight_decay": 0.1},
    "aro": {"beta": 0.9, "weight_decay": 0.1},
    "fismo": {"beta": 0.9, "fisher_decay": 0.9, "damping": 0.01, "weight_decay": 0.1},
    "manifold_muon": {"beta": 0.9, "dual_learning_rate": 0.05},
}


@pytest.mark.parametrize("name", sorted(HYPERPARAMS))
def test_inject_hyperparams_under_jit(name):
    """optax.inject_hyperparams(mo.<name>): the learning rate, betas and weight decay are traced
    state. Built with one set of values, then given another in its state, two jitted steps
    match the plain optimizer built with the second set (so the traced values are the ones used)."""
    factory = getattr(mo, name)
    first = {"learning_rate": 0.05, **HYPERPARAMS[name]}
    second = {k: (v if isinstance(v, int) else 0.5 * v) for k, v in first.items()}
    params = {"w": jnp.asarray(RNG.standard_normal((6, 10))), "b": jnp.asarray(RNG.standard_normal(5))}
    grads = [jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params) for _ in range(2)]
    injected = optax.inject_hyperparams(factory)(**first)
    state = injected.init(params)
    assert set(first) <= set(state.hyperparams)
    state.hyperparams.update({k: jnp.asarray(v) for k, v in second.items()})
    plain = factory(**second)

    @jax.jit
    def both(state, plain_state):  # one compilation for the two optimizers and both steps
        pairs = []
        for g in grads:
            got, state = injected.update(g, state, params)
            expected, plain_state = plain.update(g, plain_state, params)
            pairs.append((got, expected))
        return pairs

    for got, expected in both(state, plain.init(params)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14, err_msg=name)


def test_structural_integers_stay_static():
    with pytest.raises(TypeError, match=r"mo\.muon: ns_steps must be a Python int.*static_args"):
        optax.inject_hyperparams(mo.muon)(learning_rate=0.02, ns_steps=5).init({"w": jnp.ones((3, 4))})
    tx = optax.inject_hyperparams(mo.muon, static_args=("ns_steps",))(learning_rate=0.02, ns_steps=3)
    state = tx.init({"w": jnp.ones((3, 4))})
    assert "ns_steps" not in state.hyperparams and "learning_rate" in state.hyperparams
    with pytest.raises(ValueError, match="mo.hybrid_auon: ns_steps must be a positive int"):
        mo.hybrid_auon(ns_steps=0)
    with pytest.raises(TypeError, match="mo.spectral_clip: num_iters must be a Python int"):
        mo.spectral_clip(num_iters=10.0)


PUBLIC = {
    "mo.muon": mo.muon, "mo.auon": mo.auon, "mo.hybrid_auon": mo.hybrid_auon, "mo.normuon": mo.normuon,
    "mo.conda": mo.conda, "mo.root": mo.root, "mo.spectral_clip": mo.spectral_clip,
    "mo.scale_by_muon": mo.scale_by_muon, "mo.scale_by_auon": mo.scale_by_auon,
    "mo.scale_by_hybrid_auon": mo.scale_by_hybrid_auon, "mo.scale_by_normuon": mo.scale_by_normuon,
    "mo.scale_by_conda": mo.scale_by_conda, "mo.scale_by_root": mo.scale_by_root,
    "mo.scale_by_spectral_clip": mo.scale_by_spectral_clip, "mo.matrix_rules": mo.matrix_rules,
    "mo.dion2": mo.dion2, "mo.aro": mo.aro, "mo.fismo": mo.fismo, "mo.manifold_muon": mo.manifold_muon,
    "mo.scale_by_dion2": mo.scale_by_dion2, "mo.scale_by_aro": mo.scale_by_aro, "mo.scale_by_fismo": mo.scale_by_fismo,
    "mo.scale_by_manifold_muon": mo.scale_by_manifold_muon,
    "mo.transforms.orthogonalized_optimizer": functools.partial(
        mo.transforms.orthogonalized_optimizer, optax.identity(), learning_rate=0.1),
}


@pytest.mark.parametrize("public_name", sorted(PUBLIC))
def test_keyword_typos_name_the_public_function(public_name):
    with pytest.raises(TypeError, match=rf"^{public_name}: unexpected keyword argument 'lernin_rate'"):
        PUBLIC[public_name](lernin_rate=0.1)


def test_keyword_typo_suggestions():
    with pytest.raises(TypeError, match=r"mo\.muon: unexpected keyword argument 'adam_lr'; did you mean "
                                        r"'adam_learning_rate'\?$"):
        mo.muon(adam_lr=1e-3)
    with pytest.raises(TypeError, match=r"did you mean 'weight_decay'"):
        mo.root(wd=0.1)
    with pytest.raises(TypeError, match=r"did you mean 'ns_steps'"):
        mo.normuon(ns_step=3)
    with pytest.raises(ValueError, match="mo.muon: unknown convention 'torch'"):
        mo.muon(convention="torch")

"""Rules the whole Muon family shares (issue 18.8, 19.5 cautious weight decay, 19.4 hyperball):
a learning-rate schedule reaches every branch, learned tokens and positional tables go to AdamW,
mo.normuon's optax convention, cautious weight decay and the hyperball against NumPy references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from tests.transforms import reference as ref

RNG = np.random.default_rng(19)
LR, WD = 0.05, 0.3

FAMILY = {
    "muon": (mo.muon, ref.muon),
    "auon": (mo.auon, ref.auon),
    "hybrid_auon": (mo.hybrid_auon, ref.hybrid_auon),
    "normuon": (mo.normuon, ref.normuon),
    "root": (mo.root, ref.root),
    "conda": (functools.partial(mo.conda, update_proj_gap=2), functools.partial(ref.conda, gap=2)),
    "spectral_clip": (functools.partial(mo.spectral_clip, c=3.0, num_iters=20),
                      functools.partial(ref.spectral_clip, c=3.0)),
    "dion2": (functools.partial(mo.dion2, ns_coeffs="muon"), ref.dion2),
    "aro": (mo.aro, ref.aro),
    "fismo": (mo.fismo, ref.fismo),
}


def params_and_grads(dtype=jnp.float64):
    params = {"w": jnp.asarray(RNG.standard_normal((6, 10)), dtype), "b": jnp.asarray(RNG.standard_normal(5), dtype)}
    return params, jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape), dtype), params)


@pytest.mark.parametrize("name", ["muon", "spectral_clip"])  # the two code paths of the AdamW branch
def test_schedule_reaches_the_adamw_branch(name):
    """lr(0) = 0: neither branch moves at the first step; later the AdamW leaves follow the
    schedule's shape, adam_lr(t) = adam_learning_rate lr(t) / max lr (issue 18.8)."""
    schedule = optax.linear_schedule(0.0, 0.02, 4)
    tx = FAMILY[name][0](schedule, adam_learning_rate=1e-3)
    params, grads = params_and_grads()
    state, update = tx.init(params), jax.jit(tx.update)
    upd, state = update(grads, state, params)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(upd)), name
    upd, state = update(grads, state, params)  # step 1: lr = 0.005, a quarter of the peak
    if name != "spectral_clip":  # spectral_clip's other branch clips Adam; the rate is still a quarter
        adam = optax.adamw(0.25e-3, b1=0.9, b2=0.99 if name == "conda" else 0.95, weight_decay=0.0)
        astate = adam.init(params["b"])
        _, astate = adam.update(grads["b"], astate, params["b"])
        expected, _ = adam.update(grads["b"], astate, params["b"])
        np.testing.assert_allclose(upd["b"], expected, rtol=1e-6)  # the schedule runs in float32
    else:
        assert np.any(np.asarray(upd["b"]) != 0)


def test_tokens_and_positional_tables_go_to_adamw():
    params = {"cls_token": jnp.ones((1, 8)), "pos": jnp.ones((16, 8)), "pos_embedding": jnp.ones((16, 8)),
              "mask_token": jnp.ones((1, 8)), "position_ids_table": jnp.ones((16, 8)), "readout_vec": jnp.ones((8, 1)),
              "mlp": {"kernel": jnp.ones((8, 12))}, "pos_mlp": {"kernel": jnp.ones((8, 12))}}
    labels = mo.transforms.matrix_labels(params)
    assert labels == {"cls_token": "other", "pos": "other", "pos_embedding": "other", "mask_token": "other",
                      "position_ids_table": "other", "readout_vec": "other", "mlp": {"kernel": "matrix"},
                      "pos_mlp": {"kernel": "matrix"}}


def test_normuon_optax_convention_matches_reference():
    params, _ = params_and_grads()
    params["embed"] = jnp.asarray(RNG.standard_normal((7, 6)))  # every 2-D leaf is a matrix in optax's rule
    tx = mo.normuon(LR, weight_decay=WD, convention="optax")
    adam = optax.adamw(LR, b1=0.9, b2=0.999, weight_decay=0.0, nesterov=True)
    state, astate, rstate = tx.init(params), None, {"w": {}, "embed": {}}
    astate = adam.init(params["b"])
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
        upd, state = jax.jit(tx.update)(grads, state, params)
        for key in ("w", "embed"):
            rstate[key], expected = ref.normuon_optax(rstate[key], np.asarray(grads[key]), np.asarray(params[key]),
                                                     lr=LR, wd=WD)
            np.testing.assert_allclose(upd[key], expected, rtol=1e-8, atol=1e-11, err_msg=key)
        expected_b, astate = adam.update(grads["b"], astate, params["b"])
        np.testing.assert_allclose(upd["b"], expected_b, rtol=1e-9)
        params = optax.apply_updates(params, upd)
    with pytest.raises(ValueError, match="mo.normuon.*convention"):
        mo.normuon(convention="torch")


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_cautious_weight_decay_and_hyperball_match_reference(name):
    """Two steps of <optimizer>(cautious_weight_decay=True[, hyperball=True]) against the NumPy
    reference's direction u: -lr (u + wd 1[u p >= 0] p) on both branches, then (hyperball) each
    matrix rescaled to its init Frobenius norm."""
    make_tx, reference = FAMILY[name]
    for hyperball in ((False, True) if name == "muon" else (True,)):
        tx = make_tx(LR, weight_decay=WD, adam_learning_rate=0.01, adam_weight_decay=WD, cautious_weight_decay=True,
                     hyperball=hyperball)
        params, _ = params_and_grads()
        radius = float(np.linalg.norm(params["w"]))
        state, rstate, update = tx.init(params), {}, jax.jit(tx.update)
        adam = optax.scale_by_adam(0.9, 0.99 if name == "conda" else 0.95)
        astate = adam.init(params["b"])
        for _ in range(2):
            grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
            upd, state = update(grads, state, params)
            p = np.asarray(params["w"])
            rstate, plain = reference(rstate, np.asarray(grads["w"]), p, lr=LR, wd=0.0)
            expected = ref.cautious_step(-plain / LR, p, LR, WD)
            if hyperball:
                expected = ref.hyperball_step(expected, p, radius)
            np.testing.assert_allclose(upd["w"], expected, rtol=1e-7, atol=1e-9, err_msg=name)
            if name != "spectral_clip":
                direction, astate = adam.update(grads["b"], astate)
                np.testing.assert_allclose(upd["b"], ref.cautious_step(np.asarray(direction), params["b"], 0.01, WD),
                                           rtol=1e-9)
            params = optax.apply_updates(params, upd)
        if hyperball:
            np.testing.assert_allclose(np.linalg.norm(params["w"]), radius, rtol=1e-12)


def test_hyperball_keeps_each_matrix_of_a_stack_at_its_norm_under_inject_hyperparams():
    params = {"stack": jnp.asarray(RNG.standard_normal((3, 6, 4)))}
    radii = np.linalg.norm(params["stack"], axis=(1, 2))
    tx = optax.inject_hyperparams(mo.muon, static_args=("weight_dimension_numbers",))(
        learning_rate=optax.cosine_decay_schedule(0.1, 10), hyperball=True,
        weight_dimension_numbers={"stack": mo.transforms.DimensionNumbers(1, 2)})
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape)), params)
        upd, state = update(grads, state, params)
        params = optax.apply_updates(params, upd)
    np.testing.assert_allclose(np.linalg.norm(params["stack"], axis=(1, 2)), radii, rtol=1e-12)


def test_bad_arguments_name_the_function():
    with pytest.raises(ValueError, match=r"mo.scale_by_dion2: fraction must be in \(0, 1\]"):
        mo.dion2(fraction=1.5)
    with pytest.raises(TypeError, match="mo.scale_by_dion2: fraction must be a Python number.*static_args"):
        mo.dion2(fraction=jnp.asarray(0.5))
    with pytest.raises(ValueError, match="mo.scale_by_dion2: ef_decay"):
        mo.dion2(ef_decay=2.0)
    with pytest.raises(ValueError, match="mo.scale_by_aro: unknown base 'adam'"):
        mo.aro(base="adam")
    with pytest.raises(ValueError, match="scale_by_fismo: fisher_decay"):
        mo.fismo(fisher_decay=1.0)
    with pytest.raises(ValueError, match="mo.scale_by_fismo: got a non-matrix leaf"):
        mo.scale_by_fismo().init({"b": jnp.ones(3)})

"""Riemannian transforms with optax's own machinery: inject_hyperparams (traced learning rate,
betas, momentum, weight decay) under jit, decoupled weight decay on manifolds (against optax
and a NumPy Birkhoff reference), guard_nonfinite, the infeasible-init check, orbax + donation."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import manifold_opt as mo
from manifold_opt.manifolds import Birkhoff, Sphere, Stiefel

MANIFOLDS = {"w": Stiefel(6, 2), "s": Sphere(3), "b": None}


def np_qr(a):
    q, r = np.linalg.qr(a)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def np_birkhoff_rgrad(x, egrad):
    """Fisher-metric Riemannian gradient on Birkhoff (Douik & Hassibi 2019): Proj_x(egrad * x),
    Proj_x(z) = z - (alpha 1^T + 1 beta^T) * x with [I, x; x^T, I] [alpha; beta] = [z 1; z^T 1]."""
    n = len(x)
    z = egrad * x
    system = np.block([[np.eye(n), x], [x.T, np.eye(n)]])
    ab = np.linalg.lstsq(system, np.concatenate([z.sum(1), z.sum(0)]), rcond=None)[0]
    return z - (ab[:n, None] + ab[None, n:]) * x


def params_and_grads(seed=0, steps=3):
    rng = np.random.default_rng(seed)
    params = {"w": np_qr(rng.standard_normal((6, 2))), "s": rng.standard_normal((2, 3)), "b": rng.standard_normal(4)}
    params["s"] /= np.linalg.norm(params["s"], axis=-1, keepdims=True)
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(steps)]
    return jax.tree.map(jnp.asarray, params), [jax.tree.map(jnp.asarray, g) for g in grads]


@functools.lru_cache
def jitted_update(tx):
    return jax.jit(lambda params, state, grads: tx.update(grads, state, params))


def run(tx, params, grads, state=None):
    """Jitted steps from `state` (default tx.init); returns the params after each step and the
    final state."""
    step = jitted_update(tx)
    state, history = tx.init(params) if state is None else state, []
    for g in grads:
        updates, state = step(params, state, g)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history, state


def assert_trees_close(a, b, atol=1e-12):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol), a, b)


@pytest.mark.parametrize("factory, hyper", [
    (mo.riemannian_adam, dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, amsgrad=True)),
    (mo.riemannian_sgd, dict(learning_rate=0.1, momentum=0.7, nesterov=True, weight_decay=0.2)),
])
def test_inject_hyperparams_matches_fixed_hyperparameters_under_jit(factory, hyper):
    """Every float hyperparameter traced in the state (bools stay static); changing the learning
    rate mid-run equals a fixed-hyperparameter run with the new value."""
    params, grads = params_and_grads()
    injected = optax.inject_hyperparams(factory)(manifolds=MANIFOLDS, **hyper)
    fixed = factory(manifolds=MANIFOLDS, **hyper)
    traced = {k for k, v in hyper.items() if not isinstance(v, bool)}
    assert set(injected.init(params).hyperparams) == traced
    history, state = run(injected, params, grads[:2])
    expected, fixed_state = run(fixed, params, grads[:2])
    assert_trees_close(history, expected)
    assert_trees_close(state.inner_state, fixed_state)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5 * hyper["learning_rate"])
    slower = factory(manifolds=MANIFOLDS, **{**hyper, "learning_rate": 0.5 * hyper["learning_rate"]})
    (after,), _ = run(injected, history[-1], grads[2:], state)
    (slower_after,), _ = run(slower, expected[-1], grads[2:], fixed_state)
    assert_trees_close(after, slower_after)
    for name in ("w", "s"):
        assert float(jnp.max(MANIFOLDS[name].feasibility(history[-1][name]))) < 1e-10


def test_inject_hyperparams_on_the_building_blocks():
    """project_to_tangent and retract have no float hyperparameters: inject_hyperparams wraps
    them unchanged, and the chain with a traced learning rate is Riemannian gradient descent."""
    params, grads = params_and_grads(1, steps=1)
    chain = optax.chain(optax.inject_hyperparams(mo.project_to_tangent)(MANIFOLDS),
                        optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
                        optax.inject_hyperparams(mo.retract)(MANIFOLDS))
    (chained,), _ = run(chain, params, grads)
    (sgd,), _ = run(mo.riemannian_sgd(0.1, MANIFOLDS), params, grads)
    assert_trees_close(chained, sgd)


def test_weight_decay_is_adamw_off_the_manifold_and_a_riemannian_decay_step_on_it():
    """Unconstrained leaf: optax.adamw exactly. Stiefel and sphere (constant norm): no effect.
    Birkhoff: the decay step is R_x(-lr wd grad r(x)), grad r = NumPy Fisher gradient of
    ||x||^2 / 2; repeated with zero gradients it pulls x to the uniform matrix J / 3."""
    params, grads = params_and_grads(2)
    lr, wd = 0.05, 0.3
    decayed, _ = run(mo.riemannian_adam(lr, MANIFOLDS, b2=0.99, weight_decay=wd), params, grads)
    adamw, _ = run(optax.adamw(lr, b2=0.99, weight_decay=wd), params["b"], [g["b"] for g in grads])
    np.testing.assert_allclose(np.asarray(decayed[-1]["b"]), np.asarray(adamw[-1]), atol=1e-12)
    for name in "ws":  # constant norm: grad ||x||^2 / 2 = x is normal to the manifold, no decay
        x = params[name]
        np.testing.assert_allclose(np.asarray(MANIFOLDS[name].egrad_to_rgrad(x, x)), 0.0, atol=1e-14)

    sgd_decayed, _ = run(mo.riemannian_sgd(lr, MANIFOLDS, momentum=0.5, weight_decay=wd), params, grads)
    reference = optax.chain(optax.trace(0.5), optax.add_decayed_weights(wd), optax.scale(-lr))
    sgd_ref, _ = run(reference, params["b"], [g["b"] for g in grads])
    np.testing.assert_allclose(np.asarray(sgd_decayed[-1]["b"]), np.asarray(sgd_ref[-1]), atol=1e-12)

    birkhoff = Birkhoff(3)
    x = np.random.default_rng(2).uniform(0.2, 1.8, (3, 3))
    for _ in range(300):
        x = x / x.sum(1, keepdims=True)
        x = x / x.sum(0, keepdims=True)
    x = jnp.asarray(x)
    pulled, _ = run(mo.riemannian_sgd(lr, birkhoff, weight_decay=10.0), x, [jnp.zeros_like(x)] * 20)
    direction = np_birkhoff_rgrad(np.asarray(x), np.asarray(x))
    assert np.linalg.norm(direction) > 1e-2  # a genuine step, not a no-op
    first = birkhoff.retract(x, -lr * 10.0 * direction)
    np.testing.assert_allclose(np.asarray(pulled[0]), np.asarray(first), atol=1e-12)
    distances = [float(jnp.linalg.norm(p - 1 / 3)) for p in [x] + pulled]
    assert np.all(np.diff(distances) < 0) and distances[-1] < 0.05 * distances[0]
    assert float(birkhoff.feasibility(pulled[-1])) < 1e-10


@pytest.mark.parametrize("factory", [mo.riemannian_adam, mo.riemannian_sgd])
def test_guard_nonfinite_skips_the_step_and_keeps_the_state(factory):
    """A NaN/inf gradient gives a zero update and leaves the state as it was; the guarded run then
    continues exactly as an unguarded run that never saw the bad gradient."""
    params, grads = params_and_grads(3)
    kwargs = dict(momentum=0.9) if factory is mo.riemannian_sgd else {}
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads[1])
    bad["b"] = bad["b"].at[1].set(jnp.inf)
    tx = factory(0.1, MANIFOLDS, guard_nonfinite=True, weight_decay=0.1, **kwargs)
    guarded, state = run(tx, params, [grads[0], bad, grads[2]])
    clean, clean_state = run(tx, params, [grads[0], grads[2]])
    assert_trees_close(guarded[1], guarded[0], atol=0.0)  # the bad step changed nothing
    assert_trees_close(guarded[2], clean[1])
    assert_trees_close(state.inner_state, clean_state.inner_state)
    assert int(state.total_notfinite) == 1 and int(clean_state.total_notfinite) == 0


def test_init_on_infeasible_params_warns_or_raises():
    params, _ = params_and_grads(4, steps=0)
    off = {**params, "w": 2.0 * params["w"]}
    makers = (lambda **k: mo.riemannian_adam(0.1, MANIFOLDS, **k), lambda **k: mo.riemannian_sgd(0.1, MANIFOLDS, **k),
              lambda **k: mo.retract(MANIFOLDS, **k))
    for make in makers:
        with pytest.warns(UserWarning, match=r"params 'w' that are off Stiefel.*feasibility 4.2.*project"):
            make().init(off)
        with pytest.raises(ValueError, match=r"params 'w' that are off Stiefel"):
            make(on_infeasible="raise").init(off)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            make(on_infeasible="ignore").init(off)
            make(on_infeasible="raise").init(params)  # feasible params: silent
            jax.jit(make(on_infeasible="raise").init)(off)  # traced params cannot be checked
    with pytest.raises(ValueError, match="riemannian_adam: unknown on_infeasible 'snap'"):
        mo.riemannian_adam(0.1, MANIFOLDS, on_infeasible="snap")


def test_bad_hyperparameters_raise_and_traced_ones_pass():
    with pytest.raises(ValueError, match="riemannian_adam: b1 must be in"):
        mo.riemannian_adam(0.1, None, b1=1.0)
    with pytest.raises(ValueError, match="riemannian_adam: eps must be positive"):
        mo.riemannian_adam(0.1, None, eps=0.0)
    with pytest.raises(ValueError, match="riemannian_sgd: weight_decay must be nonnegative"):
        mo.riemannian_sgd(0.1, None, weight_decay=-0.1)
    with pytest.raises(TypeError, match="riemannian_sgd: momentum must be a float"):
        mo.riemannian_sgd(0.1, None, momentum="0.9")
    mo.riemannian_adam(0.1, None, b1=jnp.asarray(1.5))  # arrays (traced under jit) are not checked


def test_orbax_restore_and_donation_resume_exactly(tmp_path):
    """A guarded, injected riemannian_adam state survives an orbax save/restore, and a jitted
    step donating params and state continues exactly like the uninterrupted run."""
    params, grads = params_and_grads(5, steps=4)
    tx = optax.inject_hyperparams(mo.riemannian_adam)(0.05, MANIFOLDS, weight_decay=0.1, guard_nonfinite=True)
    step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p)),
                   donate_argnums=(0, 1))
    p, s = jax.tree.map(jnp.copy, params), tx.init(params)
    for g in grads[:2]:
        p, s = step(p, s, g)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", {"params": p, "state": s})
        checkpointer.wait_until_finished()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": p, "state": s})
        restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    resumed_p, resumed_s = restored["params"], restored["state"]
    for g in grads[2:]:
        p, s = step(p, s, g)
        resumed_p, resumed_s = step(resumed_p, resumed_s, g)
    assert_trees_close(resumed_p, p, atol=0.0)
    assert_trees_close(resumed_s, s, atol=0.0)

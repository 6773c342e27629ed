"""mo.frank_wolfe against a NumPy reference loop (schedules, momentum, rescaling), composed with
optax.partition / inject_hyperparams, over a hull of pytrees, and its errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from manifold_opt.sets import ConvexHull, KSparse, L1Ball, L2Ball

RNG = np.random.default_rng(0)
TARGET = RNG.normal(size=(4, 3))


def loss(params):
    return jnp.sum((params["w"] - jnp.asarray(TARGET)) ** 2) + jnp.sum((params["b"] - 1.0) ** 2)


def run(opt, params, steps):
    @jax.jit
    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), params

    (params, _), history = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, history


def reference_l2(w0, steps, lr, beta, rescale, radius):
    """The SFW update of Pokutta et al. 2020 in NumPy for the w leaf on an L2 ball."""
    w, m = np.array(w0), None
    for t in range(steps):
        g = 2 * (w - TARGET)
        b = beta(t) if callable(beta) else beta
        m = g if m is None else b * m + (1 - b) * g
        s = -radius * m / np.linalg.norm(m)
        rate = lr(t) if callable(lr) else lr
        factor = {None: 1.0, "diameter": 1 / (2 * radius), "gradient": np.linalg.norm(m) / np.linalg.norm(s - w)}[rescale]
        w = w + np.clip(rate * factor, 0, 1) * (s - w)
    return w


@pytest.mark.parametrize(
    "lr, momentum, rescale",
    [(0.1, 0.0, None), ("agnostic", 0.9, "diameter"), (0.05, "mokhtari", "gradient")],
)
def test_matches_reference_and_composes_with_partition(lr, momentum, rescale):
    """FW on the kernel (L2 ball of radius 0.5), Adam on the bias through optax.partition."""
    schedules = {"agnostic": lambda t: 2 / (t + 2), "mokhtari": lambda t: 1 - 4 / (t + 8) ** (2 / 3)}
    ref_lr, ref_beta = schedules.get(lr, lr), schedules.get(momentum, momentum)
    mo_lr = mo.fw_agnostic_schedule() if lr == "agnostic" else lr
    mo_beta = mo.fw_momentum_schedule() if momentum == "mokhtari" else momentum
    params = {"w": jnp.asarray(0.1 * RNG.normal(size=(4, 3))), "b": jnp.zeros(3)}
    sets = mo.manifold_tree(params, {"w": L2Ball(0.5)})
    opt = optax.partition(
        {"fw": mo.frank_wolfe(mo_lr, sets, momentum=mo_beta, rescale=rescale), "adam": optax.adam(0.1)},
        {"w": "fw", "b": "adam"},
    )
    final, history = run(opt, params, 40)
    np.testing.assert_allclose(final["w"], reference_l2(params["w"], 40, ref_lr, ref_beta, rescale, 0.5), rtol=1e-9, atol=1e-12)
    assert np.all(np.linalg.norm(np.asarray(history["w"]).reshape(40, -1), axis=1) <= 0.5 + 1e-12)
    assert float(jnp.abs(final["b"] - 1).max()) < float(jnp.abs(params["b"] - 1).max())


def test_float32_feasibility_inject_hyperparams_and_hull_of_pytrees():
    params = {"w": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    sets = {"w": KSparse(3, 0.2), "b": L1Ball(0.5)}
    params = jax.tree_util.tree_map(lambda c, x: c.lmo(x), sets, params)  # start on a vertex
    opt = optax.inject_hyperparams(mo.frank_wolfe, static_args=("sets",))(learning_rate=0.05, sets=sets, momentum=0.5)
    final, history = run(opt, params, 200)
    assert final["w"].dtype == jnp.float32
    feas = jax.vmap(lambda p: sets["w"].feasibility(p["w"]) + sets["b"].feasibility(p["b"]))(history)
    assert float(jnp.max(feas)) <= 1e-6
    # the whole params tree on a hull of three pytree checkpoints: params stay convex combinations
    checkpoints = {"w": jnp.asarray(RNG.normal(size=(3, 4, 3))), "b": jnp.asarray(RNG.normal(size=(3, 3)))}
    hull = ConvexHull(checkpoints)
    start = jax.tree_util.tree_map(lambda v: v[0], checkpoints)
    agnostic_after_rescaling = lambda t: hull.diameter() * 2.0 / (t + 2.0)  # diameter is a jit constant
    final, _ = run(mo.frank_wolfe(agnostic_after_rescaling, hull, rescale="diameter"), start, 200)
    best = min(float(loss(jax.tree_util.tree_map(lambda v: v[i], checkpoints))) for i in range(3))
    assert float(loss(final)) <= best + 1e-9


def test_errors_name_the_function_and_argument():
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    with pytest.raises(ValueError, match="frank_wolfe: every parameter needs a constraint set"):
        mo.frank_wolfe(0.1, {"w": L2Ball(1.0), "b": None}).init(params)
    with pytest.raises(ValueError, match="frank_wolfe: unknown rescale"):
        mo.frank_wolfe(0.1, L2Ball(1.0), rescale="norm")
    with pytest.raises(ValueError, match="frank_wolfe: momentum"):
        mo.frank_wolfe(0.1, L2Ball(1.0), momentum=1.5)
    with pytest.raises(ValueError, match="frank_wolfe: learning_rate"):
        mo.frank_wolfe(2.0, L2Ball(1.0))
    opt = mo.frank_wolfe(0.1, L2Ball(1.0))
    with pytest.raises(ValueError, match="frank_wolfe: update needs params"):
        opt.update(params, opt.init(params))
    with pytest.raises(ValueError, match="KSparse: k = 20 exceeds"):
        mo.frank_wolfe(0.1, KSparse(20, 1.0)).init(params)

"""The orthogonal-gradient transforms (project_out, orthogonal_gradient, pcgrad) and their
helpers (protect_from_inputs, protect_from_weights) in a researcher's own Flax code: under
nnx.Optimizer and with linen params, against the same transforms on plain dicts."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.transforms.project_out import basis_rank

RNG = np.random.default_rng(23)
D_IN, HIDDEN, CLASSES = 8, 16, 4


class NnxNet(nnx.Module):
    def __init__(self, rngs, use_bias=False):
        kw = dict(use_bias=use_bias, param_dtype=jnp.float64, rngs=rngs)
        self.fc1 = nnx.Linear(D_IN, HIDDEN, **kw)
        self.head = nnx.Linear(HIDDEN, CLASSES, **kw)  # an output head: the Muon role rule skips it

    def hidden(self, x):
        return jax.nn.relu(self.fc1(x))

    def __call__(self, x):
        return self.head(self.hidden(x))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jax.nn.relu(nn.Dense(HIDDEN, use_bias=False, param_dtype=jnp.float64, name="fc1")(x))
        return nn.Dense(CLASSES, use_bias=False, param_dtype=jnp.float64, name="head")(h), h


def task_data(key, n):
    kx, ky = jax.random.split(jax.random.key(key))
    return jax.random.normal(kx, (n, D_IN), jnp.float64), jax.random.randint(ky, (n,), 0, CLASSES)


def xent(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def relative_move(before, after):
    return float(np.max(np.abs(np.asarray(after) - np.asarray(before))) / np.max(np.abs(np.asarray(before))))


def test_nnx_optimizer_protects_the_head_kernel_logits_on_protected_samples_do_not_move():
    """Issue 18 (4): after protect_from_inputs on task A's layer inputs (fc1 and head), 100 SGD
    steps on task B leave task A's logits unchanged; before, the head kernel was silently skipped
    (logits moved ~3.6x relative)."""
    model = NnxNet(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.chain(optax.sgd(0.2, momentum=0.9), mo.project_out()), wrt=nnx.Param)
    xa, _ = task_data(1, 6)  # 6 samples span 6 of 8 input dims and <= 6 of 16 hidden ones
    inputs = {"fc1": {"kernel": xa}, "head": {"kernel": model.hidden(xa)}}  # no bias entries needed
    optimizer.opt_state = jax.jit(lambda s, x: mo.protect_from_inputs(s, x, threshold=1.0))(optimizer.opt_state, inputs)
    before = model(xa)
    xb, yb = task_data(2, 64)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: xent(m(xb), yb))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(100)]
    assert losses[-1] < 0.7 * losses[0]  # task B is learned
    assert relative_move(before, model(xa)) < 1e-9


def test_linen_params_protect_the_head_kernel_too():
    net = LinenNet()
    xa, _ = task_data(3, 6)
    xb, yb = task_data(4, 64)
    params = net.init(jax.random.key(0), xa)
    tx = optax.chain(optax.adam(0.05), mo.project_out())
    state = tx.init(params)
    logits_a, hidden_a = net.apply(params, xa)
    inputs = {"params": {"fc1": {"kernel": xa}, "head": {"kernel": hidden_a}}}
    state = jax.jit(lambda s, x: mo.protect_from_inputs(s, x, threshold=1.0))(state, inputs)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: xent(net.apply(p, xb)[0], yb))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(50):
        params, state = step(params, state)
    assert relative_move(logits_a, net.apply(params, xa)[0]) < 1e-9


def test_inputs_for_an_unprotected_leaf_are_an_error_not_silently_dropped():
    model = NnxNet(nnx.Rngs(0), use_bias=True)
    role_rule = mo.matrix_rules()  # Muon's role rule: the head kernel is not a matrix to it
    optimizer = nnx.Optimizer(model, mo.project_out(weight_dimension_numbers=role_rule), wrt=nnx.Param)
    xa, _ = task_data(1, 6)
    with pytest.raises(ValueError, match="protect_from_inputs: samples are given for head/kernel"):
        mo.protect_from_inputs(optimizer.opt_state, {"fc1": {"kernel": xa}, "head": {"kernel": model.hidden(xa)}})
    with pytest.raises(ValueError, match="protect_from_inputs: samples are given for fc1/kernel.*output side"):
        mo.protect_from_inputs(optimizer.opt_state, {"fc1": {"kernel": xa}}, side="output")


def test_nnx_helpers_match_plain_dicts_with_biases_left_out():
    """protect_from_inputs / protect_from_weights on nnx.Optimizer's opt_state (biased layers,
    inputs given for the kernels only) grow the same bases as on a plain-dict optax state."""
    model = NnxNet(nnx.Rngs(5), use_bias=True)
    xa, _ = task_data(6, 12)
    inputs = {"fc1": {"kernel": xa}, "head": {"kernel": model.hidden(xa)}}
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for tx, grow in ((mo.project_out(), lambda s, p: mo.protect_from_inputs(s, inputs)),
                     (mo.project_out(side="both"), lambda s, p: mo.protect_from_weights(s, p, rank_fraction=0.25))):
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        grown = nnx.as_pure(jax.jit(grow)(optimizer.opt_state, nnx.state(model, nnx.Param)))._asdict()
        reference = jax.jit(grow)(tx.init(pure), pure)
        for side in ("input", "output"):
            if reference._asdict()[side] is None:
                continue
            for layer in ("fc1", "head"):
                got, want = grown[side][layer]["kernel"], reference._asdict()[side][layer]["kernel"]
                assert int(basis_rank(want)[0]) > 0
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-12)
                assert grown[side][layer]["bias"] is None


@pytest.mark.parametrize("transform", [lambda: mo.orthogonal_gradient(0.7), lambda: mo.pcgrad(seed=3)],
                         ids=["orthogonal_gradient", "pcgrad"])
def test_gradient_combiners_go_through_nnx_optimizer_update_and_linen(transform):
    """optimizer.update(model, (g_1, g_2)) (nnx.Optimizer turns the tuple into a State keyed 0, 1)
    and linen params give the same step as the transform on plain dicts."""
    model = NnxNet(nnx.Rngs(7), use_bias=True)
    x, y = task_data(8, 32)
    losses = (lambda m: xent(m(x), y), lambda m: jnp.mean(m(x)[:, 0] ** 2))
    grads = tuple(nnx.grad(f)(model) for f in losses)
    pure_params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    pure_grads = tuple(nnx.to_pure_dict(g) for g in grads)
    tx = optax.chain(transform(), optax.sgd(0.1))
    step = jax.jit(lambda g, p: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))
    expected = step(pure_grads, pure_params)

    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    nnx.jit(lambda m, o, g: o.update(m, g))(model, optimizer, grads)
    got = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12), got, expected)
    assert relative_move(pure_params["fc1"]["kernel"], got["fc1"]["kernel"]) > 1e-3

    linen = {"params": pure_params}  # the same tree under linen's "params" collection
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12),
                 step(tuple({"params": g} for g in pure_grads), linen)["params"], expected)

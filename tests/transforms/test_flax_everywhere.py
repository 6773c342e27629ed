"""Every public optax transform and params helper, under `nnx.Optimizer` and under linen.

Each case trains the same two-layer MLP written in NNX (`nnx.Optimizer(model, tx, wrt=nnx.Param)`,
`optimizer.update(model, grads)`) and in linen (`TrainState.apply_gradients`, i.e.
`optax.apply_updates` on `model.init` params) from the same weights, in one jit, and asserts
that both give the same params, that the loss went down, and that constrained params stay on
their manifold / in their set. The transforms are discovered from the package, so a new public
factory without an entry in TRANSFORMS (or a reason in NOT_TRANSFORMS) fails the suite.
"""
import inspect

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training.train_state import TrainState

import manifold_opt as mo
from manifold_opt.manifolds import Stiefel

STEPS = 3
CHEAP_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}  # tiny models
OUT = Stiefel(6, 3)  # the manifold of the output kernel (6, 3) in the manifold cases
RULES = {"out/kernel": OUT}
X = jax.random.normal(jax.random.key(0), (8, 4))
Y = jax.random.normal(jax.random.key(1), (8, 3))
Y2 = jax.random.normal(jax.random.key(2), (8, 3))


class Mlp(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 6, rngs=rngs)
        self.out = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


class MlpLinen(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3, name="out")(jnp.tanh(linen.Dense(6, name="hidden")(x)))


def mse(pred, y):
    return jnp.mean((pred - y) ** 2)


def nnx_params(model):
    return nnx.state(model, nnx.Param)


def on_matrices(*matrix_chain, lr=0.05):
    """`matrix_chain` on the 2-D leaves, SGD on the rest. The labels are a function, so they fit
    the Variable-wrapped params nnx.Optimizer's init sees and the plain arrays of its update."""
    labels = lambda params: jax.tree.map(lambda x: "matrix" if x.ndim == 2 else "other", params)  # noqa: E731
    return optax.partition({"matrix": optax.chain(*matrix_chain), "other": optax.sgd(lr)}, labels)


# name -> (factory(params, manifolds, sets) -> tx, kind). `params` is what the framework hands
# the helpers: nnx.state(model, nnx.Param) for NNX, the `model.init` params for linen.
# kind: "descent" (loss decreases), "manifold" (out/kernel stays on OUT), "set" (every leaf stays
# in its set), "pair" (updates are a tuple of per-task gradients).
def _scaled(core, lr=0.05):
    return lambda p, m, s: on_matrices(core(), optax.scale(-lr))


TRANSFORMS = {
    "aro": (lambda p, m, s: mo.aro(0.02), "descent"),
    "auon": (lambda p, m, s: mo.auon(0.05), "descent"),
    "conda": (lambda p, m, s: mo.conda(0.02), "descent"),
    "dion2": (lambda p, m, s: mo.dion2(0.02), "descent"),
    "fismo": (lambda p, m, s: mo.fismo(0.02), "descent"),
    "frank_wolfe": (lambda p, m, s: optax.partition(
        {"manifold": mo.frank_wolfe(0.1, s), "free": optax.sgd(0.05)}, mo.partition_labels(s)), "set"),
    "hybrid_auon": (lambda p, m, s: mo.hybrid_auon(0.02), "descent"),
    "hyperball_projection": (lambda p, m, s: on_matrices(
        optax.sgd(0.05), mo.transforms.hyperball_projection()), "descent"),
    "manifold_muon": (lambda p, m, s: mo.manifold_muon(0.05, m, dual_steps=5), "manifold"),
    "muon": (lambda p, m, s: mo.muon(0.02), "descent"),
    "normuon": (lambda p, m, s: mo.normuon(0.02), "descent"),
    "orthogonal_gradient": (lambda p, m, s: optax.chain(mo.orthogonal_gradient(0.5), optax.sgd(0.05)), "pair"),
    "orthogonalized_optimizer": (lambda p, m, s: mo.transforms.orthogonalized_optimizer(
        mo.scale_by_muon(), learning_rate=0.02), "descent"),
    "pcgrad": (lambda p, m, s: optax.chain(mo.pcgrad(), optax.sgd(0.05)), "pair"),
    "project_out": (lambda p, m, s: optax.chain(mo.project_out(), optax.sgd(0.05)), "descent"),
    "project_to_tangent": (lambda p, m, s: optax.chain(
        mo.project_to_tangent(m), optax.sgd(0.05), mo.retract(m)), "manifold"),
    "retract": (lambda p, m, s: optax.chain(optax.sgd(0.05), mo.retract(m)), "manifold"),
    "riemannian_adam": (lambda p, m, s: mo.riemannian_adam(0.02, m), "manifold"),
    "riemannian_partition": (lambda p, m, s: mo.riemannian_partition(
        mo.riemannian_sgd(0.05, m, momentum=0.9), optax.adam(0.02), m), "manifold"),
    "riemannian_sgd": (lambda p, m, s: mo.riemannian_sgd(0.05, m, momentum=0.5), "manifold"),
    "root": (lambda p, m, s: mo.root(0.01), "descent"),
    "scale_by_aro": (_scaled(mo.scale_by_aro), "descent"),
    "scale_by_auon": (_scaled(mo.scale_by_auon, 0.02), "descent"),
    "scale_by_conda": (_scaled(mo.scale_by_conda, 0.02), "descent"),
    "scale_by_dion2": (_scaled(mo.scale_by_dion2), "descent"),
    "scale_by_fismo": (_scaled(mo.scale_by_fismo), "descent"),
    "scale_by_hybrid_auon": (_scaled(mo.scale_by_hybrid_auon), "descent"),
    "scale_by_manifold_muon": (lambda p, m, s: on_matrices(
        mo.scale_by_manifold_muon(dual_steps=5), optax.scale(-0.05), mo.transforms.stiefel_retraction()), "descent"),
    "scale_by_muon": (_scaled(mo.scale_by_muon), "descent"),
    "scale_by_normuon": (_scaled(mo.scale_by_normuon), "descent"),
    "scale_by_root": (_scaled(mo.scale_by_root, 0.01), "descent"),
    "scale_by_shape": (lambda p, m, s: optax.chain(optax.sgd(0.05), mo.transforms.scale_by_shape()), "descent"),
    "scale_by_spectral_clip": (lambda p, m, s: optax.chain(
        optax.scale_by_adam(), mo.scale_by_spectral_clip(), optax.scale(-0.01)), "descent"),
    "spectral_clip": (lambda p, m, s: mo.spectral_clip(0.01), "descent"),
    "stiefel_retraction": (lambda p, m, s: on_matrices(
        optax.sgd(0.05), mo.transforms.stiefel_retraction()), "descent"),
}

# Public functions that are not GradientTransformation factories, and where each is exercised.
NOT_TRANSFORMS = {
    "default_dimension_numbers": "array -> DimensionNumbers (no params tree)",
    "extend_basis": "array helper of project_out (test_project_out)",
    "fw_agnostic_schedule": "a schedule (frank_wolfe case takes numbers; test_frank_wolfe)",
    "fw_momentum_schedule": "a schedule (test_frank_wolfe)",
    "manifold_tree": "helper: builds the manifold tree of every manifold case here; test_tree_helpers_agree",
    "matrix_axes": "shape helper (no params tree)",
    "matrix_labels": "helper: test_tree_helpers_agree",
    "matrix_rules": "a MatrixRules value (test_muon_family_rules)",
    "ndim2_dimension_numbers": "helper: test_tree_helpers_agree",
    "partition_labels": "helper: the frank_wolfe and riemannian_partition cases here; test_tree_helpers_agree",
    "project_params": "helper: snaps the init of every manifold case here; test_tree_helpers_agree",
    "protect_from_inputs": "helper: test_project_out_protection",
    "protect_from_weights": "helper: test_project_out_protection",
    "qk_clip": "params helper on attention models, under NNX and linen in test_qk_clip",
    "resolve_dimension_numbers": "helper: test_tree_helpers_agree",
    "role_dimension_numbers": "names/shape helper (no params tree)",
    "soft_spectral_clip": "array function (test_orthogonalized_optimizers)",
}


def public_functions():
    names = set(mo.transforms.__all__) | {n for n in dir(mo) if not n.startswith("_")}
    return {n for n in names
            if inspect.isfunction(getattr(mo.transforms, n, None) or getattr(mo, n, None))}


def test_every_public_function_is_covered():
    found = public_functions()
    assert found == set(TRANSFORMS) | set(NOT_TRANSFORMS), (
        f"missing: {sorted(found - set(TRANSFORMS) - set(NOT_TRANSFORMS))}, "
        f"stale: {sorted((set(TRANSFORMS) | set(NOT_TRANSFORMS)) - found)}")
    assert not set(TRANSFORMS) & set(NOT_TRANSFORMS)


def initial_params(kind):
    """The shared initial weights (a plain dict); on OUT for the manifold cases."""
    params = nnx.to_pure_dict(nnx_params(Mlp(nnx.Rngs(0))))
    if kind == "manifold":
        params = mo.project_params(mo.manifold_tree(params, RULES), params)
    return params


def grads_of(grad, loss_fn, kind):
    """(params or model) -> gradient pytree, or a pair of them (one per target) for "pair"."""
    if kind == "pair":
        return lambda f: (grad(lambda q: loss_fn(q, Y))(f), grad(lambda q: loss_fn(q, Y2))(f))
    return lambda f: grad(lambda q: loss_fn(q, Y))(f)


def run_both(name):
    """Train STEPS steps with NNX and with linen from the same weights, in one jit."""
    factory, kind = TRANSFORMS[name]
    params0 = initial_params(kind)

    model = Mlp(nnx.Rngs(0))
    nnx.update(model, params0)
    state = nnx_params(model)
    optimizer = nnx.Optimizer(model, factory(state, mo.manifold_tree(state, RULES),
                                             mo.sets.sets_from_init(state, "l2", width=1.0)), wrt=nnx.Param)
    tx_linen = factory(params0, mo.manifold_tree(params0, RULES), mo.sets.sets_from_init(params0, "l2", width=1.0))
    graphdef, nnx_state = nnx.split((model, optimizer))
    nnx_grads = grads_of(nnx.grad, lambda m, y: mse(m(X), y), kind)
    apply = MlpLinen().apply
    linen_grads = grads_of(jax.grad, lambda p, y: mse(apply({"params": p}, X), y), kind)

    @jax.jit(compiler_options=CHEAP_COMPILE)
    def train(nnx_state, params0):
        def nnx_step(_, s):
            model, optimizer = nnx.merge(graphdef, s)
            optimizer.update(model, nnx_grads(model))
            return nnx.state((model, optimizer))

        def linen_step(_, ts):
            return ts.apply_gradients(grads=linen_grads(ts.params))

        nnx_state = jax.lax.fori_loop(0, STEPS, nnx_step, nnx_state)
        ts = TrainState.create(apply_fn=apply, params=params0, tx=tx_linen)
        ts = jax.lax.fori_loop(0, STEPS, linen_step, ts)
        model, _ = nnx.merge(graphdef, nnx_state)
        return nnx.to_pure_dict(nnx_params(model)), ts.params

    return kind, params0, *train(nnx_state, params0)


@jax.jit
def total_loss(params):
    pred = MlpLinen().apply({"params": params}, X)
    return mse(pred, Y) + mse(pred, Y2)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_under_nnx_and_linen(name):
    kind, params0, nnx_final, linen_final = run_both(name)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), nnx_final, linen_final)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(linen_final), jax.tree.leaves(params0)))
    assert moved > 1e-4, f"{name}: params did not move"
    if kind == "pair":
        assert total_loss(linen_final) < total_loss(params0)
    else:
        loss = lambda p: mse(MlpLinen().apply({"params": p}, X), Y)  # noqa: E731
        assert loss(linen_final) < loss(params0)
    if kind == "manifold":
        w = np.asarray(linen_final["out"]["kernel"])
        np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-5)
    if kind == "set":
        for x, x0 in zip(jax.tree.leaves(linen_final), jax.tree.leaves(params0)):
            bound = np.linalg.norm(x0)
            if bound > 0:
                assert np.linalg.norm(x) <= bound * (1 + 1e-6)


def test_project_out_protection_under_nnx_and_linen():
    """protect_from_inputs / _weights take nnx.Optimizer's opt_state (OptVariable-wrapped) and
    inputs naming only the protected kernels (issue 18); NNX and linen grow the same bases, and
    a step then leaves the hidden layer's outputs on the protected inputs unchanged."""
    tx = optax.chain(mo.project_out(), optax.sgd(0.1))
    model = Mlp(nnx.Rngs(0))
    params0 = nnx.to_pure_dict(nnx_params(model))
    inputs = {"hidden": {"kernel": X[:3]}}
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    optimizer.opt_state = mo.protect_from_inputs(optimizer.opt_state, inputs, threshold=0.99999)
    ts = TrainState.create(apply_fn=MlpLinen().apply, params=params0, tx=tx)
    ts = ts.replace(opt_state=mo.protect_from_inputs(ts.opt_state, inputs, threshold=0.99999))
    nnx_basis = nnx.to_pure_dict(nnx.state(optimizer.opt_state))[0]["input"]["hidden"]["kernel"]
    np.testing.assert_array_equal(nnx_basis, ts.opt_state[0].input["hidden"]["kernel"])
    assert int(np.linalg.matrix_rank(np.asarray(nnx_basis[0]), tol=1e-4)) == 3

    optimizer.update(model, nnx.grad(lambda m: mse(m(X), Y))(model))
    ts = ts.apply_gradients(grads=jax.grad(lambda p: mse(MlpLinen().apply({"params": p}, X), Y))(ts.params))
    new = nnx.to_pure_dict(nnx_params(model))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new, ts.params)
    dk = new["hidden"]["kernel"] - params0["hidden"]["kernel"]
    assert float(jnp.max(jnp.abs(dk))) > 1e-3
    np.testing.assert_allclose(X[:3] @ dk, 0.0, atol=1e-5)

    grown = mo.protect_from_weights(optimizer.opt_state, nnx_params(model))
    expected = mo.protect_from_weights(ts.opt_state, ts.params)
    np.testing.assert_allclose(nnx.to_pure_dict(nnx.state(grown))[0]["input"]["out"]["kernel"],
                               expected[0].input["out"]["kernel"], atol=1e-5)


def leaves_of(tree):
    return [repr(x) for x in jax.tree.leaves(tree, is_leaf=lambda x: x is None)]


def test_tree_helpers_agree_on_nnx_state_and_linen_params():
    """The params-tree helpers give the same leaves on nnx.state(model, nnx.Param) (Variable
    wrappers) as on the plain linen params, including mo.nn.manifold_tree_of on a model tagged
    with mo.nn.with_manifold and on its linen twin."""
    state = nnx_params(Mlp(nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    manifolds = {"nnx": mo.manifold_tree(state, RULES), "linen": mo.manifold_tree(params, RULES)}
    assert leaves_of(manifolds["nnx"]) == leaves_of(manifolds["linen"])
    for helper in (mo.transforms.matrix_labels, mo.transforms.ndim2_dimension_numbers,
                   mo.transforms.resolve_dimension_numbers, lambda p: mo.sets.sets_from_init(p, "l1")):
        assert leaves_of(helper(state)) == leaves_of(helper(params)), helper
    labels = mo.partition_labels(mo.sets.sets_from_init(state, "l1"))(state)
    assert sorted(leaves_of(labels)) == ["'free'", "'free'", "'manifold'", "'manifold'"]
    assert leaves_of(mo.partition_labels(manifolds["nnx"])(state)) == leaves_of(
        mo.partition_labels(manifolds["linen"])(params))
    projected = nnx.to_pure_dict(mo.project_params(manifolds["nnx"], state))
    jax.tree.map(np.testing.assert_array_equal, projected, mo.project_params(manifolds["linen"], params))
    w = np.asarray(projected["out"]["kernel"])
    np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-5)

    tagged = nnx.Linear(6, 3, kernel_init=mo.nn.with_manifold(OUT), rngs=nnx.Rngs(0))
    boxed = linen.Dense(3, kernel_init=mo.nn.linen.with_manifold(OUT)).init(jax.random.key(0), X[:, :2].repeat(3, 1))
    assert leaves_of(mo.nn.manifold_tree_of(tagged)) == leaves_of(mo.nn.manifold_tree_of(boxed)) == ["None", repr(OUT)]

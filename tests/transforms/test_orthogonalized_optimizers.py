"""Every orthogonalized optimizer against its float64 NumPy reference (tests/transforms/
reference.py), plus the properties they all share: AdamW routing, zero gradients, NaN guard,
bf16 params, and loss decrease on a small Flax NNX model."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import manifold_opt as mo
from tests.transforms import reference as ref

RNG = np.random.default_rng(7)
LR, WD = 0.05, 0.1


def make_params(dtype=jnp.float64, rng=RNG):
    # "w": wide (in 6, out 10); "v": tall (in 12, out 5); "b": a bias that goes to AdamW
    return {
        "w": jnp.asarray(rng.standard_normal((6, 10)), dtype),
        "v": jnp.asarray(rng.standard_normal((12, 5)), dtype),
        "b": jnp.asarray(RNG.standard_normal(5), dtype),
    }


def grads_like(params, scale=1.0, rng=RNG):
    return jax.tree.map(lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), params)


# name -> (our optimizer, NumPy reference step for one matrix)
CASES = {
    "muon": (functools.partial(mo.muon, LR, weight_decay=WD), functools.partial(ref.muon, lr=LR, wd=WD)),
    "auon": (functools.partial(mo.auon, LR, weight_decay=WD), functools.partial(ref.auon, lr=LR, wd=WD)),
    "hybrid_auon": (functools.partial(mo.hybrid_auon, LR, weight_decay=WD),
                    functools.partial(ref.hybrid_auon, lr=LR, wd=WD)),
    "normuon": (functools.partial(mo.normuon, LR, weight_decay=WD), functools.partial(ref.normuon, lr=LR, wd=WD)),
    "conda": (functools.partial(mo.conda, LR, weight_decay=WD, update_proj_gap=2),
              functools.partial(ref.conda, lr=LR, wd=WD, gap=2)),
    "root": (functools.partial(mo.root, LR, weight_decay=WD), functools.partial(ref.root, lr=LR, wd=WD)),
    "spectral_clip": (functools.partial(mo.spectral_clip, LR, weight_decay=WD, c=3.0, num_iters=20),
                      functools.partial(ref.spectral_clip, lr=LR, wd=WD, c=3.0)),
    "dion2": (functools.partial(mo.dion2, LR, weight_decay=WD, ns_coeffs="muon"),
              functools.partial(ref.dion2, lr=LR, wd=WD)),
    "aro": (functools.partial(mo.aro, LR, weight_decay=WD), functools.partial(ref.aro, lr=LR, wd=WD)),
    "fismo": (functools.partial(mo.fismo, LR, weight_decay=WD), functools.partial(ref.fismo, lr=LR, wd=WD)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference_and_routes_the_rest_to_adamw(name):
    make_tx, reference = CASES[name]
    tx = make_tx(adam_learning_rate=0.01)
    params = make_params()
    state = tx.init(params)
    update = jax.jit(tx.update)
    adam_tx = optax.adamw(0.01, b1=0.9, b2=0.95, weight_decay=0.0)
    if name == "conda":
        adam_tx = optax.adamw(0.01, b1=0.9, b2=0.99, weight_decay=0.0)
    adam_state = adam_tx.init(params["b"])
    ref_states = {"w": {}, "v": {}, "b": {}}
    for _ in range(4):  # conda refreshes its basis at steps 1 and 3
        g = grads_like(params)
        upd, state = update(g, state, params)
        for key in ("w", "v"):
            ref_states[key], expected = reference(ref_states[key], np.asarray(g[key]), np.asarray(params[key]))
            np.testing.assert_allclose(upd[key], expected, rtol=1e-7, atol=1e-9, err_msg=key)
        if name == "spectral_clip":
            ref_states["b"], expected_b = ref.spectral_clip_vector(ref_states["b"], np.asarray(g["b"]), 0.01, 3.0)
        else:
            expected_b, adam_state = adam_tx.update(g["b"], adam_state, params["b"])
        np.testing.assert_allclose(upd["b"], expected_b, rtol=1e-7, atol=1e-12)
        params = optax.apply_updates(params, upd)


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_grads_nan_guard_and_bf16(name):
    make_tx = CASES[name][0]
    rng = np.random.default_rng(0)  # its own draws: the same whatever ran before (xdist order)
    params = make_params(jnp.float32, rng)
    # zero gradients (no weight decay): a zero update, no NaN
    tx = make_tx(weight_decay=0.0, guard_nonfinite=True)
    update = jax.jit(tx.update)
    state = tx.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    upd, state = update(zero, state, params)
    for leaf in jax.tree.leaves(upd):
        assert not np.any(np.isnan(leaf)) and np.all(leaf == 0)
    # a NaN/inf gradient: the step is skipped (zero update, state unchanged)
    bad = grads_like(params, rng=rng)
    bad["w"] = bad["w"].at[0, 0].set(jnp.nan)
    bad["b"] = bad["b"].at[1].set(jnp.inf)
    upd, skipped = update(bad, state, params)
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(upd))
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), skipped.inner_state, state.inner_state)
    assert all(jax.tree.leaves(chex_equal))
    # bf16 params: finite bf16 updates pointing where the float32 ones do (cosine > 0.9; bf16
    # Newton-Schulz and Conda's SVD basis of a bf16 momentum differ from float32 by up to ~10%:
    # over draws 0-5 Conda's cosine ranged 0.924-0.99, the others' stayed above 0.98)
    g = grads_like(params, rng=rng)
    upd32, _ = update(g, tx.init(params), params)  # the guard is the identity on finite steps
    p16, g16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), (params, g))
    upd16, _ = update(g16, tx.init(p16), p16)
    for a, b in zip(jax.tree.leaves(upd16), jax.tree.leaves(upd32)):
        assert a.dtype == jnp.bfloat16 and np.all(np.isfinite(a.astype(np.float32)))
        a = a.astype(jnp.float32)
        assert float(jnp.vdot(a, b)) >= 0.9 * float(jnp.linalg.norm(a) * jnp.linalg.norm(b))


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(10, 8, rngs=rngs)
        self.hidden = nnx.Linear(8, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.head = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, tokens):
        return self.head(nnx.relu(self.norm(self.hidden(self.embed(tokens)))))


def not_embedding_or_head(params):
    """A label function: only the hidden layer is orthogonalized; embedding and head go to AdamW."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.ndim == 2 and "hidden" in jax.tree_util.keystr(path), params
    )


def test_default_rule_picks_the_hidden_layer_of_the_flax_model():
    state = nnx.state(nnx.eval_shape(lambda: MLP(nnx.Rngs(0))), nnx.Param)
    assert mo.transforms.matrix_labels(state) == mo.transforms.matrix_labels(state, not_embedding_or_head)


@pytest.mark.parametrize("name", sorted(CASES))
def test_decreases_loss_of_flax_model(name):
    model = MLP(nnx.Rngs(0))
    tokens = jnp.asarray(RNG.integers(0, 10, 64))
    targets = (3 * tokens + 1) % 10
    make_tx = getattr(mo, name)
    extra = {"update_proj_gap": 10} if name == "conda" else {}
    tx = make_tx(learning_rate=0.02, adam_learning_rate=0.02, **extra)  # the default rule
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_fn(model):
        logits = model(tokens).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    first = float(step(model, optimizer))
    for _ in range(30):
        last = float(step(model, optimizer))
    assert np.isfinite(last) and last < 0.7 * first, (first, last)

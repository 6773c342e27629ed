"""The role rule on real Flax transformers (linen and NNX param trees, read by jax.eval_shape):
attention kernels as matrices by their head axes (optionally per head), embeddings, heads,
biases and norms to AdamW; explicit overrides; per-head Muon against a NumPy reference."""
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import manifold_opt as mo
from manifold_opt.transforms import DimensionNumbers as DN
from manifold_opt.transforms import matrix_labels, matrix_rules, resolve_dimension_numbers
from manifold_opt.transforms.matrix_params import matrix_axes, path_names, role_dimension_numbers
from tests.transforms import reference as ref

D, HEADS, VOCAB = 8, 2, 11  # head_dim 4


class LinenBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attn")(nn.LayerNorm()(x))
        return x + nn.DenseGeneral(D, name="down")(nn.relu(nn.Dense(4 * D, name="up")(nn.LayerNorm()(x))))


class LinenLM(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = LinenBlock(name="block")(nn.Embed(VOCAB, D, name="embed")(tokens))
        return nn.Dense(VOCAB, name="lm_head")(nn.LayerNorm()(x))


class NnxLM(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(VOCAB, D, rngs=rngs)
        self.norm = nnx.LayerNorm(D, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=D, decode=False, rngs=rngs)
        self.up = nnx.Linear(D, 4 * D, rngs=rngs)
        self.down = nnx.Linear(4 * D, D, rngs=rngs)
        self.unembed = nnx.Linear(D, VOCAB, rngs=rngs)  # a tied-shape head: (D, VOCAB) vs (VOCAB, D)

    def __call__(self, tokens):
        x = self.embed(tokens)
        x = x + self.attn(self.norm(x))
        return self.unembed(x + self.down(nnx.relu(self.up(x))))


def linen_params():
    return jax.eval_shape(LinenLM().init, jax.random.key(0), jnp.zeros((1, 5), jnp.int32))["params"]


def nnx_state():
    return nnx.state(nnx.eval_shape(lambda: NnxLM(nnx.Rngs(0))), nnx.Param)


def by_path(tree):
    """{'a/b/kernel': leaf} over a dims tree (None leaves kept), without Variable wrappers."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None or isinstance(x, DN))[0]
    return {"/".join(path_names(path)): leaf for path, leaf in flat}


QKV, OUT = DN(0, (1, 2)), DN((0, 1), 2)
QKV_HEAD, OUT_HEAD = DN(0, 2), DN(1, 2)


def test_linen_transformer_roles():
    dims = by_path(resolve_dimension_numbers(linen_params()))
    expected = {f"block/attn/{n}/kernel": QKV for n in ("query", "key", "value")}
    expected.update({"block/attn/out/kernel": OUT, "block/up/kernel": DN(0, 1), "block/down/kernel": DN(0, 1)})
    assert {k: v for k, v in dims.items() if v is not None} == expected
    # everything else (embedding, lm_head, (heads, head_dim) biases, norms) goes to AdamW
    assert {"embed/embedding", "lm_head/kernel", "block/attn/query/bias"} <= {k for k, v in dims.items() if v is None}
    per_head = by_path(resolve_dimension_numbers(linen_params(), matrix_rules(per_head=True)))
    assert per_head["block/attn/query/kernel"] == QKV_HEAD and per_head["block/attn/out/kernel"] == OUT_HEAD
    assert matrix_axes((D, HEADS, 4), QKV_HEAD) == ((0,), (2,), (1,))  # the heads axis is a batch axis
    assert matrix_axes((HEADS, 4, D), OUT_HEAD) == ((1,), (2,), (0,))


def test_nnx_transformer_roles_with_and_without_variables():
    state = nnx_state()
    wrapped = by_path(resolve_dimension_numbers(state, matrix_rules(per_head=True)))
    pure = by_path(resolve_dimension_numbers(nnx.to_pure_dict(state), matrix_rules(per_head=True)))
    assert wrapped == pure
    matrices = {k: v for k, v in pure.items() if v is not None}
    expected = {f"attn/{n}/kernel": QKV_HEAD for n in ("query", "key", "value")}
    expected.update({"attn/out/kernel": OUT_HEAD, "up/kernel": DN(0, 1), "down/kernel": DN(0, 1)})
    assert matrices == expected  # the tied-shape head `unembed` and the embedding go to AdamW


def test_overrides_and_bad_rules():
    params = linen_params()
    rules = matrix_rules({"lm_head/kernel": True, "block/up/*": False, "*/out/kernel": DN((0, 1), 2)}, per_head=True)
    dims = by_path(resolve_dimension_numbers(params, rules))
    assert dims["lm_head/kernel"] == DN(0, 1) and dims["block/up/kernel"] is None
    assert dims["block/attn/out/kernel"] == OUT and dims["block/attn/query/kernel"] == QKV_HEAD
    # True reads an attention kernel by its head axes (not as a conv kernel), in a pytree spec too
    spec = jax.tree.map(lambda x: len(x.shape) >= 2, params)
    assert by_path(resolve_dimension_numbers(params, spec))["block/attn/query/kernel"] == QKV
    labels = by_path(matrix_labels(params, rules))
    assert labels["lm_head/kernel"] == "matrix" and labels["block/up/bias"] == "other"
    # a fused (d, 3, heads, head_dim) qkv kernel: q, k and v are separate matrices
    assert role_dimension_numbers(("blk", "qkv", "kernel"), (D, 3, HEADS, 4)) == DN(0, (2, 3))
    assert role_dimension_numbers(("blk", "qkv", "kernel"), (D, 3, HEADS, 4), per_head=True) == DN(0, 3)
    with pytest.raises(TypeError, match="matrix_rules: override 'x' must map"):
        matrix_rules({"x": "matrix"})
    with pytest.raises(TypeError, match="matrix_rules: per_head"):
        matrix_rules(per_head=1)
    with pytest.raises(ValueError, match="out of range"):
        resolve_dimension_numbers(params, matrix_rules({"lm_head/kernel": DN(0, 2)}))


def test_per_head_muon_matches_numpy_reference():
    """One Muon step on a (d, heads, head_dim) query kernel and a (heads, head_dim, d) output
    kernel: per head, each head's slice gets its own Newton-Schulz and width scale; otherwise
    the whole (d, heads * head_dim) matrix does."""
    rng = np.random.default_rng(5)
    params = {"attn": {"query": {"kernel": rng.standard_normal((D, HEADS, 4))},
                       "out": {"kernel": rng.standard_normal((HEADS, 4, D))}}}
    grads = jax.tree.map(lambda x: rng.standard_normal(x.shape), params)
    q, o, gq, go = (params["attn"]["query"]["kernel"], params["attn"]["out"]["kernel"],
                    grads["attn"]["query"]["kernel"], grads["attn"]["out"]["kernel"])
    for per_head in (True, False):
        tx = mo.muon(0.1, weight_decay=0.01, weight_dimension_numbers=matrix_rules(per_head=per_head))
        upd, _ = jax.jit(tx.update)(grads, tx.init(params), params)
        uq, uo = np.asarray(upd["attn"]["query"]["kernel"]), np.asarray(upd["attn"]["out"]["kernel"])
        if per_head:
            for h in range(HEADS):
                _, eq = ref.muon({}, gq[:, h], q[:, h], lr=0.1, wd=0.01)
                _, eo = ref.muon({}, go[h], o[h], lr=0.1, wd=0.01)
                np.testing.assert_allclose(uq[:, h], eq, rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(uo[h], eo, rtol=1e-9, atol=1e-12)
        else:
            _, eq = ref.muon({}, gq.reshape(D, -1), q.reshape(D, -1), lr=0.1, wd=0.01)
            _, eo = ref.muon({}, go.reshape(-1, D), o.reshape(-1, D), lr=0.1, wd=0.01)
            np.testing.assert_allclose(uq, eq.reshape(q.shape), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(uo, eo.reshape(o.shape), rtol=1e-9, atol=1e-12)


def test_optimizer_state_on_nnx_variables():
    """tx.init on nnx.state(model, nnx.Param) (Variable-wrapped leaves, as nnx.Optimizer passes
    them): the attention kernels get Muon momentum, the embedding and head AdamW's."""
    state = jax.eval_shape(mo.muon().init, nnx_state())
    muon_mu = by_path(state.inner_states["matrix"].inner_state[0].mu)
    assert muon_mu["attn/query/kernel"].shape == (D, HEADS, 4)
    adam_mu = by_path(state.inner_states["other"].inner_state[0].mu)
    assert {"embed/embedding", "unembed/kernel", "attn/query/bias"} <= set(adam_mu) - set(muon_mu)


def test_readme_transformer_recipe_runs():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    (recipe,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "matrix_rules(per_head=True)" in b]
    exec(compile(recipe, "README transformer recipe", "exec"), {})

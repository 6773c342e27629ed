"""MuonClip's QK-clip: recorded per-head max logits match a direct computation; after a clip the
largest logit on the same batch is tau for every head that exceeded it, and nothing else changes."""
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import manifold_opt as mo

HEADS, D, HEAD_DIM, TAU = 4, 16, 8, 10.0


def reference_max_logits(x, q_kernel, q_bias, k_kernel, k_bias):
    """float64 NumPy: per head, max over batch, queries and keys of q . k / sqrt(head_dim)."""
    x = np.asarray(x, np.float64)
    q = np.einsum("bld,dhe->blhe", x, np.asarray(q_kernel, np.float64)) + np.asarray(q_bias, np.float64)
    k = np.einsum("bld,dhe->blhe", x, np.asarray(k_kernel, np.float64)) + np.asarray(k_bias, np.float64)
    logits = np.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(HEAD_DIM)
    return logits.transpose(1, 0, 2, 3).reshape(HEADS, -1).max(axis=1)


class NNXBlock(nnx.Module):
    def __init__(self, rngs):
        self.attn = nnx.MultiHeadAttention(num_heads=HEADS, in_features=D, qkv_features=HEADS * HEAD_DIM,
                                           attention_fn=mo.nn.logit_recording_attention, decode=False, rngs=rngs)

    def __call__(self, x):
        return self.attn(x, sow_weights=True)


class LinenBlock(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=HEADS * HEAD_DIM, name="attn",
                                                  attention_fn=mo.nn.logit_recording_attention)(x, sow_weights=True)


def boost(params_attn, scales):
    """Make some heads' logits large: scale query kernels per head."""
    params_attn["query"]["kernel"] = params_attn["query"]["kernel"] * jnp.asarray(scales)[:, None]
    return params_attn


SCALES = [30.0, 0.2, 12.0, 1.0]  # heads 0 and 2 go far above tau, 1 and 3 stay below


def nnx_max_logits(model, x):
    if hasattr(nnx, "capture"):  # flax >= 0.12.8
        _, intermediates = nnx.capture(model, nnx.Intermediate)(x)
        return mo.nn.max_logits(intermediates)
    model(x)
    return mo.nn.max_logits(nnx.pop(model, nnx.Intermediate))


def test_nnx_record_and_clip():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 6, D), jnp.float64)
    model = NNXBlock(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(params)
    pure["attn"] = boost(pure["attn"], SCALES)
    nnx.replace_by_pure_dict(params, pure)
    nnx.update(model, params)
    s = nnx_max_logits(model, x)
    a = pure["attn"]
    ref = reference_max_logits(x, a["query"]["kernel"], a["query"]["bias"], a["key"]["kernel"], a["key"]["bias"])
    np.testing.assert_allclose(s["attn"], ref, rtol=1e-10)
    above = ref > TAU
    assert above.tolist() == [True, False, True, False]
    clipped = jax.jit(mo.qk_clip, static_argnames="tau")(nnx.state(model, nnx.Param), s, tau=TAU)
    nnx.update(model, clipped)
    after = nnx_max_logits(model, x)["attn"]
    np.testing.assert_allclose(np.asarray(after)[above], TAU, rtol=1e-6)  # float32 params
    np.testing.assert_array_equal(np.asarray(after)[~above], np.asarray(s["attn"])[~above])
    new = nnx.to_pure_dict(nnx.state(model, nnx.Param))["attn"]
    for proj in ("query", "key"):
        for part in ("kernel", "bias"):
            np.testing.assert_array_equal(np.asarray(new[proj][part])[..., ~above, :],
                                          np.asarray(a[proj][part])[..., ~above, :])
    for part in ("kernel", "bias"):  # value and out projections are never touched
        np.testing.assert_array_equal(new["value"][part], a["value"][part])
        np.testing.assert_array_equal(new["out"][part], a["out"][part])


def test_linen_record_and_clip():
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, D), jnp.float64)
    block = LinenBlock()
    params = block.init(jax.random.PRNGKey(2), x)["params"]
    params = {"attn": boost(dict(jax.tree.map(lambda v: v, params["attn"])), SCALES)}
    _, inter = block.apply({"params": params}, x, mutable=["intermediates"])
    s = mo.nn.max_logits(inter["intermediates"])
    a = params["attn"]
    ref = reference_max_logits(x, a["query"]["kernel"], a["query"]["bias"], a["key"]["kernel"], a["key"]["bias"])
    np.testing.assert_allclose(s["attn"], ref, rtol=1e-10)
    clipped = mo.qk_clip(params, s, tau=TAU)
    _, inter = block.apply({"params": clipped}, x, mutable=["intermediates"])
    after = np.asarray(mo.nn.max_logits(inter["intermediates"])["attn"])
    np.testing.assert_allclose(after, np.where(ref > TAU, TAU, ref), rtol=1e-6)  # float32 params


def test_below_tau_is_the_identity():
    params = {"blk": {"attn": {"query": {"kernel": jnp.ones((D, HEADS, HEAD_DIM))},
                               "key": {"kernel": 2 * jnp.ones((D, HEADS, HEAD_DIM))}}}}
    out = mo.qk_clip(params, {"blk": {"attn": jnp.array([99.0, -5.0, 100.0, 0.0])}}, tau=100.0)
    jax.tree.map(np.testing.assert_array_equal, out, params)


def test_bad_inputs_name_qk_clip():
    params = {"attn": {"query": {"kernel": jnp.ones((D, HEADS, HEAD_DIM))}, "key": {"kernel": jnp.ones((D, HEADS, HEAD_DIM))}}}
    with pytest.raises(ValueError, match="qk_clip: tau"):
        mo.qk_clip(params, {"attn": jnp.ones(HEADS)}, tau=0.0)
    with pytest.raises(ValueError, match="qk_clip: max_logits names"):
        mo.qk_clip(params, {"mlp": jnp.ones(HEADS)})
    with pytest.raises(ValueError, match="heads axis of size 3"):
        mo.qk_clip(params, {"attn": jnp.ones(3)})
    with pytest.raises(ValueError, match=r"\(heads,\) array"):
        mo.qk_clip(params, {"attn": jnp.ones((2, HEADS))})
    with pytest.raises(ValueError, match="sow_weights=True"):
        mo.nn.max_logits({})

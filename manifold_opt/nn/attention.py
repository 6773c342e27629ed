"""Recording each attention head's largest logit, for MuonClip's QK-clip (`mo.qk_clip`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen, nnx

from manifold_opt.manifolds.tree import path_to_str

RECORD = "max_logits"


def logit_recording_attention(query, key, value, bias=None, mask=None, broadcast_dropout=True, dropout_rng=None,
                              dropout_rate=0.0, deterministic=False, dtype=None, precision=None, module=None,
                              is_causal=False):
    """Flax's dot-product attention that also records, per head, the largest pre-softmax logit
    S_h = max over batch, queries and (unmasked) keys of q_h . k_h / sqrt(d_head) (+ bias).

    Pass it as `attention_fn=` to `nnx.MultiHeadAttention` or linen's
    `MultiHeadDotProductAttention` and call the module with `sow_weights=True`: S is sown as
    `max_logits` (an `nnx.Intermediate`, collected by `nnx.capture(model, nnx.Intermediate)` or
    `nnx.pop`; in linen the `intermediates` collection); read the tree for `mo.qk_clip` with
    `mo.nn.max_logits`. The output is Flax's own attention's.
    """
    if module is not None:
        logits = jnp.einsum("...qhd,...khd->...hqk", query / jnp.sqrt(query.shape[-1]).astype(query.dtype), key)
        if bias is not None:
            logits = logits + bias
        if is_causal:
            mask = jnp.tril(jnp.ones(logits.shape[-2:], bool)) if mask is None else mask & jnp.tril(
                jnp.ones(logits.shape[-2:], bool))
        if mask is not None:
            logits = jnp.where(mask, logits, -jnp.inf)
        heads = jnp.moveaxis(logits, -3, 0).reshape(logits.shape[-3], -1)
        s = jax.lax.stop_gradient(jnp.max(heads, axis=1))
        if isinstance(module, linen.Module):
            module.sow("intermediates", RECORD, s)
        else:
            module.sow(nnx.Intermediate, RECORD, s)
    return nnx.dot_product_attention(query, key, value, bias, mask, broadcast_dropout, dropout_rng, dropout_rate,
                                     deterministic, dtype, precision, None, is_causal=is_causal)


def max_logits(intermediates):
    """The `{module path: S (heads,)}` tree `mo.qk_clip` takes, from sown intermediates: linen's
    `intermediates` collection or `nnx.pop(model, nnx.Intermediate)`; several calls of one
    module in a step are reduced by their maximum."""
    found = {}
    for path, s in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
        parts = path_to_str(path).split("/")
        if RECORD not in parts:
            continue
        module = tuple(parts[:parts.index(RECORD)])
        found[module] = s if module not in found else jnp.maximum(found[module], s)
    if not found:
        raise ValueError("max_logits: no 'max_logits' records; call the attention with sow_weights=True and "
                         "attention_fn=mo.nn.logit_recording_attention")
    tree = {}
    for module, s in found.items():
        node = tree
        for part in module[:-1]:
            node = node.setdefault(part, {})
        node[module[-1]] = s
    return tree

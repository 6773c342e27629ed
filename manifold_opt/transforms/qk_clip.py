"""MuonClip's QK-clip (Kimi K2, Kimi Team 2025): keep attention logits bounded after each step.

For every attention module and head h whose largest pre-softmax logit over the batch,
S_h = max q_h . k_h / sqrt(d_head), exceeded tau, the head's query and key projections (kernels
and biases) are scaled by sqrt(tau / S_h), so its logits scale by tau / S_h and the largest one
on the same batch becomes tau; heads at or below tau are left exactly as they were. Record S with
`mo.nn.logit_recording_attention` and `mo.nn.max_logits` (NNX and linen attention).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.tree import path_to_str

PROJECTIONS = ("query", "key")
PARTS = ("kernel", "bias")


def qk_clip(params, max_logits, tau: float = 100.0):
    """`params` with every over-threshold head's query and key scaled by sqrt(tau / S_h).

    `max_logits` mirrors the attention modules' paths in `params` and holds an array (heads,)
    per module, e.g. `{"block": {"attn": S}}` for `params["block"]["attn"]["query"]["kernel"]`
    of shape (..., heads, head_dim) (Flax's MultiHeadAttention layout; biases (heads, head_dim)).
    Works on plain dicts, linen variables and `nnx.State`, under `jit`.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau > 0:
        raise ValueError(f"qk_clip: tau must be a positive number, got {tau!r}")
    factors = {}
    for path, s in jax.tree_util.tree_flatten_with_path(max_logits)[0]:
        s = jnp.asarray(s)
        if s.ndim != 1:
            raise ValueError(f"qk_clip: max_logits at {path_to_str(path)!r} must be a (heads,) array, got shape {s.shape}")
        factors[path_to_str(path)] = jnp.where(s > tau, jnp.sqrt(tau / jnp.maximum(s, tau)), 1.0)
    touched = set()

    def clip(path, x):
        parts = path_to_str(path).split("/")
        if parts[-1] == "value":  # an nnx.Variable's array
            parts = parts[:-1]
        module = "/".join(parts[:-2])
        if len(parts) < 2 or parts[-1] not in PARTS or parts[-2] not in PROJECTIONS or module not in factors:
            return x
        f = factors[module]
        if x.ndim < 2 or x.shape[-2] != f.shape[0]:
            raise ValueError(
                f"qk_clip: {'/'.join(parts)!r} of shape {x.shape} has no heads axis of size {f.shape[0]} at -2 "
                "(expected Flax's (..., heads, head_dim) layout)"
            )
        touched.add(module)
        return x * f[:, None].astype(x.dtype)

    out = jax.tree_util.tree_map_with_path(clip, params)
    missing = sorted(set(factors) - touched)
    if missing:
        raise ValueError(f"qk_clip: max_logits names {missing}, but params have no query/key kernels under them")
    return out

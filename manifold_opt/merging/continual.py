"""Continual merging by orthogonal projection, OPCM (Tang et al. 2025, "Merging Models on the Fly
Without Retraining: A Sequential Approach to Scalable Continual Model Merging", arXiv
2501.09522, Sec. 3, Eq. 4-7, and its FusionBench code).

Models arrive one at a time. With the merged task vector Delta_{t-1} (Delta_1 = tau_1,
lambda_1 = 1), the new task vector tau_t is, per 2-D leaf, projected off the dominant singular
subspace of Delta_{t-1} = U S V^T (full SVD): in P = U^T tau_t V the diagonal and the leading
s x s block are zeroed, s the first index where cumsum(S) / sum(S) > alpha, and
P(tau_t) = U P V^T; other leaves pass unchanged. Then

    Delta_t = (lambda_{t-1} Delta_{t-1} + P(tau_t)) / lambda_t,
    lambda_t = ||lambda_{t-1} Delta_{t-1} + P(tau_t)|| / mean_{i <= t} ||tau_i||   (global norms),

keeping the merged task vector at the average task-vector norm. Memory: one merged model, the
previous lambda and the running sum of task-vector norms.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from manifold_opt.merging.pool import stream


def _global_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree)))


def _project_off(delta, tau, alpha):
    u, s, vh = jnp.linalg.svd(delta, full_matrices=True)
    split = jnp.argmax(jnp.cumsum(s) / jnp.sum(s) > alpha)
    p = u.T @ tau @ vh.T
    rows, cols = jnp.arange(p.shape[0])[:, None], jnp.arange(p.shape[1])[None, :]
    p = jnp.where((rows == cols) | ((rows < split) & (cols < split)), 0, p)
    return u @ p @ vh


@jax.jit
def _update(delta, lam, pretrained, candidate, mean_norm, alpha):
    tau = jax.tree.map(lambda c, p: c - p, candidate, pretrained)
    projected = jax.tree.map(lambda d, t: _project_off(d, t, alpha) if d.ndim == 2 else t, delta, tau)
    combined = jax.tree.map(lambda d, t: lam * d + t, delta, projected)
    new_lam = _global_norm(combined) / mean_norm
    return jax.tree.map(lambda c: c / new_lam, combined), new_lam


class ContinualMerge:
    """OPCM's stateful merger (module docstring): `update(finetuned)` folds in the next model and
    returns the merged params theta_pre + Delta_t."""

    def __init__(self, pretrained, alpha: float = 0.5):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
            raise ValueError(f"continual_merge: alpha must be a number in [0, 1), got {alpha!r}")
        self.pretrained, self.alpha = pretrained, float(alpha)
        self.delta, self.lam, self.count, self._norm_sum = None, 1.0, 0, 0.0

    def update(self, finetuned):
        candidate = next(stream("continual_merge", self.pretrained, [finetuned]))
        tau_norm = float(_global_norm(jax.tree.map(lambda c, p: c - p, candidate, self.pretrained)))
        self.count, self._norm_sum = self.count + 1, self._norm_sum + tau_norm
        if self.delta is None:
            self.delta = jax.tree.map(lambda c, p: jnp.asarray(c) - p, candidate, self.pretrained)
        else:
            self.delta, self.lam = _update(self.delta, self.lam, self.pretrained, candidate,
                                           self._norm_sum / self.count, self.alpha)
        return self.merged

    @property
    def merged(self):
        if self.delta is None:
            raise ValueError("continual_merge: no model merged yet; call update(finetuned) first")
        return jax.tree.map(lambda p, d: p + d, self.pretrained, self.delta)


def continual_merge(pretrained, alpha: float = 0.5) -> ContinualMerge:
    """An OPCM continual merger over `pretrained`; feed it models with `update(finetuned)`."""
    return ContinualMerge(pretrained, alpha)

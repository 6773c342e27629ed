"""DO-Merging (Zheng et al. 2025, "Decouple and Orthogonalize: A Data-Free Framework for LoRA
Merging", arXiv 2505.15875, Sec. 3) on LoRA factors.

An adapter is a pytree mirroring the params with a pair (a, b) at each adapted kernel (the task
matrix is a @ b, a: (in, r), b: (r, out), the Flax kernel layout) and None elsewhere. Per layer:

1. Orthogonalize (data-free, layer-wise gradient descent): the factors of the T tasks are moved
   to a^_i = a_i + delta_i minimizing sum_{i != j} ||a^_i^T a^_j||_F^2 + gamma sum_i ||delta_i||_F^2,
   and likewise b^_i with sum_{i != j} ||b^_i b^_j^T||_F^2 (the input and output subspaces of the
   tasks pushed apart, the factors kept close to the trained ones).
2. Decouple: W_i = a^_i b^_i splits into the magnitudes m_i = ||W_i[:, o]|| of its output units
   and the directions D_i = W_i / m_i; the magnitudes merge by their mean, the directions by
   their sum renormalized per unit: Delta = mean_i(m_i) * D / ||D||_col, D = sum_i D_i.

theta_pre + scaling * Delta at the adapted kernels. The factors of all tasks are held together
(T rank-r pairs per layer, small next to the params).

Not checked against the paper's full text (not reachable when written; no official code found):
the squared Frobenius norms, the r x r Gram a_i^T a_j for the input factors, and the mean of the
magnitudes / renormalized sum of the directions follow summaries of Sec. 3.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from manifold_opt.merging.baselines import _check_scaling
from manifold_opt.merging.pool import check_candidates, stream


def _is_pair(x):
    return isinstance(x, tuple) and len(x) == 2


def _cross_loss(stack, gram):
    """sum_{i != j} ||gram(x_i, x_j)||_F^2 over a (T, ...) stack."""
    g = jax.vmap(lambda x: jax.vmap(lambda y: jnp.sum(gram(x, y) ** 2))(stack))(stack)
    return jnp.sum(g) - jnp.sum(jnp.diag(g))


def orthogonalize_factors(a, b, steps: int = 100, learning_rate: float = 1e-2, gamma: float = 1.0):
    """Gradient descent on DO-Merging's orthogonality objective (module docstring, step 1) for
    stacked factors a (T, in, r) and b (T, r, out); returns the moved (a^, b^)."""

    def loss(x, x0, gram):
        return _cross_loss(x, gram) + gamma * jnp.sum((x - x0) ** 2)

    def descend(x0, gram):
        grad = jax.grad(loss)
        return jax.lax.fori_loop(0, steps, lambda _, x: x - learning_rate * grad(x, x0, gram), x0)

    return descend(a, lambda x, y: x.T @ y), descend(b, lambda x, y: x @ y.T)


def _column_norms(w):
    return jnp.linalg.norm(w, axis=-2, keepdims=True)


@jax.jit
def _decoupled_delta(a, b):
    w = a @ b  # (T, in, out)
    m = _column_norms(w)
    directions = jnp.sum(w / jnp.where(m > 0, m, 1), axis=0)
    size = _column_norms(directions)
    return jnp.mean(m, axis=0) * directions / jnp.where(size > 0, size, 1)


def do_merge(pretrained, adapters, scaling: float = 1.0, *, orthogonal_steps: int = 100,
             learning_rate: float = 1e-2, gamma: float = 1.0):
    """DO-Merging of LoRA adapters (module docstring): orthogonalize the factors per layer
    (`orthogonal_steps` gradient steps; 0 skips it), decouple magnitude and direction, merge
    them separately; theta_pre + scaling * Delta at adapted kernels, theta_pre elsewhere."""
    check_candidates("do_merge", adapters)
    scaling = _check_scaling("do_merge", scaling)
    if isinstance(orthogonal_steps, bool) or not isinstance(orthogonal_steps, int) or orthogonal_steps < 0:
        raise ValueError(f"do_merge: orthogonal_steps must be a nonnegative int, got {orthogonal_steps!r}")
    first = adapters[0]
    factors = jax.tree.map(lambda p, f: [] if _is_pair(f) else None, pretrained, first,
                           is_leaf=lambda x: x is None or _is_pair(x))
    for adapter in stream("do_merge", first, adapters):
        jax.tree.map(lambda acc, f: acc.append(f) if _is_pair(f) else None, factors, adapter,
                     is_leaf=lambda x: x is None or isinstance(x, list))

    def merge(p, pairs):
        if pairs is None:
            return p
        a, b = (jnp.stack(x) for x in zip(*pairs))
        if a.shape[1] != p.shape[0] or b.shape[2] != p.shape[1]:
            raise ValueError(f"do_merge: LoRA factors of shapes {a.shape[1:]} and {b.shape[1:]} do not multiply to "
                             f"the kernel shape {p.shape}")
        if orthogonal_steps:
            a, b = orthogonalize_factors(a, b, orthogonal_steps, learning_rate, gamma)
        return p + scaling * _decoupled_delta(a, b).astype(p.dtype)

    return jax.tree.map(merge, pretrained, factors, is_leaf=lambda x: x is None or isinstance(x, list))

"""RegMean (Jin et al. 2023, "Dataless Knowledge Fusion by Merging Weights of Language Models",
Eq. 2 and Sec. 3.3): for a linear layer y = x W (a Flax kernel W of shape (in, out)) fine-tuned
into W_i on inputs X_i with Gram matrix G_i = X_i^T X_i, the merge minimizing
sum_i ||X_i W - X_i W_i||^2 is

    W* = (sum_i G~_i)^-1 sum_i G~_i W_i,   G~_i = alpha G_i + (1 - alpha) diag(G_i),

the off-diagonal entries scaled by alpha (regularizing towards the plain average). Leaves
without a Gram matrix are averaged. Streams candidates and Gram trees together; the device holds
sum_i G~_i and sum_i G~_i W_i per kernel.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.merging.pool import check_candidates, stream


def _shrink(gram, alpha):
    diagonal = jnp.diag(jnp.diag(gram))
    return alpha * gram + (1 - alpha) * diagonal


@jax.jit
def _regmean_step(acc, candidate, grams, alpha):
    def add(a, g, c):
        if g is None:
            return a + c
        lhs, rhs = a
        g = _shrink(g, alpha)
        return lhs + g, rhs + g @ c

    return jax.tree.map(add, acc, grams, candidate, is_leaf=lambda x: x is None or isinstance(x, tuple))


def _check_grams(grams, pretrained, i):
    def check(g, p):
        if g is None:
            return
        if np.ndim(p) != 2 or np.shape(g) != (np.shape(p)[0],) * 2:
            raise ValueError(f"regmean: grams[{i}] has a Gram matrix of shape {np.shape(g)} at a leaf of shape "
                             f"{np.shape(p)}; expected (in, in) at a 2-D kernel (in, out)")

    try:
        jax.tree.map(check, grams, pretrained, is_leaf=lambda x: x is None)
    except ValueError as error:
        if str(error).startswith("regmean"):
            raise
        raise ValueError(f"regmean: grams[{i}] must mirror the params tree (a matrix at each kernel, None "
                         f"elsewhere): {error}") from None


def regmean(pretrained, finetuned, grams, alpha: float = 0.9):
    """RegMean: per kernel with Gram matrices W* = (sum_i G~_i)^-1 sum_i G~_i W_i (module
    docstring); other leaves the mean of the fine-tunes. `grams` holds one tree per candidate
    (a sequence or lazy pool), each with the (in, in) input Gram matrix X_i^T X_i at every kernel
    to merge and None elsewhere. `pretrained` fixes the structure."""
    n = check_candidates("regmean", finetuned)
    if check_candidates("regmean", grams) != n:
        raise ValueError(f"regmean: grams must hold one tree per candidate ({n}), got {len(grams)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"regmean: alpha must be a number in [0, 1], got {alpha!r}")
    acc = None
    for i, candidate in enumerate(stream("regmean", pretrained, finetuned)):
        g = grams[i]
        _check_grams(g, pretrained, i)
        if acc is None:
            acc = jax.tree.map(lambda g, p: jnp.zeros_like(p) if g is None else (jnp.zeros((p.shape[0],) * 2, p.dtype),
                                                                                 jnp.zeros_like(p)),
                               g, pretrained, is_leaf=lambda x: x is None)
        acc = _regmean_step(acc, candidate, g, float(alpha))

    def solve(a):
        if isinstance(a, tuple):
            return jnp.linalg.solve(a[0], a[1])
        return a / n

    return jax.tree.map(solve, acc, is_leaf=lambda x: isinstance(x, tuple))

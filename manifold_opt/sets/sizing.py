"""Per-layer constraint sets sized from the initialization (stochastic Frank-Wolfe for deep nets,
Pokutta, Spiegel & Zimmer 2020, "Deep Neural Network Training with Frank-Wolfe").

Each layer gets its own ball whose L2 diameter is 2 * width * ||theta_init|| (the norm of the
given initialization standing in for its expectation; width = 300 in the paper's experiments).
"""
from __future__ import annotations

import math

import jax
import numpy as np

from manifold_opt.manifolds.tree import is_param_wrapper
from manifold_opt.sets.vector import KSparse, L1Ball, L2Ball, LInfBall

KINDS = ("l2", "l1", "linf", "ksparse")


def sets_from_init(params, kind: str = "l2", width: float = 300.0, k_fraction: float = 0.1):
    """A set tree over `params` (concrete arrays): per leaf an L2 / L1 / Linf / K-sparse ball of
    diameter 2 * width * ||leaf||_2. K-sparse balls use k = max(1, round(k_fraction * size)).
    Leaves whose initialization is all zeros (biases) get None: train them with another
    optimizer through `optax.partition`. Wrapped arrays (`nnx.state(model, nnx.Param)`, linen
    boxed metadata) get a plain set or None, not a wrapper around it, so the tree is a prefix of
    the params (`mo.partition_labels(sets)` labels every leaf)."""
    if kind not in KINDS:
        raise ValueError(f"sets_from_init: unknown kind {kind!r}; expected one of {list(KINDS)}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"sets_from_init: width must be a positive number, got {width!r}")
    if not 0.0 < k_fraction <= 1.0:
        raise ValueError(f"sets_from_init: k_fraction must be in (0, 1], got {k_fraction!r}")

    def leaf(node):
        x = jax.tree_util.tree_leaves(node)[0]  # the array, inside a wrapper or not
        norm = float(np.linalg.norm(np.asarray(x, np.float64)))
        if norm == 0.0:
            return None
        radius = width * norm  # half the diameter
        if kind == "l2":
            return L2Ball(radius)
        if kind == "l1":
            return L1Ball(radius)
        if kind == "linf":
            return LInfBall(radius / math.sqrt(x.size))
        k = max(1, int(round(k_fraction * x.size)))
        return KSparse(k, radius / math.sqrt(k))

    return jax.tree_util.tree_map(leaf, params, is_leaf=is_param_wrapper)

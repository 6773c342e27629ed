"""Permutation alignment by weight matching (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin",
Sec. 3.2, Alg. 1).

A spec mirrors the params: each leaf is a tuple naming the permutation acting on each axis
(None for an axis no permutation touches), e.g. an MLP
{"dense0": {"kernel": (None, "P0"), "bias": ("P0",)}, "dense1": {"kernel": ("P0", None), ...}}.
Hidden units permuted consistently leave the network's function unchanged. Weight matching
maximizes sum_leaves <W_ref, pi(W_other)> over the permutations by coordinate descent: in a
random order, each permutation P is the linear assignment maximizing
sum_{(leaf, axis) of P} <W_ref, W_other with the other permutations applied> along that axis,
i.e. argmax_pi sum_i C[i, pi(i)] with C = sum W_ref^(axis to front) (W_other^(axis to front))^T;
sweeps repeat until none changes. The assignments go through `sets.BirkhoffPolytope`'s linear
minimization oracle (SciPy's solver by default).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt.merging.pool import stream
from manifold_opt.sets.matrix import BirkhoffPolytope


def _is_axes(x):
    return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def _flat_spec(spec, reference):
    axes, spec_def = jax.tree_util.tree_flatten(spec, is_leaf=_is_axes)
    leaves, params_def = jax.tree_util.tree_flatten(reference)
    if spec_def != params_def:
        raise ValueError(f"align: spec must mirror the params tree (a tuple of names per leaf), got {spec_def}, "
                         f"expected {params_def}")
    sizes = {}
    for j, (names, leaf) in enumerate(zip(axes, leaves)):
        if not _is_axes(names) or len(names) != np.ndim(leaf):
            raise ValueError(f"align: spec leaf {j} must be a tuple of {np.ndim(leaf)} names or None, got {names!r}")
        for axis, name in enumerate(names):
            if name is not None and sizes.setdefault(name, np.shape(leaf)[axis]) != np.shape(leaf)[axis]:
                raise ValueError(f"align: permutation {name!r} acts on axes of sizes {sizes[name]} and "
                                 f"{np.shape(leaf)[axis]}")
    return axes, sizes


def permute(params, spec, perms):
    """params with every axis named P in `spec` reindexed by perms[P] (x -> take(x, perm, axis))."""
    axes, _ = _flat_spec(spec, params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = []
    for names, x in zip(axes, leaves):
        for axis, name in enumerate(names):
            if name is not None:
                x = jnp.take(x, jnp.asarray(perms[name]), axis=axis)
        out.append(x)
    return jax.tree_util.tree_unflatten(treedef, out)


def _cost(name, axes, ref_leaves, other_leaves, perms):
    """C[i, j] = sum over the axes named `name` of <ref slice i, other slice j> with every other
    axis of that leaf already permuted."""
    total = 0.0
    for names, w_ref, w_other in zip(axes, ref_leaves, other_leaves):
        for axis, current in enumerate(names):
            if current != name:
                continue
            x = w_other
            for k, other_name in enumerate(names):
                if k != axis and other_name is not None:
                    x = np.take(x, perms[other_name], axis=k)
            a = np.moveaxis(np.asarray(w_ref), axis, 0).reshape(np.shape(w_ref)[axis], -1)
            b = np.moveaxis(x, axis, 0).reshape(np.shape(x)[axis], -1)
            total = total + a @ b.T
    return total


def align(reference, other, spec, *, seed: int = 0, max_sweeps: int = 100):
    """Git Re-Basin weight matching of `other` to `reference` (module docstring). Returns
    (permuted other, perms) with perms[P] an int array: permuted axis slice i = other's slice
    perms[P][i]. Sweeps in random order (numpy seed `seed`) until no permutation changes."""
    next(stream("align", reference, [other]))
    axes, sizes = _flat_spec(spec, reference)
    if not sizes:
        raise ValueError("align: spec names no permutation")
    ref_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(reference)]
    other_leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(other)]
    perms = {name: np.arange(n) for name, n in sizes.items()}
    names = sorted(sizes)
    rng = np.random.default_rng(seed)
    lmo = BirkhoffPolytope()
    for _ in range(max_sweeps):
        changed = False
        for i in rng.permutation(len(names)):
            name = names[i]
            cost = _cost(name, axes, ref_leaves, other_leaves, perms)
            new = np.asarray(lmo.atom_code(jnp.asarray(-cost)))
            old_score = cost[np.arange(len(new)), perms[name]].sum()
            new_score = cost[np.arange(len(new)), new].sum()
            if new_score > old_score + 1e-12 * max(1.0, abs(old_score)):
                perms[name], changed = new, True
        if not changed:
            break
    return permute(other, spec, perms), perms

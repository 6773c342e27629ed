"""Cost of the orthogonal-gradient transforms next to what they replace, float32, jitted.

    python -m experiments.benchmarks.orthogonal_gradient [--quick]

- O-DICE: `mo.orthogonal_gradient` (leafwise inner products) vs the reference code's way
  (flatten every gradient, concatenate, combine, split back), on an MLP-sized pytree.
- PCGrad: `mo.pcgrad` (surgery on the K x K Gram matrix, one weighted sum at the end) vs the
  paper's sequential projections of full flattened vectors (a fixed order, `seed=None`).
- project_out: a chained optax.adam + mo.project_out step (protected rank n/8, stored at full
  capacity n and at max_rank = n/8) vs optax.adam alone.
Medians after warm-up with block_until_ready; ratio = ours / comparison.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax

import manifold_opt as mo
from experiments.benchmarks.timing import median_time


def mlp_tree(key, width: int, depth: int = 4):
    keys = jax.random.split(key, depth)
    return {f"layer{i}": {"kernel": jax.random.normal(k, (width, width)), "bias": jax.random.normal(k, (width,))}
            for i, k in enumerate(keys)}


def flat_odice(g_f, g_b):
    """The reference code's route: concatenate, combine, split back."""
    leaves, treedef = jax.tree.flatten(g_f)
    f = jnp.concatenate([x.ravel() for x in leaves])
    b = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g_b)])
    g = f + b - (f @ b) / jnp.maximum(f @ f, 1e-10) * f
    sizes = [x.size for x in leaves]
    parts = jnp.split(g, [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)])
    return treedef.unflatten([p.reshape(x.shape) for p, x in zip(parts, leaves)])


def sequential_pcgrad(grads):
    """PCGrad as written in the paper: each task's flat vector projected in turn."""
    vecs = [jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)]) for g in grads]
    out = []
    for i, g in enumerate(vecs):
        for j, other in enumerate(vecs):
            if j != i:
                d = g @ other
                g = g - jnp.where(d < 0, d / (other @ other), 0.0) * other
        out.append(g)
    return sum(out)


def main(quick: bool = False):
    widths = (128,) if quick else (256, 1024)
    repeats = 3 if quick else 20
    print(f"backend: {jax.default_backend()}, float32, median seconds; ratio = ours / comparison")
    print(f"{'case':<34}{'ours':>11}{'comparison':>12}{'ratio':>8}")
    for width in widths:
        keys = jax.random.split(jax.random.key(width), 6)
        g_f, g_b = mlp_tree(keys[0], width), mlp_tree(keys[1], width)
        odice = mo.orthogonal_gradient()
        ours = median_time(jax.jit(lambda f, b: odice.update((f, b), optax.EmptyState())[0]), g_f, g_b,
                           repeats=repeats)
        ref = median_time(jax.jit(flat_odice), g_f, g_b, repeats=repeats)
        print(f"{f'odice, 4 x ({width}, {width})':<34}{ours:>11.2e}{ref:>12.2e}{ours / ref:>8.2f}")

        tasks = tuple(mlp_tree(k, width) for k in keys[2:6])
        pcgrad = mo.pcgrad(None)
        state = pcgrad.init(g_f)
        ours = median_time(jax.jit(lambda g: pcgrad.update(g, state)[0]), tasks, repeats=repeats)
        ref = median_time(jax.jit(sequential_pcgrad), tasks, repeats=repeats)
        print(f"{f'pcgrad, 4 tasks, ({width}, {width})':<34}{ours:>11.2e}{ref:>12.2e}{ours / ref:>8.2f}")

        params = mlp_tree(keys[2], width)
        adam = optax.adam(1e-3)
        ref = median_time(jax.jit(lambda g, s: adam.update(g, s, params)[0]), g_f, adam.init(params), repeats=repeats)
        samples = jax.tree.map(lambda x: jax.random.normal(keys[3], (width // 8, width)) if x.ndim == 2 else None,
                               params)
        for max_rank in (None, width // 8):
            protected = optax.chain(optax.adam(1e-3), mo.project_out(max_rank=max_rank))
            state = mo.protect_from_inputs(protected.init(params), samples)
            ours = median_time(jax.jit(lambda g, s: protected.update(g, s, params)[0]), g_f, state, repeats=repeats)
            label = f"adam+project_out cap={max_rank}, n={width}"
            print(f"{label:<34}{ours:>11.2e}{ref:>12.2e}{ours / ref:>8.2f}")

if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

"""Cost of a training step with an orthogonal dense layer, next to a plain `nnx.Linear`.

    python -m experiments.benchmarks.orthogonal_dense [--quick]

One jitted step (loss, gradient, optimizer update) of y = x W + b on a batch of 512, float32,
for: `nnx.Linear` with AdamW (the baseline, W unconstrained); `mo.nn.OrthogonalDense` with
parameterization "riemannian" (W on St(n, p) / O(n), Riemannian Adam via `mo.riemannian_partition`),
"cayley" and "exp" (W = Q(A - A^T) W0, plain AdamW on A). Prints median seconds after warm-up,
the ratio to the baseline in the same run, and ||W^T W - I||_F after 10 more steps.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import manifold_opt as mo
from experiments.benchmarks.timing import median_time
from manifold_opt.manifolds._matrix import orthonormality_error

SHAPES = [(128, 128), (512, 512)]
QUICK_SHAPES = [(64, 32)]
BATCH, LR = 512, 1e-3


def layer_and_optimizer(name: str, n: int, p: int):
    rngs = nnx.Rngs(0)
    if name == "linear + adamw":
        return nnx.Linear(n, p, rngs=rngs), optax.adamw(LR)
    layer = mo.nn.OrthogonalDense(n, p, parameterization=name, rngs=rngs)
    if name == "riemannian":
        tree = mo.nn.manifold_tree_of(layer)
        return layer, mo.riemannian_partition(mo.riemannian_adam(LR, tree), optax.adamw(LR), tree)
    return layer, optax.adamw(LR)


def train_step(layer, tx, x, y):
    """A jitted (params, opt_state) -> (params, opt_state) on mean squared error."""
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params, rest)(x) - y) ** 2)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    return step, params, lambda params: nnx.merge(graphdef, params, rest)


def main(quick: bool = False):
    shapes, repeats = (QUICK_SHAPES, 10) if quick else (SHAPES, 10)
    print(f"backend: {jax.default_backend()}, float32, batch {BATCH}; median seconds per step; "
          "ratio = time / time(nnx.Linear + adamw)")
    print(f"{'n x p':<12}{'layer':<16}{'seconds':>11}{'ratio':>8}{'||W^T W - I||':>16}")
    for n, p in shapes:
        kx, ky = jax.random.split(jax.random.key(1))
        x, y = jax.random.normal(kx, (BATCH, n)), jax.random.normal(ky, (BATCH, p))
        base = None
        for name in ("linear + adamw", "riemannian", "cayley", "exp"):
            layer, tx = layer_and_optimizer(name, n, p)
            step, params, rebuild = train_step(layer, tx, x, y)
            state = tx.init(params)
            seconds = median_time(step, params, state, warmup=2, repeats=repeats)
            base = seconds if base is None else base
            for _ in range(10):
                params, state = step(params, state)
            model = rebuild(params)
            err = "" if name == "linear + adamw" else f"{float(orthonormality_error(model.orthogonal_kernel())):.1e}"
            print(f"{f'{n} x {p}':<12}{name:<16}{seconds:>11.2e}{seconds / base:>8.2f}{err:>16}", flush=True)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)

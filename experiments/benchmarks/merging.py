"""Streaming merges against merges of a stacked pool: time and device memory per pool size.

    python -m experiments.benchmarks.merging [--quick]

The pool is a list of host (NumPy) pytrees (4 float32 matrices of 256 x 256). "streamed" is the
mo.merging call, which moves one candidate at a time to the device; "stacked" puts the whole pool
on the device (jnp.stack per leaf) and reduces it in one jitted call, the naive way. Both include
the host-to-device transfer. Printed: median seconds after warm-up and the ratio streamed / stacked,
for task arithmetic and for one FW-Merging iteration (gradient, linear minimization oracle, step).
Device memory (flat for streamed, n models for stacked) is measured by tests/merging/test_fw.py.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import manifold_opt as mo
from experiments.benchmarks.timing import median_time

SHAPE, LEAVES = (256, 256), 4


def make_pool(n, rng):
    pretrained = {f"w{j}": rng.standard_normal(SHAPE).astype(np.float32) for j in range(LEAVES)}
    return pretrained, [jax.tree.map(lambda p: p + 0.1 * rng.standard_normal(SHAPE).astype(np.float32), pretrained)
                        for _ in range(n)]


def loss_fn(params, target):
    return sum(0.5 * jnp.sum((params[k] - target[k]) ** 2) for k in params)


@jax.jit
def stacked_task_arithmetic(pretrained, stacked):
    return jax.tree.map(lambda p, s: p + 0.3 * jnp.sum(s - p, axis=0), pretrained, stacked)


@jax.jit
def stacked_fw_step(theta, pretrained, stacked, target):
    """One hard FW-Merging iteration on a stacked pool: all relevances at once, then the step."""
    grad = jax.grad(loss_fn)(theta, target)

    def cosines(g, p, s):
        tau = (s - p).reshape(s.shape[0], -1)
        return tau @ g.ravel() / (jnp.linalg.norm(tau, axis=1) * jnp.linalg.norm(g) + 1e-30)

    relevance = sum(jax.tree.leaves(jax.tree.map(cosines, grad, pretrained, stacked)))
    best = jnp.argmin(relevance)
    return jax.tree.map(lambda x, s: x + 0.03 * (s[best] - x), theta, stacked)


def main(argv):
    quick = "--quick" in argv
    sizes, repeats = ((4, 8), 2) if quick else ((4, 16, 64), 5)
    rng = np.random.default_rng(0)
    print(f"pool of n models, {LEAVES} x {SHAPE} float32 each ({LEAVES * np.prod(SHAPE) * 4 / 2**20:.0f} MiB); "
          f"medians of {repeats}; device = {jax.devices()[0].platform}")
    print(f"{'method':<18} {'n':>3} {'streamed s':>11} {'stacked s':>10} {'ratio':>6}")
    for n in sizes:
        pretrained, pool = make_pool(n, rng)
        target = jax.tree.map(lambda p: p + 0.05, pretrained)
        stack = lambda: jax.tree.map(lambda *c: jnp.stack(c), *pool)  # noqa: E731
        cases = {
            "task_arithmetic": (lambda: mo.merging.task_arithmetic(pretrained, pool, 0.3),
                                lambda: stacked_task_arithmetic(pretrained, stack())),
            "fw_merge (1 iter)": (lambda: mo.merging.fw_merge(pretrained, pool, loss_fn, [target], iterations=1,
                                                              init_scaling=0.0).params,
                                  lambda: stacked_fw_step(pretrained, pretrained, stack(), target)),
        }
        for name, (streamed, stacked) in cases.items():
            t_streamed = median_time(streamed, repeats=repeats)
            t_stacked = median_time(stacked, repeats=repeats)
            print(f"{name:<18} {n:>3} {t_streamed:>11.4f} {t_stacked:>10.4f} {t_streamed / t_stacked:>6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])

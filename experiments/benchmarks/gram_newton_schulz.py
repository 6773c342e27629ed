"""Gram Newton-Schulz vs the standard iteration, by aspect ratio.

    python -m experiments.benchmarks.gram_newton_schulz [--repeats 5] [--m 256]

For wide matrices (m, n) with n = m, 2m, 4m, 8m, 16m (float32, 5 Muon steps), times
mo.linalg.newton_schulz(x) and mo.linalg.newton_schulz(x, gram=True) side by side (jitted,
medians after warm-up, block_until_ready) and prints standard/gram (> 1: Gram is faster) and
the largest difference between the two results. Flop counts: standard 5 (2 m^2 n + m^3),
Gram 2 m^2 n + 20 m^3, so Gram should win from n ~ 3 m on.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import median_time
from manifold_opt.linalg import newton_schulz

standard = jax.jit(lambda x: newton_schulz(x, 5))
gram = jax.jit(lambda x: newton_schulz(x, 5, gram=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--m", type=int, default=256)
    args = parser.parse_args()
    print(f"devices: {jax.devices()}  float32, 5 Muon steps, median of {args.repeats}")
    header = f"{'shape':<14}{'standard ms':>12}{'gram ms':>10}{'standard/gram':>15}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    for ratio in (1, 2, 4, 8, 16):
        x = jax.random.normal(jax.random.PRNGKey(ratio), (args.m, ratio * args.m), jnp.float32)
        t_std = median_time(standard, x, warmup=1, repeats=args.repeats)
        t_gram = median_time(gram, x, warmup=1, repeats=args.repeats)
        diff = float(jnp.max(jnp.abs(standard(x) - gram(x))))
        print(f"{f'{args.m}x{ratio * args.m}':<14}{1e3 * t_std:>12.2f}{1e3 * t_gram:>10.2f}{t_std / t_gram:>15.2f}"
              f"{diff:>12.1e}")


if __name__ == "__main__":
    main()

"""Newton-Schulz timing: ours vs optax.contrib's Muon, against the matmul floor; AuON vs NS.

    python -m experiments.benchmarks.orthogonalize [--repeats 3] [--d-model 512]

For each case (one matrix or a set of matrices) it times, per orthogonalization:
- ours: mo.linalg.newton_schulz (5 Muon steps, float32), one jitted call per matrix set;
- optax: optax.contrib's Muon Newton-Schulz (`orthogonalize_via_newton_schulz`, same coefficients);
- floor: the matmuls 5 NS steps must do, timed standalone at their shapes (wide X (m, n), m <= n):
  X X^T (m,n)(n,m), A A (m,m)(m,m), B X (m,m)(m,n), times 5;
- one matmul: X X^T alone.
Then AuON's elementwise cosh scaling vs Newton-Schulz at 2048 x 2048, with AuON's measured
r - 1 (the cosh RMS is ~1 at realistic sizes). Medians after warm-up (timing.median_time).
Last, the accuracy of each coefficient set: relative Frobenius error to the exact polar factor
(`linalg.polar`) of a float64 48 x 80 matrix with condition number 1e3, by number of steps.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from optax.contrib._muon import orthogonalize_via_newton_schulz

from experiments.benchmarks.timing import median_time
from manifold_opt.linalg import newton_schulz, polar
from manifold_opt.linalg.polar import MUON_COEFFS
from manifold_opt.transforms.auon import cosh_normalize, cosh_rms

MUON_TRIPLE = jnp.asarray(MUON_COEFFS[0])  # the same coefficients for optax's side
STEPS = 5


def transformer_shapes(d, layers=12):
    """A 12-layer transformer's hidden matrices in optax (in, out) layout: qkv, attn out, MLP
    in/out (d = 768 is GPT-2 small; the default 512 keeps the CPU run to a few minutes)."""
    return [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)] * layers


def make(shapes, key=0):
    keys = jax.random.split(jax.random.PRNGKey(key), len(shapes))
    return [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes)]


ours = jax.jit(lambda ms: [newton_schulz(m, STEPS) for m in ms])
theirs = jax.jit(lambda ms: [orthogonalize_via_newton_schulz(m, MUON_TRIPLE, STEPS) for m in ms])
gram = jax.jit(lambda ms: [m @ m.T for m in ms])
square = jax.jit(lambda ms: [a @ a for a in ms])
apply = jax.jit(lambda bs, ms: [b @ m for b, m in zip(bs, ms)])


def floor_times(matrices, repeats):
    """(5-step matmul floor, one X X^T) in seconds for a list of matrices."""
    wide = [m if m.shape[0] <= m.shape[1] else m.T for m in matrices]
    grams = gram(wide)
    t_gram = median_time(gram, wide, warmup=1, repeats=repeats)
    t_square = median_time(square, grams, warmup=1, repeats=repeats)
    t_apply = median_time(apply, grams, wide, warmup=1, repeats=repeats)
    return STEPS * (t_gram + t_square + t_apply), t_gram


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--d-model", type=int, default=512, help="width of the 12-layer transformer case")
    args = parser.parse_args()
    print(f"devices: {jax.devices()}  float32, {STEPS} Muon steps, median of {args.repeats}")
    cases = {
        "1024x1024": [(1024, 1024)],
        "4096x1024": [(4096, 1024)],
        f"12-layer d={args.d_model} (48 matrices)": transformer_shapes(args.d_model),
    }
    header = f"{'case':<36}{'ours ms':>10}{'optax ms':>10}{'ours/optax':>11}{'floor ms':>10}{'ours/floor':>11}{'1 matmul ms':>12}{'ours/1mm':>9}"
    print(header)
    print("-" * len(header))
    for name, shapes in cases.items():
        ms = make(shapes)
        t_ours = median_time(ours, ms, warmup=1, repeats=args.repeats)
        t_optax = median_time(theirs, ms, warmup=1, repeats=args.repeats)
        t_floor, t_one = floor_times(ms, args.repeats)
        print(f"{name:<36}{1e3 * t_ours:>10.1f}{1e3 * t_optax:>10.1f}{t_ours / t_optax:>11.2f}"
              f"{1e3 * t_floor:>10.1f}{t_ours / t_floor:>11.2f}{1e3 * t_one:>12.1f}{t_ours / t_one:>9.2f}")

    g = make([(2048, 2048)])
    auon = jax.jit(lambda ms: [cosh_normalize(m) for m in ms])
    t_auon = median_time(auon, g, warmup=1, repeats=args.repeats)
    t_ns = median_time(ours, g, warmup=1, repeats=args.repeats)
    r = float(cosh_rms(g[0])[0, 0])
    print(f"\nAuON vs Newton-Schulz at 2048x2048: AuON {1e3 * t_auon:.1f} ms, NS {1e3 * t_ns:.1f} ms, "
          f"NS/AuON = {t_ns / t_auon:.1f}x")
    print(f"AuON cosh RMS r at 2048x2048 (gamma 1.5): r - 1 = {r - 1:.2e} "
          f"(bound sinh^2(1.5)/(2N) = {np.sinh(1.5) ** 2 / (2 * 2048**2):.2e})")

    print_polar_errors()


def print_polar_errors(m=48, n=80, condition=1e3, steps=(5, 6, 7, 8, 9, 10)):
    """Relative error ||NS_k(G) - polar(G)||_F / ||polar(G)||_F per coefficient set and k."""
    rng = np.random.default_rng(0)
    u = np.linalg.qr(rng.standard_normal((m, m)))[0]
    v = np.linalg.qr(rng.standard_normal((n, m)))[0]
    with jax.enable_x64(True):
        g = jnp.asarray(u @ np.diag(np.logspace(0, -np.log10(condition), m)) @ v.T)
        exact = polar(g)
        print(f"\nrelative error to polar(G), float64 {m}x{n}, condition number {condition:g}")
        print(f"{'coeffs':<16}" + "".join(f"{k:>10d}" for k in steps))
        for coeffs in ("muon", "polar_express"):
            errors = [float(jnp.linalg.norm(newton_schulz(g, steps=k, coeffs=coeffs) - exact) / jnp.linalg.norm(exact))
                      for k in steps]
            print(f"{coeffs:<16}" + "".join(f"{e:>10.2e}" for e in errors))


if __name__ == "__main__":
    main()

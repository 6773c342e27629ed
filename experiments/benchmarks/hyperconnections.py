"""Hyper-connection overhead: train-step time of each mixer vs the plain residual block, Sinkhorn
sweeps vs time, implicit vs unrolled Sinkhorn memory.

    python -m experiments.benchmarks.hyperconnections [--repeats 10] [--quick]

1. Step time (forward, backward, AdamW update; jitted, float32) of the hyperconnections
   experiment's model (configs/hyperconnections.py sizes) for every mixer at n = 4, static and
   dynamic, printed as a ratio to the plain residual block (identity mixer, one stream).
   mHC reports about 6.7% overhead at n = 4 with fused GPU kernels.
2. Sinkhorn forward + backward time over sweeps (per-token mixers of one batch, tol = 0 so every
   sweep runs): implicit VJP vs unrolled.
3. Compiled temporary memory (`memory_analysis().temp_size_in_bytes`) of the same gradient.
Medians after warm-up with block_until_ready (timing.median_time).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import hyperconnections as hc_config
from experiments import harness
from experiments.benchmarks.timing import median_time
from experiments.hyperconnections import build, make_batch
from manifold_opt import linalg


def step_times(config, repeats):
    """{(mixer, dynamic): median seconds per train step}."""
    batch = make_batch(config, np.random.default_rng(0), config.batch_size)
    times = {}
    for mixer in config.mixers:
        for dynamic in ((False,) if mixer == "identity" else (False, True)):
            cfg = harness.resolve(config)
            params, _, _, loss_fn = build(cfg, mixer, 0, dynamic=dynamic)
            optimizer = optax.adamw(1e-3)
            step = jax.jit(harness.make_update(loss_fn, optimizer))
            state = {"params": params, "opt_state": optimizer.init(params)}
            times[(mixer, dynamic)] = median_time(step, state, batch, repeats=repeats)
    return times


def sinkhorn_costs(tokens, n, sweeps, repeats):
    """[(sweeps, implicit s, unrolled s, implicit bytes, unrolled bytes)]."""
    z = jax.random.normal(jax.random.PRNGKey(0), (tokens, n, n), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    rows = []
    for t in sweeps:
        grads = [jax.jit(jax.grad(lambda z, i=i: jnp.sum(linalg.sinkhorn(z, t, tol=0.0, implicit_diff=i) * w)))
                 for i in (True, False)]
        rows.append([t] + [median_time(g, z, repeats=repeats) for g in grads]
                    + [g.lower(z).compile().memory_analysis().temp_size_in_bytes for g in grads])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the experiment's quick sizes, fewer sweeps")
    args = parser.parse_args()
    config = hc_config.get_config()
    config.quick = args.quick
    config = harness.resolve(config)
    print(f"device: {jax.devices()[0].device_kind}; model: one tied layer x {config.recursions} recursions, d = {config.d_model}, "
          f"batch {config.batch_size}, n = {config.n_streams}")
    times = step_times(config, args.repeats)
    base = times[("identity", False)]
    print(f"{'mixer':<18}{'dynamic':>8}{'step ms':>10}{'vs plain':>10}")
    for (mixer, dynamic), t in times.items():
        print(f"{mixer:<18}{str(dynamic):>8}{1e3 * t:>10.2f}{t / base:>10.3f}")
    sweeps = (5, 20, 50) if args.quick else (5, 10, 20, 50, 100, 200)
    tokens = config.batch_size * (1 + config.grid**2)
    print(f"\nSinkhorn, {tokens} per-token {config.n_streams}x{config.n_streams} mixers, forward + backward")
    print(f"{'sweeps':>7}{'implicit ms':>13}{'unrolled ms':>13}{'ratio':>8}{'implicit KiB':>14}{'unrolled KiB':>14}")
    for t, ti, tu, mi, mu in sinkhorn_costs(tokens, config.n_streams, sweeps, args.repeats):
        print(f"{t:>7}{1e3 * ti:>13.3f}{1e3 * tu:>13.3f}{tu / ti:>8.2f}{mi / 1024:>14.1f}{mu / 1024:>14.1f}")


if __name__ == "__main__":
    main()

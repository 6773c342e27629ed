"""Frank-Wolfe solver benchmark: iterations and time to a gap target per variant and step rule,
time per iteration against one gradient + one LMO and against a bare Frank-Wolfe loop, the LMO
calls the lazified variant saves, and the Birkhoff LMO against SciPy.

    python -m experiments.benchmarks.frank_wolfe [--simplex-n 100000] [--completion-n 1000]
        [--birkhoff-n 200] [--max-iterations 1000] [--repeats 3]

Problems (float32):
- simplex least squares: min 0.5 ||A x - b||^2 over the unit simplex, A (100 x n);
- matrix completion (the classic FW demo): min 0.5 ||P_Omega(X - M)||^2 over the nuclear ball of
  radius ||M||_*, M (n x n) of rank 5, 10% of the entries observed;
- Birkhoff quadratic: min 0.5 ||X - M||^2 over the doubly stochastic n x n matrices.
Gap target: 1e-4 times the first iterate's gap; `time (s)` is one run to it (compiled beforehand,
median of `--repeats`), including the one-time work around the loop (the start, and where the LMO
is approximate an exact gap at the end: a full SVD on the nuclear ball).
`ms/iter` is the marginal cost of an iteration: the slope between runs of max_iterations / 2 and
max_iterations iterations (tolerance 0), which leaves the one-time work out; `one-time (s)` is
the rest of the longer run (negative where later iterations cost more than earlier ones, as
SciPy's assignment does on Birkhoff). Two floors: `grad+LMO` is one jitted gradient + one LMO at the run's
final point, called alone (LMO costs vary along a run: SciPy's assignment solver is ~10x slower on
the near-tied gradients of late Birkhoff iterates than on a random matrix; and a single call finds
its arrays in cache where a loop over a larger working set may not), `ratio` = ms/iter / that
(goal <= 1.3); `bare` is vanilla FW with the 2/(t+2) step as a plain `lax.fori_loop` (gradient,
LMO, the update x + gamma (s - x); no value, gap, best iterate or stopping test), `vs bare` =
ms/iter / its time per iteration. `LMO calls` counts the oracle calls (one per iteration plus the
start; the lazy variant's are its logged gaps, from an untimed run with log=True) and `saved` the
fraction of one-per-iteration calls the lazy variant skipped.
Then the Birkhoff LMO (ours: SciPy through a host callback, and optax's pure-JAX Hungarian)
against `scipy.optimize.linear_sum_assignment` on the same matrices (goal <= 2x at n = 200).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from experiments.benchmarks.timing import median_time
from manifold_opt.sets import BirkhoffPolytope, NuclearNormBall, Simplex
from manifold_opt.solvers import frank_wolfe, stop_reason_name

VARIANTS = ("vanilla", "away", "pairwise", "blended_pairwise", "lazy_blended_pairwise")


def simplex_problem(n, seed=0):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(100, n)) / np.sqrt(100), jnp.float32)
    b = jnp.asarray(rng.normal(size=100), jnp.float32)
    cost = lambda x: 0.5 * jnp.sum((a @ x - b) ** 2)
    lipschitz = float(np.linalg.norm(np.asarray(a), 2) ** 2)
    return cost, Simplex(), jnp.zeros(n, jnp.float32).at[0].set(1), lipschitz


def completion_problem(n, seed=0, rank=5, fraction=0.1):
    rng = np.random.default_rng(seed)
    m = (rng.normal(size=(n, rank)) @ rng.normal(size=(rank, n))).astype(np.float32)
    mask = jnp.asarray(rng.random((n, n)) < fraction, jnp.float32)
    target = jnp.asarray(m)
    cost = lambda x: 0.5 * jnp.sum((mask * (x - target)) ** 2)
    radius = float(np.linalg.svd(m, compute_uv=False).sum())
    return cost, NuclearNormBall(radius), jnp.zeros((n, n), jnp.float32), 1.0


def birkhoff_problem(n, seed=0):
    target = jnp.asarray(np.random.default_rng(seed).normal(size=(n, n)), jnp.float32)
    cost = lambda x: 0.5 * jnp.sum((x - target) ** 2)
    return cost, BirkhoffPolytope(), jnp.eye(n, dtype=jnp.float32), 1.0


def gradient_lmo_floor(cost, c, x0, repeats):
    step = jax.jit(lambda x: c.lmo(jax.grad(cost)(x)))
    return median_time(step, x0, warmup=1, repeats=max(3, repeats))


def bare_loop_time(cost, c, x0, iterations, repeats):
    """Seconds per iteration of vanilla FW (2/(t+2) step) as a bare lax.fori_loop."""

    def body(t, x):
        s = c.lmo(jax.grad(cost)(x))
        return x + (2.0 / (t + 2.0)) * (s - x)

    loop = jax.jit(lambda x: jax.lax.fori_loop(0, iterations, body, x))
    return median_time(loop, x0, warmup=1, repeats=repeats) / iterations


def marginal_time(solve, x0, max_iterations, repeats):
    """(seconds per iteration, one-time seconds): the slope of run time between max_iterations / 2
    and max_iterations iterations (tolerance 0), and the longer run's time beyond that slope."""
    runs = []
    for n in (max(max_iterations // 2, 1), max_iterations):
        fixed = lambda x, n=n: solve(x, max_iterations=n, tolerance=0.0)
        iterations = int(jax.block_until_ready(fixed(x0)).iterations)  # compile
        runs.append((iterations, median_time(fixed, x0, warmup=0, repeats=repeats)))
    (k1, t1), (k2, t2) = runs
    per_iter = (t2 - t1) / (k2 - k1) if k2 > k1 else t2 / max(k2, 1)
    return per_iter, t2 - per_iter * k2


def lmo_calls(solve, x0, result, variant):
    """LMO calls of a run: one per iteration and one at the start, except for lazy variants,
    which call it only where their log holds a (finite) gap."""
    if not variant.startswith("lazy"):
        return int(result.iterations) + 1
    logged = solve(x0, log=True).log.gap[: int(result.iterations) + 1]
    return int(np.sum(np.isfinite(np.asarray(logged))))


def run_problem(name, problem, variants, steps, max_iterations, repeats):
    cost, c, x0, lipschitz = problem
    first = frank_wolfe(cost, c, x0, variant="vanilla", max_iterations=1, tolerance=0.0)
    target = 1e-4 * float(first.gap)
    bare = bare_loop_time(cost, c, x0, max_iterations, repeats)
    print(f"\n{name}: gap target {target:.3g}; bare loop {1e3 * bare:.3f} ms/iter")
    print("| variant | step | iterations | stop | gap | time (s) | ms/iter | one-time (s) | grad+LMO ms | ratio | vs bare "
          "| LMO calls | saved |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for variant in variants:
        for step in steps:
            def solve(x, log=False, max_iterations=max_iterations, tolerance=target):
                return frank_wolfe(cost, c, x, variant=variant, step=step, lipschitz=lipschitz,
                                   max_iterations=max_iterations, tolerance=tolerance, log=log)

            r = jax.block_until_ready(solve(x0))  # compile
            seconds = median_time(solve, x0, warmup=0, repeats=repeats)
            per_iter, once = marginal_time(solve, x0, max_iterations, repeats)
            floor = gradient_lmo_floor(cost, c, r.x, repeats)
            calls = lmo_calls(solve, x0, r, variant)
            print(f"| {variant} | {step} | {int(r.iterations)} | {stop_reason_name(r.stop_reason)} | "
                  f"{float(r.gap):.3g} | {seconds:.3f} | {1e3 * per_iter:.3f} | {once:.3f} | {1e3 * floor:.3f} | "
                  f"{per_iter / floor:.2f} | {per_iter / bare:.2f} | {calls} | {1 - calls / (int(r.iterations) + 1):.0%} |")
    return r


def birkhoff_lmo_vs_scipy(n, repeats, late_gradient, count=4):
    """Random Gaussian matrices plus the gradient at a late iterate of the Birkhoff quadratic."""
    mats = list(np.random.default_rng(1).normal(size=(count, n, n)).astype(np.float32)) + [np.asarray(late_gradient)]
    scipy_time = np.median([median_time(scipy.optimize.linear_sum_assignment, m, warmup=1, repeats=repeats + 2) for m in mats])
    print(f"\nBirkhoff LMO at n = {n} (median over {count} random matrices and one late gradient)")
    print("| LMO | ms | ratio to scipy |")
    print("|---|---|---|")
    print(f"| scipy.optimize.linear_sum_assignment | {1e3 * scipy_time:.3f} | 1.00 |")
    for method in ("scipy", "hungarian"):
        lmo = jax.jit(BirkhoffPolytope(method).lmo)
        t = np.median([median_time(lmo, jnp.asarray(m), warmup=1, repeats=repeats + 2) for m in mats])
        print(f"| BirkhoffPolytope(method={method!r}) | {1e3 * t:.3f} | {t / scipy_time:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simplex-n", type=int, default=100_000)
    parser.add_argument("--completion-n", type=int, default=1000)
    parser.add_argument("--birkhoff-n", type=int, default=200)
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, float32")
    run_problem(f"simplex least squares, n = {args.simplex_n}", simplex_problem(args.simplex_n), VARIANTS,
                ("agnostic", "short", "adaptive"), args.max_iterations, args.repeats)
    run_problem(f"matrix completion, {args.completion_n} x {args.completion_n}, nuclear ball",
                completion_problem(args.completion_n), ("vanilla",), ("agnostic", "short", "adaptive"),
                args.max_iterations, args.repeats)
    birkhoff = birkhoff_problem(args.birkhoff_n)
    last = run_problem(f"Birkhoff quadratic, n = {args.birkhoff_n}", birkhoff, VARIANTS, ("short", "adaptive"),
                       args.max_iterations, args.repeats)
    birkhoff_lmo_vs_scipy(args.birkhoff_n, args.repeats, jax.grad(birkhoff[0])(last.x))


if __name__ == "__main__":
    main()

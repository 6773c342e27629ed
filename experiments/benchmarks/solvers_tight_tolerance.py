"""Time to a tight gradient tolerance: our solvers vs Pymanopt's on Brockett, float64, autodiff.

    python -m experiments.benchmarks.solvers_tight_tolerance [--n 500 --p 10] [--tolerance 1e-9]

Brockett (min tr(X^T A X N) on St(n, p), as in solvers_vs_pymanopt), the same start for every
solver, derivatives by autodiff on both sides (ours: JAX; Pymanopt: its autograd backend), each
solver asked for ||grad f|| <= tolerance. Printed per solver: outer iterations, inner iterations
(trust regions: Hessian-vector products of truncated CG; Pymanopt's read from its verbose log),
the final gradient norm and stop reason, the time to 1e-6 relative suboptimality (first logged
iterate within it, rerun to exactly that many iterations) and the time to the solver's own stop
at the requested tolerance (ours: median of 3 after warm-up; Pymanopt: one run), then the time of
one Hessian-vector product of each library and the ratio Pymanopt's best / ours per time.

On a shared machine, NumPy's multithreaded BLAS can spin against other processes (a 500 x 500
product then takes ~100x its idle time) while XLA's does not; for a comparison of the algorithms
there, run both libraries on one thread each:

    OPENBLAS_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        python -m experiments.benchmarks.solvers_tight_tolerance
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import manifold_opt as mo  # noqa: E402
from experiments.benchmarks.solvers_vs_pymanopt import autodiff_problem, brockett, first_within  # noqa: E402
from experiments.benchmarks.timing import median_time  # noqa: E402

OURS = ("trust_regions", "lbfgs", "conjugate_gradient")
THEIRS = ("TrustRegions", "ConjugateGradient")


def ours(name, problem, tolerance, max_iterations):
    manifold, cost = problem["ours"]
    solver = getattr(mo.solvers, name)
    x0 = jnp.asarray(problem["x0"])
    logged = solver(cost, manifold, x0, tolerance=tolerance, max_iterations=max_iterations, log=True)
    k = first_within(logged.log.cost, problem["optimum"])
    stop = median_time(lambda x: solver(cost, manifold, x, tolerance=tolerance, max_iterations=max_iterations), x0,
                       warmup=1, repeats=3)
    to_k = None if k is None else median_time(
        lambda x: solver(cost, manifold, x, tolerance=0.0, max_iterations=max(k, 1)), x0, warmup=1, repeats=3)
    inner = logged.inner_iterations
    return dict(outer=int(logged.iterations), inner=None if inner is None else int(inner),
                grad=float(logged.gradient_norm), reason=mo.solvers.stop_reason_name(logged.stop_reason),
                to_1e6=to_k, to_stop=stop)


def theirs(name, problem, tolerance, max_iterations):
    from pymanopt import optimizers

    pm_problem = autodiff_problem(problem, "autograd")
    optimizer = getattr(optimizers, name)(verbosity=2 if name == "TrustRegions" else 0, max_iterations=max_iterations,
                                          min_gradient_norm=tolerance, log_verbosity=0 if name == "TrustRegions" else 1)
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        result = optimizer.run(pm_problem, initial_point=problem["x0"])
    stop = time.perf_counter() - start
    inner = sum(int(m) for m in re.findall(r"num_inner:\s+(\d+)", printed.getvalue())) or None
    to_k = None
    if name != "TrustRegions":  # its log has the costs: time a rerun to the first iterate within 1e-6
        k = first_within(result.log["iterations"]["cost"], problem["optimum"])
        if k is not None:
            quick = getattr(optimizers, name)(verbosity=0, max_iterations=k, min_gradient_norm=0.0)
            start = time.perf_counter()
            quick.run(pm_problem, initial_point=problem["x0"])
            to_k = time.perf_counter() - start
    return dict(outer=int(result.iterations), inner=inner, grad=float(result.gradient_norm),
                reason=result.stopping_criterion.removeprefix("Terminated - ").split(" reached")[0][:22], to_1e6=to_k, to_stop=stop)


def hvp_times(problem):
    """Seconds of one Riemannian Hessian-vector product: ours (jitted, the Euclidean HVP prepared
    once at x, as in truncated CG's loop) and Pymanopt's (autograd, all of it per call)."""
    manifold, cost = problem["ours"]
    x = jnp.asarray(problem["x0"])
    u = manifold.random_tangent(jax.random.PRNGKey(0), x)
    from manifold_opt.solvers.trust_regions import riemannian_hvp

    ours_hvp = jax.jit(riemannian_hvp(cost, manifold, x)[1])
    pm_problem = autodiff_problem(problem, "autograd")
    xn, un = np.asarray(x), np.asarray(u)
    pm_problem.riemannian_hessian(xn, un)
    start = time.perf_counter()
    for _ in range(20):
        pm_problem.riemannian_hessian(xn, un)
    return median_time(ours_hvp, u, repeats=50), (time.perf_counter() - start) / 20


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--p", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument("--max-iterations", type=int, default=5000)
    args = parser.parse_args(argv)
    problem = brockett(np.random.default_rng(0), args.n, args.p)
    rows = {f"ours {n}": ours(n, problem, args.tolerance, args.max_iterations) for n in OURS}
    rows.update({f"pymanopt {n}": theirs(n, problem, args.tolerance, args.max_iterations) for n in THEIRS})
    print(f"Brockett St({args.n}, {args.p}), float64, autodiff, gradient tolerance {args.tolerance:g}")
    print(f"{'solver':<30} {'outer':>6} {'inner':>7} {'|grad|':>9} {'stop':<22} {'to 1e-6 s':>10} {'to stop s':>10}")
    for name, r in rows.items():
        print(f"{name:<30} {r['outer']:>6} {fmt(r['inner'], 'd'):>7} {r['grad']:>9.1e} {r['reason']:<22} "
              f"{fmt(r['to_1e6'], '.3f'):>10} {r['to_stop']:>10.3f}")
    ours_hvp, their_hvp = hvp_times(problem)
    print(f"one Hessian-vector product: ours {1e6 * ours_hvp:.1f} us, Pymanopt {1e6 * their_hvp:.1f} us")
    print(f"per inner iteration (trust regions): ours {1e3 * rows['ours trust_regions']['to_stop'] / rows['ours trust_regions']['inner']:.2f} ms, "
          f"Pymanopt {1e3 * rows['pymanopt TrustRegions']['to_stop'] / (rows['pymanopt TrustRegions']['inner'] or 1):.2f} ms")
    reached = [r for n, r in rows.items() if n.startswith("pymanopt") and r["grad"] <= args.tolerance]
    best = min((r["to_stop"] for r in reached), default=None)
    best_1e6 = min((r["to_1e6"] for n, r in rows.items() if n.startswith("pymanopt") and r["to_1e6"]), default=None)
    print("Pymanopt's best / ours (time to its stop at the tolerance, among runs that reached it; time to 1e-6 "
          "suboptimality, among logged runs):")
    for name in OURS:
        r = rows[f"ours {name}"]
        to_stop = "-" if best is None or r["grad"] > args.tolerance else f"{best / r['to_stop']:.2f}x"
        to_1e6 = "-" if best_1e6 is None or not r["to_1e6"] else f"{best_1e6 / r['to_1e6']:.2f}x"
        print(f"  {name:<22} to tolerance {to_stop:>8}   to 1e-6 {to_1e6:>8}")


if __name__ == "__main__":
    main()

"""Wall time to 1e-6 relative suboptimality: our jitted solvers vs Pymanopt (float64).

Problems (same random data, same start for both libraries):
  brockett      min tr(X^T A X N) on St(500, 10), N = diag(10..1); f* = sum N_i lambda_i(A) ascending
  dominant      min -tr(X^T A X) on Gr(1000, 10); f* = -(sum of the 10 largest eigenvalues)
  procrustes    min ||A X - B||_F^2 on O(50); f* from the SVD of A^T B

Each solver first runs once with a per-iteration log to find k, the first iteration with
(f_k - f*) / |f*| <= 1e-6; the timed runs then stop after exactly k iterations, so every time is
a time to tolerance. Ours: median of 3 runs after warm-up (block_until_ready); compile time =
first call - median. Pymanopt (2.x) runs in two configurations: hand-written NumPy Euclidean
gradient and Hessian (its fastest), and the cost alone with derivatives by its autograd and jax
backends (how its users usually write problems); one run each, capped at 60 s. Pymanopt's
TrustRegions keeps no per-iteration log, so its k is found (hand-coded) by bisection over
max_iterations (its cost is monotone in k); the autodiff runs reuse the hand-coded k.

    python -m experiments.benchmarks.solvers_vs_pymanopt [--quick]
"""
from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import manifold_opt as mo  # noqa: E402
from experiments.benchmarks.timing import median_time  # noqa: E402
from manifold_opt.manifolds import Grassmann, OrthogonalGroup, Stiefel  # noqa: E402

TOLERANCE = 1e-6
# our contenders (steepest descent is left out: thousands of iterations, never the fastest)
SOLVERS = {
    "conjugate_gradient": {},
    "conjugate_gradient adaptive": {"initial_step_rule": "adaptive"},
    "trust_regions": {},
}
PYMANOPT_MAX_TIME = 60.0
# the autodiff backends Pymanopt users write costs with (cost only; gradient and Hessian derived)
PYMANOPT_AUTODIFF = ("autograd", "jax")


def brockett(rng, n, p):
    b = rng.standard_normal((n, n))
    a = (b + b.T) / 2
    w = np.arange(p, 0, -1.0)
    a_j, w_j = jnp.asarray(a), jnp.asarray(w)
    return dict(
        ours=(Stiefel(n, p), lambda x: jnp.sum(x * (a_j @ x) * w_j)),
        pymanopt=("Stiefel", (n, p), lambda x: np.sum(x * (a @ x) * w), lambda x: 2 * (a @ x) * w,
                  lambda x, u: 2 * (a @ u) * w),
        autodiff_cost=lambda xp: lambda x: xp.sum(x * xp.matmul(a, x) * w),
        optimum=np.sum(w * np.linalg.eigvalsh(a)[:p]),
        x0=np.linalg.qr(rng.standard_normal((n, p)))[0],
    )


def dominant_subspace(rng, n, p):
    b = rng.standard_normal((n, n))
    a = (b + b.T) / 2
    a_j = jnp.asarray(a)
    return dict(
        ours=(Grassmann(n, p), lambda x: -jnp.sum(x * (a_j @ x))),
        pymanopt=("Grassmann", (n, p), lambda x: -np.sum(x * (a @ x)), lambda x: -2 * (a @ x),
                  lambda x, u: -2 * (a @ u)),
        autodiff_cost=lambda xp: lambda x: -xp.sum(x * xp.matmul(a, x)),
        optimum=-np.sum(np.linalg.eigvalsh(a)[-p:]),
        x0=np.linalg.qr(rng.standard_normal((n, p)))[0],
    )


def procrustes(rng, n):
    """Data with the optimum in SO(n) and the start there too (Pymanopt's group is SO(n))."""
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    if np.linalg.det(np.linalg.svd(a.T @ b)[0] @ np.linalg.svd(a.T @ b)[2]) < 0:
        b[:, 0] *= -1
    u, _, vt = np.linalg.svd(a.T @ b)
    x0 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    if np.linalg.det(x0) < 0:
        x0[:, 0] *= -1
    a_j, b_j = jnp.asarray(a), jnp.asarray(b)
    return dict(
        ours=(OrthogonalGroup(n), lambda x: jnp.sum((a_j @ x - b_j) ** 2)),
        pymanopt=("SpecialOrthogonalGroup", (n,),
                  lambda x: np.sum((a @ x - b) ** 2), lambda x: 2 * a.T @ (a @ x - b),
                  lambda x, u: 2 * a.T @ (a @ u)),
        autodiff_cost=lambda xp: lambda x: xp.sum((xp.matmul(a, x) - b) ** 2),
        optimum=np.sum((a @ u @ vt - b) ** 2),
        x0=x0,
    )


def first_within(costs, optimum):
    """First index whose relative suboptimality is <= TOLERANCE, or None."""
    gaps = (np.asarray(costs) - optimum) / abs(optimum)
    hits = np.nonzero(gaps <= TOLERANCE)[0]
    return int(hits[0]) if len(hits) else None


def time_ours(problem, max_iterations):
    """{solver: (run seconds, compile seconds, iterations)} for each of our solvers."""
    manifold, cost = problem["ours"]
    x0 = jnp.asarray(problem["x0"])
    out = {}
    for name, options in SOLVERS.items():
        solver = getattr(mo.solvers, name.split(" ")[0])
        logged = solver(cost, manifold, x0, max_iterations=max_iterations, tolerance=0.0, log=True, **options)
        k = first_within(logged.log.cost, problem["optimum"])
        if k is None:
            out[name] = None
            continue
        run = lambda x: solver(cost, manifold, x, max_iterations=k, tolerance=0.0, **options)  # noqa: E731
        start = time.perf_counter()
        jax.block_until_ready(run(x0))
        first = time.perf_counter() - start
        seconds = median_time(run, x0, warmup=1, repeats=3)
        out[name] = (seconds, max(first - seconds, 0.0), k)
    return out


def pymanopt_manifold(problem):
    from pymanopt import manifolds as pm

    kind, dims = problem["pymanopt"][:2]
    return {"Stiefel": pm.Stiefel, "Grassmann": pm.Grassmann,
            "SpecialOrthogonalGroup": pm.SpecialOrthogonalGroup}[kind](*dims)


def hand_coded_problem(problem):
    """Pymanopt's fastest configuration: NumPy cost, Euclidean gradient and Hessian by hand."""
    import pymanopt

    manifold = pymanopt_manifold(problem)
    fns = [pymanopt.function.numpy(manifold)(f) for f in problem["pymanopt"][2:]]
    return pymanopt.Problem(manifold, fns[0], euclidean_gradient=fns[1], euclidean_hessian=fns[2])


def autodiff_problem(problem, backend):
    """How Pymanopt users usually write it: the cost only, derivatives by `backend` autodiff."""
    import pymanopt

    manifold = pymanopt_manifold(problem)
    if backend == "autograd":
        import autograd.numpy as xp
    else:
        import jax.numpy as xp
    cost = getattr(pymanopt.function, backend)(manifold)(problem["autodiff_cost"](xp))
    return pymanopt.Problem(manifold, cost)


def run_pymanopt(pm_problem, problem, optimizer_name, iterations, **options):
    from pymanopt import optimizers

    optimizer = getattr(optimizers, optimizer_name)(
        verbosity=0, max_iterations=iterations, min_gradient_norm=0.0, max_time=PYMANOPT_MAX_TIME, **options
    )
    return optimizer.run(pm_problem, initial_point=problem["x0"])


def reached(result, problem):
    return (result.cost - problem["optimum"]) / abs(problem["optimum"]) <= TOLERANCE


def pymanopt_iterations(problem):
    """{optimizer: k} for Pymanopt's ConjugateGradient and TrustRegions (hand-coded derivatives),
    k the first iteration within tolerance, or None."""
    pm_problem = hand_coded_problem(problem)
    run = lambda name, k, **options: run_pymanopt(pm_problem, problem, name, k, **options)  # noqa: E731
    # ConjugateGradient logs its iterates: read k off the log
    logged = run("ConjugateGradient", 100_000, log_verbosity=1)
    k_cg = first_within(logged.log["iterations"]["cost"], problem["optimum"])
    if k_cg is not None:  # the log's entry numbering may be off by one from max_iterations
        k_cg = int(logged.log["iterations"]["iteration"][k_cg])
        while not reached(run("ConjugateGradient", k_cg), problem):
            k_cg += 1
    # TrustRegions logs nothing: smallest k by doubling then bisection (its cost is monotone in k)
    k_tr, low = 1, 0
    while not reached(run("TrustRegions", k_tr), problem):
        if k_tr >= 1024:
            k_tr = None
            break
        low, k_tr = k_tr, 2 * k_tr
    while k_tr is not None and k_tr - low > 1:
        mid = (low + k_tr) // 2
        low, k_tr = (low, mid) if reached(run("TrustRegions", mid), problem) else (mid, k_tr)
    return {"ConjugateGradient": k_cg, "TrustRegions": k_tr}


def time_pymanopt(pm_problem, problem, iterations):
    """{optimizer: (seconds, k) or None} for one run of each optimizer stopped after k iterations.

    Autodiff changes the arithmetic only by rounding, so k (found with hand-coded derivatives) is
    raised by at most 3 when the tolerance is just missed; a run that hits the time cap is None."""
    out = {}
    for name, k in iterations.items():
        out[name] = None
        for extra in range(4 if k is not None else 0):
            start = time.perf_counter()
            result = run_pymanopt(pm_problem, problem, name, max(k + extra, 1))
            seconds = time.perf_counter() - start
            if reached(result, problem):
                out[name] = (seconds, k + extra)
                break
            if seconds >= PYMANOPT_MAX_TIME:
                break
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.quick:
        problems = {"brockett St(50,5)": brockett(rng, 50, 5), "dominant Gr(100,5)": dominant_subspace(rng, 100, 5),
                    "procrustes O(10)": procrustes(rng, 10)}
    else:
        problems = {"brockett St(500,10)": brockett(rng, 500, 10),
                    "dominant Gr(1000,10)": dominant_subspace(rng, 1000, 10),
                    "procrustes O(50)": procrustes(rng, 50)}
    print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"float64; time to {TOLERANCE:g} relative suboptimality")
    rows = []
    for label, problem in problems.items():
        ours = time_ours(problem, max_iterations=5_000)
        iterations = pymanopt_iterations(problem)
        theirs = {f"hand-coded {name}": entry
                  for name, entry in time_pymanopt(hand_coded_problem(problem), problem, iterations).items()}
        for backend in PYMANOPT_AUTODIFF:
            timed = time_pymanopt(autodiff_problem(problem, backend), problem, iterations)
            theirs.update({f"{backend} {name}": entry for name, entry in timed.items()})
        for name, entry in ours.items():
            print(f"  {label:22s} ours {name:28s} " + ("did not reach tolerance" if entry is None else
                  f"run {entry[0]:8.4f} s  compile {entry[1]:6.2f} s  iterations {entry[2]}"))
        for name, entry in theirs.items():
            print(f"  {label:22s} pymanopt {name:32s} " + (
                  f"no result within {PYMANOPT_MAX_TIME:g} s" if entry is None else
                  f"run {entry[0]:8.4f} s  iterations {entry[1]}"))
        best = min((e[0], n, e[1]) for n, e in ours.items() if e is not None)
        print(f"  (load average now {os.getloadavg()[0]:.1f})")
        rows.append((label, theirs, best))
    print()
    print("| problem | Pymanopt hand-coded CG / TR (s) | Pymanopt autodiff best (s) | ours: best solver, run (s) "
          "| our compile (s) | speedup vs Pymanopt autodiff best | speedup vs Pymanopt hand-coded best |")
    print("|---|---|---|---|---|---|---|")
    fmt = lambda e: f"> {PYMANOPT_MAX_TIME:g} (cap)" if e is None else f"{e[0]:.3f}"  # noqa: E731
    for label, theirs, (seconds, name, compile_s) in rows:
        def fastest(prefixes):
            """(seconds, name, lower bound?) of the fastest run; the cap when none finished."""
            entries = {n: e for n, e in theirs.items() if n.split(" ")[0] in prefixes}
            done = [(e[0], n) for n, e in entries.items() if e is not None]
            return (*min(done), False) if done else (PYMANOPT_MAX_TIME, "all capped", True)

        auto, hand = fastest(PYMANOPT_AUTODIFF), fastest(("hand-coded",))
        ratio = lambda f: f"{'>= ' if f[2] else ''}{f[0] / seconds:.1f}x"  # noqa: E731
        print(f"| {label} | {fmt(theirs['hand-coded ConjugateGradient'])} / {fmt(theirs['hand-coded TrustRegions'])} "
              f"| {auto[1]} {auto[0]:.3f} | {name} {seconds:.4f} | {compile_s:.2f} | {ratio(auto)} | {ratio(hand)} |")


if __name__ == "__main__":
    main()

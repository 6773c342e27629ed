"""Wall time to 1e-6 relative suboptimality: our jitted solvers vs Pymanopt (float64).

Problems (same random data, same start for both libraries):
  brockett      min tr(X^T A X N) on St(500, 10), N = diag(10..1); f* = sum N_i lambda_i(A) ascending
  dominant      min -tr(X^T A X) on Gr(1000, 10); f* = -(sum of the 10 largest eigenvalues)
  procrustes    min ||A X - B||_F^2 on O(50); f* from the SVD of A^T B
  spd_karcher   min (1/2m) sum_i dist(X, Y_i)^2 on SPD(50), m = 10, affine-invariant metric;
                f* from a NumPy fixed point X <- X^(1/2) expm(mean_i logm(X^(-1/2) Y_i X^(-1/2))) X^(1/2)

Every library runs in two configurations: with hand-written Euclidean derivatives (ours through
`mo.solvers.Cost`, the same formulas) and with the cost alone (autodiff).

Each solver first runs once with a per-iteration log to find k, the first iteration with
(f_k - f*) / |f*| <= 1e-6; the timed runs then stop after exactly k iterations, so every time is
a time to tolerance. Ours: median of 3 runs after warm-up (block_until_ready); compile time =
first call - median. Pymanopt (2.x) runs in two configurations: hand-written NumPy Euclidean
gradient and Hessian (its fastest), and the cost alone with derivatives by its autograd and jax
backends (how its users usually write problems); one run each, capped at 60 s. "x floor" divides a run
time by k times the time of the matrix work one gradient needs at least (Brockett and the
dominant subspace: one product A X; Procrustes: one n x n product (A^T A) X; SPD Karcher: m
products L_i^-1 X L_i^-T and m eigendecompositions), timed inside one jitted loop: how far an iteration is from the
cost of its one unavoidable gradient. Pymanopt's
TrustRegions keeps no per-iteration log, so its k is found (hand-coded) by bisection over
max_iterations (its cost is monotone in k); the autodiff runs reuse the hand-coded k.

    python -m experiments.benchmarks.solvers_vs_pymanopt [--quick] [--backends autograd,jax]
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
    "lbfgs": {},
    "arc": {},
}
DERIVATIVES = ("autodiff", "hand-coded")  # ours: the cost alone, or a mo.solvers.Cost
PYMANOPT_MAX_TIME = 60.0
# the autodiff backends Pymanopt users write costs with (cost only; gradient and Hessian derived);
# --backends picks among them (autograd by default: Pymanopt's jax backend was 50-100x slower than
# its autograd one in every run we made, so it never gives Pymanopt's best time)
PYMANOPT_AUTODIFF = ("autograd", "jax")


def shared_product(product, x, sign):
    """(sign tr(X^T P), 2 sign P) for P = A X (times weights): value and gradient of a quadratic
    form from one product with the symmetric A."""
    return sign * jnp.sum(x * product), 2 * sign * product


def brockett(rng, n, p):
    b = rng.standard_normal((n, n))
    a = (b + b.T) / 2
    w = np.arange(p, 0, -1.0)
    a_j, w_j = jnp.asarray(a), jnp.asarray(w)
    return dict(
        ours=(Stiefel(n, p), lambda x: jnp.sum(x * (a_j @ x) * w_j)),
        ours_derivatives=dict(value_and_egrad=lambda x: shared_product(a_j @ x * w_j, x, 1.0),
                              ehvp=lambda x, u: 2 * (a_j @ u) * w_j),
        floor=(lambda x: a_j @ x),
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
        ours_derivatives=dict(value_and_egrad=lambda x: shared_product(a_j @ x, x, -1.0),
                              ehvp=lambda x, u: -2 * (a_j @ u)),
        floor=(lambda x: a_j @ x),
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
    ata, atb, btb = jnp.asarray(a.T @ a), jnp.asarray(a.T @ b), float(np.sum(b**2))

    def value_and_egrad(x):  # ||A X - B||^2 = tr(X^T A^T A X) - 2 tr(X^T A^T B) + ||B||^2
        ax = ata @ x
        return jnp.sum(x * ax) - 2 * jnp.sum(x * atb) + btb, 2 * (ax - atb)

    return dict(
        ours=(OrthogonalGroup(n), lambda x: jnp.sum((a_j @ x - b_j) ** 2)),
        ours_derivatives=dict(value_and_egrad=value_and_egrad, ehvp=lambda x, u: 2 * (ata @ u)),
        floor=(lambda x: ata @ x),
        pymanopt=("SpecialOrthogonalGroup", (n,),
                  lambda x: np.sum((a @ x - b) ** 2), lambda x: 2 * a.T @ (a @ x - b),
                  lambda x, u: 2 * a.T @ (a @ u)),
        autodiff_cost=lambda xp: lambda x: xp.sum((xp.matmul(a, x) - b) ** 2),
        optimum=np.sum((a @ u @ vt - b) ** 2),
        x0=x0,
    )


def spd_spectral_derivatives(xp, inv_factors):
    """(cost, egrad, ehvp, value_and_egrad) of f(X) = (1/2m) sum_i sum_j log^2 lambda_j(C_i), C_i = L_i^-1 X L_i^-T
    (Y_i = L_i L_i^T; sum_j log^2 lambda_j(C_i) = dist(X, Y_i)^2), written with the array module
    xp (NumPy for Pymanopt, jax.numpy for ours). With C = V diag(lam) V^T and g(l) = log(l) / l:
    egrad = (1/m) sum_i L_i^-T V g(lam) V^T L_i^-1, and its derivative along U by the Daleckii-Krein
    formula V (G o (V^T L^-1 U L^-T V)) V^T, G_jk = (g(l_j) - g(l_k)) / (l_j - l_k), g'(l_j) on the
    diagonal (and where l_j = l_k)."""
    m = inv_factors.shape[0]
    inv_t = xp.swapaxes(inv_factors, -1, -2)

    def whiten(x):
        return inv_factors @ x @ inv_t

    def cost(x):
        lam = xp.linalg.eigh(whiten(x))[0]
        return xp.sum(xp.log(lam) ** 2) / (2 * m)

    def spectral(x):
        lam, v = xp.linalg.eigh(whiten(x))
        return lam, v, xp.log(lam) / lam

    def value_and_egrad(x):
        lam, v, g = spectral(x)
        grad = xp.sum(inv_t @ (v * g[:, None, :]) @ xp.swapaxes(v, -1, -2) @ inv_factors, axis=0) / m
        return xp.sum(xp.log(lam) ** 2) / (2 * m), grad

    def egrad(x):
        return value_and_egrad(x)[1]

    def ehvp(x, u):
        lam, v, g = spectral(x)
        vt = xp.swapaxes(v, -1, -2)
        gap = lam[:, :, None] - lam[:, None, :]
        slope = (1 - xp.log(lam)) / lam**2
        close = xp.abs(gap) <= 1e-10 * xp.abs(lam[:, :, None])
        divided = xp.where(close, slope[:, :, None], (g[:, :, None] - g[:, None, :]) / xp.where(close, 1.0, gap))
        inner = divided * (vt @ whiten(u) @ v)
        return xp.sum(inv_t @ v @ inner @ vt @ inv_factors, axis=0) / m

    return cost, egrad, ehvp, value_and_egrad


def spd_karcher(rng, n, m):
    def sym_fun(a, fn):
        w, v = np.linalg.eigh((a + a.T) / 2)
        return (v * fn(w)) @ v.T

    ys = np.stack([sym_fun(2 * rng.standard_normal((n, n)) / np.sqrt(n), np.exp) for _ in range(m)])
    inv_factors = np.linalg.inv(np.linalg.cholesky(ys))
    x = np.mean(ys, axis=0)
    for _ in range(100):
        root, inv_root = sym_fun(x, np.sqrt), sym_fun(x, lambda w: 1 / np.sqrt(w))
        x = root @ sym_fun(np.mean([sym_fun(inv_root @ y @ inv_root, np.log) for y in ys], axis=0), np.exp) @ root
    numpy_fns = spd_spectral_derivatives(np, inv_factors)[:3]
    jax_cost, _, jax_ehvp, jax_value_and_egrad = spd_spectral_derivatives(jnp, jnp.asarray(inv_factors))
    inv_j = jnp.asarray(inv_factors)
    return dict(
        ours=(mo.manifolds.SymmetricPositiveDefinite(n), jax_cost),
        ours_derivatives=dict(value_and_egrad=jax_value_and_egrad, ehvp=jax_ehvp),
        floor=(lambda x: jnp.linalg.eigh(inv_j @ x @ jnp.swapaxes(inv_j, -1, -2))),
        pymanopt=("SymmetricPositiveDefinite", (n,), *numpy_fns),
        autodiff_cost=lambda xp: spd_spectral_derivatives(xp, inv_factors)[0],
        optimum=numpy_fns[0](x),
        x0=np.eye(n),  # not a data point: there C_i = I, whose eigh has no derivative
    )


def floor_seconds(problem, repeats=50):
    """Median time of the matrix work one gradient needs at least (problem["floor"]): `repeats`
    chained evaluations in one jitted scan (no dispatch overhead; the carry keeps XLA from
    hoisting them out of the loop), divided by `repeats`."""
    def chained(x):
        def body(shift, _):
            out = problem["floor"](x + shift)
            return shift + 0.0 * jnp.sum(jax.tree_util.tree_leaves(out)[0]), None

        return jax.lax.scan(body, jnp.zeros([], x.dtype), None, length=repeats)[0]

    return median_time(jax.jit(chained), jnp.asarray(problem["x0"]), warmup=2, repeats=10) / repeats


def gradient_seconds(problem) -> tuple[float, float]:
    """Median time of one Euclidean value-and-gradient: by autodiff of the cost, and hand-written."""
    x = jnp.asarray(problem["x0"])
    autodiff = jax.jit(jax.value_and_grad(problem["ours"][1]))
    by_hand = jax.jit(problem["ours_derivatives"]["value_and_egrad"])
    return median_time(autodiff, x, repeats=50), median_time(by_hand, x, repeats=50)


def first_within(costs, optimum):
    """First index whose relative suboptimality is <= TOLERANCE, or None."""
    gaps = (np.asarray(costs) - optimum) / abs(optimum)
    hits = np.nonzero(gaps <= TOLERANCE)[0]
    return int(hits[0]) if len(hits) else None


def time_ours(problem, max_iterations, solvers=tuple(SOLVERS)):
    """{"<derivatives> <solver>": (run seconds, compile seconds, iterations)} for each of our
    solvers, with autodiff and with the hand-coded derivatives."""
    manifold, plain = problem["ours"]
    costs = {"autodiff": plain, "hand-coded": mo.solvers.Cost(plain, **problem["ours_derivatives"])}
    x0 = jnp.asarray(problem["x0"])
    out = {}
    for label, options in ((f"{d} {s}", SOLVERS[s]) for d in DERIVATIVES for s in solvers):
        cost = costs[label.split(" ")[0]]
        name = label.split(" ", 1)[1]
        solver = getattr(mo.solvers, name.split(" ")[0])
        # the logged run stops at a gradient norm far below what 1e-6 suboptimality needs (with
        # tolerance 0, trust regions would spend thousands of inner iterations on rounding noise)
        logged = solver(cost, manifold, x0, max_iterations=max_iterations, tolerance=1e-10, log=True, **options)
        k = first_within(logged.log.cost, problem["optimum"])
        if k is None:
            out[label] = None
            continue
        run = lambda x: solver(cost, manifold, x, max_iterations=k, tolerance=0.0, **options)  # noqa: E731
        start = time.perf_counter()
        jax.block_until_ready(run(x0))
        first = time.perf_counter() - start
        seconds = median_time(run, x0, warmup=1, repeats=3)
        out[label] = (seconds, max(first - seconds, 0.0), k)
    return out


def pymanopt_manifold(problem):
    from pymanopt import manifolds as pm

    kind, dims = problem["pymanopt"][:2]
    return {"Stiefel": pm.Stiefel, "Grassmann": pm.Grassmann,
            "SpecialOrthogonalGroup": pm.SpecialOrthogonalGroup,
            "SymmetricPositiveDefinite": pm.SymmetricPositiveDefinite}[kind](*dims)


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
    raised by at most 3 when the tolerance is just missed; a run that hits the time cap or fails
    (a linear-algebra error) is None."""
    out = {}
    for name, k in iterations.items():
        out[name] = None
        for extra in range(4 if k is not None else 0):
            start = time.perf_counter()
            try:
                result = run_pymanopt(pm_problem, problem, name, max(k + extra, 1))
            except np.linalg.LinAlgError as error:  # e.g. autograd's Hessian of eigh on SPD
                print(f"  pymanopt {name} failed: {error}")
                break
            seconds = time.perf_counter() - start
            if reached(result, problem):
                out[name] = (seconds, k + extra)
                break
            if seconds >= PYMANOPT_MAX_TIME:
                break
    return out


def fastest(entries, prefixes):
    """(seconds, name, capped) of the fastest finished run among names starting with one of
    `prefixes`; (the cap, "all capped", True) when none finished."""
    done = [(e[0], n) for n, e in entries.items() if n.split(" ")[0] in prefixes and e is not None]
    return (*min(done), False) if done else (PYMANOPT_MAX_TIME, "all capped", True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--backends", default="autograd", help=f"comma-separated subset of {PYMANOPT_AUTODIFF}")
    parser.add_argument("--solvers", default=",".join(SOLVERS), help=f"our contenders, a subset of {list(SOLVERS)}")
    parser.add_argument("--problems", default="", help="comma-separated name prefixes of the problems to run (all by default)")
    args = parser.parse_args()
    solvers = tuple(args.solvers.split(","))
    if not set(solvers) <= set(SOLVERS):
        parser.error(f"--solvers must be a subset of {list(SOLVERS)}, got {args.solvers!r}")
    backends = tuple(args.backends.split(","))
    if not set(backends) <= set(PYMANOPT_AUTODIFF):
        parser.error(f"--backends must be a subset of {PYMANOPT_AUTODIFF}, got {args.backends!r}")
    rng = np.random.default_rng(0)
    if args.quick:
        problems = {"brockett St(50,5)": brockett(rng, 50, 5), "dominant Gr(100,5)": dominant_subspace(rng, 100, 5),
                    "procrustes O(10)": procrustes(rng, 10), "spd_karcher SPD(10) m=5": spd_karcher(rng, 10, 5)}
    else:
        problems = {"brockett St(500,10)": brockett(rng, 500, 10),
                    "dominant Gr(1000,10)": dominant_subspace(rng, 1000, 10),
                    "procrustes O(50)": procrustes(rng, 50),
                    "spd_karcher SPD(50) m=10": spd_karcher(rng, 50, 10)}
    if args.problems:
        problems = {k: v for k, v in problems.items() if k.split(" ")[0] in args.problems.split(",")}
    print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"float64; time to {TOLERANCE:g} relative suboptimality")
    rows = []
    for label, problem in problems.items():
        ours = time_ours(problem, max_iterations=5_000, solvers=solvers)
        floor = floor_seconds(problem)
        iterations = pymanopt_iterations(problem)
        theirs = {f"hand-coded {name}": entry
                  for name, entry in time_pymanopt(hand_coded_problem(problem), problem, iterations).items()}
        for backend in backends:
            timed = time_pymanopt(autodiff_problem(problem, backend), problem, iterations)
            theirs.update({f"{backend} {name}": entry for name, entry in timed.items()})
        over_floor = lambda e: f"{e[0] / (e[-1] * floor):8.1f} x floor"  # noqa: E731
        print(f"  {label:24s} floor (one gradient's matrix work) {floor * 1e3:.3f} ms")
        autodiff_gradient, hand_gradient = gradient_seconds(problem)
        print(f"  {label:24s} one value-and-gradient: autodiff {autodiff_gradient * 1e3:.3f} ms, hand-written "
              f"{hand_gradient * 1e3:.3f} ms ({autodiff_gradient / hand_gradient:.1f}x)")
        for name, entry in ours.items():
            print(f"  {label:24s} ours {name:39s} " + ("did not reach tolerance" if entry is None else
                  f"run {entry[0]:8.4f} s  compile {entry[1]:6.2f} s  iterations {entry[2]:5d} "
                  f"{entry[0] / (entry[2] * floor):8.1f} x floor"))
        for name, entry in theirs.items():
            print(f"  {label:24s} pymanopt {name:35s} " + (
                  f"no result (failed, or capped at {PYMANOPT_MAX_TIME:g} s)" if entry is None else
                  f"run {entry[0]:8.4f} s                  iterations {entry[1]:5d} {over_floor(entry)}"))
        print(f"  (load average now {os.getloadavg()[0]:.1f})")
        rows.append(summary_row(label, ours, theirs, backends))
        print(rows[-1])
    print()
    print("| problem | Pymanopt hand-coded best (s) | ours hand-coded best (s) | speedup | Pymanopt autodiff best (s) "
          "| ours autodiff best (s) | speedup | compile of ours best (s) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def summary_row(label, ours, theirs, backends):
    """The summary table's row: each library's best with hand-coded derivatives and with autodiff."""
    cells = []
    for mine, pymanopt in (("hand-coded", ("hand-coded",)), ("autodiff", backends)):
        their_best, our_best = fastest(theirs, pymanopt), fastest(ours, (mine,))
        ratio = f"{'>= ' if their_best[2] else ''}{their_best[0] / our_best[0]:.1f}x"
        cells += [f"{their_best[1]} {their_best[0]:.3f}", f"{our_best[1].split(' ', 1)[1]} {our_best[0]:.4f}", ratio]
    best = min((e for e in ours.values() if e is not None), key=lambda e: e[0])
    return f"| {label} | " + " | ".join(cells) + f" | {best[1]:.2f} |"

if __name__ == "__main__":
    main()

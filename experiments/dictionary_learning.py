"""Online orthogonal dictionary learning by Frank-Wolfe (Xue & Lau 2021).

Samples y_t = D* x_t stream in (D* a random n x n orthogonal matrix, x_t Bernoulli(theta)-
Gaussian). The dictionary D is learned online by Frank-Wolfe over the convex hull of O(n), the
unit spectral-norm ball, maximizing the l4 sparsity objective f(D) = E ||D^T y||_4^4 / 4 (the
paper's formulation): with the averaged stochastic gradient G_t = (1 - rho_t) G_{t-1} +
rho_t grad f_t(D_t), the LMO polar(G_t) and D_{t+1} = (1 - gamma_t) D_t + gamma_t polar(G_t).
This is `mo.frank_wolfe` on the loss -f with a SpectralNormBall(1) and a momentum schedule.
Our schedules (rho_t = (t+1)^-1/2, gamma_t = (t+1)^-3/4) are diminishing weights of the kind
the paper's analysis assumes; its exact constants are not reproduced.

The batch reference is the l4 matching-stretching-projection method of Zhai et al. 2020,
D <- polar(Y (D^T Y)^3) on every sample the online run saw (= Frank-Wolfe with step 1 on the
full-batch objective). Recovery error: ||D P - D*||_F / sqrt(n) with P the signed permutation
best aligning D to D* (a linear assignment on |D^T D*|).

Baseline: online Riemannian SGD on O(n) (`mo.riemannian_sgd`, rate lr / sqrt(t + 1), lr tuned
by the protocol on the selection seeds) on the same stream, the same sample budget. Online FW
runs the paper's parameter-free schedules (nothing tuned); MSP is a reference row.

Reported through `experiments/harness/protocol.py`, per arm over paired report seeds: recovery
error, the FW gap ||G||_* - <G, D> of f at the final D on held-out samples (the quantity the
theorem bounds by O(ln t / t^(1/4))), the log-log slopes of both over samples seen t, and seconds
per sample of the compiled run alone (compiled ahead of time; evaluation happens afterwards on
the iterates it returns). fw_gap.png plots the gap over t beside ln t / t^(1/4).
"""
from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.optimize

import manifold_opt as mo
from experiments.harness import config as checks
from experiments.harness import protocol
from experiments.harness.plots import plt

BALL = mo.sets.SpectralNormBall(1.0)


def validate(config) -> None:
    """ValueError naming the key of the first bad value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: dictionary_learning runs on one device, got {config.parallel!r}")
    checks.check_int(config, "n", minimum=2)
    if not 16 <= config.n <= 64:
        raise ValueError(f"config.n: expected 16..64, got {config.n}")
    if not 0.0 < config.theta <= 1.0:
        raise ValueError(f"config.theta: expected a probability in (0, 1], got {config.theta!r}")
    for key in ("step_exponent", "averaging_exponent"):
        if not 0.0 < config[key] <= 1.0:
            raise ValueError(f"config.{key}: expected a number in (0, 1], got {config[key]!r}")
    checks.check_int(config, "msp_iterations")
    checks.check_int(config, "eval_every")
    if config.num_steps % config.eval_every:
        raise ValueError(f"config.eval_every: must divide num_steps={config.num_steps}, got {config.eval_every}")
    if not config.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in config.seeds):
        raise ValueError(f"config.seeds: expected a non-empty tuple of ints, got {config.seeds!r}")
    if not config.rsgd_learning_rates or not all(lr > 0 for lr in config.rsgd_learning_rates):
        raise ValueError(f"config.rsgd_learning_rates: expected positive numbers, got {tuple(config.rsgd_learning_rates)!r}")


def ground_truth(n: int, seed: int):
    """(D*, D_0): two random orthogonal matrices (the truth and the start, a vertex of the ball)."""
    group = mo.manifolds.OrthogonalGroup(n)
    key_true, key_init = jax.random.split(jax.random.PRNGKey(seed))
    return group.random_point(key_true, jnp.float32), group.random_point(key_init, jnp.float32)


def samples(config, seed: int, dictionary, step: int, count: int):
    """`count` samples y = D* x (columns), a deterministic function of (seed, step)."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1000), step)
    support, values = jax.random.split(key)
    x = jax.random.bernoulli(support, config.theta, (config.n, count)) * jax.random.normal(values, (config.n, count))
    return dictionary @ x.astype(jnp.float32)


def l4_loss(d, y):
    """-f(D) on a batch: minus the mean of ||D^T y||_4^4 / 4."""
    return -jnp.mean(jnp.sum((d.T @ y) ** 4, axis=0)) / 4


def recovery_error(d, truth) -> float:
    """min over signed permutations P of ||D P - D*||_F / sqrt(n)."""
    d, truth = np.asarray(d, np.float64), np.asarray(truth, np.float64)
    overlap = d.T @ truth  # overlap[i, j] = <d_i, d*_j>
    rows, cols = scipy.optimize.linear_sum_assignment(-np.abs(overlap))
    aligned = np.zeros_like(d)
    aligned[:, cols] = d[:, rows] * np.sign(overlap[rows, cols])
    return float(np.linalg.norm(aligned - truth) / np.sqrt(d.shape[0]))


def msp(d0, y, iterations: int):
    """Zhai et al. 2020's l4 matching-stretching-projection: D <- polar(Y (D^T Y)^3)."""
    step = lambda _, d: mo.linalg.polar(y @ ((d.T @ y) ** 3).T)
    return jax.lax.fori_loop(0, iterations, step, d0)


def optimizer(config) -> optax.GradientTransformation:
    """Online FW: gamma_t = (t + 1)^-step_exponent, averaging rho_t = (t + 1)^-averaging_exponent."""
    step = lambda t: (t + 1.0) ** -config.step_exponent
    momentum = lambda t: 1.0 - (t + 1.0) ** -config.averaging_exponent
    return mo.frank_wolfe(step, BALL, momentum=momentum)


def rsgd(learning_rate: float, n: int) -> optax.GradientTransformation:
    """The baseline: online Riemannian SGD on O(n), x+ = R_x(-eta_t grad), eta_t = lr / sqrt(t + 1)."""
    return mo.riemannian_sgd(lambda t: learning_rate / jnp.sqrt(t + 1.0), mo.manifolds.OrthogonalGroup(n))


def fw_gap(d, y):
    """Frank-Wolfe gap of max f over the ball at D: max_S <G, S - D> = ||G||_* - <G, D>, G = grad f(D)
    (the stationarity measure Xue & Lau's O(ln t / t^(1/4)) theorem bounds)."""
    g = -jax.grad(l4_loss)(d, y)
    return jnp.sum(jnp.linalg.svd(g, compute_uv=False)) - jnp.sum(g * d)


@functools.lru_cache(maxsize=8)
def _online(config_json: str, arm: str):
    """The online run of `arm` compiled once (for every seed and learning rate): it maps
    (D_0, D*, seed, lr) to the iterates at every eval_every steps."""
    config = ml_collections.ConfigDict(json.loads(config_json))
    every = config.eval_every

    def run(d0, truth, seed, learning_rate):
        opt = optimizer(config) if arm == "online_fw" else rsgd(learning_rate, config.n)

        def step(carry, t):
            d, state = carry
            updates, state = opt.update(jax.grad(l4_loss)(d, samples(config, seed, truth, t, config.batch_size)), state, d)
            return (optax.apply_updates(d, updates), state), None

        def chunk(carry, k):
            carry, _ = jax.lax.scan(step, carry, k * every + jnp.arange(every))
            return carry, carry[0]

        return jax.lax.scan(chunk, (d0, opt.init(d0)), jnp.arange(config.num_steps // every))[1]

    d0, _ = ground_truth(config.n, 0)
    return jax.jit(run).lower(d0, d0, 0, 1.0).compile()


@jax.jit
def _gaps(ds, probe):
    return jax.vmap(fw_gap, (0, None))(ds, probe)


def timed(compiled, *args):
    """(result, seconds) of one call of a compiled function."""
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - start


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y on log x over the last three quarters of x."""
    x, y = np.asarray(x, np.float64), np.maximum(np.asarray(y, np.float64), 1e-12)
    tail = x >= x[-1] / 4
    return float(np.polyfit(np.log(x[tail]), np.log(y[tail]), 1)[0])


def run_one(config, arm: str, settings: dict, seed: int, rundir: str) -> dict:
    """One arm on one seed (= one D*). Selection: recovery error; report: recovery error, FW gap on
    held-out samples, their log-log slopes over t, seconds per sample (compiled, no evaluation)."""
    seen = config.num_steps * config.batch_size
    if arm == "msp":
        truth, d0 = ground_truth(config.n, seed)
        stream = jax.vmap(lambda t: samples(config, seed, truth, t, config.batch_size))(jnp.arange(config.num_steps))
        everything = jnp.moveaxis(stream, 0, 1).reshape(config.n, -1)
        compiled = jax.jit(msp, static_argnums=2).lower(d0, everything, config.msp_iterations).compile()
        d, seconds = timed(compiled, d0, everything)
        ds = d[None]
    else:
        truth, d0 = ground_truth(config.n, seed)
        ds, seconds = timed(_online(config.to_json(), arm), d0, truth, seed, settings.get("learning_rate", 1.0))
    probe = samples(config, seed + 7919, truth, 0, 4096)  # held-out samples for the gap
    gaps = np.asarray(_gaps(ds, probe), np.float64)
    errors = np.array([recovery_error(d, truth) for d in ds])
    t = config.batch_size * config.eval_every * np.arange(1, len(ds) + 1)
    os.makedirs(rundir, exist_ok=True)
    with open(os.path.join(rundir, "curve.json"), "w") as f:
        json.dump({"samples": t.tolist(), "fw_gap": gaps.tolist(), "recovery_error": errors.tolist()}, f)
    report = {"recovery_error": errors[-1], "fw_gap": gaps[-1], "seconds_per_sample": seconds / seen,
              "feasibility": max(0.0, float(np.linalg.norm(np.asarray(ds[-1], np.float64), 2)) - 1.0)}
    if len(ds) > 1:
        report.update(error_loglog_slope=loglog_slope(t, errors), gap_loglog_slope=loglog_slope(t, gaps))
    return {"selection": {"recovery_error": errors[-1]}, "report": report}


def arms(config) -> dict:
    """Online FW at the paper's schedules (nothing tuned), RSGD with its rate tuned, batch MSP."""
    return {"online_fw": protocol.Arm(), "rsgd": protocol.Arm(grid={"learning_rate": list(config.rsgd_learning_rates)}),
            "msp": protocol.Arm()}


def run(config, workdir: str) -> dict:
    validate(config)
    results = protocol.compare(config, arms(config), lambda *a: run_one(config, *a), select_on="recovery_error",
                               minimize=True, workdir=workdir)
    for row in results["arms"].values():  # MSP has no curve over t: its slopes are not defined
        for key in ("error_loglog_slope", "gap_loglog_slope"):
            row["metrics"].setdefault(key, {"mean": float("nan"), "std": float("nan"), "ci95": [float("nan")] * 2,
                                            "values": []})
    protocol.write(workdir, results, title=f"Online orthogonal dictionary learning, n = {config.n}, "
                   f"{config.num_steps * config.batch_size} samples per seed (theorem: FW gap O(ln t / t^(1/4)))")
    plot_gap(workdir, results, config)
    return {f"{arm}/{m}": s["mean"] for arm, row in results["arms"].items() for m, s in row["metrics"].items()}


def plot_gap(workdir, results, config) -> None:
    """fw_gap.png: the FW gap over samples seen (each report seed) of the online arms, log-log,
    beside the theorem's ln t / t^(1/4) scaled to the first point."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    root = os.path.join(workdir, "protocol", results["config_hash"])
    for i, arm in enumerate(("online_fw", "rsgd")):
        key = protocol.settings_key(results["arms"][arm]["chosen"])
        for j, seed in enumerate(config.seeds):
            with open(os.path.join(root, arm, key, f"seed{seed}", "curve.json")) as f:
                curve = json.load(f)
            label = arm if j == 0 else None
            axes[0].loglog(curve["samples"], curve["fw_gap"], color=f"C{i}", alpha=0.6, label=label)
            axes[1].loglog(curve["samples"], curve["recovery_error"], color=f"C{i}", alpha=0.6, label=label)
            if i == 0 and j == 0:
                t = np.asarray(curve["samples"], np.float64)
                bound = np.log(t) / t**0.25
                axes[0].loglog(t, bound * curve["fw_gap"][0] / bound[0], "k--", label="ln t / t^(1/4) (theorem)")
    axes[0].set(xlabel="samples seen t", ylabel="FW gap (held-out samples)")
    axes[1].set(xlabel="samples seen t", ylabel="recovery error")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "fw_gap.png"), dpi=100)
    plt.close(fig)

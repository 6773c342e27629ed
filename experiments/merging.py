"""Model merging with irrelevant models in the pool: does FW-Merging stay flat where task
arithmetic collapses (Chen et al. 2025)?

Data: scikit-learn's digits (standardized 8x8 images). A small MLP (body 64 -> hidden -> hidden,
gelu, and a 10-way head) is pretrained broadly, on the plain digits plus a fraction `pretrain_mix`
(10%) seen through every task's transform, as a foundation model has seen some of every task (with
plain digits only it is confidently wrong on the targets, see the results note). Its head is then
frozen and the body fine-tuned into one expert per task, each task a transform of the images with the
same labels.
Target tasks: rotate90, flip, invert, permute (a fixed pixel permutation). Irrelevant models,
appended to the 4 target experts to make pools of 4, 8, 16: experts of other tasks (rotate180,
flip_ud, transpose, noise, rotate270, shift) and models fitted to shuffled labels, alternating.

Merging acts on the body only (the head stays the pretrained one), with the mo.merging methods:
task arithmetic, TIES, DARE (then task arithmetic), layer-wise AdaMerging on the whole pool,
FW-Merging hard (proxy: 100 labelled samples per target task) and soft (FW picks one candidate
per target task, AdaMerging on those). AdaMerging and FW-soft minimize the prediction entropy on
the unlabelled test inputs of the target tasks. Reported: average test accuracy over the 4 target
tasks per method and pool size, mean and std over seeds.

Each seed's pretrained body and pool are saved as orbax checkpoints and merged from them one
candidate at a time (`mo.merging.CheckpointPool`); a rerun reuses finished seeds (their
metrics.jsonl) and saved pools.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
from experiments.harness.plots import plt
from experiments.harness.progress import Progress
from experiments.quickstart import load_data

TARGETS = ("rotate90", "flip", "invert", "permute")
OTHER_TASKS = ("rotate180", "flip_ud", "transpose", "noise", "rotate270", "shift")
METHODS = ("pretrained", "task_arithmetic", "ties", "dare", "adamerging", "fw_hard", "fw_soft")
MAX_POOL = len(TARGETS) + 2 * len(OTHER_TASKS)
PLOT = "accuracy_vs_pool_size.png"


def validate(config) -> None:
    """ValueError naming the key of the first bad merging value."""
    checks.check_common(config)
    for key in ("num_seeds", "hidden", "pretrain_steps", "finetune_steps", "proxy_per_task", "fw_iterations",
                "soft_steps"):
        checks.check_int(config, key)
    sizes = tuple(config.pool_sizes)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or not len(TARGETS) <= s <= MAX_POOL
                        for s in sizes):
        raise ValueError(f"config.pool_sizes: expected ints in [{len(TARGETS)}, {MAX_POOL}], got {sizes!r}")
    if not config.methods or any(m not in METHODS for m in config.methods):
        raise ValueError(f"config.methods: expected some of {list(METHODS)}, got {tuple(config.methods)!r}")
    checks.check_option(config, "dtype", ("float32", "float64"))
    for key in ("learning_rate", "soft_learning_rate", "fw_step_size", "fw_scaling"):
        checks.check_positive_float(config, key)
    if not 0.0 <= config.pretrain_mix <= 1.0:
        raise ValueError(f"config.pretrain_mix: expected a number in [0, 1], got {config.pretrain_mix!r}")
    for key in ("ties_density", "test_fraction"):
        if not 0.0 < config[key] < 1.0:
            raise ValueError(f"config.{key}: expected a number in (0, 1), got {config[key]!r}")
    if not 0.0 <= config.dare_drop_rate < 1.0:
        raise ValueError(f"config.dare_drop_rate: expected a number in [0, 1), got {config.dare_drop_rate!r}")


# ----- tasks -------------------------------------------------------------------------------------
def transform(task: str, x: np.ndarray, seed: int) -> np.ndarray:
    """The images x (n, 64) as seen by `task` (a fixed function of the task and the seed)."""
    images = x.reshape(-1, 8, 8)
    rng = np.random.default_rng([seed, sum(map(ord, task))])
    out = {
        "plain": lambda: images,
        "rotate90": lambda: np.rot90(images, 1, axes=(1, 2)),
        "rotate180": lambda: np.rot90(images, 2, axes=(1, 2)),
        "rotate270": lambda: np.rot90(images, 3, axes=(1, 2)),
        "flip": lambda: images[:, :, ::-1],
        "flip_ud": lambda: images[:, ::-1, :],
        "transpose": lambda: np.swapaxes(images, 1, 2),
        "invert": lambda: -images,
        "permute": lambda: images.reshape(-1, 64)[:, rng.permutation(64)],
        "noise": lambda: images + rng.standard_normal(images.shape).astype(x.dtype),
        "shift": lambda: np.roll(images, 2, axis=2),
    }[task]()
    return np.ascontiguousarray(out.reshape(-1, 64)).astype(x.dtype)


def pool_tasks() -> list[tuple[str, bool]]:
    """(task, shuffled labels) of the pool in order: the targets, then other tasks and
    shuffled-label models alternating."""
    irrelevant = [item for task in OTHER_TASKS for item in ((task, False), ("plain", True))]
    return [(t, False) for t in TARGETS] + irrelevant


# ----- model -------------------------------------------------------------------------------------
def init_params(key, hidden: int, dtype):
    """Body {"layer1", "layer2"} and head, LeCun-normal kernels and zero biases."""
    sizes = {"layer1": (64, hidden), "layer2": (hidden, hidden), "head": (hidden, 10)}
    keys = jax.random.split(key, len(sizes))
    params = {
        name: {"kernel": jax.random.normal(k, shape, dtype) / np.sqrt(shape[0]), "bias": jnp.zeros(shape[1], dtype)}
        for k, (name, shape) in zip(keys, sizes.items())
    }
    head = params.pop("head")
    return params, head


def logits(body, head, x):
    h = jax.nn.gelu(x @ body["layer1"]["kernel"] + body["layer1"]["bias"])
    h = jax.nn.gelu(h @ body["layer2"]["kernel"] + body["layer2"]["bias"])
    return h @ head["kernel"] + head["bias"]


def cross_entropy(body, data):
    """Mean cross-entropy of the model on data {"x", "y", "head"} (the head rides with the data)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits(body, data["head"], data["x"]), data["y"]).mean()


def entropy_objective(body, data):
    """Summed prediction entropy over the target tasks' unlabelled inputs data["x"] (tasks, n, 64)."""
    return jnp.sum(jax.vmap(lambda x: mo.merging.prediction_entropy(logits(body, data["head"], x)))(data["x"]))


def accuracies(body, head, x, y):
    """Accuracy on each task: x (tasks, n, 64), y (n,)."""
    return jax.vmap(lambda xt: jnp.mean(jnp.argmax(logits(body, head, xt), -1) == y))(x)


def fit(loss, params, steps: int, learning_rate: float):
    """Full-batch Adam on loss(params) for `steps` steps (one lax.scan)."""
    optimizer = optax.adam(learning_rate)

    def step(carry, _):
        params, state = carry
        grad = jax.grad(loss)(params)
        updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)[0][0]


@functools.partial(jax.jit, static_argnames=("steps",))
def pretrain(body, head, x, y, steps, learning_rate):
    both = fit(lambda p: cross_entropy(p["body"], {"x": x, "y": y, "head": p["head"]}),
               {"body": body, "head": head}, steps, learning_rate)
    return both["body"], both["head"]


@functools.partial(jax.jit, static_argnames=("steps",))
def finetune_pool(body, head, xs, ys, steps, learning_rate):
    """Fine-tune the body on each (x, y) of the stacked task data, head frozen (vmapped)."""
    return jax.vmap(lambda x, y: fit(lambda b: cross_entropy(b, {"x": x, "y": y, "head": head}), body, steps,
                                     learning_rate))(xs, ys)


def pretraining_set(train, mix: float, seed: int):
    """The plain training digits plus a fraction `mix` of them seen through each task's transform
    (a broad pretraining, as a foundation model has seen some of every task)."""
    count = int(mix * len(train["y"]))
    pick = np.random.default_rng(seed).permutation(len(train["y"]))[:count]
    tasks = TARGETS + OTHER_TASKS
    x = np.concatenate([train["x"]] + [transform(t, train["x"][pick], seed) for t in tasks])
    return x, np.concatenate([train["y"]] + [train["y"][pick]] * len(tasks))


# ----- one seed ----------------------------------------------------------------------------------
def build_seed(config, seed: int, workdir: str):
    """(pretrained body, head, CheckpointPool of the expert bodies, proxy sets, test set); the
    bodies are trained once and saved as orbax checkpoints, restored on a rerun."""
    data_config = config.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.seed = seed
    train, test = load_data(data_config)
    dtype = jnp.dtype(config.dtype)
    body, head = init_params(jax.random.key(seed), config.hidden, dtype)
    tasks = pool_tasks()[: max(config.pool_sizes)]
    xs = np.stack([transform(t, train["x"], seed) for t, _ in tasks])
    rng = np.random.default_rng(seed)
    ys = np.stack([rng.permutation(train["y"]) if shuffled else train["y"] for _, shuffled in tasks])
    directory = os.path.join(workdir, "pool")
    paths = [os.path.join(directory, f"candidate_{i:04d}") for i in range(len(tasks))]
    base_path = os.path.join(workdir, "pretrained")
    if os.path.isdir(base_path) and all(os.path.isdir(p) for p in paths):
        with ocp.StandardCheckpointer() as checkpointer:
            saved = checkpointer.restore(base_path, {"body": body, "head": head})
        body, head = saved["body"], saved["head"]
        pool = mo.merging.CheckpointPool(paths, like=body)
    else:
        x, y = pretraining_set(train, config.pretrain_mix, seed)
        body, head = pretrain(body, head, x, y, config.pretrain_steps, config.learning_rate)
        experts = jax.device_get(finetune_pool(body, head, xs, ys, config.finetune_steps, config.learning_rate))
        candidates = [jax.tree.map(lambda a, i=i: a[i], experts) for i in range(len(tasks))]
        pool = mo.merging.save_pool(directory, candidates)
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(base_path, {"body": body, "head": head}, force=True)
    proxy = [{"x": xs[k][: config.proxy_per_task], "y": train["y"][: config.proxy_per_task], "head": head}
             for k in range(len(TARGETS))]
    test_x = np.stack([transform(t, test["x"], seed) for t in TARGETS])
    return body, head, pool, proxy, {"x": test_x, "y": test["y"]}


def merge(method: str, config, body, pool, proxy, unlabelled, key):
    """The merged body of `method` over `pool` (a sequence of bodies)."""
    if method == "pretrained":
        return body
    if method == "task_arithmetic":
        return mo.merging.task_arithmetic(body, pool, config.ta_scaling)
    if method == "ties":
        return mo.merging.ties(body, pool, config.ties_density, config.ties_scaling)
    if method == "dare":
        return mo.merging.dare(body, pool, key, config.dare_drop_rate, config.ta_scaling)
    soft = dict(steps=config.soft_steps, learning_rate=config.soft_learning_rate, init=config.soft_init)
    if method == "adamerging":
        return mo.merging.adamerging(body, pool, entropy_objective, unlabelled, **soft).params
    if method == "fw_hard":
        return mo.merging.fw_merge(body, pool, cross_entropy, proxy, iterations=config.fw_iterations,
                                   init_scaling=config.fw_init_scaling, step_size=config.fw_step_size,
                                   scaling=config.fw_scaling).params
    return mo.merging.fw_merge(body, pool, cross_entropy, proxy, mode="soft", soft_objective=entropy_objective,
                               soft_data=unlabelled, soft_steps=soft["steps"],
                               soft_learning_rate=soft["learning_rate"], soft_init=soft["init"]).params


def run_seed(config, seed: int, workdir: str, progress: Progress) -> dict[int, dict[str, float]]:
    """{pool size: {method: average target accuracy}} for one seed, reusing a finished run."""
    logdir = os.path.join(workdir, f"seed_{seed}")
    history = harness.read_history(logdir)
    done = {r["step"]: {m: r[f"accuracy/{m}"] for m in config.methods} for r in history
            if all(f"accuracy/{m}" in r for m in config.methods)}
    if set(config.pool_sizes) <= set(done):
        progress.update(progress.step + len(config.pool_sizes))
        return {n: done[n] for n in config.pool_sizes}
    body, head, pool, proxy, test = build_seed(config, seed, logdir)
    unlabelled = {"x": test["x"], "head": head}
    evaluate = jax.jit(lambda b: accuracies(b, head, test["x"], test["y"]))
    writer = harness.MetricWriter(logdir)
    results = {}
    try:
        for n in config.pool_sizes:
            candidates = mo.merging.Subset(pool, range(n))
            results[n] = {}
            for method in config.methods:
                merged = merge(method, config, body, candidates, proxy, unlabelled, jax.random.key(seed))
                results[n][method] = float(jnp.mean(evaluate(merged)))
            writer.write(n, {f"accuracy/{m}": a for m, a in results[n].items()})
            progress.update(progress.step + 1, {"fw_soft": results[n].get("fw_soft", 0.0)})
    finally:
        writer.close()
    return results


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    seeds = [config.seed + s for s in range(config.num_seeds)]
    progress = Progress("merging", 0, len(seeds) * len(config.pool_sizes))
    try:
        per_seed = {seed: run_seed(config, seed, workdir, progress) for seed in seeds}
    finally:
        progress.close()
    summary = {}
    for n in config.pool_sizes:
        for method in config.methods:
            values = np.array([per_seed[s][n][method] for s in seeds])
            summary[f"{method}/pool_{n}/accuracy"] = float(values.mean())
            summary[f"{method}/pool_{n}/accuracy_std"] = float(values.std())
    harness.write_summary(workdir, summary)
    write_results(workdir, config, summary, per_seed)
    plot(workdir, config, summary)
    return summary


def table(config, summary) -> str:
    """Markdown: one row per method, average target accuracy (%) mean +- std per pool size."""
    sizes = list(config.pool_sizes)
    lines = ["| method | " + " | ".join(f"{n} candidates" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for method in config.methods:
        cells = [f"{100 * summary[f'{method}/pool_{n}/accuracy']:.1f} +- "
                 f"{100 * summary[f'{method}/pool_{n}/accuracy_std']:.1f}" for n in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(config, summary) -> str:
    """Whether the run shows the paper's irrelevant-model effect: FW-soft within 2 points from the
    smallest to the largest pool while task arithmetic loses at least 10 (paper: 74.1 -> 74.2
    and 70.3 -> 21.2 from 4 to 20 candidates)."""
    small, large = min(config.pool_sizes), max(config.pool_sizes)
    if not {"fw_soft", "task_arithmetic"} <= set(config.methods) or small == large:
        return "The claim needs fw_soft, task_arithmetic and two pool sizes; not checked."
    change = {m: 100 * (summary[f"{m}/pool_{large}/accuracy"] - summary[f"{m}/pool_{small}/accuracy"])
              for m in ("fw_soft", "task_arithmetic")}
    agrees = abs(change["fw_soft"]) <= 2 and change["task_arithmetic"] <= -10
    return (f"From {small} to {large} candidates FW-soft changes by {change['fw_soft']:+.1f} points and task "
            f"arithmetic by {change['task_arithmetic']:+.1f} (paper, 4 to 20: +0.1 and -49.1): "
            f"{'agrees with' if agrees else 'does not show'} the paper's claim.")


def write_results(workdir: str, config, summary, per_seed) -> None:
    text = (f"Average test accuracy over the 4 target tasks, {config.num_seeds} seed(s)\n\n"
            f"{table(config, summary)}\n\n{verdict(config, summary)}")
    per_seed = {str(s): {str(n): r for n, r in v.items()} for s, v in per_seed.items()}
    harness.write_results(workdir, text, {"per_seed": per_seed, "summary": summary})


def plot(workdir: str, config, summary) -> str:
    """Average target accuracy against the pool size, one line per method (error bars: std)."""
    sizes = list(config.pool_sizes)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in config.methods:
        mean = [summary[f"{method}/pool_{n}/accuracy"] for n in sizes]
        std = [summary[f"{method}/pool_{n}/accuracy_std"] for n in sizes]
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xlabel("candidates in the pool (4 relevant)")
    ax.set_ylabel("average target accuracy")
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(workdir, PLOT)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

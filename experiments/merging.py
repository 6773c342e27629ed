"""Model merging with hard distractors in the pool: does FW-Merging (Chen et al. 2025) degrade
less than the best tuned baseline as irrelevant candidates grow? Run on the fair-comparison
protocol (experiments/harness/protocol.py).

Data: scikit-learn's digits (standardized 8x8 images), split into train, a labelled *proxy*
(`proxy_per_task` images held out of all training, seen through each target transform) and test.
A small MLP (body 64 -> hidden -> hidden, gelu, a 10-way head) is pretrained broadly (the plain
digits plus a fraction `pretrain_mix` seen through every task's transform); its head is frozen
and the body fine-tuned into each candidate. Target tasks: rotate90, flip, invert, permute.

The pool is the 4 target experts followed by 28 candidates in a fixed round-robin over kinds
(`DISTRACTORS`), so every pool of 4, 8, 16, 32 holds a mix:
  near     fine-tuned on a mixture of a target and another transform, or on a neighbouring
           transform (target then a 1-pixel shift, half-contrast inversion, a permutation
           sharing 3/4 of the target's positions);
  extra    a second expert of a target task (bootstrap resample of the data): relevant;
  other    experts of other transforms (rotate180, transpose, noise, ...);
  labels   shuffled labels, or labels shifted by one on a target's inputs.
Every non-expert task vector is rescaled, leaf by leaf, to the experts' mean norm, so a norm
test cannot reject it.

Arms are `<method>@<pool size>`. Each tuned method's grid (`config.grids`) is searched per pool
size on the *selection* split: the mean accuracy on the labelled proxy of the 4 target tasks,
the same proxy FW-Merging uses; a choice at a grid edge extends the grid. FW-hard and FW-soft run
at the official code's settings (`fw_*`, `soft_*`; configs/merging.py names the sources), FW-hard
for `fw_iterations` and FW-soft for `soft_iterations` Frank-Wolfe iterations.
AdaMerging and FW-soft minimize the prediction entropy on the unlabelled test inputs (as
AdaMerging does). *Report*: test accuracy averaged
over the 4 targets (FusionBench's average) and per target, on paired seeds (seed s: the same
data split, pretraining and pool for every arm). The claims in `config.claims` are judged by the
protocol; FW diagnostics (per iteration: the FW gap, the proxy loss and the candidates picked)
go to results.json under "fw".

Every cache lives under workdir/protocol/<config hash>/ (the protocol's run results and this
module's pools), so a changed hyperparameter never reuses numbers or pools.
"""
from __future__ import annotations

import collections
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manifold_opt as mo
from experiments.harness import config as checks
from experiments.harness import protocol
from experiments.harness.plots import plt
from experiments.quickstart import load_data

TARGETS = ("rotate90", "flip", "invert", "permute")
PRETRAIN_TASKS = TARGETS + ("rotate180", "flip_ud", "transpose", "noise", "rotate270", "shift")
# (kind, name, inputs, labels): inputs "a" or "a|b" (half through each), transforms composed with "+";
# labels "true", "shuffled" or "shifted" (y + 1 mod 10). Round-robin order over the kinds.
DISTRACTORS = (
    ("near", "mix:rotate90|rotate180", "rotate90|rotate180", "true"),
    ("extra", "extra:flip", "flip", "true"),
    ("other", "rotate180", "rotate180", "true"),
    ("labels", "shuffled:plain", "plain", "shuffled"),
    ("near", "rotate90+shift1", "rotate90+shift1", "true"),
    ("extra", "extra:invert", "invert", "true"),
    ("other", "transpose", "transpose", "true"),
    ("labels", "shifted:invert", "invert", "shifted"),
    ("near", "mix:flip|flip_ud", "flip|flip_ud", "true"),
    ("extra", "extra:permute", "permute", "true"),
    ("other", "noise", "noise", "true"),
    ("labels", "shuffled:rotate90", "rotate90", "shuffled"),
    ("near", "invert+half", "invert+half", "true"),
    ("extra", "extra:rotate90", "rotate90", "true"),
    ("other", "flip_ud", "flip_ud", "true"),
    ("labels", "shifted:permute", "permute", "shifted"),
    ("near", "mix:invert|noise", "invert|noise", "true"),
    ("other", "rotate270", "rotate270", "true"),
    ("labels", "shuffled:plain2", "plain", "shuffled"),
    ("near", "flip+shift1", "flip+shift1", "true"),
    ("other", "shift", "shift", "true"),
    ("labels", "shuffled:flip", "flip", "shuffled"),
    ("near", "mix:permute|plain", "permute|plain", "true"),
    ("other", "plain", "plain", "true"),
    ("near", "permute_near", "permute_near", "true"),
    ("other", "rotate180+invert", "rotate180+invert", "true"),
    ("other", "transpose+shift", "transpose+shift", "true"),
    ("other", "flip_ud+invert", "flip_ud+invert", "true"),
)
CANDIDATES = tuple(("expert", t, t, "true") for t in TARGETS) + DISTRACTORS
MAX_POOL = len(CANDIDATES)
# Methods; the tuned ones take their grid from config.grids, the others run as they are.
TUNED = ("ta", "ties", "dare", "breadcrumbs", "della", "adamerging", "tsv", "iso_c", "iso_cts", "regmean")
FIXED = ("pretrained", "model_stock", "karcher", "fw_hard", "fw_soft")
METHODS = FIXED[:1] + TUNED + FIXED[1:]
FW = ("fw_hard", "fw_soft")
BOUNDS = {"density": (0.0, 1.0), "drop_rate": (0.0, 0.99), "alpha": (0.0, 1.0)}  # domains grid extensions respect
PLOT = "accuracy_vs_pool_size.png"


def validate(config) -> None:
    """ValueError naming the key of the first bad merging value."""
    checks.check_common(config)
    for key in ("hidden", "pretrain_steps", "finetune_steps", "proxy_per_task", "gram_samples", "fw_iterations",
                "soft_iterations", "soft_steps"):
        checks.check_int(config, key)
    checks.check_option(config, "fw_granularity", ("task", "layer"))
    checks.check_option(config, "fw_relevance", ("task_vector", "checkpoint"))
    sizes = tuple(config.pool_sizes)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or not len(TARGETS) <= s <= MAX_POOL
                        for s in sizes) or len(set(sizes)) != len(sizes):
        raise ValueError(f"config.pool_sizes: expected distinct ints in [{len(TARGETS)}, {MAX_POOL}], got {sizes!r}")
    if not config.methods or any(m not in METHODS for m in config.methods):
        raise ValueError(f"config.methods: expected some of {list(METHODS)}, got {tuple(config.methods)!r}")
    for method in config.methods:
        if method in TUNED and method not in config.grids:
            raise ValueError(f"config.grids: no grid for the tuned method {method!r}")
    checks.check_option(config, "dtype", ("float32", "float64"))
    for key in ("learning_rate", "soft_learning_rate", "fw_step_size", "fw_scaling"):
        checks.check_positive_float(config, key)
    if not 0.0 <= config.soft_later_init < 1.0:
        raise ValueError(f"config.soft_later_init: expected a number in [0, 1), got {config.soft_later_init!r}")
    if not 0.0 <= config.pretrain_mix <= 1.0:
        raise ValueError(f"config.pretrain_mix: expected a number in [0, 1], got {config.pretrain_mix!r}")
    if not 0.0 < config.test_fraction < 1.0:
        raise ValueError(f"config.test_fraction: expected a number in (0, 1), got {config.test_fraction!r}")


# ----- tasks -------------------------------------------------------------------------------------
def _permutation(seed: int, near: bool) -> np.ndarray:
    """The target's fixed pixel permutation; `near`: the same with a quarter of its positions shuffled."""
    rng = np.random.default_rng([seed, 7])
    perm = rng.permutation(64)
    if near:
        moved = rng.choice(64, 16, replace=False)
        perm[moved] = perm[rng.permutation(moved)]
    return perm


def _transform_one(task: str, images: np.ndarray, seed: int) -> np.ndarray:
    flat = lambda a: a.reshape(-1, 64)  # noqa: E731
    return {
        "plain": lambda: images,
        "rotate90": lambda: np.rot90(images, 1, axes=(1, 2)),
        "rotate180": lambda: np.rot90(images, 2, axes=(1, 2)),
        "rotate270": lambda: np.rot90(images, 3, axes=(1, 2)),
        "flip": lambda: images[:, :, ::-1],
        "flip_ud": lambda: images[:, ::-1, :],
        "transpose": lambda: np.swapaxes(images, 1, 2),
        "invert": lambda: -images,
        "half": lambda: 0.5 * images,
        "permute": lambda: flat(images)[:, _permutation(seed, False)].reshape(images.shape),
        "permute_near": lambda: flat(images)[:, _permutation(seed, True)].reshape(images.shape),
        "noise": lambda: images + np.random.default_rng([seed, 11]).standard_normal(images.shape).astype(images.dtype),
        "shift": lambda: np.roll(images, 2, axis=2),
        "shift1": lambda: np.roll(images, 1, axis=2),
    }[task]()


def transform(task: str, x: np.ndarray, seed: int) -> np.ndarray:
    """The images x (n, 64) as seen by `task`, transforms composed left to right with '+'."""
    images = x.reshape(-1, 8, 8)
    for part in task.split("+"):
        images = _transform_one(part, images, seed)
    return np.ascontiguousarray(images.reshape(-1, 64)).astype(x.dtype)


def candidate_data(spec, x, y, seed: int, index: int):
    """Training inputs and labels (same shapes as x, y) of pool candidate `index` with `spec`."""
    kind, _, inputs, labels = spec
    rng = np.random.default_rng([seed, 100 + index])
    if kind == "extra":
        pick = rng.integers(0, len(y), len(y))  # bootstrap resample: a second expert of the task
        x, y = x[pick], y[pick]
    parts = inputs.split("|")
    if len(parts) == 2:
        half = len(y) // 2
        xs = np.concatenate([transform(parts[0], x[:half], seed), transform(parts[1], x[half:], seed)])
    else:
        xs = transform(inputs, x, seed)
    ys = {"true": y, "shuffled": rng.permutation(y), "shifted": (y + 1) % 10}[labels]
    return xs, ys.astype(np.int32)


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


def features(body, x):
    """(input of layer1, input of layer2, output of the body)."""
    h1 = jax.nn.gelu(x @ body["layer1"]["kernel"] + body["layer1"]["bias"])
    return x, h1, jax.nn.gelu(h1 @ body["layer2"]["kernel"] + body["layer2"]["bias"])


def logits(body, head, x):
    return features(body, x)[2] @ head["kernel"] + head["bias"]


def cross_entropy(body, data):
    """Mean cross-entropy of the model on data {"x", "y", "head"} (the head rides with the data)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits(body, data["head"], data["x"]), data["y"]).mean()


def entropy_objective(body, data):
    """Summed prediction entropy over the target tasks' unlabelled inputs data["x"] (tasks, n, 64)."""
    return jnp.sum(jax.vmap(lambda x: mo.merging.prediction_entropy(logits(body, data["head"], x)))(data["x"]))


@jax.jit
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


@jax.jit
def input_grams(body, x):
    """RegMean's per-kernel input Gram matrices X^T X / n (None at the biases)."""
    inputs = features(body, x)[:2]
    return {name: {"kernel": a.T @ a / a.shape[0], "bias": None} for name, a in zip(("layer1", "layer2"), inputs)}


def rescale_to_experts(pretrained, stacked, num_experts: int):
    """Each non-expert task vector rescaled, leaf by leaf, to the experts' mean leaf norm."""
    def leaf(p, s):
        tau = s - p
        norms = np.linalg.norm(tau.reshape(len(tau), -1), axis=1)
        target = norms[:num_experts].mean()
        factor = np.where(np.arange(len(tau)) < num_experts, 1.0, target / np.maximum(norms, 1e-12))
        return (p + factor.reshape((-1,) + (1,) * (tau.ndim - 1)) * tau).astype(s.dtype)

    return jax.tree.map(leaf, pretrained, stacked)


# ----- one seed's pool ---------------------------------------------------------------------------
def splits(config, seed: int):
    """(train, proxy, test): the proxy is held out of pretraining and fine-tuning."""
    data_config = config.copy_and_resolve_references()
    with data_config.unlocked():
        data_config.seed = seed
    train, test = load_data(data_config)
    k = config.proxy_per_task
    proxy = {key: value[-k:] for key, value in train.items()}
    train = {key: value[:-k] for key, value in train.items()}
    return train, proxy, test


def pretraining_set(train, mix: float, seed: int):
    """The plain training digits plus a fraction `mix` of them seen through each task's transform."""
    count = int(mix * len(train["y"]))
    pick = np.random.default_rng(seed).permutation(len(train["y"]))[:count]
    x = np.concatenate([train["x"]] + [transform(t, train["x"][pick], seed) for t in PRETRAIN_TASKS])
    return x, np.concatenate([train["y"]] + [train["y"][pick]] * len(PRETRAIN_TASKS))


def build_pool(config, seed: int, path: str) -> dict:
    """Pretrained body, head, the first max(config.pool_sizes) candidate bodies (stacked) and their
    Gram trees, saved to `path` (an .npz under the config hash) and read back on a rerun."""
    dtype = jnp.dtype(config.dtype)
    size = max(config.pool_sizes)
    body, head = init_params(jax.random.key(seed), config.hidden, dtype)
    if os.path.exists(path):
        with np.load(path) as saved:
            flat = dict(saved)
    else:
        train, _, _ = splits(config, seed)
        x, y = pretraining_set(train, config.pretrain_mix, seed)
        body, head = pretrain(body, head, x, y, config.pretrain_steps, config.learning_rate)
        data = [candidate_data(spec, train["x"], train["y"], seed, i) for i, spec in enumerate(CANDIDATES[:size])]
        xs, ys = np.stack([d[0] for d in data]), np.stack([d[1] for d in data])
        stacked = finetune_pool(body, head, xs, ys, config.finetune_steps, config.learning_rate)
        stacked = rescale_to_experts(jax.device_get(body), jax.device_get(stacked), len(TARGETS))
        grams = jax.vmap(input_grams)(stacked, xs[:, : config.gram_samples])
        tree = {"body": body, "head": head, "pool": stacked, "grams": grams}
        flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + ".tmp.npz", **flat)
        os.replace(path + ".tmp.npz", path)
    like = {"body": body, "head": head, "pool": body, "grams": {n: {"kernel": 0} for n in ("layer1", "layer2")}}
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(like)]
    tree = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), [jnp.asarray(flat[p]) for p in paths])
    pool = [jax.tree.map(lambda a, i=i: a[i], tree["pool"]) for i in range(size)]
    grams = [{n: {"kernel": tree["grams"][n]["kernel"][i], "bias": None} for n in ("layer1", "layer2")}
             for i in range(size)]
    return {"body": tree["body"], "head": tree["head"], "pool": pool, "grams": grams}


# ----- merging -----------------------------------------------------------------------------------
def merge(method: str, settings: dict, config, seed_data: dict, n: int, key):
    """(merged body, FW diagnostics or None) of `method` at `settings` over the first n candidates."""
    body, pool, grams = seed_data["body"], seed_data["pool"][:n], seed_data["grams"][:n]
    m = mo.merging
    soft = dict(steps=config.soft_steps, learning_rate=config.soft_learning_rate)
    if method == "pretrained":
        return body, None
    if method == "ta":
        return m.task_arithmetic(body, pool, settings["scaling"]), None
    if method == "ties":
        return m.ties(body, pool, settings["density"], settings["scaling"]), None
    if method == "dare":
        return m.dare(body, pool, key, settings["drop_rate"], settings["scaling"]), None
    if method == "breadcrumbs":
        return m.breadcrumbs(body, pool, settings["density"], config.breadcrumbs_gamma, settings["scaling"]), None
    if method == "della":
        return m.della(body, pool, key, settings["density"], config.della_epsilon, settings["scaling"]), None
    if method == "adamerging":
        return m.adamerging(body, pool, entropy_objective, seed_data["unlabelled"], init=settings["init"],
                            **soft).params, None
    if method == "tsv":
        return m.tsv_merge(body, pool, settings["scaling"]), None
    if method == "iso_c":
        return m.iso_c(body, pool, settings["scaling"]), None
    if method == "iso_cts":
        return m.iso_cts(body, pool, settings["scaling"]), None
    if method == "regmean":
        return m.regmean(body, pool, grams, settings["alpha"]), None
    if method == "model_stock":
        return m.model_stock(body, pool), None
    if method == "karcher":
        return m.karcher_mean(pool), None
    names = [spec[1] for spec in CANDIDATES]
    proxy = seed_data["proxy"]
    if method == "fw_hard":
        result = m.fw_merge(body, pool, cross_entropy, proxy, granularity=config.fw_granularity,
                            relevance=config.fw_relevance, iterations=config.fw_iterations,
                            init_scaling=config.fw_init_scaling, step_size=config.fw_step_size,
                            scaling=config.fw_scaling)
        layer = config.fw_granularity == "layer"
        picks = result.selected if layer else result.selected[:, :1]  # per leaf, or one candidate per iteration
    else:
        result = m.fw_merge(body, pool, cross_entropy, proxy, mode="soft", relevance=config.fw_relevance,
                            iterations=config.soft_iterations, soft_objective=entropy_objective,
                            soft_data=seed_data["unlabelled"], soft_steps=config.soft_steps,
                            soft_learning_rate=config.soft_learning_rate, soft_init=config.soft_init,
                            soft_later_init=config.soft_later_init)
        picks = result.selected  # one candidate per target task and iteration
    return result.params, {"iterations": len(result.gaps), "gaps": result.gaps.tolist(),
                           "proxy_losses": result.losses.tolist(),
                           "picked": [[names[i] for i in row] for row in picks]}


def is_relevant(name: str) -> bool:
    kind = next(spec[0] for spec in CANDIDATES if spec[1] == name)
    return kind in ("expert", "extra")


class Experiment:
    """run_one for the protocol: builds (or reads) each seed's pool once and merges from it."""

    def __init__(self, config, root: str):
        self.config, self.root, self.seeds = config, root, {}

    def seed_data(self, seed: int) -> dict:
        if seed not in self.seeds:
            data = build_pool(self.config, seed, os.path.join(self.root, "pools", f"seed{seed}.npz"))
            _, proxy, test = splits(self.config, seed)
            head = data["head"]
            data["proxy"] = [{"x": transform(t, proxy["x"], seed), "y": proxy["y"], "head": head} for t in TARGETS]
            data["proxy_x"] = np.stack([d["x"] for d in data["proxy"]])
            data["proxy_y"] = proxy["y"]
            data["test_x"] = np.stack([transform(t, test["x"], seed) for t in TARGETS])
            data["test_y"] = test["y"]
            data["unlabelled"] = {"x": data["test_x"], "head": head}
            self.seeds = {seed: data}  # one seed in memory at a time
        return self.seeds[seed]

    def __call__(self, arm: str, settings: dict, seed: int, rundir: str) -> dict:
        method, n = arm.split("@")
        data = self.seed_data(seed)
        merged, diagnostics = merge(method, settings, self.config, data, int(n), jax.random.key(seed))
        head = data["head"]
        selection = float(jnp.mean(accuracies(merged, head, data["proxy_x"], data["proxy_y"])))
        test = np.asarray(accuracies(merged, head, data["test_x"], data["test_y"]), np.float64)
        report = {"accuracy": float(test.mean()), **{f"accuracy/{t}": float(a) for t, a in zip(TARGETS, test)}}
        if diagnostics is not None:
            report["relevant_picks"] = float(np.mean([is_relevant(p) for row in diagnostics["picked"] for p in row]))
            report["fw_gap"] = float(diagnostics["gaps"][-1])
            os.makedirs(rundir, exist_ok=True)
            with open(os.path.join(rundir, "fw.json"), "w") as f:
                json.dump(diagnostics, f)
        return {"selection": {"accuracy": selection}, "report": report}


def arms(config) -> dict[str, protocol.Arm]:
    out = {}
    for method in config.methods:
        for n in config.pool_sizes:
            if method in TUNED:
                grid = {k: list(v) for k, v in config.grids[method].items()}
                bounds = {k: b for k, b in BOUNDS.items() if k in grid}
                if method == "della":  # MagPrune needs epsilon < density <= 1 - epsilon
                    bounds["density"] = (2 * config.della_epsilon, 1 - config.della_epsilon)
                out[f"{method}@{n}"] = protocol.Arm(grid=grid, bounds=bounds)
            else:
                out[f"{method}@{n}"] = protocol.Arm()
    return out


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    root = os.path.join(workdir, "protocol", protocol.config_hash(config))
    results = protocol.compare(config, arms(config), Experiment(config, root), select_on="accuracy", minimize=False,
                               workdir=workdir)
    results["fw"] = {}
    for arm, found in results["arms"].items():
        if arm.split("@")[0] in FW:
            rundir = os.path.join(root, arm, protocol.settings_key(found["chosen"]))
            results["fw"][arm] = {}
            for seed in found["seeds"]:
                with open(os.path.join(rundir, f"seed{seed}", "fw.json")) as f:
                    results["fw"][arm][str(seed)] = json.load(f)
    results["candidates"] = [{"kind": k, "name": n} for k, n, _, _ in CANDIDATES]
    protocol.write(workdir, results, title="Merging: average target accuracy (report split)",
                   extra_text=tables(config, results))
    plot(workdir, config, results)
    return {f"{arm}/accuracy": a["metrics"]["accuracy"]["mean"] for arm, a in results["arms"].items()}


# ----- tables and plot (generated from the results) ---------------------------------------------
def _cell(summary) -> str:
    lo, hi = summary["ci95"]
    half = (hi - lo) / 2
    return f"{100 * summary['mean']:.1f} ± {100 * half:.1f}" if np.isfinite(half) else f"{100 * summary['mean']:.1f}"


def tables(config, results) -> str:
    """Markdown: average target accuracy (%) per method and pool size; FusionBench-style per-task
    accuracies and their average at the largest pool; FW picks."""
    arms_ = results["arms"]
    sizes = list(config.pool_sizes)
    lines = ["", "#### Average accuracy (%) over the 4 targets against pool size (mean ± 95% half-width)", "",
             "| method | " + " | ".join(f"{n} candidates" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for method in config.methods:
        lines.append(f"| {method} | " + " | ".join(_cell(arms_[f"{method}@{n}"]["metrics"]["accuracy"])
                                                  for n in sizes) + " |")
    large = max(sizes)
    lines += ["", f"#### Per-task accuracy (%) at {large} candidates (FusionBench-style, avg = the average)", "",
              "| method | " + " | ".join(TARGETS) + " | avg |", "|---|" + "---|" * (len(TARGETS) + 1)]
    for method in config.methods:
        metrics = arms_[f"{method}@{large}"]["metrics"]
        cells = [f"{100 * metrics[f'accuracy/{t}']['mean']:.1f}" for t in TARGETS]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {100 * metrics['accuracy']['mean']:.1f} |")
    if results["fw"]:
        lines += ["", "#### FW-Merging diagnostics (per seed: iterations, FW gap first -> last, proxy loss first -> last, "
                  "candidates picked over the iterations with counts: per leaf for a layer-wise LMO)", ""]
        for arm, per_seed in results["fw"].items():
            for seed, d in per_seed.items():
                counts = collections.Counter(p for row in d["picked"] for p in row)
                picked = ", ".join(f"{name} x{count}" for name, count in counts.most_common())
                lines.append(f"- {arm} seed {seed}: {d['iterations']} iterations, gap {d['gaps'][0]:.3g} -> "
                             f"{d['gaps'][-1]:.3g}, loss {d['proxy_losses'][0]:.3g} -> {d['proxy_losses'][-1]:.3g}; "
                             f"picked {picked}")
    return "\n".join(lines) + "\n"


def plot(workdir: str, config, results) -> str:
    """Average target accuracy against the pool size, one line per method (error bars: 95% CI)."""
    sizes = list(config.pool_sizes)
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, method in enumerate(config.methods):
        summaries = [results["arms"][f"{method}@{n}"]["metrics"]["accuracy"] for n in sizes]
        mean = np.array([s["mean"] for s in summaries])
        half = np.array([(s["ci95"][1] - s["ci95"][0]) / 2 for s in summaries])
        style = dict(linewidth=2.5, color="black" if method == "fw_soft" else "red") if method in FW else dict(
            linewidth=1, alpha=0.85, color=colors[i % len(colors)])
        ax.errorbar(sizes, mean, yerr=np.where(np.isfinite(half), half, 0), marker="o", capsize=3, label=method,
                    **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("candidates in the pool (4 target experts + hard distractors)")
    ax.set_ylabel("average target accuracy (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = os.path.join(workdir, PLOT)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

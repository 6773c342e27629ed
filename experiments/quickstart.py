"""Quickstart: Riemannian Adam vs AdamW on a small orthogonally constrained MLP.

The classifier maps an 8x8 digit (64 features) through two hidden layers whose kernels are
constrained, W1 in St(64, hidden) (= O(64) when hidden = 64) and W2 in St(hidden, bottleneck),
i.e. W^T W = I, to a free linear head. `mo.riemannian_adam` keeps the kernels exactly on their
manifolds (retraction inside optax); `optax.adamw` trains the same initialization
unconstrained, and its kernels drift off the manifold (reported as `feasibility`).

The comparison follows the fair-comparison protocol (experiments/harness/protocol.py): each
optimizer is tuned on its own learning-rate grid (`config.learning_rates`, equal sizes) by the
loss on a selection split held out of the training data (`selection_fraction`), and the chosen
rate reruns on `config.seeds` (seed s: the same initialization and batch order for both arms),
scored on the test split: `accuracy`, `loss`, `feasibility`; `config.claims` is judged on them.
"""
from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
from experiments.harness import protocol

OPTIMIZERS = ("riemannian_adam", "adamw")
DTYPES = ("float32", "float64")


class Classifier(nnx.Module):
    """64 -> hidden -> bottleneck -> 10 with gelu; hidden kernels drawn from their manifolds."""

    def __init__(self, manifolds: dict, classes: int, dtype, rngs: nnx.Rngs):
        def on(manifold):
            return lambda key, shape, dtype: manifold.random_point(key, dtype)

        (n, h), (_, b) = manifolds["hidden"].shape, manifolds["bottleneck"].shape
        self.hidden = nnx.Linear(n, h, kernel_init=on(manifolds["hidden"]), param_dtype=dtype, rngs=rngs)
        self.bottleneck = nnx.Linear(h, b, kernel_init=on(manifolds["bottleneck"]), param_dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(b, classes, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.gelu(self.bottleneck(nnx.gelu(self.hidden(x)))))


def layer_manifolds(config) -> dict:
    """The manifold of each constrained kernel, by layer name."""
    hidden = mo.manifolds.OrthogonalGroup(64) if config.hidden == 64 else mo.manifolds.Stiefel(64, config.hidden)
    return {"hidden": hidden, "bottleneck": mo.manifolds.Stiefel(config.hidden, config.bottleneck)}


def validate(config) -> None:
    """ValueError naming the key of the first bad quickstart value."""
    checks.check_common(config)
    harness.check_parallel(config)
    for name in config.optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"config.optimizers: unknown optimizer {name!r}; expected some of {list(OPTIMIZERS)}")
    if not config.optimizers:
        raise ValueError("config.optimizers: expected at least one optimizer")
    checks.check_option(config, "dtype", DTYPES)
    checks.check_positive_float(config, "learning_rate")
    for name in config.optimizers:
        rates = tuple(config.learning_rates.get(name, ()))
        if not rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0 for r in rates):
            raise ValueError(f"config.learning_rates.{name}: expected one or more positive numbers, got {rates!r}")
    checks.check_int(config, "eval_every")
    if isinstance(config.weight_decay, bool) or not config.weight_decay >= 0.0:
        raise ValueError(f"config.weight_decay: expected a nonnegative number, got {config.weight_decay!r}")
    checks.check_int(config, "hidden")
    checks.check_int(config, "bottleneck")
    if not 64 >= config.hidden >= config.bottleneck:
        raise ValueError(
            f"config.hidden, config.bottleneck: Stiefel kernels need 64 >= hidden >= bottleneck, "
            f"got hidden={config.hidden}, bottleneck={config.bottleneck}"
        )
    for key in ("test_fraction", "selection_fraction"):
        if not 0.0 < config[key] < 1.0:
            raise ValueError(f"config.{key}: expected a number in (0, 1), got {config[key]!r}")
    protocol.check_config(config, arms(config))


def load_data(config):
    """Digits (1797 x 64) split into standardized train/test float arrays and int labels."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_test = int(round(config.test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0) + 1.0
    cast = lambda a: ((a - mean) / std).astype(config.dtype)  # noqa: E731
    return {"x": cast(x[train]), "y": y[train].astype(np.int32)}, {"x": cast(x[test]), "y": y[test].astype(np.int32)}


def selection_split(train, config):
    """(fit, selection): the held-out `selection_fraction` of the training examples that the
    protocol tunes on, so the test split is only ever used for the report."""
    n = len(train["y"])
    order = np.random.default_rng([config.seed, 1]).permutation(n)
    n_selection = int(round(config.selection_fraction * n))
    if not 0 < n_selection < n:
        raise ValueError(f"config.selection_fraction: {config.selection_fraction} leaves no selection or fit examples of {n}")
    pick = lambda idx: {k: v[idx] for k, v in train.items()}  # noqa: E731
    return pick(order[n_selection:]), pick(order[:n_selection])


def batch_fn(train, batch_size: int, seed: int):
    """step -> batch: epochs of a fixed shuffle per (seed, epoch), dropping the remainder, so
    every step's batch is reproducible (resume gives the same data)."""
    n = len(train["y"])
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"config.batch_size: {batch_size} exceeds the {n} training examples")

    @functools.lru_cache(maxsize=2)
    def epoch_order(epoch):
        return np.random.default_rng([seed, epoch]).permutation(n)

    def get(step):
        epoch, i = divmod(step, per_epoch)
        idx = epoch_order(epoch)[i * batch_size:(i + 1) * batch_size]
        return {"x": train["x"][idx], "y": train["y"][idx]}

    return get


def build(config, seed: int | None = None):
    """(initial params as a pure dict, loss_fn, manifold tree, apply function); the
    initialization is drawn from `seed` (default config.seed)."""
    manifolds = layer_manifolds(config)
    model = Classifier(manifolds, 10, jnp.dtype(config.dtype), nnx.Rngs(config.seed if seed is None else seed))
    graphdef, state = nnx.split(model)
    params = nnx.to_pure_dict(state)
    tree = mo.manifold_tree(params, {f"{name}/kernel": m for name, m in manifolds.items()})

    def apply(params, x):
        return nnx.merge(graphdef, params)(x)

    def loss_fn(params, batch):
        logits = apply(params, batch["x"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

    return params, loss_fn, tree, apply


def make_optimizer(name: str, config, tree, learning_rate: float) -> optax.GradientTransformation:
    """The arm's optimizer with its learning rate held in the optimizer state
    (optax.inject_hyperparams), so one compiled step serves every learning rate of the grid."""
    if name == "riemannian_adam":
        return optax.inject_hyperparams(mo.riemannian_adam, static_args=("manifolds",))(learning_rate, tree)
    return optax.inject_hyperparams(optax.adamw)(learning_rate, weight_decay=config.weight_decay)


def feasibility(tree, params) -> jax.Array:
    """The largest manifold residual over the constrained parameters."""
    residuals = mo.manifolds.map_manifold_tree(lambda m, x: jnp.max(m.feasibility(x)), tree, params)
    return jnp.max(jnp.stack(jax.tree.leaves(residuals)))


def arms(config) -> dict[str, protocol.Arm]:
    """Each optimizer tuned on its own learning-rate grid (log-spaced extensions at an edge)."""
    return {name: protocol.Arm(grid={"learning_rate": [float(r) for r in config.learning_rates[name]]})
            for name in config.optimizers}


def run(config, workdir: str) -> dict[str, float]:
    """The protocol's comparison: every (arm, learning rate, seed) trains through harness.train
    in its own run directory (checkpoints, resume, TensorBoard) on the fit split, is scored on
    the selection split (tuning) and the test split (report): loss, accuracy, feasibility."""
    validate(config)
    start, cpu_start = time.perf_counter(), time.process_time()
    train_data, test_data = load_data(config)
    fit_data, selection_data = selection_split(train_data, config)

    compiled = {}  # per arm: (scores, evaluate, compiled step), built on its first run

    def parts(arm, state, loss_fn, tree):
        if arm not in compiled:
            @jax.jit
            def scores(params, data):
                loss, aux = loss_fn(params, data)
                return {"loss": loss, "accuracy": aux["accuracy"], "feasibility": feasibility(tree, params)}

            @jax.jit
            def evaluate(state):  # logged during training: the selection split, never the test split
                return {f"selection/{k}": v for k, v in scores(state["params"], selection_data).items()}

            optimizer = make_optimizer(arm, config, tree, config.learning_rates[arm][0])
            step = harness.compile_step(loss_fn, optimizer, config.parallel, config.mesh_shape, state)
            compiled[arm] = scores, evaluate, step
        return compiled[arm]

    def run_one(arm, settings, seed, rundir):
        params, loss_fn, tree, _ = build(config, seed)
        state = {"params": params, "opt_state": make_optimizer(arm, config, tree, settings["learning_rate"]).init(params)}
        scores, evaluate, step = parts(arm, state, loss_fn, tree)
        result = harness.train(
            state, step, batch_fn(fit_data, config.batch_size, seed), config.num_steps, workdir=rundir,
            name=f"{arm} {protocol.settings_key(settings)} seed {seed}", log_every=config.log_every,
            checkpoint_every=config.checkpoint_every, stop_after=config.stop_after, evaluate=evaluate,
            eval_every=config.eval_every,
        )
        final = result.state["params"]
        return jax.device_get({"selection": scores(final, selection_data), "report": scores(final, test_data)})

    results = protocol.compare(config, arms(config), run_one, select_on="loss", minimize=True, workdir=workdir)
    results["runtime_seconds"], results["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu_start
    results["quick"], results["cpus"] = bool(config.quick), os.cpu_count()
    protocol.write(workdir, results, title="Digits: Riemannian Adam (O(64), St(64, 32) kernels) vs AdamW")
    plot(config, results, workdir)
    summary = {f"{arm}/{m}": v["mean"] for arm, r in results["arms"].items() for m, v in r["metrics"].items()}
    harness.write_summary(workdir, summary)
    return summary


def run_dir(workdir: str, results: dict, arm: str, seed: int) -> str:
    """The run directory of `arm` at its chosen setting and `seed`."""
    key = protocol.settings_key(results["arms"][arm]["chosen"])
    return os.path.join(workdir, "protocol", results["config_hash"], arm, key, f"seed{seed}")


def plot(config, results: dict, workdir: str) -> str:
    """comparison.png: training loss, selection accuracy and feasibility of each arm at its
    chosen learning rate, first report seed."""
    histories = {}
    for name in config.optimizers:
        arm = results["arms"][name]
        label = f"{name} (lr {arm['chosen']['learning_rate']:.3g})"
        histories[label] = harness.read_history(run_dir(workdir, results, name, config.seeds[0]))
    return harness.plot_curves(
        histories,
        ["train/loss", "selection/accuracy", "selection/feasibility"],
        os.path.join(workdir, "comparison.png"),
        title=f"digits: Riemannian Adam (O(64), St(64,32) kernels) vs AdamW, seed {config.seeds[0]}",
    )

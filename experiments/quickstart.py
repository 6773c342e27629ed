"""Quickstart: Riemannian Adam vs AdamW on a small orthogonally constrained MLP.

The classifier maps an 8x8 digit (64 features) through two hidden layers whose kernels are
constrained, W1 in St(64, hidden) (= O(64) when hidden = 64) and W2 in St(hidden, bottleneck),
i.e. W^T W = I, to a free linear head. `mo.riemannian_adam` keeps the kernels exactly on their
manifolds (retraction inside optax); `optax.adamw` trains the same initialization
unconstrained, and its kernels drift off the manifold (reported as `feasibility`).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks

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
    if not 0.0 < config.test_fraction < 1.0:
        raise ValueError(f"config.test_fraction: expected a number in (0, 1), got {config.test_fraction!r}")


def load_data(config):
    """Digits (1797 x 64) split into standardized train/test float arrays and int labels."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_test = int(round(config.test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0) + 1.0
    cast = lambda a: ((a - mean) / std).astype(config.dtype)  # noqa: E731
    return {"x": cast(x[train]), "y": y[train].astype(np.int32)}, {"x": cast(x[test]), "y": y[test].astype(np.int32)}


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


def build(config):
    """(initial params as a pure dict, loss_fn, manifold tree, apply function)."""
    manifolds = layer_manifolds(config)
    model = Classifier(manifolds, 10, jnp.dtype(config.dtype), nnx.Rngs(config.seed))
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


def make_optimizer(name: str, config, tree) -> optax.GradientTransformation:
    if name == "riemannian_adam":
        return mo.riemannian_adam(config.learning_rate, tree)
    return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)


def feasibility(tree, params) -> jax.Array:
    """The largest manifold residual over the constrained parameters."""
    residuals = mo.manifolds.map_manifold_tree(lambda m, x: jnp.max(m.feasibility(x)), tree, params)
    return jnp.max(jnp.stack(jax.tree.leaves(residuals)))


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    train_data, test_data = load_data(config)
    params, loss_fn, tree, _ = build(config)

    @jax.jit
    def evaluate(state):
        loss, aux = loss_fn(state["params"], test_data)
        return {"test/loss": loss, "test/accuracy": aux["accuracy"], "feasibility": feasibility(tree, state["params"])}

    batches = batch_fn(train_data, config.batch_size, config.seed)
    results, histories = {}, {}
    for name in config.optimizers:
        optimizer = make_optimizer(name, config, tree)
        state = {"params": params, "opt_state": optimizer.init(params)}
        compiled = harness.compile_step(loss_fn, optimizer, config.parallel, config.mesh_shape, state)
        result = harness.train(
            state,
            compiled,
            batches,
            config.num_steps,
            workdir=os.path.join(workdir, name),
            name=name,
            log_every=config.log_every,
            checkpoint_every=config.checkpoint_every,
            stop_after=config.stop_after,
            evaluate=evaluate,
            eval_every=config.eval_every,
        )
        histories[name] = result.history
        final = jax.device_get(evaluate(result.state))
        results.update({f"{name}/{k}": float(v) for k, v in final.items()})
        results[f"{name}/steps_per_second"] = result.steps_per_second
    harness.write_summary(workdir, results)
    harness.plot_curves(
        histories,
        ["train/loss", "test/accuracy", "feasibility"],
        os.path.join(workdir, "comparison.png"),
        title="digits: Riemannian Adam (O(64), St(64,32) kernels) vs AdamW",
    )
    if harness.is_main_process():
        print_comparison(results, config.optimizers)
    return results


def print_comparison(results: dict, names) -> None:
    print(f"{'optimizer':<16} {'test loss':>10} {'test acc':>9} {'feasibility':>12}")
    for name in names:
        print(
            f"{name:<16} {results[f'{name}/test/loss']:>10.4f} {results[f'{name}/test/accuracy']:>9.4f}"
            f" {results[f'{name}/feasibility']:>12.2e}"
        )

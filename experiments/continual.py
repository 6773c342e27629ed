"""Continual learning on scikit-learn's digits with protected subspaces (mo.project_out).

Benchmarks (each a sequence of `num_tasks` tasks, trained one after another):
- "permuted": every task is all of digits with its own fixed pixel permutation (task 0 the
  identity); one shared 10-way head (domain-incremental).
- "split": task t holds two classes of its own (0/1, 2/3, ...); one 2-way head per task,
  selected by the task id (task-incremental).

Model: a bias-free MLP 64 -> hidden -> hidden -> head with ReLU (as in GPM). Methods:
- "finetune": SGD with momentum, task after task.
- "gpm": the same SGD chained with mo.project_out(); at each task boundary the inputs of every
  protected layer on `probe_samples` examples of the finished task grow its input-side basis
  (mo.protect_from_inputs, the GPM / FOT energy rule, `threshold`).
- "sculpt": Sculpting Subspaces: mo.project_out(side="both"); at each boundary the top singular
  directions of the trained weights, `sculpt_rank_fraction` of each side, are frozen
  (mo.protect_from_weights).
- "fedavg" / "fot": federated, `clients` simulated clients (vmapped) each see their own shard of
  every task; per round each runs `local_steps` SGD steps from the global model and the server
  averages the deltas; "fot" projects the averaged delta with mo.project_out and grows the bases
  from all clients' layer inputs at task boundaries (Federated Orthogonal Training).

The shared head (permuted) is protected like the hidden layers; per-task heads (split) are not.
Metrics from the accuracy matrix A[i, j] (test accuracy on task j after training task i):
average accuracy mean_j A[T-1, j] and forgetting mean_{j<T-1} (max_{i<T-1} A[i, j] - A[T-1, j]).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
from manifold_opt.transforms import DimensionNumbers

BENCHMARKS = ("permuted", "split")
METHODS = ("finetune", "gpm", "sculpt", "fedavg", "fot")
FEDERATED = ("fedavg", "fot")
LAYERS = ("fc1", "fc2", "head")
PLOT = "forgetting.png"


def validate(config) -> None:
    """ValueError naming the key of the first bad continual value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: the continual experiment runs 'none' (clients are vmapped), got "
                         f"{config.parallel!r}")
    for key, allowed in (("benchmarks", BENCHMARKS), ("methods", METHODS)):
        if not config[key] or any(v not in allowed for v in config[key]):
            raise ValueError(f"config.{key}: got {tuple(config[key])!r}; expected some of {list(allowed)}")
    for key in ("num_tasks", "steps_per_task", "hidden", "probe_samples", "clients", "local_steps"):
        checks.check_int(config, key)
    if not 2 <= config.num_tasks <= 5:
        raise ValueError(f"config.num_tasks: expected 2 to 5 (split uses two classes per task), got {config.num_tasks}")
    if config.steps_per_task % config.local_steps:
        raise ValueError(f"config.local_steps: {config.local_steps} must divide steps_per_task={config.steps_per_task}")
    if config.steps_per_task % config.eval_every:
        raise ValueError(f"config.eval_every: {config.eval_every} must divide steps_per_task={config.steps_per_task}")
    if not config.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in config.seeds):
        raise ValueError(f"config.seeds: expected nonnegative ints, got {tuple(config.seeds)!r}")
    checks.check_positive_float(config, "learning_rate")
    for key in ("threshold", "sculpt_rank_fraction"):
        if not 0.0 < config[key] <= 1.0:
            raise ValueError(f"config.{key}: expected a number in (0, 1], got {config[key]!r}")
    if not 0.0 <= config.momentum < 1.0:
        raise ValueError(f"config.momentum: expected a number in [0, 1), got {config.momentum!r}")


def make_tasks(benchmark: str, num_tasks: int, seed: int, test_fraction: float = 0.25):
    """[(train, test)] per task, each {"x": (n, 64) float32, "y": (n,) int32}, standardized."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean, std = x[train].mean(0), x[train].std(0) + 1.0
    x = ((x - mean) / std).astype(np.float32)
    tasks = []
    for t in range(num_tasks):
        if benchmark == "permuted":
            pixels = np.arange(64) if t == 0 else rng.permutation(64)
            tasks.append(tuple({"x": x[i][:, pixels], "y": y[i].astype(np.int32)} for i in (train, test)))
        else:
            mine = (i[np.isin(y[i], (2 * t, 2 * t + 1))] for i in (train, test))
            tasks.append(tuple({"x": x[i], "y": (y[i] - 2 * t).astype(np.int32)} for i in mine))
    return tasks


def init_params(key, hidden: int, heads: int, classes: int):
    """He-normal, bias-free: fc1 (64, h), fc2 (h, h), head (heads, h, classes)."""
    k1, k2, k3 = jax.random.split(key, 3)
    normal = lambda k, shape, fan_in: jax.random.normal(k, shape) * jnp.sqrt(2.0 / fan_in)  # noqa: E731
    return {"fc1": {"kernel": normal(k1, (64, hidden), 64)}, "fc2": {"kernel": normal(k2, (hidden, hidden), hidden)},
            "head": {"kernel": normal(k3, (heads, hidden, classes), hidden)}}


def layer_inputs(params, x):
    """The input of each layer: {"fc1": x, "fc2": h1, "head": h2}."""
    h1 = jax.nn.relu(x @ params["fc1"]["kernel"])
    h2 = jax.nn.relu(h1 @ params["fc2"]["kernel"])
    return {"fc1": x, "fc2": h1, "head": h2}


def logits(params, x, task):
    heads = params["head"]["kernel"]
    head = heads[0] if heads.shape[0] == 1 else jnp.take(heads, task, axis=0)
    return layer_inputs(params, x)["head"] @ head


def loss_fn(params, batch):
    out = logits(params, batch["x"], batch["task"])
    loss = optax.softmax_cross_entropy_with_integer_labels(out, batch["y"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(out, -1) == batch["y"])}


def dimension_numbers(shared_head: bool):
    """Which kernels are protected: the hidden ones, and the head when it is shared."""
    head = DimensionNumbers(1, 2) if shared_head else None
    return {"fc1": {"kernel": True}, "fc2": {"kernel": True}, "head": {"kernel": head}}


def make_method(method: str, config, shared_head: bool):
    """(optimizer, grow(opt_state, params, probe_x) -> opt_state at a task boundary)."""
    dims = dimension_numbers(shared_head)
    sgd = optax.sgd(config.learning_rate, momentum=config.momentum or None)
    inputs = lambda params, x: {k: {"kernel": v} for k, v in layer_inputs(params, x).items()}  # noqa: E731
    if method in ("gpm", "fot"):
        tx = mo.project_out(weight_dimension_numbers=dims)
        grow = lambda s, p, x: mo.protect_from_inputs(s, inputs(p, x), threshold=config.threshold)  # noqa: E731
    elif method == "sculpt":
        tx = mo.project_out(side="both", weight_dimension_numbers=dims)
        grow = lambda s, p, x: mo.protect_from_weights(  # noqa: E731
            s, p, threshold=1.0, rank_fraction=config.sculpt_rank_fraction, weight_dimension_numbers=dims)
    else:
        return (sgd if method == "finetune" else optax.identity()), None
    return (tx if method == "fot" else optax.chain(sgd, tx)), grow


def centralized_step(optimizer, grow):
    """Grow the protected bases when the batch starts a new task, then one optimizer step."""
    update = harness.make_update(loss_fn, optimizer)

    def step(state, batch):
        if grow is not None:
            opt_state = jax.lax.cond(batch["grow"], lambda s: grow(s, state["params"], batch["probe"]),
                                     lambda s: s, state["opt_state"])
            state = {**state, "opt_state": opt_state}
        return update(state, batch)

    return step


def federated_step(server, grow, learning_rate: float):
    """One round: every client (vmapped) runs its local SGD steps from the global model; the
    server averages the deltas and applies them through `server` (projection for FOT)."""

    def local(params, xs, ys, task):
        def sgd_step(p, batch):
            (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p, {"x": batch[0], "y": batch[1], "task": task})
            return jax.tree.map(lambda a, b: a - learning_rate * b, p, g), (loss, aux["accuracy"])

        p, (loss, acc) = jax.lax.scan(sgd_step, params, (xs, ys))
        return p, loss.mean(), acc.mean()

    def step(state, batch):
        params, opt_state = state["params"], state["opt_state"]
        if grow is not None:
            opt_state = jax.lax.cond(batch["grow"], lambda s: grow(s, params, batch["probe"]), lambda s: s, opt_state)
        clients, loss, acc = jax.vmap(local, in_axes=(None, 0, 0, None))(params, batch["x"], batch["y"], batch["task"])
        delta = jax.tree.map(lambda c, p: c.mean(0) - p, clients, params)
        updates, opt_state = server.update(delta, opt_state, params)
        return ({"params": optax.apply_updates(params, updates), "opt_state": opt_state},
                {"loss": loss.mean(), "accuracy": acc.mean()})

    return step


def batch_fn(tasks, config, federated: bool, seed: int):
    """step -> batch, a deterministic function of (seed, step) so resume is exact. A step is a
    round of local steps per client when federated; `grow` marks the first step of a task > 0,
    whose `probe` holds the finished task's first probe_samples training inputs (per client)."""
    per_task = config.steps_per_task // (config.local_steps if federated else 1)

    def get(step):
        task, i = divmod(step, per_task)
        train = tasks[task][0]
        rng = np.random.default_rng([seed, step])
        shape = (config.clients, config.local_steps, config.batch_size) if federated else (config.batch_size,)
        if federated:  # client c samples its own shard of the task: rows c, c + clients, ...
            clients = np.arange(config.clients)[:, None, None]
            idx = rng.integers(0, len(train["y"]) // config.clients, shape) * config.clients + clients
            previous = tasks[max(task - 1, 0)][0]["x"]
            probe = np.concatenate([previous[c::config.clients][:config.probe_samples] for c in range(config.clients)])
        else:
            idx = rng.integers(0, len(train["y"]), shape)
            probe = tasks[max(task - 1, 0)][0]["x"][:config.probe_samples]
        return {"x": train["x"][idx], "y": train["y"][idx], "task": np.int32(task),
                "grow": np.bool_(task > 0 and i == 0), "probe": probe}

    return get, per_task * len(tasks)


def accuracy_matrix(history, num_tasks: int, steps_per_task: int):
    """A[i, j] from the evaluations recorded at the end of each task."""
    rows = {r["step"]: r for r in history if "test/acc_task0" in r}
    return np.array([[rows[(i + 1) * steps_per_task][f"test/acc_task{j}"] for j in range(num_tasks)]
                     for i in range(num_tasks)])


def summarize(acc: np.ndarray) -> tuple[float, float]:
    """(average accuracy after the last task, mean forgetting of the earlier tasks)."""
    final = acc[-1]
    forgetting = [acc[:-1, j].max() - final[j] for j in range(acc.shape[0] - 1)]
    return float(final.mean()), float(np.mean(forgetting))


@jax.jit
def task_accuracies(params, tests):
    """Test accuracy on every task (one compile serves all methods of a benchmark)."""
    return {f"test/acc_task{j}": loss_fn(params, {**test, "task": j})[1]["accuracy"] for j, test in enumerate(tests)}


def run_one(config, workdir: str, benchmark: str, method: str, seed: int):
    """Train one method on one benchmark and seed through the harness; its accuracy matrix."""
    tasks = make_tasks(benchmark, config.num_tasks, seed)
    shared_head = benchmark == "permuted"
    params = init_params(jax.random.key(seed), config.hidden, 1 if shared_head else config.num_tasks,
                         10 if shared_head else 2)
    federated = method in FEDERATED
    optimizer, grow = make_method(method, config, shared_head)
    step = (federated_step(optimizer, grow, config.learning_rate) if federated
            else centralized_step(optimizer, grow))
    identity = lambda x: x  # noqa: E731
    compiled = harness.CompiledStep(jax.jit(step), jax.device_put, jax.device_put, identity, 1)
    batches, num_steps = batch_fn(tasks, config, federated, seed)
    every = config.eval_every // (config.local_steps if federated else 1)
    tests = jax.device_put([test for _, test in tasks])

    result = harness.train(
        {"params": params, "opt_state": optimizer.init(params)}, compiled, batches, num_steps,
        workdir=workdir, name=f"{benchmark}/{method}/seed{seed}", log_every=config.log_every,
        checkpoint_every=config.checkpoint_every, stop_after=config.stop_after,
        evaluate=lambda state: task_accuracies(state["params"], tests), eval_every=every,
    )
    per_task = config.steps_per_task // (config.local_steps if federated else 1)
    return result.history, accuracy_matrix(result.history, config.num_tasks, per_task)


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    results, rows, histories = {}, [], {}
    for benchmark in config.benchmarks:
        for method in config.methods:
            scores = []
            for seed in config.seeds:
                history, acc = run_one(config, os.path.join(workdir, benchmark, method, f"seed{seed}"),
                                       benchmark, method, seed)
                scores.append(summarize(acc))
                if seed == config.seeds[0]:
                    histories[f"{benchmark}/{method}"] = history
            mean, std = np.mean(scores, axis=0), np.std(scores, axis=0)
            results.update({f"{benchmark}/{method}/accuracy": mean[0], f"{benchmark}/{method}/forgetting": mean[1]})
            rows.append({"benchmark": benchmark, "method": method, "accuracy": mean[0], "accuracy_std": std[0],
                         "forgetting": mean[1], "forgetting_std": std[1], "seeds": list(config.seeds)})
    harness.write_summary(workdir, results)
    for benchmark in config.benchmarks:
        harness.plot_curves(
            {k.split("/")[1]: v for k, v in histories.items() if k.startswith(benchmark + "/")},
            ["test/acc_task0", "train/loss"], os.path.join(workdir, f"{benchmark}_{PLOT}"),
            title=f"{benchmark} digits: accuracy on task 0 as tasks go by (federated: one step = one round)",
        )
    write_tables(workdir, rows)
    return results


def write_tables(workdir: str, rows) -> None:
    lines = ["| benchmark | method | average accuracy | forgetting |", "|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['method']} | {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | "
              f"{r['forgetting']:.3f} ± {r['forgetting_std']:.3f} |" for r in rows]
    harness.write_results(workdir, "\n".join(lines), {"rows": rows})

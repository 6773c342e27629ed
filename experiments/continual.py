"""Continual learning with protected subspaces (mo.project_out), a test of two papers' claims:
Federated Orthogonal Training (Bakman et al. 2023) forgets less and ends more accurate than
FedAvg, and GPM (Saha et al. 2021) against plain fine-tuning; Sculpting Subspaces (Nayak et al.
2025) alongside.

Benchmark: permuted digits on a wide canvas. scikit-learn's 8x8 digits, standardized, are
embedded in the middle of a 16x16 canvas (256 inputs) and every task applies its own fixed
pixel permutation of the canvas (task 0 the identity); one shared 10-way head. On the bare 8x8
digits the 64 inputs fill the protected subspace within 2-3 tasks and no method can keep
learning; split digits (two classes per task) are at ceiling for every method, so they were
dropped. Splits: train / selection (held out, scores the grid search) / report (test).

Model: a bias-free MLP 256 -> hidden -> hidden -> 10 with ReLU (as in GPM). Arms:
- "finetune": SGD with momentum, task after task.
- "gpm": the same SGD chained with mo.project_out(); at each task boundary the inputs of every
  layer on `probe_samples` examples of the finished task grow its input-side basis by the energy
  rule (mo.protect_from_inputs) with GPM's per-layer thresholds `gpm_thresholds`.
- "sculpt": Sculpting Subspaces, mo.project_out(side="both"); at each boundary the top singular
  directions of each trained weight are frozen (mo.protect_from_weights), a fraction
  r_l = mrr + I_l (trr - mrr) of each side with the layer importance I_l = the similarity of
  the layer's inputs X and outputs Y on the finished task's probe samples (the paper's adaptive
  rank; its per-sample cosine needs equal widths, so we use linear CKA, <X X^T, Y Y^T> /
  (||X X^T|| ||Y Y^T||), which is defined for every layer).
- "fedavg" / "fot": `clients` simulated clients (vmapped) each see their own shard of every
  task; per round each runs `local_steps` SGD steps from the global model and the server
  averages the deltas; "fot" projects the averaged delta with mo.project_out and grows the bases
  from all clients' layer inputs at task boundaries (threshold `fot_threshold`).
Every arm's learning rate is tuned by experiments.harness.protocol on the selection split.
Metrics from the accuracy matrix A[i, j] (accuracy on task j after training task i): accuracy
mean_j A[T-1, j] and forgetting mean_{j<T-1} (max_{i<T-1} A[i, j] - A[T-1, j]).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import manifold_opt as mo
from experiments.harness import config as checks
from experiments.harness import protocol

METHODS = ("finetune", "gpm", "sculpt", "fedavg", "fot")
FEDERATED = ("fedavg", "fot")
LAYERS = ("fc1", "fc2", "head")
SIDE, CANVAS = 8, 16


def validate(config) -> None:
    """ValueError naming the key of the first bad continual value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: the continual experiment runs 'none' (clients are vmapped), got "
                         f"{config.parallel!r}")
    if not config.methods or any(v not in METHODS for v in config.methods):
        raise ValueError(f"config.methods: got {tuple(config.methods)!r}; expected some of {list(METHODS)}")
    for key in ("num_tasks", "steps_per_task", "hidden", "probe_samples", "clients", "local_steps"):
        checks.check_int(config, key)
    if not 2 <= config.num_tasks <= 10:
        raise ValueError(f"config.num_tasks: expected 2 to 10, got {config.num_tasks}")
    if config.steps_per_task % config.local_steps:
        raise ValueError(f"config.local_steps: {config.local_steps} must divide steps_per_task={config.steps_per_task}")
    if not config.learning_rates or any(not lr > 0 for lr in config.learning_rates):
        raise ValueError(f"config.learning_rates: expected positive numbers, got {tuple(config.learning_rates)!r}")
    if len(config.gpm_thresholds) != len(LAYERS):
        raise ValueError(f"config.gpm_thresholds: expected one threshold per layer {LAYERS}, got "
                         f"{tuple(config.gpm_thresholds)!r}")
    for key, values in (("gpm_thresholds", config.gpm_thresholds), ("fot_threshold", (config.fot_threshold,)),
                        ("sculpt_retention", config.sculpt_retention)):
        if any(not 0.0 < v <= 1.0 for v in values):
            raise ValueError(f"config.{key}: expected numbers in (0, 1], got {values!r}")
    low, high = config.sculpt_retention
    if low > high:
        raise ValueError(f"config.sculpt_retention: expected (minimum, target), minimum <= target, got {(low, high)}")
    if not 0.0 <= config.momentum < 1.0:
        raise ValueError(f"config.momentum: expected a number in [0, 1), got {config.momentum!r}")


def embed(x: np.ndarray) -> np.ndarray:
    """(n, 64) digits -> (n, 256): the 8x8 image in the middle of a zero 16x16 canvas."""
    canvas = np.zeros((len(x), CANVAS, CANVAS), x.dtype)
    lo = (CANVAS - SIDE) // 2
    canvas[:, lo:lo + SIDE, lo:lo + SIDE] = x.reshape(-1, SIDE, SIDE)
    return canvas.reshape(len(x), -1)


def make_tasks(num_tasks: int, seed: int, fractions=(0.25, 0.15)):
    """[{split: {"x": (n, 256) float32, "y": (n,) int32}}] per task for the splits train,
    selection and report (fractions: report, then selection of the rest), standardized on train."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_report = int(round(fractions[0] * len(x)))
    n_select = int(round(fractions[1] * (len(x) - n_report)))
    splits = {"report": order[:n_report], "selection": order[n_report:n_report + n_select],
              "train": order[n_report + n_select:]}
    mean, std = x[splits["train"]].mean(0), x[splits["train"]].std(0) + 1.0
    x = embed(((x - mean) / std).astype(np.float32))
    tasks = []
    for t in range(num_tasks):
        pixels = np.arange(CANVAS * CANVAS) if t == 0 else rng.permutation(CANVAS * CANVAS)
        tasks.append({k: {"x": x[i][:, pixels], "y": y[i].astype(np.int32)} for k, i in splits.items()})
    return tasks


def init_params(key, hidden: int):
    """He-normal, bias-free: fc1 (256, h), fc2 (h, h), head (h, 10)."""
    k1, k2, k3 = jax.random.split(key, 3)
    normal = lambda k, shape: jax.random.normal(k, shape) * jnp.sqrt(2.0 / shape[0])  # noqa: E731
    return {"fc1": {"kernel": normal(k1, (CANVAS * CANVAS, hidden))}, "fc2": {"kernel": normal(k2, (hidden, hidden))},
            "head": {"kernel": normal(k3, (hidden, 10))}}


def layer_inputs(params, x):
    """{"fc1": x, "fc2": h1, "head": h2}: the input of each layer."""
    h1 = jax.nn.relu(x @ params["fc1"]["kernel"])
    return {"fc1": x, "fc2": h1, "head": jax.nn.relu(h1 @ params["fc2"]["kernel"])}


def logits(params, x):
    return layer_inputs(params, x)["head"] @ params["head"]["kernel"]


def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()


@jax.jit
def accuracies(params, xs, ys):
    """Accuracy on each task, xs (T, n, 256) / ys (T, n)."""
    return jax.vmap(lambda x, y: jnp.mean(jnp.argmax(logits(params, x), -1) == y))(xs, ys)


def linear_cka(x, y):
    """<X X^T, Y Y^T>_F / (||X X^T||_F ||Y Y^T||_F) for samples in rows."""
    a, b = x @ x.T, y @ y.T
    return jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))


@jax.jit
def layer_importance(params, x) -> dict:
    """Sculpting Subspaces' layer importance (module doc) on probe samples x."""
    inputs = layer_inputs(params, x)
    return {k: linear_cka(inputs[k], inputs[k] @ params[k]["kernel"]) for k in LAYERS}


def only(layer):
    """weight_dimension_numbers selecting one layer's kernel."""
    return {k: {"kernel": k == layer} for k in LAYERS}


def make_method(method: str, config):
    """(optimizer, grow(opt_state, params, probe_x) -> opt_state at a task boundary, or None)."""
    sgd = optax.sgd(1.0, momentum=config.momentum or None)  # the learning rate scales the gradient (traced)
    inputs = lambda params, x, k: {k: {"kernel": layer_inputs(params, x)[k]}}  # noqa: E731
    if method == "gpm":
        def grow(s, p, x):
            for k, threshold in zip(LAYERS, config.gpm_thresholds):  # GPM's per-layer thresholds
                s = mo.protect_from_inputs(s, inputs(p, x, k), threshold=threshold)
            return s

        return optax.chain(sgd, mo.project_out()), jax.jit(grow)
    if method == "fot":
        grow = jax.jit(lambda s, p, x: mo.protect_from_inputs(s, {k: {"kernel": v} for k, v in
                                                                 layer_inputs(p, x).items()},
                                                              threshold=config.fot_threshold))
        return mo.project_out(), grow
    if method == "sculpt":
        low, high = config.sculpt_retention

        def grow(s, p, x):
            for k, importance in jax.device_get(layer_importance(p, x)).items():  # adaptive rank per layer
                fraction = round(low + min(max(float(importance), 0.0), 1.0) * (high - low), 2)
                s = sculpt_layer(s, p, k, fraction)
            return s

        return optax.chain(sgd, mo.project_out(side="both")), grow
    return (sgd if method == "finetune" else optax.identity()), None


@jax.jit(static_argnums=(2, 3))
def sculpt_layer(opt_state, params, layer: str, fraction: float):
    return mo.protect_from_weights(opt_state, params, threshold=1.0, rank_fraction=fraction,
                                   weight_dimension_numbers=only(layer))


def make_task_trainer(optimizer, federated: bool):
    """train(state, xs, ys, lr) -> state after one task: a scan over steps (centralized, xs
    (steps, batch, 256)) or rounds (federated, xs (rounds, clients, local_steps, batch, 256))."""
    def central(lr):
        def step(state, batch):
            params, opt_state = state
            grads = jax.tree.map(lambda g: lr * g, jax.grad(loss_fn)(params, *batch))  # SGD(momentum) is linear in g
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return step

    def round_(lr):
        def step(state, batch):
            params, opt_state = state

            def local(xs, ys):
                def sgd(p, b):
                    return jax.tree.map(lambda w, g: w - lr * g, p, jax.grad(loss_fn)(p, *b)), None

                return jax.lax.scan(sgd, params, (xs, ys))[0]

            clients = jax.vmap(local)(*batch)
            delta = jax.tree.map(lambda c, p: c.mean(0) - p, clients, params)
            updates, opt_state = optimizer.update(delta, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return step

    @jax.jit
    def train(state, xs, ys, lr):
        return jax.lax.scan(round_(lr) if federated else central(lr), state, (xs, ys))[0]

    return train


def task_batches(task, config, federated: bool, rng):
    """Batch inputs and labels for one task: (steps, batch) or (rounds, clients, local, batch);
    client c samples its own shard (rows c, c + clients, ...)."""
    n = len(task["y"])
    if federated:
        shape = (config.steps_per_task // config.local_steps, config.clients, config.local_steps, config.batch_size)
        clients = np.arange(config.clients)[None, :, None, None]
        idx = rng.integers(0, n // config.clients, shape) * config.clients + clients
    else:
        idx = rng.integers(0, n, (config.steps_per_task, config.batch_size))
    return task["x"][idx], task["y"][idx]


def train_sequence(method: str, learning_rate: float, config, seed: int, compiled=None):
    """Train `method` on the task sequence of `seed`; the accuracy matrices {split: A (T, T)}.
    `compiled`: (optimizer, grow, train) of make_method / make_task_trainer, to reuse across runs."""
    tasks = make_tasks(config.num_tasks, seed)
    federated = method in FEDERATED
    if compiled is None:
        optimizer, grow = make_method(method, config)
        compiled = optimizer, grow, make_task_trainer(optimizer, federated)
    optimizer, grow, train = compiled
    params = init_params(jax.random.key(seed), config.hidden)
    opt_state = optimizer.init(params)
    evals = {s: (jnp.stack([t[s]["x"] for t in tasks]), jnp.stack([t[s]["y"] for t in tasks]))
             for s in ("selection", "report")}
    rng = np.random.default_rng(seed)
    rows = {s: [] for s in ("selection", "report")}
    state = (params, opt_state)
    for t, task in enumerate(tasks):
        if t > 0 and grow is not None:
            probe = tasks[t - 1]["train"]["x"][:config.probe_samples]
            state = (state[0], grow(state[1], state[0], probe))
        state = train(state, *task_batches(task["train"], config, federated, rng), jnp.float32(learning_rate))
        for s in rows:
            rows[s].append(np.asarray(accuracies(state[0], *evals[s])))
    return {s: np.stack(r) for s, r in rows.items()}


def summarize(acc: np.ndarray) -> tuple[float, float]:
    """(average accuracy after the last task, mean forgetting of the earlier tasks)."""
    final = acc[-1]
    forgetting = [acc[:-1, j].max() - final[j] for j in range(acc.shape[0] - 1)]
    return float(final.mean()), float(np.mean(forgetting))


def make_arms(config) -> dict[str, protocol.Arm]:
    """Every method with its learning rate tuned on the same grid."""
    return {m: protocol.Arm(grid={"learning_rate": tuple(config.learning_rates)}) for m in config.methods}


def run_one(config):
    """run_one(arm, settings, seed, rundir) for the protocol (one compile per arm)."""
    compiled = {}

    def one(arm: str, settings: dict, seed: int, rundir: str) -> dict:
        del rundir  # a run is seconds; the protocol caches its result
        if arm not in compiled:
            optimizer, grow = make_method(arm, config)
            compiled[arm] = optimizer, grow, make_task_trainer(optimizer, arm in FEDERATED)
        acc = train_sequence(arm, settings["learning_rate"], config, seed, compiled[arm])
        out = {}
        for split, a in acc.items():
            accuracy, forgetting = summarize(a)
            out[split] = {"accuracy": accuracy, "forgetting": forgetting, "task0_final": float(a[-1, 0])}
        return out

    return one


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    results = protocol.compare(config, make_arms(config), run_one(config), select_on="accuracy", minimize=False,
                               workdir=workdir)
    note = (f"\nPermuted digits in a 16x16 canvas, {config.num_tasks} tasks x {config.steps_per_task} SGD steps "
            f"(federated: {config.clients} clients x {config.local_steps} local steps per round); "
            "accuracy = mean final accuracy over tasks, forgetting = mean drop from each task's best.\n")
    protocol.write(workdir, results, title="Continual learning: protected subspaces vs fine-tuning / FedAvg",
                   extra_text=note)
    return {f"{arm}/{m}": v["mean"] for arm, r in results["arms"].items() for m, v in r["metrics"].items()}

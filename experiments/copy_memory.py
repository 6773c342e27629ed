"""Copying memory: where an orthogonality constraint wins.

The task (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016): the input is K symbols
drawn uniformly from {1..A}, then T - 1 blanks (0), a delimiter (A + 1) and K more blanks; the
target is T + K blanks followed by the K symbols. A model that ignores its memory outputs blanks
and then guesses, scoring the cross-entropy K ln(A) / (T + 2K) and recall accuracy 1/A (the
`memoryless` reference row).

Arms, each tuned on its own learning-rate grid by the fair-comparison protocol
(experiments/harness/protocol.py):
- `orthogonal_rnn`: h_t = modReLU(h_{t-1} W + U x_t, b) (modReLU(z) = sign(z) relu(|z| + b),
  Arjovsky et al. 2016), logits_t = h_t V + c, with the recurrent kernel W on O(n), trained
  with `mo.riemannian_adam` (Lezcano-Casado & Martinez-Rubio 2019 train the same model by
  the exponential parametrization, expRNN). An orthogonal W keeps ||h_t|| and the backpropagated
  gradient norms from exploding or vanishing over T steps.
- `rnn_adamw`: the same RNN from the same initialization (W drawn as in Henaff et al. 2016:
  block-diagonal 2x2 rotations with angles uniform in [-pi, pi]) trained unconstrained with
  `optax.adamw`.
- `lstm`: a Flax LSTM (`flax.linen.OptimizedLSTMCell`) of about the same parameter count,
  trained with `optax.adamw`.

Every arm sees the same training batches per seed (paired); the selection split (tuning) and
the report split are two further held-out batches. Metrics: `loss` (cross-entropy per position,
the task's usual score), `accuracy` (of the K recalled symbols), `steps_to_half` (the first
step, every `eval_every`, whose report loss is at most half the memoryless loss: how fast the
copy is learned) and, for the RNNs, `orthogonality` = ||W^T W - I||_F of the trained kernel.
"""
from __future__ import annotations

import math
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
from experiments.harness import protocol

ARMS = ("orthogonal_rnn", "rnn_adamw", "lstm")
REFERENCE = "memoryless"
DTYPES = ("float32", "float64")
CURVE_FILE = "report_loss.npy"


def validate(config) -> None:
    """ValueError naming the key of the first bad copy_memory value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: copy_memory trains on one device; expected 'none', got {config.parallel!r}")
    for key in ("delay", "copy_length", "symbols", "hidden", "lstm_hidden", "eval_size", "eval_every"):
        checks.check_int(config, key)
    if config.num_steps % config.eval_every:
        raise ValueError(f"config.eval_every: expected a divisor of num_steps={config.num_steps}, got {config.eval_every}")
    if config.hidden % 2:
        raise ValueError(f"config.hidden: the rotation-block initialization needs an even size, got {config.hidden}")
    checks.check_option(config, "dtype", DTYPES)
    for key in ("weight_decay", "clip_norm"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"config.{key}: expected a nonnegative number, got {value!r}")
    rates = tuple(config.learning_rates)
    if len(rates) < 2 or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0 for r in rates):
        raise ValueError(f"config.learning_rates: expected two or more positive numbers, got {rates!r}")
    for name in config.arms:
        if name not in ARMS:
            raise ValueError(f"config.arms: unknown arm {name!r}; expected some of {list(ARMS)}")
    if not config.arms:
        raise ValueError("config.arms: expected at least one arm")
    protocol.check_config(config, arms(config))


# ----- the task ---------------------------------------------------------------------------------


def sequence_length(config) -> int:
    return config.delay + 2 * config.copy_length


def batches(config, seed: int, split: int, count: int, size: int):
    """`count` batches of `size` sequences, (inputs, targets) int32 of shape (count, size, T + 2K),
    drawn from the stream (seed, split): split 0 trains, 1 selects, 2 reports."""
    rng = np.random.default_rng([seed, split])
    k, t = config.copy_length, config.delay
    symbols = rng.integers(1, config.symbols + 1, (count, size, k), dtype=np.int32)
    inputs = np.zeros((count, size, sequence_length(config)), np.int32)
    targets = np.zeros_like(inputs)
    inputs[..., :k] = symbols
    inputs[..., t + k - 1] = config.symbols + 1  # the delimiter: recall starts at the next step
    targets[..., -k:] = symbols
    return inputs, targets


def memoryless(config) -> dict[str, float]:
    """Scores of the best model without memory: blanks, then uniform guesses over the symbols."""
    return {"loss": config.copy_length * math.log(config.symbols) / sequence_length(config),
            "accuracy": 1.0 / config.symbols}


def scores(logits, targets, copy_length: int) -> dict:
    """Cross-entropy per position and the accuracy of the recalled symbols."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    recalled = jnp.argmax(logits[:, -copy_length:], -1) == targets[:, -copy_length:]
    return {"loss": loss, "accuracy": recalled.mean()}


# ----- the models -------------------------------------------------------------------------------


def rotation_blocks(rng, n: int) -> np.ndarray:
    """Henaff et al. (2016): block-diagonal 2x2 rotations by angles uniform in [-pi, pi]."""
    angles = rng.uniform(-math.pi, math.pi, n // 2)
    c, s = np.cos(angles), np.sin(angles)
    w, i = np.zeros((n, n)), np.arange(0, n, 2)
    w[i, i], w[i, i + 1], w[i + 1, i], w[i + 1, i + 1] = c, s, -s, c
    return w


def modrelu(z, bias):
    """modReLU(z) = sign(z) relu(|z| + b) (Arjovsky et al. 2016, real case)."""
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + bias)


def readout(params, hidden):
    """(time, batch, n) hidden states to (batch, time, classes) logits."""
    return jnp.swapaxes(hidden, 0, 1) @ params["readout"] + params["readout_bias"]


def init_rnn(config, seed: int) -> dict:
    rng = np.random.default_rng([seed, 3])
    n, vocabulary = config.hidden, config.symbols + 2
    params = {
        "recurrent": rotation_blocks(rng, n),
        "input": rng.normal(size=(vocabulary, n)) / math.sqrt(vocabulary),
        "bias": rng.uniform(-0.01, 0.01, n),
        "readout": np.zeros((n, config.symbols + 1)),
        "readout_bias": np.zeros(config.symbols + 1),
    }
    return jax.tree.map(lambda a: jnp.asarray(a, config.dtype), params)


def rnn_logits(params, inputs):
    """The modReLU RNN over (batch, time) int inputs, scanned over time."""
    def step(h, u):
        h = modrelu(h @ params["recurrent"] + u, params["bias"])
        return h, h

    projected = jnp.swapaxes(params["input"][inputs], 0, 1)  # (time, batch, n)
    h0 = jnp.zeros(projected.shape[1:], projected.dtype)
    return readout(params, jax.lax.scan(step, h0, projected)[1])


def lstm_cell(config) -> nn.OptimizedLSTMCell:
    return nn.OptimizedLSTMCell(config.lstm_hidden, param_dtype=jnp.dtype(config.dtype), dtype=jnp.dtype(config.dtype))


def init_lstm(config, seed: int) -> dict:
    m, vocabulary, dtype = config.lstm_hidden, config.symbols + 2, jnp.dtype(config.dtype)
    carry = (jnp.zeros((1, m), dtype), jnp.zeros((1, m), dtype))
    cell = lstm_cell(config).init(jax.random.key(seed, impl="rbg"), carry, jnp.zeros((1, vocabulary), dtype))
    return {"cell": cell["params"], "readout": jnp.zeros((m, config.symbols + 1), dtype),
            "readout_bias": jnp.zeros(config.symbols + 1, dtype)}


def lstm_logits(config):
    cell, vocabulary = lstm_cell(config), config.symbols + 2

    def logits(params, inputs):
        def step(carry, x):
            return cell.apply({"params": params["cell"]}, carry, x)

        xs = jax.nn.one_hot(jnp.swapaxes(inputs, 0, 1), vocabulary, dtype=params["readout"].dtype)
        carry = (jnp.zeros((inputs.shape[0], config.lstm_hidden), xs.dtype),) * 2
        return readout(params, jax.lax.scan(step, carry, xs)[1])

    return logits


def orthogonality(w) -> jax.Array:
    """||W^T W - I||_F."""
    return jnp.linalg.norm(w.T @ w - jnp.eye(w.shape[0], dtype=w.dtype))


def model(arm: str, config):
    """(init(seed) -> params, logits(params, inputs), optimizer(learning_rate))."""
    clip = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm else []
    if arm == "orthogonal_rnn":
        def optimizer(lr):
            params = ("recurrent", "input", "bias", "readout", "readout_bias")
            tree = {k: mo.manifolds.OrthogonalGroup(config.hidden) if k == "recurrent" else None for k in params}
            return optax.chain(*clip, mo.riemannian_adam(lr, tree, weight_decay=config.weight_decay, on_infeasible="raise"))
    else:
        def optimizer(lr):
            return optax.chain(*clip, optax.adamw(lr, weight_decay=config.weight_decay))
    if arm == "lstm":
        return (lambda seed: init_lstm(config, seed)), lstm_logits(config), optimizer
    return (lambda seed: init_rnn(config, seed)), rnn_logits, optimizer


def trainer(arm: str, config):
    """A jitted train(params, inputs, targets, selection, report, learning_rate) running
    `num_steps` Adam steps as lax.scans of `eval_every` steps, scoring the report split after
    each; returns (report loss every eval_every steps, final selection scores, final report
    scores). The learning rate is traced: one compilation per arm."""
    _, logits_fn, optimizer = model(arm, config)

    def loss_fn(params, batch):
        return scores(logits_fn(params, batch[0]), batch[1], config.copy_length)["loss"]

    def evaluate(params, split):
        result = scores(logits_fn(params, split[0]), split[1], config.copy_length)
        if arm != "lstm":
            result["orthogonality"] = orthogonality(params["recurrent"])
        return result

    @jax.jit
    def train(params, inputs, targets, selection, report, learning_rate):
        tx = optimizer(learning_rate)

        def step(carry, batch):
            params, state = carry
            grads = jax.grad(loss_fn)(params, batch)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        def chunk(carry, batches):
            carry = jax.lax.scan(step, carry, batches)[0]
            return carry, scores(logits_fn(carry[0], report[0]), report[1], config.copy_length)["loss"]

        shape = (config.num_steps // config.eval_every, config.eval_every)
        chunks = (inputs.reshape(shape + inputs.shape[1:]), targets.reshape(shape + targets.shape[1:]))
        (params, _), curve = jax.lax.scan(chunk, (params, tx.init(params)), chunks)
        return curve, evaluate(params, selection), evaluate(params, report)

    return train


def steps_to(curve, threshold: float, config) -> int:
    """The first step (a multiple of eval_every) whose report loss is at most `threshold`;
    num_steps + eval_every when none is (a lower bound on the true count)."""
    hits = np.flatnonzero(np.asarray(curve) <= threshold)
    return int((hits[0] + 1) * config.eval_every) if hits.size else config.num_steps + config.eval_every


def arms(config) -> dict[str, protocol.Arm]:
    rates = {"learning_rate": [float(r) for r in config.learning_rates]}
    return {**{name: protocol.Arm(grid=rates) for name in config.arms}, REFERENCE: protocol.Arm()}


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    start, cpu_start = time.perf_counter(), time.process_time()
    splits = {name: batches(config, 0, split, 1, config.eval_size) for name, split in (("selection", 1), ("report", 2))}
    splits = {name: (inputs[0], targets[0]) for name, (inputs, targets) in splits.items()}
    trainers, inits = {}, {}

    def run_one(arm, settings, seed, rundir):
        if arm == REFERENCE:
            return {"selection": memoryless(config), "report": memoryless(config)}
        if arm not in trainers:
            trainers[arm], inits[arm] = trainer(arm, config), model(arm, config)[0]
        inputs, targets = batches(config, seed, 0, config.num_steps, config.batch_size)
        out = trainers[arm](inits[arm](seed), inputs, targets, splits["selection"], splits["report"],
                            settings["learning_rate"])
        curve, selection, report = jax.device_get(out)
        report["steps_to_half"] = steps_to(curve, memoryless(config)["loss"] / 2, config)
        if harness.is_main_process():
            os.makedirs(rundir, exist_ok=True)
            np.save(os.path.join(rundir, CURVE_FILE), curve)
        return {"selection": selection, "report": report}

    results = protocol.compare(config, arms(config), run_one, select_on="loss", minimize=True, workdir=workdir)
    results["runtime_seconds"], results["cpu_seconds"] = time.perf_counter() - start, time.process_time() - cpu_start
    results["quick"], results["cpus"] = bool(config.quick), os.cpu_count()
    protocol.write(workdir, results, title=f"Copying memory, delay T = {config.delay}")
    plot(config, results, workdir)
    summary = {f"{arm}/{m}": v["mean"] for arm, r in results["arms"].items() for m, v in r["metrics"].items()}
    summary["runtime_seconds"] = results["runtime_seconds"]
    harness.write_summary(workdir, summary)
    return summary


def plot(config, results: dict, workdir: str) -> str:
    """copy_memory.png: each arm's report loss during training at its chosen setting (mean over
    the report seeds; the memoryless loss and half of it dashed), and each arm's selection loss
    against its learning-rate grid."""
    import matplotlib.pyplot as plt  # harness.plots set the Agg backend

    path = os.path.join(workdir, "copy_memory.png")
    if not harness.is_main_process():
        return path
    root = os.path.join(workdir, "protocol", results["config_hash"])
    fig, (curves, tuning) = plt.subplots(1, 2, figsize=(11, 4))
    for name in config.arms:
        arm = results["arms"][name]
        key = protocol.settings_key(arm["chosen"])
        losses = np.mean([np.load(os.path.join(root, name, key, f"seed{s}", CURVE_FILE)) for s in arm["seeds"]], 0)
        curves.plot(config.eval_every * np.arange(1, len(losses) + 1), losses, label=f"{name} (lr {arm['chosen']['learning_rate']:.3g})")
        rates = sorted(arm["grid"]["learning_rate"])
        tuning.plot(rates, [arm["selection"][protocol.settings_key({"learning_rate": r})] for r in rates], "o-", label=name)
    for ax in (curves, tuning):
        ax.axhline(memoryless(config)["loss"], color="gray", ls="--", label=REFERENCE)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    curves.axhline(memoryless(config)["loss"] / 2, color="gray", ls=":", label="half of it")
    for ax in (curves, tuning):
        ax.legend()
    curves.set(xlabel="step", ylabel="report loss", title=f"training, mean over {len(config.seeds)} seeds")
    tuning.set(xscale="log", xlabel="learning rate", ylabel="selection loss", title="tuning (selection split)")
    fig.suptitle(f"Copying memory, T = {config.delay}: O(n) RNN vs unconstrained RNN vs LSTM")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Character-level language modelling: AdamW vs orthogonalized-momentum optimizers.

Corpus: the Python standard library's own sources (the sorted *.py files next to `os`), read
as bytes, the first `corpus_bytes` of their concatenation; the vocabulary is the set of bytes
that occur. The last `val_fraction` is held out. Nothing is downloaded.

Model: a pre-norm causal transformer in Flax NNX, x <- x + Attn(LN(x)), x <- x + MLP(LN(x)),
with learned token and position embeddings and a linear head. The orthogonalized optimizers
(mo.muon, mo.auon, mo.hybrid_auon, mo.normuon, mo.conda, mo.root) update the hidden matrices:
the q, k and v projections each as its own (d_model, d_model) matrix (the fused kernel is
(d, 3, heads, head_dim): fan-in axis 0, fan-out axes (2, 3), batch axis 1), the attention output
(heads, head_dim, d) and both MLP kernels. Embeddings, head, norms and biases go to their AdamW
branch at AdamW's learning rate.

Protocol: every optimizer runs `sweep_steps` steps at base_lr * factor for each sweep factor,
keeps the rate with the lowest validation loss, then trains `num_steps` steps from the same
initialization on the same batches (warmup + cosine schedule). Reported: final validation loss
(nats/char) and the first evaluated step at which each optimizer reaches AdamW's final loss.
"""
from __future__ import annotations

import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from optax.contrib import MuonDimensionNumbers as DimensionNumbers

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks

OPTIMIZERS = ("adamw", "muon", "auon", "hybrid_auon", "normuon", "conda", "root")
PLOT = "val_loss.png"


class Block(nnx.Module):
    """Pre-norm transformer block with causal multi-head self-attention."""

    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, rngs: nnx.Rngs):
        head_dim = d_model // num_heads
        self.norm1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.qkv = nnx.LinearGeneral(d_model, (3, num_heads, head_dim), rngs=rngs)
        self.out = nnx.LinearGeneral((num_heads, head_dim), d_model, axis=(-2, -1), rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.fc1 = nnx.Linear(d_model, mlp_ratio * d_model, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_ratio * d_model, d_model, rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.moveaxis(self.qkv(self.norm1(x)), -3, 0)  # each (batch, time, heads, head_dim)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        causal = jnp.tril(jnp.ones((x.shape[-2], x.shape[-2]), bool))
        weights = jax.nn.softmax(jnp.where(causal, logits, -jnp.inf), axis=-1)
        x = x + self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v))
        return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class CharTransformer(nnx.Module):
    def __init__(self, vocab: int, context: int, d_model: int, num_heads: int, num_layers: int, mlp_ratio: int,
                 rngs: nnx.Rngs):
        self.embed = nnx.Embed(vocab, d_model, rngs=rngs)
        self.position = nnx.Embed(context, d_model, rngs=rngs)
        self.blocks = nnx.List([Block(d_model, num_heads, mlp_ratio, rngs) for _ in range(num_layers)])
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, vocab, rngs=rngs)

    def __call__(self, tokens):
        x = self.embed(tokens) + self.position(jnp.arange(tokens.shape[-1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def validate(config) -> None:
    """ValueError naming the key of the first bad char_lm value."""
    checks.check_common(config)
    harness.check_parallel(config)
    if not config.optimizers:
        raise ValueError("config.optimizers: expected at least one optimizer")
    for name in config.optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"config.optimizers: unknown optimizer {name!r}; expected some of {list(OPTIMIZERS)}")
    if "adamw" not in config.optimizers:
        raise ValueError("config.optimizers: must include 'adamw' (the baseline and the non-matrix rate)")
    for name in config.optimizers:
        if name not in config.learning_rates:
            raise ValueError(f"config.learning_rates: no base learning rate for {name!r}")
        lr = config.learning_rates[name]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"config.learning_rates.{name}: expected a positive number, got {lr!r}")
    for factor in config.sweep_factors:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
            raise ValueError(f"config.sweep_factors: expected positive numbers, got {tuple(config.sweep_factors)!r}")
    for key in ("sweep_steps", "eval_every", "corpus_bytes", "val_batches", "context", "d_model", "num_heads",
                "num_layers", "mlp_ratio", "conda_update_proj_gap"):
        checks.check_int(config, key)
    if config.d_model % config.num_heads:
        raise ValueError(f"config.num_heads: {config.num_heads} does not divide d_model={config.d_model}")
    if not 0.0 <= config.warmup_fraction < 1.0:
        raise ValueError(f"config.warmup_fraction: expected a number in [0, 1), got {config.warmup_fraction!r}")
    if isinstance(config.weight_decay, bool) or not config.weight_decay >= 0.0:
        raise ValueError(f"config.weight_decay: expected a nonnegative number, got {config.weight_decay!r}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(f"config.val_fraction: expected a number in (0, 1), got {config.val_fraction!r}")


def stdlib_corpus(num_bytes: int) -> bytes:
    """The first num_bytes of the sorted standard-library *.py files, concatenated."""
    chunks, total = [], 0
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(path, "rb") as f:
            chunks.append(f.read(num_bytes - total))
        total += len(chunks[-1])
        if total >= num_bytes:
            break
    return b"".join(chunks)


def load_data(config):
    """(train ids, val ids, vocab size): byte ids mapped onto the bytes that occur."""
    raw = np.frombuffer(stdlib_corpus(config.corpus_bytes), np.uint8)
    vocab, ids = np.unique(raw, return_inverse=True)
    ids = ids.astype(np.int32)
    n_val = int(len(ids) * config.val_fraction)
    train, val = ids[:-n_val], ids[-n_val:]
    if min(len(train), len(val)) <= config.context + 1:
        raise ValueError(
            f"config.corpus_bytes: {config.corpus_bytes} bytes leave splits of {len(train)}/{len(val)} tokens, "
            f"too short for context {config.context}"
        )
    return train, val, len(vocab)


def windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return ids[starts[:, None] + np.arange(length)]


def batch_fn(train: np.ndarray, config):
    """step -> {"tokens": (batch, context + 1)}: random windows drawn from (seed, step), so a
    resumed run and every optimizer see the same batches."""

    def get(step):
        starts = np.random.default_rng([config.seed, step]).integers(0, len(train) - config.context - 1,
                                                                      config.batch_size)
        return {"tokens": windows(train, starts, config.context + 1)}

    return get


def validation_set(val: np.ndarray, config) -> dict:
    """val_batches * batch_size evenly spaced windows of the held-out text."""
    n = config.val_batches * config.batch_size
    starts = np.linspace(0, len(val) - config.context - 1, n).astype(np.int64)
    return {"tokens": windows(val, starts, config.context + 1)}


def build(config, vocab: int):
    """(initial params as a pure dict, loss_fn, weight_dimension_numbers for the optimizers)."""
    def make_model():
        return CharTransformer(vocab, config.context, config.d_model, config.num_heads, config.num_layers,
                               config.mlp_ratio, nnx.Rngs(config.seed))

    graphdef, _ = nnx.split(nnx.eval_shape(make_model))
    params = jax.jit(lambda: nnx.to_pure_dict(nnx.state(make_model())))()  # one compile, not one per init op

    def loss_fn(params, batch):
        tokens = batch["tokens"]
        logits = nnx.merge(graphdef, params)(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(), {}

    return params, loss_fn, matrix_dimension_numbers(params)


def matrix_dimension_numbers(params):
    """DimensionNumbers for qkv (q, k, v as separate matrices), True for the attention output and
    MLP kernels, False for everything else (embeddings, head, norms, biases)."""

    def spec(path, x):
        module, leaf = str(path[-2].key), str(path[-1].key)
        if leaf != "kernel" or module not in ("qkv", "out", "fc1", "fc2"):
            return False
        return DimensionNumbers(reduction_axis=0, output_axis=(2, 3)) if module == "qkv" else True

    return jax.tree_util.tree_map_with_path(spec, params)


def schedule(peak, num_steps, warmup_fraction: float):
    """Linear warmup over max(1, warmup_fraction * num_steps) steps to `peak`, then cosine decay
    to peak / 10 at num_steps. `peak` and `num_steps` may be traced (optax.inject_hyperparams)."""

    def lr(count):
        t, total = jnp.asarray(count, jnp.float32), jnp.asarray(num_steps, jnp.float32)
        warmup = jnp.maximum(1.0, jnp.floor(warmup_fraction * total))
        progress = jnp.clip((t - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
        decay = 0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * progress))
        return peak * jnp.where(t < warmup, t / warmup, decay)

    return lr


def make_optimizer(name: str, dims, config):
    """optimizer(learning_rate=, adam_learning_rate=, num_steps=): the peak rates and schedule
    length live in the optimizer state (optax.inject_hyperparams), so one compiled step serves
    the whole sweep and the full run of an optimizer."""

    def factory(learning_rate, adam_learning_rate, num_steps):
        lr = schedule(learning_rate, num_steps, config.warmup_fraction)
        if name == "adamw":
            return optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=config.weight_decay)
        kwargs = dict(weight_dimension_numbers=dims,
                      adam_learning_rate=schedule(adam_learning_rate, num_steps, config.warmup_fraction))
        if name == "conda":
            kwargs["update_proj_gap"] = config.conda_update_proj_gap
        return getattr(mo, name)(lr, **kwargs)

    return optax.inject_hyperparams(factory)


def final_value(history, key: str) -> float:
    values = [r[key] for r in history if key in r]
    return float(values[-1]) if values else math.nan


def steps_to_reach(history, key: str, target: float):
    """The first recorded step with history[key] <= target, or None."""
    return next((r["step"] for r in history if key in r and r[key] <= target), None)


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    train_ids, val_ids, vocab = load_data(config)
    params, loss_fn, dims = build(config, vocab)
    val_set = validation_set(val_ids, config)
    batches = batch_fn(train_ids, config)

    validation_loss = jax.jit(lambda params: loss_fn(params, val_set)[0])  # one compile for all optimizers

    def evaluate(state):
        return {"val/loss": validation_loss(state["params"])}

    def train(name, lr, adam_lr, num_steps, subdir, eval_every):
        optimizer = make_optimizer(name, dims, config)(
            learning_rate=lr, adam_learning_rate=adam_lr, num_steps=num_steps
        )
        state = {"params": params, "opt_state": optimizer.init(params)}
        if name not in compiled:  # one compile per optimizer: rates and length are state
            compiled[name] = harness.compile_step(loss_fn, optimizer, config.parallel, config.mesh_shape, state)
        return harness.train(
            state, compiled[name], batches, num_steps, workdir=os.path.join(workdir, subdir), name=subdir,
            log_every=config.log_every, checkpoint_every=config.checkpoint_every, stop_after=config.stop_after,
            evaluate=evaluate, eval_every=eval_every,
        )

    compiled = {}
    names = ["adamw"] + [n for n in config.optimizers if n != "adamw"]  # AdamW's rate feeds the others
    chosen, sweep = {}, {}
    for name in names:
        adam_lr = chosen.get("adamw", config.learning_rates.adamw)
        base = config.learning_rates[name]
        sweep[name] = {}
        for factor in config.sweep_factors:
            lr = base * factor
            result = train(name, lr, adam_lr, config.sweep_steps, f"sweep/{name}/lr_{lr:.3g}", config.sweep_steps)
            sweep[name][lr] = final_value(result.history, "val/loss")
        finite = {lr: v for lr, v in sweep[name].items() if math.isfinite(v)}
        chosen[name] = min(finite, key=finite.get) if finite else base
        logging.info("%s: sweep %s -> learning rate %.3g", name, sweep[name], chosen[name])

    histories, results = {}, {}
    for name in names:
        result = train(name, chosen[name], chosen["adamw"], config.num_steps, name, config.eval_every)
        histories[name] = result.history
        results[f"{name}/learning_rate"] = chosen[name]
        results[f"{name}/val/loss"] = final_value(result.history, "val/loss")
        results[f"{name}/train/loss"] = final_value(result.history, "train/loss")
        results[f"{name}/steps_per_second"] = result.steps_per_second
    target = results["adamw/val/loss"]
    for name in names:
        reached = steps_to_reach(histories[name], "val/loss", target)
        results[f"{name}/steps_to_adamw_loss"] = math.nan if reached is None else float(reached)
    harness.write_summary(workdir, results)
    harness.plot_curves(
        histories, ["train/loss", "val/loss"], os.path.join(workdir, PLOT),
        title=f"char-level LM on the stdlib sources ({config.num_steps} steps)",
    )
    write_tables(workdir, names, results, sweep, config)
    return results


def table(names, results, config) -> str:
    """Markdown table: optimizer, chosen lr, final val loss, steps to AdamW's final val loss."""
    lines = [
        f"| optimizer | lr | final val loss | steps to AdamW's {results['adamw/val/loss']:.4f} |",
        "|---|---|---|---|",
    ]
    for name in names:
        reached = results[f"{name}/steps_to_adamw_loss"]
        reached = "not reached" if math.isnan(reached) else f"{int(reached)} / {config.num_steps}"
        lines.append(
            f"| {name} | {results[f'{name}/learning_rate']:.3g} | {results[f'{name}/val/loss']:.4f} | {reached} |"
        )
    return "\n".join(lines)


def write_tables(workdir: str, names, results: dict, sweep: dict, config) -> None:
    """Print the table and write it to results.md, with the sweeps, to results.json."""
    rows = [
        {
            "optimizer": name,
            "learning_rate": results[f"{name}/learning_rate"],
            "final_val_loss": results[f"{name}/val/loss"],
            "steps_to_adamw_loss": None if math.isnan(results[f"{name}/steps_to_adamw_loss"])
            else int(results[f"{name}/steps_to_adamw_loss"]),
            "sweep": {f"{lr:.3g}": loss for lr, loss in sweep[name].items()},
        }
        for name in names
    ]
    payload = {"num_steps": config.num_steps, "sweep_steps": config.sweep_steps, "rows": rows}
    harness.write_results(workdir, table(names, results, config), payload)

"""Character-level language modelling: steps to a target validation loss (the optimizer track's
metric) for AdamW and the orthogonalized-momentum optimizers, compared by the protocol.

Corpus: the Python standard library's own sources (the sorted *.py files next to `os`), read
as bytes, the first `corpus_bytes` of their concatenation; the vocabulary is the set of bytes
that occur. Three contiguous splits: train, then a *selection* split (`selection_fraction`,
scored only to choose learning rates), then the *report* split (`val_fraction`, the validation
loss every table number comes from). Nothing is downloaded.

Model (fixed for every arm, as is the batch): a pre-norm causal transformer in Flax NNX,
x <- x + Attn(LN(x)), x <- x + MLP(LN(x)), learned token and position embeddings, a linear head.
The orthogonalized optimizers update the hidden matrices: q, k and v each as its own
(d_model, d_model) matrix (the fused kernel is (d, 3, heads, head_dim): fan-in axis 0, fan-out
axes (2, 3), batch axis 1), the attention output and both MLP kernels. Embeddings, head, norms
and biases go to their AdamW branch at the fixed `adam_learning_rate`, the same for every arm.

Arms: adamw, muon, muon_pe (Muon with the Polar Express coefficients), normuon, conda, and
muonh (mo.muon(hyperball=True)) where the library has it. One weight-decay policy for all:
`weight_decay` on every branch of every arm. Every run has the same schedule (linear warmup,
cosine decay to 10%) over `num_steps`.

Protocol (experiments/harness/protocol.py): each arm's peak learning rate is chosen from its
grid (extended until the choice is interior) by the final *selection*-split loss, then rerun
on the paired `seeds` (seed s: the same initialization and batches for every arm). Report
metrics, per seed:

    final_loss            report-split loss after num_steps (nats/char)
    steps_to_target       first step at which the report loss reaches `target_loss`, linearly
                          interpolated between evaluations; NaN when never reached
    log_steps_to_target   its natural log: paired differences are log step ratios, so
                          "a < b on log_steps_to_target by ln(r)" reads "a needs r x fewer steps"
    speedup_vs_adamw,     steps_to_target of adamw (of muon) over the arm's, per seed
    speedup_vs_muon

The papers' claims are declared in the config and judged by the protocol.
"""
from __future__ import annotations

import concurrent.futures
import glob
import inspect
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from optax.contrib import MuonDimensionNumbers as DimensionNumbers

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
from experiments.harness import protocol
from experiments.harness.plots import plt

OPTIMIZERS = ("adamw", "muon", "muon_pe", "muonh", "normuon", "conda", "auon", "hybrid_auon", "root")
REFERENCES = ("adamw", "muon")  # the step ratios are taken against these
PLOT = "val_loss.png"
SELECTION_PLOT = "lr_selection.png"


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
    for name in config.optimizers:
        if name not in available_optimizers():
            raise ValueError(f"config.optimizers: unknown optimizer {name!r}; expected some of {list(available_optimizers())}")
    for name in REFERENCES:
        if name not in config.optimizers:
            raise ValueError(f"config.optimizers: must include {name!r} (a reference for the step ratios)")
    for name in config.optimizers:
        if name not in config.learning_rate_grids:
            raise ValueError(f"config.learning_rate_grids: no grid for {name!r}")
        grid = tuple(config.learning_rate_grids[name])
        if len(grid) < 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in grid):
            raise ValueError(f"config.learning_rate_grids.{name}: expected >= 2 positive numbers, got {grid!r}")
    for key in ("arm_threads", "eval_every", "corpus_bytes", "val_batches", "context", "d_model", "num_heads", "num_layers",
                "mlp_ratio", "conda_update_proj_gap"):
        checks.check_int(config, key)
    for key in ("adam_learning_rate", "target_loss"):
        checks.check_positive_float(config, key)
    if config.d_model % config.num_heads:
        raise ValueError(f"config.num_heads: {config.num_heads} does not divide d_model={config.d_model}")
    if not 0.0 <= config.warmup_fraction < 1.0:
        raise ValueError(f"config.warmup_fraction: expected a number in [0, 1), got {config.warmup_fraction!r}")
    if isinstance(config.weight_decay, bool) or not config.weight_decay >= 0.0:
        raise ValueError(f"config.weight_decay: expected a nonnegative number, got {config.weight_decay!r}")
    for key in ("val_fraction", "selection_fraction"):
        if not 0.0 < config[key] < 0.5:
            raise ValueError(f"config.{key}: expected a number in (0, 0.5), got {config[key]!r}")


def available_optimizers() -> tuple[str, ...]:
    """OPTIMIZERS, with muonh only where mo.muon has the hyperball keyword."""
    has_hyperball = "hyperball" in inspect.signature(mo.muon).parameters
    return tuple(n for n in OPTIMIZERS if n != "muonh" or has_hyperball)


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
    """(train, selection, report ids, vocab size): byte ids mapped onto the bytes that occur,
    split contiguously in that order."""
    raw = np.frombuffer(stdlib_corpus(config.corpus_bytes), np.uint8)
    vocab, ids = np.unique(raw, return_inverse=True)
    ids = ids.astype(np.int32)
    n_report, n_selection = int(len(ids) * config.val_fraction), int(len(ids) * config.selection_fraction)
    train, selection, report = np.split(ids, [len(ids) - n_report - n_selection, len(ids) - n_report])
    if min(len(train), len(selection), len(report)) <= config.context + 1:
        raise ValueError(
            f"config.corpus_bytes: {config.corpus_bytes} bytes leave splits of {len(train)}/{len(selection)}/"
            f"{len(report)} tokens, too short for context {config.context}"
        )
    return train, selection, report, len(vocab)


def windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return ids[starts[:, None] + np.arange(length)]


def batch_fn(train: np.ndarray, config, seed: int):
    """step -> {"tokens": (batch, context + 1)}: random windows drawn from (seed, step), so a
    resumed run and every optimizer see the same batches."""

    def get(step):
        starts = np.random.default_rng([seed, step]).integers(0, len(train) - config.context - 1, config.batch_size)
        return {"tokens": windows(train, starts, config.context + 1)}

    return get


def eval_set(ids: np.ndarray, config) -> dict:
    """val_batches * batch_size evenly spaced windows of a held-out split."""
    n = config.val_batches * config.batch_size
    starts = np.linspace(0, len(ids) - config.context - 1, n).astype(np.int64)
    return {"tokens": windows(ids, starts, config.context + 1)}


def build(config, vocab: int):
    """(init(seed) -> params as a pure dict, loss_fn, weight_dimension_numbers)."""
    def make_model(key):
        return CharTransformer(vocab, config.context, config.d_model, config.num_heads, config.num_layers,
                               config.mlp_ratio, nnx.Rngs(key))

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make_model(jax.random.key(0))))
    init_key = jax.jit(lambda key: nnx.to_pure_dict(nnx.state(make_model(key))))  # one compile for every seed

    def init(seed):
        return init_key(jax.random.key(seed))

    def loss_fn(params, batch):
        tokens = batch["tokens"]
        logits = nnx.merge(graphdef, params)(tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(), {}

    return init, loss_fn, matrix_dimension_numbers(nnx.to_pure_dict(abstract))


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
    """optimizer(learning_rate=): the peak rate lives in the optimizer state
    (optax.inject_hyperparams), so one compiled step serves every rate and seed of an arm.
    The same weight decay on every branch of every arm; the same AdamW-branch rate and betas."""

    def factory(learning_rate):
        lr = schedule(learning_rate, config.num_steps, config.warmup_fraction)
        if name == "adamw":
            return optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=config.weight_decay)
        kwargs = dict(weight_dimension_numbers=dims, weight_decay=config.weight_decay,
                      adam_weight_decay=config.weight_decay,
                      adam_learning_rate=schedule(config.adam_learning_rate, config.num_steps, config.warmup_fraction))
        if name == "conda":
            return mo.conda(lr, update_proj_gap=config.conda_update_proj_gap, adam_b1=0.9, adam_b2=0.95,
                            adam_eps=1e-8, **kwargs)
        if name == "muon_pe":
            return mo.muon(lr, ns_coeffs="polar_express", **kwargs)
        if name == "muonh":
            return mo.muon(lr, hyperball=True, **kwargs)
        return getattr(mo, name)(lr, **kwargs)

    return optax.inject_hyperparams(factory)


def steps_to_reach(history, key: str, target: float) -> float:
    """The step at which history[key] first reaches `target`, linearly interpolated between the
    recorded value before it and the first one at or below it; NaN if never reached."""
    points = [(r["step"], float(r[key])) for r in history if key in r]
    for i, (step, value) in enumerate(points):
        if value <= target:
            if i == 0:
                return float(step)
            (s0, v0) = points[i - 1]
            return s0 + (step - s0) * (v0 - target) / (v0 - value)
    return math.nan


class Runs:
    """Trains one (arm, settings, seed) for the protocol; compiled steps are shared by every
    rate and seed of an arm."""

    def __init__(self, config):
        self.config = config
        train, selection, report, vocab = load_data(config)
        self.train_ids = train
        self.init, self.loss_fn, self.dims = build(config, vocab)
        self.splits = {"selection": eval_set(selection, config), "report": eval_set(report, config)}
        self.loss = jax.jit(lambda params, batch: self.loss_fn(params, batch)[0])
        self.compiled = {}

    def __call__(self, arm: str, settings: dict, seed: int, rundir: str) -> dict:
        config = self.config
        optimizer = make_optimizer(arm, self.dims, config)(learning_rate=settings["learning_rate"])
        params = self.init(seed)
        state = {"params": params, "opt_state": optimizer.init(params)}
        if arm not in self.compiled:
            self.compiled[arm] = harness.compile_step(self.loss_fn, optimizer, config.parallel, config.mesh_shape, state)
        result = harness.train(
            state, self.compiled[arm], batch_fn(self.train_ids, config, seed), config.num_steps, workdir=rundir,
            name=f"{arm} {protocol.settings_key(settings)} seed {seed}", log_every=config.log_every,
            checkpoint_every=config.checkpoint_every, stop_after=config.stop_after,
            evaluate=lambda s: {"val/loss": self.loss(s["params"], self.splits["report"])},
            eval_every=config.eval_every,
        )
        steps = steps_to_reach(result.history, "val/loss", config.target_loss)
        return {
            "selection": {"loss": self.loss(result.state["params"], self.splits["selection"])},
            "report": {"final_loss": [r["val/loss"] for r in result.history if "val/loss" in r][-1],
                       "steps_to_target": steps, "log_steps_to_target": math.log(steps)},
        }


def add_speedups(results: dict) -> None:
    """Per arm, speedup_vs_<ref> = steps_to_target(ref) / steps_to_target(arm) on each paired seed."""
    steps = {name: np.asarray(arm["metrics"]["steps_to_target"]["values"]) for name, arm in results["arms"].items()}
    for name, arm in results["arms"].items():
        for ref in REFERENCES:
            ratio = (steps[ref] / steps[name]).tolist()
            arm["metrics"][f"speedup_vs_{ref}"] = {**protocol.interval(ratio), "values": ratio}


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    arms = {name: protocol.Arm(grid={"learning_rate": tuple(config.learning_rate_grids[name])})
            for name in config.optimizers}
    runs = Runs(config)
    if config.arm_threads > 1:  # fill the protocol's cache one arm per thread (claims do not change the hash)
        alone = ml_collections.ConfigDict({**config.to_dict(), "claims": ()})
        with concurrent.futures.ThreadPoolExecutor(config.arm_threads) as pool:
            for done in [pool.submit(protocol.compare, alone, {name: arm}, runs, select_on="loss", minimize=True,
                                     workdir=workdir) for name, arm in arms.items()]:
                done.result()
    results = protocol.compare(config, arms, runs, select_on="loss", minimize=True, workdir=workdir)
    add_speedups(results)
    results["target_loss"] = config.target_loss
    results["num_steps"] = config.num_steps
    root = os.path.join(workdir, "protocol", results["config_hash"])
    histories = {name: harness.read_history(os.path.join(root, name, protocol.settings_key(arm["chosen"]),
                                                          f"seed{config.seeds[0]}"))
                 for name, arm in results["arms"].items()}
    harness.plot_curves(histories, ["val/loss"], os.path.join(workdir, PLOT),
                        title=f"report-split loss, seed {config.seeds[0]} (target {config.target_loss})")
    plot_selection(results, os.path.join(workdir, SELECTION_PLOT))
    note = (f"\nsteps_to_target: first step at which the report-split loss reaches {config.target_loss} nats/char "
            f"(of {config.num_steps}; interpolated between evaluations every {config.eval_every} steps); "
            "speedup_vs_X: X's steps over the arm's, per paired seed.\n")
    protocol.write(workdir, results, title="char_lm: steps to a target validation loss", extra_text=note)
    return {f"{name}/{metric}": summary["mean"] for name, arm in results["arms"].items()
            for metric, summary in arm["metrics"].items()}


def plot_selection(results: dict, path: str) -> str:
    """Final selection-split loss against the peak learning rate, one line per arm (the grids
    with their extensions; the chosen rate marked)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, arm in results["arms"].items():
        points = sorted((float(key.split("=")[1]), loss) for key, loss in arm["selection"].items())
        line, = ax.plot(*zip(*points), marker="o", label=name)
        chosen = arm["chosen"]["learning_rate"]
        ax.plot([chosen], [arm["selection"][protocol.settings_key(arm["chosen"])]], "*", ms=14, color=line.get_color())
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="final selection-split loss",
           title="learning-rate brackets (star: chosen)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Hyper-connection mixers in a weight-tied recursive model on generated ARC-style grid tasks.

Data (generated, nothing downloaded): a grid x grid input of colors (0 = background, a
`density` fraction of cells colored) and one task token; the target is the output grid of the
task: "rotate" (90 degrees clockwise), "reflect" (left-right), "colormap" (a fixed permutation of
the non-background colors), "count" (the first k cells, row-major, colored 1, for k colored input
cells), "gravity" (colored cells fall to the bottom of their column, keeping their order).
Training batches are a deterministic function of (seed, step); the selection and report splits
are two further held-out sets.

Model: one pre-norm transformer layer (attention, MLP) applied `recursions` times with tied
weights, as in the recursive model of JPmHC (Tiny Recursive Model style); each of its two blocks
sits in one `mo.nn.HyperConnections` shared by every recursion, so its residual mixer H enters
the forward map `recursions` times and its deviations compound (H^R). "identity" (one stream) is
the plain residual recursion.

Fair comparison (`experiments/harness/protocol.py`): every mixer's learning rate is tuned on the
selection split with the same grid; the chosen rate reruns on paired report seeds. Report
metrics per run: final loss and exact match (every cell right), `steps_to_threshold` (first
evaluation step whose report-split loss is <= `loss_threshold`; num_steps + eval_every when never
reached), `mixer_distance` (max over the two mixers of ||H - I||_F after training), and the
Jacobian of the streams after r recursions with respect to the input streams (one report
example): its measured mean squared singular value `jacobian_m1@r` next to the free-probability
prediction `predicted_m1@r` from the trained mixers alone (isometric blocks;
`mo.nn.predict_jacobian_spectrum`), for r in `spectrum_depths`. Claims are declared in the
config and judged by the protocol.
"""
from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import manifold_opt as mo
from experiments.harness import config as checks
from experiments.harness import protocol
from experiments.harness.plots import plt

TASKS = ("rotate", "reflect", "colormap", "count", "gravity")


# ---- data -----------------------------------------------------------------------------------
def solve(task: str, grid: np.ndarray, colors: int) -> np.ndarray:
    """The output grid of `task` for one input grid (side g, colors 0..colors-1)."""
    if task == "rotate":
        return np.rot90(grid, k=-1)
    if task == "reflect":
        return grid[:, ::-1]
    if task == "colormap":
        mapping = np.concatenate([[0], np.roll(np.arange(1, colors), 1)])
        return mapping[grid]
    if task == "count":
        out = np.zeros(grid.size, grid.dtype)
        out[: np.count_nonzero(grid)] = 1
        return out.reshape(grid.shape)
    if task == "gravity":
        out = np.zeros_like(grid)
        for j in range(grid.shape[1]):
            column = grid[:, j][grid[:, j] > 0]
            out[grid.shape[0] - len(column):, j] = column
        return out
    raise ValueError(f"solve: unknown task {task!r}; expected one of {list(TASKS)}")


def make_batch(config, rng: np.random.Generator, size: int) -> dict:
    """`size` examples: tokens (size, 1 + g^2) = [task token, cells], targets (size, g^2)."""
    g, colors = config.grid, config.colors
    task_ids = rng.integers(len(config.tasks), size=size)
    grids = np.where(rng.random((size, g, g)) < config.density, rng.integers(1, colors, (size, g, g)), 0)
    targets = np.stack([solve(config.tasks[t], grid, colors) for t, grid in zip(task_ids, grids)])
    tokens = np.concatenate([colors + task_ids[:, None], grids.reshape(size, -1)], axis=1)
    return {"tokens": tokens.astype(np.int32), "targets": targets.reshape(size, -1).astype(np.int32)}


# ---- model ----------------------------------------------------------------------------------
class Attention(nnx.Module):
    def __init__(self, d, heads, rngs):
        self.norm = nnx.RMSNorm(d, rngs=rngs)
        self.qkv = nnx.LinearGeneral(d, (3, heads, d // heads), rngs=rngs)
        self.out = nnx.LinearGeneral((heads, d // heads), d, axis=(-2, -1), rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.moveaxis(self.qkv(self.norm(x)), -3, 0)
        weights = jax.nn.softmax(jnp.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1]), axis=-1)
        return self.out(jnp.einsum("...hqk,...khd->...qhd", weights, v))


class MLP(nnx.Module):
    def __init__(self, d, ratio, rngs):
        self.norm = nnx.RMSNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, ratio * d, rngs=rngs)
        self.down = nnx.Linear(ratio * d, d, rngs=rngs)

    def __call__(self, x):
        return self.down(nnx.gelu(self.up(self.norm(x))))


class RecursiveTransformer(nnx.Module):
    """Token + position embedding, then `recursions` x (attention, MLP) with tied weights, each
    block in one hyper-connection shared across recursions; reduce, norm, per-cell head."""

    def __init__(self, config, mixer: str, rngs: nnx.Rngs, dynamic: bool = False):
        d = config.d_model
        self.n = 1 if mixer == "identity" else config.n_streams
        self.recursions = config.recursions
        length, vocab = 1 + config.grid**2, config.colors + len(config.tasks)
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, d)))
        self.blocks = nnx.List([Attention(d, config.num_heads, rngs), MLP(d, config.mlp_ratio, rngs)])
        self.hcs = nnx.List([mo.nn.HyperConnections(self.n, mixer=mixer, layer_index=i, dynamic=dynamic, dim=d, rngs=rngs)
                             for i in range(2)])
        self.norm = nnx.RMSNorm(d, rngs=rngs)
        self.head = nnx.Linear(d, config.colors, rngs=rngs)

    def recurse(self, h, times: int):
        """Streams (..., T, n, d) after `times` recursions of the tied layer."""
        for _ in range(times):
            for hc, block in zip(self.hcs, self.blocks):
                h = hc(h, block)
        return h

    def embed_tokens(self, tokens):
        return mo.nn.expand_streams(self.embed(tokens) + self.position[...], self.n)

    def __call__(self, tokens):
        h = self.recurse(self.embed_tokens(tokens), self.recursions)
        return self.head(self.norm(mo.nn.reduce_streams(h)))[..., 1:, :]

    def residual_matrices(self):
        return jnp.stack([hc.residual_matrix() for hc in self.hcs])


# ---- runs -----------------------------------------------------------------------------------
def validate(config) -> None:
    """ValueError naming the key of the first bad hyperconnections value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: hyperconnections runs on one device, got {config.parallel!r}")
    if not config.mixers or not all(m in mo.nn.MIXERS for m in config.mixers):
        raise ValueError(f"config.mixers: expected mixers among {list(mo.nn.MIXERS)}, got {tuple(config.mixers)!r}")
    if not config.tasks or not all(t in TASKS for t in config.tasks):
        raise ValueError(f"config.tasks: expected tasks among {list(TASKS)}, got {tuple(config.tasks)!r}")
    for key in ("n_streams", "grid", "d_model", "num_heads", "mlp_ratio", "recursions", "eval_every", "eval_size"):
        checks.check_int(config, key)
    checks.check_int(config, "colors", minimum=3)
    if config.d_model % config.num_heads:
        raise ValueError(f"config.d_model: {config.d_model} is not divisible by num_heads={config.num_heads}")
    if config.num_steps % config.eval_every:
        raise ValueError(f"config.eval_every: must divide num_steps={config.num_steps}, got {config.eval_every}")
    if not all(isinstance(r, int) and 1 <= r <= config.recursions for r in config.spectrum_depths):
        raise ValueError(f"config.spectrum_depths: expected ints in [1, recursions={config.recursions}], "
                         f"got {tuple(config.spectrum_depths)!r}")
    if not 0.0 < config.density < 1.0:
        raise ValueError(f"config.density: expected a number in (0, 1), got {config.density!r}")
    checks.check_positive_float(config, "loss_threshold")
    if not config.learning_rates or not all(lr > 0 for lr in config.learning_rates):
        raise ValueError(f"config.learning_rates: expected positive numbers, got {tuple(config.learning_rates)!r}")


def build(config, mixer, seed, dynamic=False):
    """(params, rest, graphdef, loss_fn) of a fresh model."""
    model = RecursiveTransformer(config, mixer, nnx.Rngs(seed), dynamic)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, batch):
        logits = nnx.merge(graphdef, params, rest, copy=True)(batch["tokens"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
        exact = jnp.all(jnp.argmax(logits, -1) == batch["targets"], axis=-1)
        return loss, {"exact_match": jnp.mean(exact)}

    return params, rest, graphdef, loss_fn


def optimizer(config, learning_rate):
    """AdamW with linear warm-up and cosine decay to `learning_rate` (which may be traced)."""
    unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, config.num_steps // 20), config.num_steps)
    return optax.adamw(lambda count: learning_rate * unit(count), b2=0.98)


@functools.lru_cache(maxsize=16)
def _compiled(config_json: str, mixer: str):
    """(init, train_chunk, evaluate) for one mixer, compiled once and reused across learning
    rates and seeds (the learning rate is an argument, not a constant)."""
    config = ml_collections.ConfigDict(json.loads(config_json))
    _, rest, graphdef, loss_fn = build(config, mixer, 0)
    make = lambda lr: optimizer(config, lr)  # noqa: E731

    def init(params, lr):
        return make(lr).init(params)

    @jax.jit
    def train_chunk(params, opt_state, lr, tokens, targets, held_out):
        """Steps on the batches (tokens, targets), then (loss, exact match) on each held-out set."""
        def step(carry, batch):
            params, opt_state = carry
            grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
            updates, opt_state = make(lr).update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        params, opt_state = jax.lax.scan(step, (params, opt_state), {"tokens": tokens, "targets": targets})[0]
        scores = jax.vmap(lambda data: loss_fn(params, data))(held_out)
        return params, opt_state, (scores[0], scores[1]["exact_match"])

    @jax.jit
    def spectra(params, tokens):
        """Trained mixers and the streams' Jacobian singular values after r recursions, per r."""
        model = nnx.merge(graphdef, params, rest, copy=True)
        h0 = model.embed_tokens(tokens)
        fn = lambda h, r: nnx.merge(graphdef, params, rest, copy=True).recurse(h, r)  # noqa: E731
        return model.residual_matrices(), [mo.nn.jacobian_spectrum(lambda h, r=r: fn(h, r), h0)
                                           for r in config.spectrum_depths]

    return init, train_chunk, spectra


def split(config, name: str, seed: int) -> dict:
    """A held-out set: "selection" or "report" (disjoint from training by its generator key)."""
    return make_batch(config, np.random.default_rng([10**6 + ("selection", "report").index(name), seed]), config.eval_size)


def run_one(config, mixer: str, settings: dict, seed: int) -> dict:
    """Train `mixer` at settings["learning_rate"] from `seed`; score both splits."""
    init, train_chunk, spectra = _compiled(config.to_json(), mixer)
    params = build(config, mixer, seed)[0]
    lr = jnp.asarray(settings["learning_rate"], jnp.float32)
    opt_state = init(params, lr)
    held_out = jax.tree.map(lambda *x: np.stack(x), split(config, "selection", seed), split(config, "report", seed))
    threshold_step = config.num_steps + config.eval_every
    rng = np.random.default_rng([seed, 0])
    for start in range(0, config.num_steps, config.eval_every):
        data = make_batch(config, rng, config.eval_every * config.batch_size)
        shape = (config.eval_every, config.batch_size, -1)
        params, opt_state, (loss, exact) = train_chunk(params, opt_state, lr, data["tokens"].reshape(shape),
                                                       data["targets"].reshape(shape), held_out)
        if threshold_step > config.num_steps and float(loss[1]) <= config.loss_threshold:
            threshold_step = start + config.eval_every
    metrics = {"loss": float(loss[1]), "exact_match": float(exact[1]), "steps_to_threshold": float(threshold_step)}
    metrics.update(diagnostics(config, *spectra(params, held_out["tokens"][1, 0])))
    return {"selection": {"loss": float(loss[0]), "exact_match": float(exact[0])}, "report": metrics}


def diagnostics(config, mixers, singular_values) -> dict:
    """Distance of the trained mixers from I, and measured vs predicted Jacobian moments over depth."""
    mixers = np.asarray(mixers, np.float64)
    out = {"mixer_distance": float(np.max(np.linalg.norm(mixers - np.eye(mixers.shape[-1]), axis=(-2, -1))))}
    for r, s in zip(config.spectrum_depths, singular_values):
        s = np.asarray(s, np.float64)
        out[f"jacobian_m1@{r}"] = float(np.mean(s**2))
        out[f"jacobian_max@{r}"] = float(s[0])
        out[f"predicted_m1@{r}"] = float(mo.nn.predict_jacobian_spectrum(np.tile(mixers, (r, 1, 1)), num_moments=1)[0])
    return out


def arms(config) -> dict:
    return {mixer: protocol.Arm(grid={"learning_rate": list(config.learning_rates)}) for mixer in config.mixers}


def run(config, workdir: str) -> dict:
    validate(config)
    results = protocol.compare(config, arms(config), lambda arm, settings, seed, rundir: run_one(config, arm, settings, seed),
                               select_on="loss", minimize=True, workdir=workdir)
    protocol.write(workdir, results, title=f"Hyper-connection mixers, weight-tied recursion x{config.recursions}",
                   extra_text=depth_table(results, config))
    plot_spectra(workdir, results, config)
    flat = {f"{arm}/{m}": s["mean"] for arm, row in results["arms"].items() for m, s in row["metrics"].items()}
    flat.update({f"claim/{c['text']}": c["verdict"] for c in results["claims"]})
    return flat


def depth_table(results, config) -> str:
    """Measured vs predicted mean squared Jacobian singular value over recursion depth (means over seeds)."""
    depths = list(config.spectrum_depths)
    lines = ["", "", "Jacobian of the streams over recursion depth r: measured mean s^2 / predicted (mixers only, "
             "isometric blocks) / measured max s; means over report seeds.", "",
             "| mixer | " + " | ".join(f"r = {r}" for r in depths) + " |", "|---" * (len(depths) + 1) + "|"]
    for arm, row in results["arms"].items():
        m = row["metrics"]
        cells = [f"{m[f'jacobian_m1@{r}']['mean']:.3g} / {m[f'predicted_m1@{r}']['mean']:.3g} / "
                 f"{m[f'jacobian_max@{r}']['mean']:.3g}" for r in depths]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_spectra(workdir, results, config) -> None:
    """jacobian_depth.png: measured (solid) and predicted (dashed) mean s^2 over depth per mixer."""
    depths = list(config.spectrum_depths)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (arm, row) in enumerate(results["arms"].items()):
        m, color = row["metrics"], f"C{i}"
        ax.plot(depths, [m[f"jacobian_m1@{r}"]["mean"] for r in depths], "o-", color=color, label=f"{arm} measured")
        ax.plot(depths, [m[f"predicted_m1@{r}"]["mean"] for r in depths], "--", color=color, label=f"{arm} predicted")
    ax.set(yscale="log", xlabel="recursions r", ylabel="mean squared singular value", title="Jacobian over depth")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "jacobian_depth.png"), dpi=100)
    plt.close(fig)

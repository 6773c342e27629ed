"""Hyper-connection mixers on generated ARC-style grid tasks.

Data (generated, nothing downloaded): a grid x grid input of colors (0 = background, a
`density` fraction of cells colored) and one task token; the target is the output grid of the
task: "rotate" (90 degrees clockwise), "reflect" (left-right), "colormap" (a fixed permutation of
the non-background colors), "count" (the first k cells, row-major, colored 1, for k colored input
cells), "gravity" (colored cells fall to the bottom of their column, keeping their order).
Batches are a deterministic function of (seed, step), so a resumed run sees the same data.

Model: a pre-norm transformer in Flax NNX over the task token and the cells; every attention and
MLP block is wrapped by `mo.nn.HyperConnections` (n streams: `expand_streams` after the
embedding, `reduce_streams` before the final norm and the per-cell head). The plain residual
baseline is the "identity" mixer with one stream (exactly x + F(x)). Parameter counts differ only
by the mixers' own n^2 + 2n per connection and are reported.

Reported per mixer, over seeds: test loss and exact-match accuracy (every cell right), step
time, mHC's composite gain of the product of all residual mixers (largest absolute row sum and
spectral norm) at init and after training, the mixers' constraint residual, and the singular
values of the trunk's Jacobian (embedded input -> final streams reduced) at init and after
training. Depth stress: `stress_layers` deep, narrow models at a higher rate, one seed: final
loss, whether it stayed finite, composite gain.
"""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks
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


class GridTransformer(nnx.Module):
    """Token + position embedding, `layers` x (attention, MLP) each in a hyper-connection."""

    def __init__(self, config, mixer: str, layers: int, d: int, rngs: nnx.Rngs, dynamic: bool = False):
        self.n = 1 if mixer == "identity" else config.n_streams
        length, vocab = 1 + config.grid**2, config.colors + len(config.tasks)
        self.embed = nnx.Embed(vocab, d, rngs=rngs)
        self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, d)))
        self.blocks = nnx.List()
        self.hcs = nnx.List()
        for i in range(2 * layers):
            block = Attention(d, config.num_heads, rngs) if i % 2 == 0 else MLP(d, config.mlp_ratio, rngs)
            self.blocks.append(block)
            self.hcs.append(mo.nn.HyperConnections(self.n, mixer=mixer, layer_index=i, dynamic=dynamic, dim=d,
                                                   power_iters=config.power_iters or None, rngs=rngs))
        self.norm = nnx.RMSNorm(d, rngs=rngs)
        self.head = nnx.Linear(d, config.colors, rngs=rngs)

    def trunk(self, x):
        """Embedded sequence (..., T, d) -> final hidden (..., T, d): streams (..., T, n, d)."""
        h = mo.nn.expand_streams(x, self.n)
        for hc, block in zip(self.hcs, self.blocks):
            h = hc(h, block)
        return mo.nn.reduce_streams(h)

    def embed_tokens(self, tokens):
        return self.embed(tokens) + self.position[...]

    def __call__(self, tokens):
        return self.head(self.norm(self.trunk(self.embed_tokens(tokens))))[..., 1:, :]

    def residual_matrices(self):
        return jnp.stack([hc.residual_matrix() for hc in self.hcs])


# ---- runs -----------------------------------------------------------------------------------
def validate(config) -> None:
    """ValueError naming the key of the first bad hyperconnections value."""
    checks.check_common(config)
    harness.check_parallel(config)
    for key in ("mixers", "stress_mixers"):
        if not all(m in mo.nn.MIXERS for m in config[key]):
            raise ValueError(f"config.{key}: expected mixers among {list(mo.nn.MIXERS)}, got {tuple(config[key])!r}")
    if not config.mixers:
        raise ValueError("config.mixers: expected at least one mixer")
    if not config.tasks or not all(t in TASKS for t in config.tasks):
        raise ValueError(f"config.tasks: expected tasks among {list(TASKS)}, got {tuple(config.tasks)!r}")
    if not config.seeds or not all(isinstance(s, int) and s >= 0 for s in config.seeds):
        raise ValueError(f"config.seeds: expected nonnegative ints, got {tuple(config.seeds)!r}")
    checks.check_int(config, "power_iters", minimum=0)
    for key in ("n_streams", "grid", "d_model", "num_heads", "num_layers", "mlp_ratio", "eval_every",
                "eval_size", "stress_layers", "stress_d_model", "stress_steps"):
        checks.check_int(config, key)
    checks.check_int(config, "colors", minimum=3)
    for key in ("d_model", "stress_d_model"):
        if config[key] % config.num_heads:
            raise ValueError(f"config.{key}: {config[key]} is not divisible by num_heads={config.num_heads}")
    checks.check_positive_float(config, "learning_rate")
    checks.check_positive_float(config, "stress_learning_rate")
    if not 0.0 < config.density < 1.0:
        raise ValueError(f"config.density: expected a number in (0, 1), got {config.density!r}")


def build(config, mixer, layers, d, seed, dynamic=False):
    """(params, rest, graphdef, loss_fn) of a fresh model."""
    model = GridTransformer(config, mixer, layers, d, nnx.Rngs(seed), dynamic)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, batch):
        logits = nnx.merge(graphdef, params, rest, copy=True)(batch["tokens"])  # copy: sHC may set its iterate
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
        exact = jnp.all(jnp.argmax(logits, -1) == batch["targets"], axis=-1)
        return loss, {"exact_match": jnp.mean(exact)}

    return params, rest, graphdef, loss_fn


def diagnostics(graphdef, params, rest, tokens) -> dict:
    """Composite gain, constraint residual and trunk Jacobian singular values of one model."""
    model = nnx.merge(graphdef, params, rest)
    matrices = model.residual_matrices()

    def trunk(x):  # a fresh module inside the trace: sHC may update its power iterate there
        return nnx.merge(graphdef, params, rest, copy=True).trunk(x)

    rows, spectral = mo.nn.composite_gain(matrices.astype(jnp.float32))
    spec = model.hcs[0].spec
    residual = max(float(jnp.max(hc.spec.feasibility(m))) for hc, m in zip(model.hcs, matrices))
    if spec.name == "spectral_sphere":  # judge sHC by the exact norm, not its own estimate
        residual = float(jnp.max(jnp.abs(jnp.linalg.norm(matrices, ord=2, axis=(-2, -1)) - 1)))
    sv = mo.nn.jacobian_spectrum(trunk, model.embed_tokens(tokens))
    return {"gain_rows": float(rows[-1]), "gain_spectral": float(spectral[-1]), "constraint": residual,
            "gain_curve": np.asarray(rows).tolist(), "singular_values": np.asarray(sv)}


def train_one(config, workdir, mixer, seed, layers, d, lr, num_steps, eval_data):
    params, rest, graphdef, loss_fn = build(config, mixer, layers, d, seed)
    optimizer = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, lr, max(1, num_steps // 20), num_steps), b2=0.98)
    state = {"params": params, "opt_state": optimizer.init(params)}
    compiled = harness.compile_step(loss_fn, optimizer, config.parallel, config.mesh_shape, state)

    @jax.jit
    def evaluate(state):
        loss, aux = loss_fn(state["params"], eval_data)
        return {"test/loss": loss, "test/exact_match": aux["exact_match"]}

    def batches(step):
        return make_batch(config, np.random.default_rng([seed, step]), config.batch_size)

    before = diagnostics(graphdef, params, rest, eval_data["tokens"][0])
    result = harness.train(state, compiled, batches, num_steps, workdir=workdir, name=f"{mixer}/seed{seed}",
                           log_every=config.log_every, checkpoint_every=config.checkpoint_every,
                           stop_after=config.stop_after, evaluate=evaluate, eval_every=config.eval_every)
    after = diagnostics(graphdef, result.state["params"], rest, eval_data["tokens"][0])
    final = {k: float(v) for k, v in jax.device_get(evaluate(result.state)).items()}
    count = sum(x.size for x in jax.tree.leaves(params))
    return result, before, after, final, count


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    eval_data = make_batch(config, np.random.default_rng([10**6, config.seed]), config.eval_size)
    rows, histories, spectra, results = {}, {}, {}, {}
    for mixer in config.mixers:
        runs = []
        for seed in config.seeds:
            out = train_one(config, os.path.join(workdir, mixer, f"seed{seed}"), mixer, seed, config.num_layers,
                            config.d_model, config.learning_rate, config.num_steps, eval_data)
            runs.append(out)
        histories[mixer] = runs[0][0].history
        spectra[mixer] = (runs[0][1]["singular_values"], runs[0][2]["singular_values"])
        rows[mixer] = summarize(runs)
        results.update({f"{mixer}/{k}": v for k, v in rows[mixer].items() if not isinstance(v, list)})
    stress = {}
    for mixer in config.stress_mixers:
        result, before, after, final, _ = train_one(
            config, os.path.join(workdir, "stress", mixer), mixer, config.seed, config.stress_layers,
            config.stress_d_model, config.stress_learning_rate, config.stress_steps, eval_data)
        stress[mixer] = {"test_loss": final["test/loss"], "exact_match": final["test/exact_match"],
                         "finite": bool(math.isfinite(final["test/loss"])), "gain_init": before["gain_rows"],
                         "gain_trained": after["gain_rows"], "gain_curve": after["gain_curve"]}
        results.update({f"stress/{mixer}/{k}": float(v) for k, v in stress[mixer].items() if k != "gain_curve"})
    harness.write_summary(workdir, results)
    harness.plot_curves(histories, ["train/loss", "test/loss", "test/exact_match"],
                        os.path.join(workdir, "curves.png"), title="ARC-style grids: hyper-connection mixers (seed 0)")
    plot_diagnostics(workdir, rows, spectra, stress)
    write_tables(workdir, rows, stress, config)
    return results


def summarize(runs) -> dict:
    """Mean and standard deviation over seeds of the reported numbers."""
    def stat(values):
        return float(np.mean(values)), float(np.std(values))

    out = {}
    for key, values in {
        "test_loss": [r[3]["test/loss"] for r in runs],
        "exact_match": [r[3]["test/exact_match"] for r in runs],
        "step_ms": [1e3 / r[0].steps_per_second if r[0].steps_per_second else math.nan for r in runs],
        "gain_init": [r[1]["gain_rows"] for r in runs],
        "gain_trained": [r[2]["gain_rows"] for r in runs],
        "spectral_gain_trained": [r[2]["gain_spectral"] for r in runs],
        "constraint": [r[2]["constraint"] for r in runs],
        "jacobian_max_init": [float(r[1]["singular_values"][0]) for r in runs],
        "jacobian_max_trained": [float(r[2]["singular_values"][0]) for r in runs],
    }.items():
        out[key], out[f"{key}_std"] = stat(values)
    out["params"] = float(runs[0][4])
    out["gain_curve"] = runs[0][2]["gain_curve"]
    return out


def plot_diagnostics(workdir, rows, spectra, stress) -> None:
    """composite_gain.png (trained, over depth; stress run) and jacobian_spectra.png."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for mixer, row in rows.items():
        axes[0].plot(np.arange(1, len(row["gain_curve"]) + 1), row["gain_curve"], label=mixer)
    for mixer, row in stress.items():
        axes[1].plot(np.arange(1, len(row["gain_curve"]) + 1), row["gain_curve"], label=mixer)
    for ax, title in zip(axes, ("composite gain after training", "depth stress: composite gain")):
        ax.set(yscale="log", xlabel="connections", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "composite_gain.png"), dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for mixer, (init, trained) in spectra.items():
        axes[0].plot(np.sort(init)[::-1], label=mixer)
        axes[1].plot(np.sort(trained)[::-1], label=mixer)
    for ax, title in zip(axes, ("trunk Jacobian singular values at init", "after training")):
        ax.set(yscale="log", xlabel="index", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "jacobian_spectra.png"), dpi=100)
    plt.close(fig)


def write_tables(workdir, rows, stress, config) -> None:
    """Print the tables and write them to results.md, and the rows to results.json."""
    lines = [
        f"seeds {tuple(config.seeds)}, {config.num_steps} steps, {config.num_layers} layers, d = {config.d_model}, "
        f"n = {config.n_streams} (identity: n = 1)",
        "",
        "| mixer | params | test loss | exact match | step ms | gain init | gain trained | spectral gain | "
        "constraint | J max init | J max trained |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mixer, r in rows.items():
        lines.append(
            f"| {mixer} | {int(r['params'])} | {r['test_loss']:.4f} ± {r['test_loss_std']:.4f} | "
            f"{r['exact_match']:.3f} ± {r['exact_match_std']:.3f} | {r['step_ms']:.1f} | {r['gain_init']:.3g} | "
            f"{r['gain_trained']:.3g} | {r['spectral_gain_trained']:.3g} | {r['constraint']:.1e} | "
            f"{r['jacobian_max_init']:.3g} | {r['jacobian_max_trained']:.3g} |"
        )
    lines += ["", f"depth stress: {config.stress_layers} layers, d = {config.stress_d_model}, "
              f"lr {config.stress_learning_rate}, {config.stress_steps} steps", "",
              "| mixer | finite | test loss | exact match | gain init | gain trained |", "|---|---|---|---|---|---|"]
    for mixer, s in stress.items():
        lines.append(f"| {mixer} | {s['finite']} | {s['test_loss']:.4f} | {s['exact_match']:.3f} | "
                     f"{s['gain_init']:.3g} | {s['gain_trained']:.3g} |")
    harness.write_results(workdir, "\n".join(lines), {"rows": rows, "stress": stress})

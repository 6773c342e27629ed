"""The fair-comparison protocol every comparison experiment uses (ALGORITHMS.md, "Fair comparisons").

1. **Tuning with an equal budget.** Each arm has a grid of hyperparameters (the same number of
   initial points for every tuned arm), scored by the mean of `select_on` on the *selection*
   split over `config.selection_seeds`. A choice at the edge of a numeric grid extends that
   grid one point further in the same spacing (log-spaced for positive grids), up to
   `config.max_grid_extensions` times; a choice still at an edge is reported `at_edge`. A
   choice at a declared bound of the hyperparameter's domain (`Arm.bounds`) is not an edge.
2. **Reporting on paired seeds.** The chosen settings rerun on `config.seeds` (seed s gives
   every arm the same data and initialization) and are scored on the separate *report* split;
   per metric: mean, sample std (ddof = 1) and the 95% t-interval of the mean.
3. **Computed verdicts.** `config.claims` declares what the paper says, as strings

       "<side> > <side> on <metric> [by <delta>]"     (">" higher is better, "<" lower is better)

   where a side is an arm name or a sum/difference of arm names separated by spaces, e.g.
   `"fw@32 - fw@4 > ta@32 - ta@4 on accuracy"` (FW degrades less than TA from 4 to 32). The
   per-seed difference d_s = left_s - right_s (negated for "<") gets a paired 95% t-interval
   [lo, hi]: the claim `agrees` when lo > delta, `disagrees` when hi < delta, and is
   `inconclusive` otherwise.
4. **No stale numbers.** Runs are cached under `workdir/protocol/<hash>/` where the hash covers
   the whole resolved config (but not keys that cannot change a result: claims, logging,
   checkpointing, preemption and multi-host addresses), so a changed hyperparameter never
   returns cached numbers and an identical rerun resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
from typing import Callable, Mapping, Sequence

import numpy as np
from absl import logging
from scipy import stats

from experiments.harness.distributed import is_main_process
from experiments.harness.metrics import write_results

VERDICTS = ("agrees", "disagrees", "inconclusive")
# Config keys that cannot change any run's numbers; everything else is hashed.
UNHASHED_KEYS = frozenset(
    {"claims", "log_every", "checkpoint_every", "stop_after", "distributed", "coordinator_address",
     "num_processes", "process_id"}
)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One method of a comparison: `grid` maps each hyperparameter to its candidate values
    (empty for a reference row with nothing to tune); `bounds` maps a hyperparameter to the
    (low, high) of its domain, which grid extensions never cross."""

    grid: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    bounds: Mapping[str, tuple] = dataclasses.field(default_factory=dict)

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 0


@dataclasses.dataclass(frozen=True)
class Claim:
    """A parsed claim: sum(coef * arm) on each side, compared on `metric` with margin `delta`."""

    text: str
    left: tuple  # ((coef, arm), ...)
    right: tuple
    metric: str
    higher_is_better: bool
    delta: float

    @property
    def arms(self) -> set:
        return {arm for _, arm in self.left + self.right}


_CLAIM = re.compile(r"^(?P<left>.+?)\s+(?P<op>[<>])\s+(?P<right>.+?)\s+on\s+(?P<metric>\S+)(\s+by\s+(?P<delta>\S+))?$")


def _side(text: str, claim: str) -> tuple:
    tokens = text.split()
    if len(tokens) % 2 == 0:
        raise ValueError(f"config.claims: cannot read the side {text!r} of {claim!r}; expected 'a', 'a + b' or 'a - b'")
    terms, sign = [], 1.0
    for i, token in enumerate(tokens):
        if i % 2:
            if token not in "+-" or len(token) != 1:
                raise ValueError(f"config.claims: expected '+' or '-' between arms in {claim!r}, got {token!r}")
            sign = 1.0 if token == "+" else -1.0
        else:
            terms.append((sign, token))
    return tuple(terms)


def parse_claim(text: str) -> Claim:
    """A Claim from `"<side> > <side> on <metric> [by <delta>]"` (ValueError naming config.claims)."""
    match = _CLAIM.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"config.claims: cannot read {text!r}; expected '<arm> > <arm> on <metric> [by <delta>]' "
            "(or '<'; a side may be 'a - b')"
        )
    try:
        delta = float(match["delta"]) if match["delta"] is not None else 0.0
    except ValueError:
        raise ValueError(f"config.claims: the margin after 'by' in {text!r} is not a number") from None
    return Claim(text.strip(), _side(match["left"], text), _side(match["right"], text), match["metric"],
                 match["op"] == ">", delta)


def add_config_keys(c, seeds=(0, 1, 2, 3, 4), selection_seeds=(0,), max_grid_extensions=2, claims=()):
    """Add the protocol's keys to an experiment config (before it is locked)."""
    c.seeds = tuple(seeds)  # report seeds, paired across arms
    c.selection_seeds = tuple(selection_seeds)  # seeds the grid search is scored on (selection split)
    c.max_grid_extensions = max_grid_extensions  # extensions of a grid whose choice sits at an edge
    c.claims = tuple(claims)  # "<arm> > <arm> on <metric> [by <delta>]", judged by the protocol
    return c


def check_config(config, arms: Mapping[str, Arm]) -> list[Claim]:
    """Validate the protocol keys and the arms' budgets; return the parsed claims."""
    for key in ("seeds", "selection_seeds"):
        seeds = tuple(config[key])
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"config.{key}: expected a nonempty tuple of nonnegative ints, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"config.{key}: seeds repeat in {seeds!r}")
    ext = config.max_grid_extensions
    if isinstance(ext, bool) or not isinstance(ext, int) or ext < 0:
        raise ValueError(f"config.max_grid_extensions: expected an int >= 0, got {ext!r}")
    sizes = {name: arm.size for name, arm in arms.items() if arm.grid}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"protocol: every tuned arm needs the same grid budget; initial grid sizes are {sizes}")
    for name, arm in arms.items():
        for key, values in arm.grid.items():
            if len(values) == 0:
                raise ValueError(f"protocol: arm {name!r} has an empty grid for {key!r}")
    claims = [parse_claim(text) for text in config.claims]
    for claim in claims:
        unknown = sorted(claim.arms - set(arms))
        if unknown:
            raise ValueError(f"config.claims: {claim.text!r} names unknown arms {unknown}; arms are {sorted(arms)}")
    return claims


def config_hash(config) -> str:
    """A short hash of the resolved config, without the keys in UNHASHED_KEYS."""
    items = {k: v for k, v in config.to_dict().items() if k not in UNHASHED_KEYS}
    text = json.dumps(items, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def interval(values, confidence: float = 0.95) -> dict:
    """Mean, sample std (ddof = 1) and the t-interval of the mean of `values`."""
    x = np.asarray(values, dtype=np.float64)
    n, mean = len(x), float(np.mean(x))
    if n < 2:
        return {"mean": mean, "std": float("nan"), "ci95": [-math.inf, math.inf], "n": n}
    std = float(np.std(x, ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def verdict(ci95, delta: float) -> str:
    """`agrees` when the interval lies above delta, `disagrees` when below, else `inconclusive`."""
    lo, hi = ci95
    return "agrees" if lo > delta else "disagrees" if hi < delta else "inconclusive"


def judge(claim: Claim, values: Mapping[str, Mapping[str, Sequence[float]]]) -> dict:
    """Judge `claim` on per-seed report values `values[arm][metric]` (paired by position)."""
    def side(terms):
        return sum(coef * np.asarray(values[arm][claim.metric], dtype=np.float64) for coef, arm in terms)

    diff = side(claim.left) - side(claim.right)
    if not claim.higher_is_better:
        diff = -diff
    summary = interval(diff)
    return {
        "text": claim.text,
        "metric": claim.metric,
        "delta": claim.delta,
        "difference_mean": summary["mean"],
        "difference_ci95": summary["ci95"],
        "verdict": verdict(summary["ci95"], claim.delta),
    }


def settings_key(settings: Mapping) -> str:
    """A readable, filesystem-safe key of a settings dict."""
    if not settings:
        return "default"
    fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)  # noqa: E731
    key = ",".join(f"{k}={fmt(v)}" for k, v in sorted(settings.items()))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", key)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _extend(values: list, side: str, bounds) -> list | None:
    """`values` (sorted numbers) with one more point past `side` ("low"/"high"), geometric for
    positive grids and arithmetic otherwise, clipped to `bounds`; None when no new point fits."""
    if len(values) < 2:
        return None
    a, b = (values[1], values[0]) if side == "low" else (values[-2], values[-1])
    new = b * (b / a) if a > 0 and b > 0 else b + (b - a)
    lo, hi = bounds if bounds is not None else (-math.inf, math.inf)
    new = min(max(new, lo), hi)
    if all(isinstance(v, (int, np.integer)) for v in values):
        new = int(round(new))
    if new in values:
        return None
    return sorted([*values, new])


class _Runner:
    """Runs (arm, settings, seed) once, caching the result JSON in the run's own directory and
    in memory: in a multi-host run only process 0 writes the file, so another process must not
    rerun (and enter collectives alone) a run whose file it cannot see yet."""

    def __init__(self, run_one: Callable, root: str):
        self.run_one, self.root, self.done = run_one, root, {}

    def __call__(self, arm: str, settings: Mapping, seed: int) -> dict:
        rundir = os.path.join(self.root, arm, settings_key(settings), f"seed{seed}")
        if rundir in self.done:
            return self.done[rundir]
        path = os.path.join(rundir, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                self.done[rundir] = json.load(f)
            return self.done[rundir]
        result = self.run_one(arm, dict(settings), seed, rundir)
        for split in ("selection", "report"):
            if split not in result:
                raise ValueError(f"protocol: run_one must return {{'selection': ..., 'report': ...}}; got keys {sorted(result)}")
        result = {split: {k: float(v) for k, v in result[split].items()} for split in ("selection", "report")}
        if is_main_process():
            os.makedirs(rundir, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(path + ".tmp", path)
        self.done[rundir] = result
        return result


def _search(name: str, arm: Arm, runner: _Runner, config, select_on: str, minimize: bool) -> dict:
    """Grid search with edge extension; the arm's `grid`, `chosen`, `at_edge` and scores."""
    grid = {k: (sorted(v) if all(_is_number(x) for x in v) else list(v)) for k, v in arm.grid.items()}
    scores: dict[str, float] = {}
    for round_ in range(config.max_grid_extensions + 1):
        best, best_score = None, None
        for combo in itertools.product(*grid.values()):
            settings = dict(zip(grid, combo))
            key = settings_key(settings)
            if key not in scores:
                runs = [runner(name, settings, s)["selection"] for s in config.selection_seeds]
                if select_on not in runs[0]:
                    raise ValueError(f"protocol: select_on={select_on!r} is not among the selection metrics {sorted(runs[0])}")
                score = float(np.mean([r[select_on] for r in runs]))
                scores[key] = score if math.isfinite(score) else (math.inf if minimize else -math.inf)
            better = best_score is None or (scores[key] < best_score if minimize else scores[key] > best_score)
            if better:
                best, best_score = settings, scores[key]
        edges = []
        for key, values in grid.items():
            if len(values) < 2 or not all(_is_number(v) for v in values):
                continue
            side = "low" if best[key] == values[0] else "high" if best[key] == values[-1] else None
            if side is not None:
                edges.append((key, side))
        extended = False
        if round_ < config.max_grid_extensions:
            for key, side in edges:
                new = _extend(grid[key], side, arm.bounds.get(key))
                if new is not None:
                    grid[key], extended = new, True
        if not extended:
            break
    at_edge = sorted(key for key, side in edges if _extend(grid[key], side, arm.bounds.get(key)) is not None)
    return {"grid": grid, "chosen": best or {}, "at_edge": at_edge, "evaluations": len(scores), "selection": scores}


def compare(config, arms: Mapping[str, Arm], run_one: Callable, *, select_on: str, minimize: bool, workdir: str) -> dict:
    """Tune every arm on the selection split, report the chosen settings on paired seeds, and
    judge `config.claims`. `run_one(arm, settings, seed, rundir)` trains one arm and returns
    `{"selection": {metric: value}, "report": {metric: value}}`. Returns the results dict
    (see the module docstring; `protocol.write` saves it)."""
    claims = check_config(config, arms)
    digest = config_hash(config)
    runner = _Runner(run_one, os.path.join(workdir, "protocol", digest))
    results = {"config_hash": digest, "select_on": select_on, "minimize": minimize, "arms": {}, "claims": []}
    values = {}
    for name, arm in arms.items():
        found = _search(name, arm, runner, config, select_on, minimize) if arm.grid else {
            "grid": {}, "chosen": {}, "at_edge": [], "evaluations": 0, "selection": {}}
        logging.info("protocol: %s chose %s (at edge: %s)", name, found["chosen"], found["at_edge"] or "no")
        reports = [runner(name, found["chosen"], s)["report"] for s in config.seeds]
        values[name] = {m: [r[m] for r in reports] for m in reports[0]}
        metrics = {m: {**interval(v), "values": v} for m, v in values[name].items()}
        results["arms"][name] = {**found, "seeds": list(config.seeds), "metrics": metrics}
    for claim in claims:
        missing = [arm for arm in claim.arms if claim.metric not in values[arm]]
        if missing:
            raise ValueError(f"config.claims: {claim.text!r}: arms {missing} report no metric {claim.metric!r}")
        results["claims"].append(judge(claim, values))
    return results


def _fmt(summary: dict) -> str:
    mean, (lo, hi) = summary["mean"], summary["ci95"]
    half = (hi - lo) / 2
    return f"{mean:.4g} ± {half:.2g}" if math.isfinite(half) else f"{mean:.4g}"


def markdown(results: dict, title: str | None = None) -> str:
    """The results as Markdown: one row per arm (chosen settings, edge flag, each report metric
    as mean ± 95% half-width over the seeds) and one row per claim with its computed verdict."""
    arms = results["arms"]
    metrics = sorted({m for arm in arms.values() for m in arm["metrics"]})
    seeds = max((len(a["seeds"]) for a in arms.values()), default=0)
    lines = [f"### {title}", ""] if title else []
    lines += [
        f"Report split, mean ± 95% half-width over {seeds} paired seeds; settings tuned on the selection "
        f"split by {results['select_on']} ({'lower' if results['minimize'] else 'higher'} is better).",
        "",
        "| arm | chosen | at edge | " + " | ".join(metrics) + " |",
        "|---|---|---|" + "---|" * len(metrics),
    ]
    for name, arm in arms.items():
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in arm["chosen"].items()) or "-"
        edge = ", ".join(arm["at_edge"]) or "no"
        cells = [_fmt(arm["metrics"][m]) if m in arm["metrics"] else "" for m in metrics]
        lines.append(f"| {name} | {chosen} | {edge} | " + " | ".join(cells) + " |")
    if results["claims"]:
        lines += ["", "| claim | difference (95% CI) | verdict |", "|---|---|---|"]
        for c in results["claims"]:
            lo, hi = c["difference_ci95"]
            lines.append(f"| {c['text']} | {c['difference_mean']:.4g} [{lo:.4g}, {hi:.4g}] | **{c['verdict']}** |")
    return "\n".join(lines) + "\n"


def write(workdir: str, results: dict, title: str | None = None, extra_text: str = "") -> str:
    """Write results.json and results.md (the table of `markdown`, then `extra_text`)."""
    return write_results(workdir, markdown(results, title) + extra_text, results)

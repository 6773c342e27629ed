"""Offline RL with DICE value learning: O-DICE's orthogonal-gradient update (mo.orthogonal_gradient)
against the true-gradient and the semi-gradient update, on a stochastic gridworld built in JAX.

Environment: an n x n grid with a wall (one gap), start in a corner, goal in the opposite one
(reward 1 on arrival, terminal); each action (up/down/left/right) slips to a uniformly random
action with probability `slip`. Behaviour data: episodes from the start under epsilon-greedy
policies of the optimal Q* (value iteration): expert eps 0.1, medium 0.5, random 1.0, and
"mixed" (a third of each).

Value learning (Mao et al. 2024; ALGORITHMS.md): twin MLP value functions V(s) of the scaled
(x, y) coordinates, target network Vbar (EMA), Pearson chi^2 f*(y) = y w - (w - 1)^2 with
w = max(y/2 + 1, 0),
    r_f = r + gamma (1 - d) Vbar(s') - V(s),    g_f = grad mean(lambda f*(r_f)),
    r_b = r + gamma (1 - d) V(s') - Vbar(s),    g_b = grad mean(lambda eta f*(r_b)),
plus grad mean((1 - lambda) V(s)) in every method, then Adam:
- "odice": g_f + (g_b - <g_b, g_f>/||g_f||^2 g_f)  (mo.orthogonal_gradient, over all parameters)
- "true":  g_f + g_b (the full gradient of the DICE objective)
- "semi":  g_f (the backward gradient dropped)
Policy extraction: weighted behaviour cloning (the paper's weighted regression) with weights
w(r_f) on the dataset's (s, a); for tabular states its maximizer is the weighted action
frequency per state (uniform where the data has no weight). Its discounted return from the
start is computed exactly (a linear solve) and normalized: 100 (J - J_random) / (J* - J_random).
Every seed is a vmapped copy inside one compiled step; we log the cosine between g_f and g_b.
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manifold_opt as mo
from experiments import harness
from experiments.harness import config as checks

METHODS = ("odice", "true", "semi")
DATASETS = {"expert": (0.1,), "medium": (0.5,), "random": (1.0,), "mixed": (0.1, 0.5, 1.0)}
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


def validate(config) -> None:
    """ValueError naming the key of the first bad odice value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: the odice experiment vmaps its seeds and runs 'none', got {config.parallel!r}")
    for key, allowed in (("methods", METHODS), ("datasets", tuple(DATASETS))):
        if not config[key] or any(v not in allowed for v in config[key]):
            raise ValueError(f"config.{key}: got {tuple(config[key])!r}; expected some of {list(allowed)}")
    for key in ("grid", "episodes", "horizon", "hidden", "num_seeds", "eval_every"):
        checks.check_int(config, key)
    if config.grid < 4:
        raise ValueError(f"config.grid: expected at least 4, got {config.grid}")
    for key in ("slip", "lam", "tau"):
        if not 0.0 <= config[key] <= 1.0:
            raise ValueError(f"config.{key}: expected a number in [0, 1], got {config[key]!r}")
    if not 0.0 < config.gamma < 1.0:
        raise ValueError(f"config.gamma: expected a number in (0, 1), got {config.gamma!r}")
    checks.check_positive_float(config, "learning_rate")
    checks.check_positive_float(config, "eta")


class GridWorld:
    """Tabular MDP: transition tensor P (S, A, S), reward on entering the goal, goal terminal."""

    def __init__(self, n: int, slip: float, gamma: float):
        self.n, self.gamma = n, gamma
        wall = {(n // 2, c) for c in range(n) if c != n - 2}  # a horizontal wall, one gap near the right
        cells = [(r, c) for r in range(n) for c in range(n) if (r, c) not in wall]
        index = {cell: i for i, cell in enumerate(cells)}
        self.coords = np.array(cells, np.float32) / (n - 1) * 2 - 1  # features in [-1, 1]^2
        self.start, self.goal = index[(0, 0)], index[(n - 1, n - 1)]
        s, a = len(cells), len(MOVES)
        moved = np.zeros((s, a), np.int64)
        for (r, c), i in index.items():
            for k, (dr, dc) in enumerate(MOVES):
                moved[i, k] = index.get((r + dr, c + dc), i)
        p = np.zeros((s, a, s))
        for k in range(a):  # intended action with prob 1 - slip, any action with slip / a
            p[np.arange(s), k, moved[:, k]] += 1 - slip
            for j in range(a):
                p[np.arange(s), k, moved[:, j]] += slip / a
        p[self.goal] = 0.0
        p[self.goal, :, self.goal] = 1.0  # absorbing
        self.P = jnp.asarray(p, jnp.float32)
        self.reward = jnp.asarray(np.einsum("sat,t->sa", p, np.eye(s)[self.goal]) * (np.arange(s) != self.goal)[:, None],
                                  jnp.float32)  # expected reward of (s, a): the chance of entering the goal

    @property
    def num_states(self) -> int:
        return self.P.shape[0]

    def optimal_q(self, iters: int = 2000) -> jax.Array:
        def backup(_, q):
            return self.reward + self.gamma * self.P @ jnp.max(q, axis=1)

        return jax.lax.fori_loop(0, iters, backup, jnp.zeros_like(self.reward))

    def policy_return(self, pi: jax.Array) -> jax.Array:
        """Exact discounted return from the start of a tabular policy pi (S, A)."""
        p_pi = jnp.einsum("sa,sat->st", pi, self.P)
        r_pi = jnp.sum(pi * self.reward, axis=1)
        v = jnp.linalg.solve(jnp.eye(self.num_states) - self.gamma * p_pi, r_pi)
        return v[self.start]

    def rollouts(self, key, q, epsilon, episodes: int, horizon: int):
        """Transitions of eps-greedy(Q) episodes from the start, each field (episodes * horizon,);
        `valid` is 1 for the steps taken before the episode ended."""
        return _rollouts(self.P, self.start, self.goal, key, q, epsilon, episodes, horizon)


@jax.jit(static_argnums=(6, 7))
def _rollouts(P, start, goal, key, q, epsilon, episodes: int, horizon: int):
    greedy = jax.nn.one_hot(jnp.argmax(q, axis=1), q.shape[1])
    pi = (1 - epsilon) * greedy + epsilon / q.shape[1]

    def episode(key):
        def step(carry, key):
            s, done = carry
            ka, ks = jax.random.split(key)
            a = jax.random.categorical(ka, jnp.log(pi[s]))
            s2 = jax.random.categorical(ks, jnp.log(P[s, a] + 1e-30)).astype(jnp.int32)
            d = s2 == goal
            return (s2, done | d), (s, a, d.astype(jnp.float32), s2, d.astype(jnp.float32), (~done).astype(jnp.float32))

        return jax.lax.scan(step, (jnp.int32(start), jnp.bool_(False)), jax.random.split(key, horizon))[1]

    fields = jax.vmap(episode)(jax.random.split(key, episodes))
    return {k: v.reshape(-1) for k, v in zip(("s", "a", "r", "s2", "d", "valid"), fields)}


def make_dataset(env: GridWorld, q, name: str, config, seed: int) -> dict:
    """The behaviour data `name` (DATASETS) for one seed, the mixture in equal numbers of episodes."""
    parts = DATASETS[name]
    chunks = [jax.device_get(env.rollouts(jax.random.key(len(parts) * seed + i), q, jnp.float32(eps),
                                          config.episodes // len(parts), config.horizon))
              for i, eps in enumerate(parts)]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def init_value(key, hidden: int):
    """Twin 2 -> hidden -> hidden -> 1 MLPs (a leading axis of 2)."""
    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        dense = lambda k, i, o: {"w": jax.random.normal(k, (i, o)) * jnp.sqrt(1.0 / i), "b": jnp.zeros(o)}  # noqa: E731
        return {"l1": dense(k1, 2, hidden), "l2": dense(k2, hidden, hidden), "l3": dense(k3, hidden, 1)}

    return jax.vmap(one)(jax.random.split(key, 2))


def value(params, x):
    """V of features x (..., 2) for both twins: (2, ...)."""
    def one(p):
        h = jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"])
        h = jax.nn.relu(h @ p["l2"]["w"] + p["l2"]["b"])
        return (h @ p["l3"]["w"] + p["l3"]["b"])[..., 0]

    return jax.vmap(one)(params)


def f_star_weight(y):
    """Pearson chi^2: w = max(y/2 + 1, 0) and f*(y) = y w - (w - 1)^2."""
    w = jnp.maximum(y / 2 + 1, 0.0)
    return y * w - (w - 1) ** 2, w


def value_gradients(params, target, batch, config):
    """(g_f, g_b, g_linear, forward residuals) of the DICE value objective (module doc)."""
    discount = config.gamma * (1 - batch["d"])
    v_bar_s, v_bar_s2 = value(target, batch["x"]), value(target, batch["x2"])

    def forward(p):
        r_f = batch["r"] + discount * v_bar_s2 - value(p, batch["x"])
        return jnp.mean(config.lam * f_star_weight(r_f)[0]), r_f

    def backward(p):
        r_b = batch["r"] + discount * value(p, batch["x2"]) - v_bar_s
        return jnp.mean(config.lam * config.eta * f_star_weight(r_b)[0])

    g_f, r_f = jax.grad(forward, has_aux=True)(params)
    g_b = jax.grad(backward)(params)
    g_lin = jax.grad(lambda p: jnp.mean((1 - config.lam) * value(p, batch["x"])))(params)
    return g_f, g_b, g_lin, r_f


def make_step(config):
    """(step, init) for one seed, vmapped over seeds by the caller. The method is part of the
    state (an index into METHODS), so one compiled step serves all three."""
    combine = mo.orthogonal_gradient(1.0)  # eta is already inside g_b, as in the reference code
    adam = optax.adam(config.learning_rate)

    def step(state, batch):
        params, target = state["params"], state["target"]
        g_f, g_b, g_lin, r_f = value_gradients(params, target, batch, config)
        directions = (combine.update((g_f, g_b), optax.EmptyState())[0],  # odice
                      jax.tree.map(jnp.add, g_f, g_b),  # true
                      g_f)  # semi
        g = jax.tree.map(lambda *d: jnp.stack(d)[state["method"]], *directions)
        g = jax.tree.map(jnp.add, g, g_lin)
        updates, opt_state = adam.update(g, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        target = optax.incremental_update(params, target, config.tau)
        flat = lambda t: jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)])  # noqa: E731
        cosine = flat(g_f) @ flat(g_b) / (jnp.linalg.norm(flat(g_f)) * jnp.linalg.norm(flat(g_b)) + 1e-12)
        metrics = {"loss": jnp.mean(r_f**2), "cosine_fb": cosine, "value_s": jnp.mean(value(params, batch["x"]))}
        return {**state, "params": params, "target": target, "opt_state": opt_state}, metrics

    def init(key, method_index):
        params = init_value(key, config.hidden)
        return {"params": params, "target": params, "opt_state": adam.init(params),
                "method": jnp.asarray(method_index, jnp.int32)}

    return step, init


def extract_policy(env: GridWorld, params, data, config):
    """Weighted behaviour cloning: pi(a|s) proportional to the summed weights w(r_f) of (s, a)."""
    coords = jnp.asarray(env.coords)
    v, v2 = value(params, coords[data["s"]]).mean(0), value(params, coords[data["s2"]]).mean(0)
    w = f_star_weight(data["r"] + config.gamma * (1 - data["d"]) * v2 - v)[1] * data["valid"]
    counts = jnp.zeros((env.num_states, len(MOVES))).at[data["s"], data["a"]].add(w)
    total = counts.sum(1, keepdims=True)
    return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), 1.0 / len(MOVES))


class Setup(NamedTuple):
    """What every run shares: the environment, its reference returns, the compiled functions."""
    env: GridWorld
    q: jax.Array
    j_opt: float  # the optimal policy's return
    j_rand: float  # the uniform policy's return
    step: harness.CompiledStep  # one value step for all seeds and any method
    init: Callable  # (keys, method index) -> the states of all seeds
    returns: Callable  # (params, data) -> each seed's extracted-policy return


def make_setup(config) -> Setup:
    env = GridWorld(config.grid, config.slip, config.gamma)
    q = env.optimal_q()
    step, init = make_step(config)

    def all_seeds(state, batch):  # metrics: means over the seeds
        state, metrics = jax.vmap(step)(state, batch)
        return state, jax.tree.map(jnp.mean, metrics)

    return Setup(
        env, q,
        float(env.policy_return(jax.nn.one_hot(jnp.argmax(q, 1), len(MOVES)))),
        float(env.policy_return(jnp.full((env.num_states, len(MOVES)), 1.0 / len(MOVES)))),
        harness.CompiledStep(jax.jit(all_seeds), jax.device_put, jax.device_put, lambda x: x, 1),
        jax.jit(jax.vmap(init, in_axes=(0, None))),
        jax.jit(jax.vmap(lambda p, d: env.policy_return(extract_policy(env, p, d, config)))),
    )


def run_one(config, workdir, setup: Setup, data, method: str, name: str):
    """Train `method` on `data` (fields stacked over the seeds) for all seeds at once."""
    env = setup.env
    valid = [np.flatnonzero(v) for v in data["valid"]]
    state = setup.init(jax.random.split(jax.random.key(config.seed), config.num_seeds), METHODS.index(method))
    on_device = jax.device_put(data)

    def batches(step_index):
        rng = np.random.default_rng([config.seed, step_index])
        idx = np.stack([rng.choice(v, config.batch_size) for v in valid])
        pick = lambda k: np.take_along_axis(data[k], idx, axis=1)  # noqa: E731
        return {"x": env.coords[pick("s")], "x2": env.coords[pick("s2")], "r": pick("r"), "d": pick("d")}

    def evaluate(state):
        scores = 100 * (np.asarray(setup.returns(state["params"], on_device)) - setup.j_rand) / (setup.j_opt - setup.j_rand)
        return {"normalized_return": float(np.mean(scores)), "normalized_return_std": float(np.std(scores)),
                **{f"normalized_return/seed{i}": s for i, s in enumerate(scores)}}

    result = harness.train(
        state, setup.step, batches, config.num_steps, workdir=workdir, name=name,
        log_every=config.log_every, checkpoint_every=config.checkpoint_every, stop_after=config.stop_after,
        evaluate=evaluate, eval_every=config.eval_every,
    )
    return result.history


def summarize(history, key: str, last: int = 3):
    """(final value, mean over the last `last` evaluations, their spread as stability)."""
    values = [r[key] for r in history if key in r]
    tail = values[-last:]
    return values[-1], float(np.mean(tail)), float(np.max(tail) - np.min(tail))


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    setup = make_setup(config)
    results, rows = {}, []
    for name in config.datasets:
        histories = {}
        seeds = range(config.seed, config.seed + config.num_seeds)
        runs = [make_dataset(setup.env, setup.q, name, config, s) for s in seeds]
        data = {k: np.stack([d[k] for d in runs]) for k in runs[0]}
        for method in config.methods:
            history = run_one(config, os.path.join(workdir, name, method), setup, data, method, f"{name}/{method}")
            histories[method] = history
            final, tail, spread = summarize(history, "normalized_return")
            final_std = [r["normalized_return_std"] for r in history if "normalized_return_std" in r][-1]
            cosines = [r["train/cosine_fb"] for r in history if "train/cosine_fb" in r]
            results.update({f"{name}/{method}/normalized_return": final, f"{name}/{method}/return_std": final_std,
                            f"{name}/{method}/cosine_fb": float(np.mean(cosines))})
            rows.append({"dataset": name, "method": method, "normalized_return": final, "seed_std": final_std,
                         "last_evals_mean": tail, "last_evals_spread": spread, "mean_cosine_fb": float(np.mean(cosines)),
                         "min_cosine_fb": float(np.min(cosines))})
        harness.plot_curves(histories, ["normalized_return", "train/cosine_fb", "train/value_s"],
                            os.path.join(workdir, f"{name}_curves.png"),
                            title=f"gridworld, {name} data: O-DICE vs true- and semi-gradient ({config.num_seeds} seeds)")
    harness.write_summary(workdir, results)
    write_tables(workdir, rows, config)
    return results


def write_tables(workdir: str, rows, config) -> None:
    lines = [f"| dataset | method | normalized return (mean ± std, {config.num_seeds} seeds) | last-3-evals spread "
             "| mean cos(g_f, g_b) | min cos |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['dataset']} | {r['method']} | {r['normalized_return']:.1f} ± {r['seed_std']:.1f} | "
              f"{r['last_evals_spread']:.1f} | {r['mean_cosine_fb']:.3f} | {r['min_cosine_fb']:.3f} |" for r in rows]
    harness.write_results(workdir, "\n".join(lines), {"rows": rows})

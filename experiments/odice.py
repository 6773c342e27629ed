"""Offline RL with DICE value learning, a test of O-DICE's claim (Mao et al. 2024): the
orthogonal-gradient update (mo.orthogonal_gradient) learns a better policy from the same data
than the true-gradient and the semi-gradient DICE updates, and beats behaviour cloning.

Environments (both built in JAX; sparse reward `reward_scale` on reaching the goal, terminal):
- "grid": an n x n grid with a wall (one gap), start in a corner, goal in the opposite one;
  each action slips to a uniformly random one with probability `slip`. Tabular states, so the
  optimal Q* is known (value iteration) and every policy's return is exact (a linear solve).
- "point": a continuous point mass in [-1, 1]^2, s' = s + step a + noise with a in [-1, 1]^2, a
  wall y = 0 for x < 0.4, start near (-0.7, -0.7), goal disc at (0.7, 0.7). Continuous actions,
  so a policy can leave the data's actions: out-of-distribution actions exist, the mechanism
  the O-DICE claim is about. Returns by Monte Carlo rollouts.
Behaviour data: episodes of epsilon-noisy experts (grid: eps-greedy on Q*; point: a scripted
waypoint expert with Gaussian action noise, uniform actions with probability eps): expert eps
0.1, medium 0.5, random 1.0, and "mixed" (a third of each).

Value learning (ALGORITHMS.md): twin MLP value functions V(s), target Vbar (EMA `tau`), Pearson
chi^2 f*(y) = y w - (w - 1)^2 with w = max(y/2 + 1, 0),
    r_f = r + gamma (1 - d) Vbar(s') - V(s),    g_f = grad mean(lam f*(r_f)),
    r_b = r + gamma (1 - d) V(s') - Vbar(s),    g_b = grad mean(lam eta f*(r_b)),
plus grad mean((1 - lam) V(s)), then Adam:
- "odice": g_f + (g_b - <g_b, g_f>/||g_f||^2 g_f)  (mo.orthogonal_gradient, over all parameters)
- "true":  g_f + g_b (the full gradient of the DICE objective)
- "semi":  g_f (the backward gradient dropped; eta plays no part)
Policy: weighted behaviour cloning with weights w(r_f) on the dataset's (s, a) (grid: the
weighted action frequency per state, uniform where the data has no weight; point: an MLP
policy trained by weighted squared error alongside the value). With reward 1 and gamma 0.99 the
weights sit in [0.99, 1.01] and every method is behaviour cloning; `reward_scale` (100) makes
them carry signal, and each run reports their spread (std over the data, share of zeros).

Reference rows (nothing to tune): "bc" (unweighted), and on the grid "wbc_vstar" (the same
weights from the true V*) and "greedy" (argmax of Q* over the actions the data has at each
state). Scores: 100 (J - J_random) / (J_ref - J_random), J_ref the optimal (grid) or the
noiseless scripted expert (point) policy's return.

The comparison runs through experiments.harness.protocol: eta and lam tuned per method and
dataset on the selection seeds (datasets drawn from seeds disjoint from the report seeds; on the
point mass also fresh evaluation rollouts), chosen settings rerun on paired report seeds, and
the claims in the config judged from paired 95% intervals.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import manifold_opt as mo
from experiments.harness import config as checks
from experiments.harness import protocol

METHODS = ("odice", "true", "semi")
REFERENCES = {"grid": ("bc", "wbc_vstar", "greedy"), "point": ("bc",)}
ENVS = tuple(REFERENCES)
DATASETS = {"expert": (0.1,), "medium": (0.5,), "random": (1.0,), "mixed": (0.1, 0.5, 1.0)}
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


def validate(config) -> None:
    """ValueError naming the key of the first bad odice value."""
    checks.check_common(config)
    if config.parallel != "none":
        raise ValueError(f"config.parallel: the odice experiment runs 'none', got {config.parallel!r}")
    for key, allowed in (("methods", METHODS), ("datasets", tuple(DATASETS)), ("envs", ENVS)):
        if not config[key] or any(v not in allowed for v in config[key]):
            raise ValueError(f"config.{key}: got {tuple(config[key])!r}; expected some of {list(allowed)}")
    for key in ("grid", "episodes", "horizon", "hidden", "eval_episodes"):
        checks.check_int(config, key)
    if config.grid < 4:
        raise ValueError(f"config.grid: expected at least 4, got {config.grid}")
    for key in ("slip", "tau"):
        if not 0.0 <= config[key] <= 1.0:
            raise ValueError(f"config.{key}: expected a number in [0, 1], got {config[key]!r}")
    if not 0.0 < config.gamma < 1.0:
        raise ValueError(f"config.gamma: expected a number in (0, 1), got {config.gamma!r}")
    for key in ("learning_rate", "reward_scale"):
        checks.check_positive_float(config, key)
    for key in ("lam_grid", "eta_grid"):
        values = tuple(config[key])
        if not values or any(not 0.0 < v for v in values) or (key == "lam_grid" and any(v >= 1.0 for v in values)):
            raise ValueError(f"config.{key}: expected positive numbers (lam below 1), got {values!r}")
    if set(config.selection_seeds) & set(config.seeds):
        raise ValueError(f"config.selection_seeds: {tuple(config.selection_seeds)} must be disjoint from "
                         f"config.seeds {tuple(config.seeds)} (the selection split)")


# ----------------------------------------------------------------------------- environments


class GridWorld:
    """Tabular MDP: transition tensor P (S, A, S), reward 1 on entering the goal, goal terminal."""

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
        return _grid_rollouts(self.P, self.start, self.goal, key, q, epsilon, episodes, horizon)


@jax.jit(static_argnums=(6, 7))
def _grid_rollouts(P, start, goal, key, q, epsilon, episodes: int, horizon: int):
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


class PointMass(NamedTuple):
    """A point in [-1, 1]^2: s' = clip(s + step a + N(0, noise^2)), a in [-1, 1]^2; a move that
    crosses the wall (y = 0, x < wall_end) is undone; reward 1 on entering the goal disc."""
    step: float = 0.1
    noise: float = 0.02
    wall_end: float = 0.4
    goal: tuple = (0.7, 0.7)
    goal_radius: float = 0.2
    start: tuple = (-0.7, -0.7)
    expert_noise: float = 0.3

    def reset(self, key):
        return jnp.asarray(self.start) + jax.random.uniform(key, (2,), minval=-0.1, maxval=0.1)

    def transition(self, s, a, key):
        """(s', reward, done) of one step."""
        s2 = jnp.clip(s + self.step * jnp.clip(a, -1, 1) + self.noise * jax.random.normal(key, (2,)), -1, 1)
        crosses = (jnp.sign(s[1]) != jnp.sign(s2[1])) & (jnp.minimum(s[0], s2[0]) < self.wall_end)
        s2 = jnp.where(crosses, s, s2)
        done = jnp.linalg.norm(s2 - jnp.asarray(self.goal)) < self.goal_radius
        return s2, done.astype(jnp.float32), done

    def expert_action(self, s):
        """Head for the gap's waypoint (0.6, 0) until past the wall, then for the goal."""
        below = (s[1] < 0) & (s[0] < self.wall_end + 0.15)
        target = jnp.where(below, jnp.array([self.wall_end + 0.2, 0.05]), jnp.asarray(self.goal))
        direction = target - s
        return direction / (jnp.linalg.norm(direction) + 1e-6)


def point_rollouts(env: PointMass, policy: Callable, key, epsilon, episodes: int, horizon: int, gamma: float):
    """Episodes of `policy(s, key)`, replaced by a uniform action with probability epsilon;
    fields (episodes * horizon, ...) as for the grid, plus `ret` (each step's episode return)."""
    def episode(key):
        def step(carry, key):
            s, done, discount, ret = carry
            kp, ke, ku, kt = jax.random.split(key, 4)
            a = jnp.where(jax.random.uniform(ke) < epsilon, jax.random.uniform(ku, (2,), minval=-1, maxval=1),
                          jnp.clip(policy(s, kp), -1, 1))
            s2, r, d = env.transition(s, a, kt)
            live = (~done).astype(jnp.float32)
            return (s2, done | d, discount * gamma, ret + live * discount * r), (s, a, r, s2, r, live)

        init = (env.reset(jax.random.fold_in(key, 1)), jnp.bool_(False), jnp.float32(1.0), jnp.float32(0.0))
        (_, _, _, ret), fields = jax.lax.scan(step, init, jax.random.split(key, horizon))
        return fields, ret

    fields, returns = jax.vmap(episode)(jax.random.split(key, episodes))
    names = ("s", "a", "r", "s2", "d", "valid")
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in zip(names, fields)}, returns


def noisy_expert(env: PointMass):
    return lambda s, key: env.expert_action(s) + env.expert_noise * jax.random.normal(key, (2,))


# ----------------------------------------------------------------------------- learning


def init_mlp(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"w": jax.random.normal(k, (i, o)) * jnp.sqrt(1.0 / i), "b": jnp.zeros(o)}
            for k, i, o in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def value(params, x):
    """V of features x (..., 2) for both twins (a leading axis of 2): (2, ...)."""
    return jax.vmap(lambda p: mlp(p, x)[..., 0])(params)


def f_star_weight(y):
    """Pearson chi^2: w = max(y/2 + 1, 0) and f*(y) = y w - (w - 1)^2."""
    w = jnp.maximum(y / 2 + 1, 0.0)
    return y * w - (w - 1) ** 2, w


def value_gradients(params, target, batch, lam, eta, gamma):
    """(g_f, g_b, g_linear) of the DICE value objective (module doc)."""
    discount = gamma * (1 - batch["d"])
    v_bar_s, v_bar_s2 = value(target, batch["x"]), value(target, batch["x2"])
    forward = lambda p: batch["r"] + discount * v_bar_s2 - value(p, batch["x"])  # noqa: E731
    backward = lambda p: batch["r"] + discount * value(p, batch["x2"]) - v_bar_s  # noqa: E731
    g_f = jax.grad(lambda p: jnp.mean(lam * f_star_weight(forward(p))[0]))(params)
    g_b = jax.grad(lambda p: jnp.mean(lam * eta * f_star_weight(backward(p))[0]))(params)
    g_lin = jax.grad(lambda p: jnp.mean((1 - lam) * value(p, batch["x"])))(params)
    return g_f, g_b, g_lin


def weights(params, x, x2, r, d, gamma):
    """The chi^2 weights w(r + gamma (1 - d) V(s') - V(s)) with V the twins' mean."""
    v, v2 = value(params, x).mean(0), value(params, x2).mean(0)
    return f_star_weight(r + gamma * (1 - d) * v2 - v)[1]


def make_trainer(config, policy_sizes=None) -> Callable:
    """train(key, method index, lam, eta, data) -> the trained state: value learning for any
    method (its index, lam and eta live in the state, so one compile serves every arm and
    setting), plus a weighted-BC MLP policy when `policy_sizes` is given
    (method index len(METHODS) is plain BC: weights 1)."""
    combine = mo.orthogonal_gradient(1.0)  # eta is already inside g_b, as in the reference code
    adam = optax.adam(config.learning_rate)

    def step(state, key, data):
        n = data["valid"].shape[0]
        idx = jax.random.choice(key, n, (config.batch_size,), p=data["valid"] / data["valid"].sum())
        batch = {k: data[k][idx] for k in ("x", "x2", "r", "d", "a")}
        params, target = state["params"], state["target"]
        g_f, g_b, g_lin = value_gradients(params, target, batch, state["lam"], state["eta"], config.gamma)
        directions = (combine.update((g_f, g_b), optax.EmptyState())[0], jax.tree.map(jnp.add, g_f, g_b), g_f)
        method = jnp.minimum(state["method"], len(METHODS) - 1)
        g = jax.tree.map(lambda *d: jnp.stack(d)[method], *directions)
        g = jax.tree.map(jnp.add, g, g_lin)
        updates, opt_state = adam.update(g, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        state = {**state, "params": params, "target": optax.incremental_update(params, target, config.tau),
                 "opt_state": opt_state}
        if policy_sizes is not None:
            w = weights(params, batch["x"], batch["x2"], batch["r"], batch["d"], config.gamma)
            w = jnp.where(state["method"] == len(METHODS), 1.0, jax.lax.stop_gradient(w))
            loss = lambda p: jnp.mean(w * jnp.sum((jnp.tanh(mlp(p, batch["x"])) - batch["a"]) ** 2, -1))  # noqa: E731
            pu, popt = adam.update(jax.grad(loss)(state["policy"]), state["policy_opt"], state["policy"])
            state = {**state, "policy": optax.apply_updates(state["policy"], pu), "policy_opt": popt}
        return state

    def init(key, method_index, lam, eta):
        kv, kp = jax.random.split(key)
        params = jax.vmap(lambda k: init_mlp(k, (2, config.hidden, config.hidden, 1)))(jax.random.split(kv, 2))
        state = {"params": params, "target": params, "opt_state": adam.init(params),
                 "method": jnp.int32(method_index), "lam": jnp.float32(lam), "eta": jnp.float32(eta)}
        if policy_sizes is not None:
            policy = init_mlp(kp, policy_sizes)
            state.update(policy=policy, policy_opt=adam.init(policy))
        return state

    @jax.jit
    def train(key, method_index, lam, eta, data):
        k_init, k_steps = jax.random.split(key)
        state = init(k_init, method_index, lam, eta)
        keys = jax.random.split(k_steps, config.num_steps)
        return jax.lax.scan(lambda s, k: (step(s, k, data), None), state, keys)[0]

    return train


# ----------------------------------------------------------------------------- tasks


class GridTask:
    """The grid: datasets, the trainer and exact scores of extracted / reference policies."""

    def __init__(self, config):
        self.config = config
        self.env = GridWorld(config.grid, config.slip, config.gamma)
        self.q = self.env.optimal_q()
        self.j_opt = float(self.env.policy_return(jax.nn.one_hot(jnp.argmax(self.q, 1), len(MOVES))))
        self.j_rand = float(self.env.policy_return(jnp.full((self.env.num_states, len(MOVES)), 1.0 / len(MOVES))))
        self.train = make_trainer(config)
        self.score = jax.jit(lambda pi: 100 * (self.env.policy_return(pi) - self.j_rand) / (self.j_opt - self.j_rand))

        def frequencies(data, w):
            counts = jnp.zeros((self.env.num_states, len(MOVES))).at[data["s"], data["a"]].add(w * data["valid"])
            total = counts.sum(1, keepdims=True)
            return jnp.where(total > 0, counts / jnp.where(total > 0, total, 1.0), 1.0 / len(MOVES))

        self.frequencies = jax.jit(frequencies)

        @jax.jit
        def weighted_bc_score(params, data):
            w = weights(params, data["x"], data["x2"], data["r"], data["d"], config.gamma)
            return self.score(frequencies(data, w)), w

        self.weighted_bc_score = weighted_bc_score

    def dataset(self, name: str, seed: int) -> dict:
        parts, c = DATASETS[name], self.config
        chunks = [jax.device_get(self.env.rollouts(jax.random.key(len(parts) * seed + i), self.q, jnp.float32(eps),
                                                   c.episodes // len(parts), c.horizon))
                  for i, eps in enumerate(parts)]
        data = {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}
        data["r"] = data["r"] * c.reward_scale
        data["x"], data["x2"] = self.env.coords[data["s"]], self.env.coords[data["s2"]]
        return data

    def evaluate(self, arm_method: str, state, data, seed: int) -> dict:
        c = self.config
        if arm_method == "bc":
            return {"normalized_return": float(self.score(self.frequencies(data, jnp.ones_like(data["r"]))))}
        if arm_method == "greedy":
            seen = jnp.zeros((self.env.num_states, len(MOVES)), bool).at[data["s"], data["a"]].max(data["valid"] > 0)
            masked = jnp.where(seen, self.q, -jnp.inf)
            pi = jnp.where(seen.any(1, keepdims=True), jax.nn.one_hot(jnp.argmax(masked, 1), len(MOVES)), 0.25)
            return {"normalized_return": float(self.score(pi))}
        if arm_method == "wbc_vstar":
            v = c.reward_scale * jnp.max(self.q, 1)
            w = f_star_weight(data["r"] + c.gamma * (1 - data["d"]) * v[data["s2"]] - v[data["s"]])[1]
            score = self.score(self.frequencies(data, w))
        else:
            score, w = self.weighted_bc_score(state["params"], data)
        return {"normalized_return": float(score), **weight_spread(w, data["valid"])}


class PointTask:
    """The point mass: datasets, the trainer (value + MLP policy) and Monte Carlo scores."""

    def __init__(self, config):
        self.config = config
        self.env = PointMass()
        self.train = make_trainer(config, policy_sizes=(2, config.hidden, config.hidden, 2))
        env, c = self.env, config

        @jax.jit
        def mean_return(policy_params, key, epsilon, expert):
            """The policy's (the noiseless expert's where `expert`) mean return over eval_episodes."""
            def policy(s, k):
                return jnp.where(expert, env.expert_action(s), jnp.tanh(mlp(policy_params, s)))

            return point_rollouts(env, policy, key, epsilon, c.eval_episodes, c.horizon, c.gamma)[1].mean()

        self.mean_return = lambda params, key: float(mean_return(params, key, 0.0, False))
        unused = init_mlp(jax.random.key(0), (2, c.hidden, c.hidden, 2))
        keys = jax.random.split(jax.random.key(12345), 4)  # reference returns over 4 x eval_episodes
        self.j_ref = float(np.mean([mean_return(unused, k, 0.0, True) for k in keys]))
        self.j_rand = float(np.mean([mean_return(unused, k, 1.0, True) for k in keys]))

        @jax.jit(static_argnums=(2, 3))
        def collect(key, epsilon, episodes, horizon):
            return point_rollouts(env, noisy_expert(env), key, epsilon, episodes, horizon, c.gamma)[0]

        self.collect = collect

    def dataset(self, name: str, seed: int) -> dict:
        parts, c = DATASETS[name], self.config
        chunks = [jax.device_get(self.collect(jax.random.key(len(parts) * seed + i), jnp.float32(eps),
                                              c.episodes // len(parts), c.horizon))
                  for i, eps in enumerate(parts)]
        data = {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}
        data["r"] = data["r"] * c.reward_scale
        data["x"], data["x2"] = data["s"], data["s2"]
        return data

    def evaluate(self, arm_method: str, state, data, seed: int) -> dict:
        c = self.config
        j = self.mean_return(state["policy"], jax.random.key(seed + 7))
        out = {"normalized_return": 100 * (j - self.j_rand) / (self.j_ref - self.j_rand)}
        if arm_method != "bc":
            out.update(weight_spread(weights(state["params"], data["x"], data["x2"], data["r"], data["d"], c.gamma),
                                     data["valid"]))
        return out


def weight_spread(w, valid) -> dict:
    """The weights' std over the data's transitions and the share that are zero."""
    w, valid = np.asarray(w, np.float64), np.asarray(valid) > 0
    return {"weight_std": float(np.std(w[valid])), "weight_zero_share": float(np.mean(w[valid] == 0))}


def arm_name(method: str, env: str, dataset: str) -> str:
    return f"{method}@{env}_{dataset}"


def make_arms(config) -> dict[str, protocol.Arm]:
    """Per env and dataset: each method tuned over lam x eta (semi: lam over as many points,
    log-spaced in 1 - lam between the grid's ends), and the reference rows."""
    lam, eta = sorted(config.lam_grid), sorted(config.eta_grid)
    size = len(lam) * len(eta)
    semi_lam = tuple(lam) if size == len(lam) else tuple(
        float(1 - x) for x in np.geomspace(1 - lam[0], 1 - lam[-1], size))
    grids = {"odice": {"lam": tuple(lam), "eta": tuple(eta)}, "true": {"lam": tuple(lam), "eta": tuple(eta)},
             "semi": {"lam": semi_lam}}
    bounds = {"lam": (0.01, 0.99), "eta": (1e-3, 100.0)}
    arms = {}
    for env in config.envs:
        for dataset in config.datasets:
            for method in config.methods:
                arms[arm_name(method, env, dataset)] = protocol.Arm(grid=grids[method], bounds=bounds)
            for reference in REFERENCES[env]:
                arms[arm_name(reference, env, dataset)] = protocol.Arm()
    return arms


def make_run_one(config):
    """run_one(arm, settings, seed, rundir) for the protocol: train on the dataset drawn with
    `seed` and score the policy (selection and report seeds are disjoint, so are their data)."""
    tasks, datasets = {}, {}

    def run_one(arm: str, settings: dict, seed: int, rundir: str) -> dict:
        del rundir  # one run is seconds; nothing to checkpoint
        method, where = arm.split("@")
        env, dataset = where.split("_", 1)
        if env not in tasks:
            tasks[env] = GridTask(config) if env == "grid" else PointTask(config)
        task = tasks[env]
        if (env, dataset, seed) not in datasets:
            datasets[(env, dataset, seed)] = jax.device_put(task.dataset(dataset, seed))
        data = datasets[(env, dataset, seed)]
        state = None
        if method in METHODS or env == "point":
            index = METHODS.index(method) if method in METHODS else len(METHODS)
            state = task.train(jax.random.key(seed), index, settings.get("lam", 0.8), settings.get("eta", 1.0), data)
        scores = task.evaluate(method, state, data, seed)
        return {"selection": scores, "report": scores}

    return run_one


def run(config, workdir: str) -> dict[str, float]:
    validate(config)
    arms = make_arms(config)
    results = protocol.compare(config, arms, make_run_one(config), select_on="normalized_return", minimize=False,
                               workdir=workdir)
    note = (f"\nReward {config.reward_scale:g} on reaching the goal, gamma {config.gamma}; "
            f"{config.num_steps} value steps per run. weight_std / weight_zero_share: the spread of the chi^2 "
            "weights over the data (with reward 1 they lie within 0.99..1.01 and every method is BC). "
            "Selection seeds (disjoint from the report seeds) draw their own datasets.\n")
    protocol.write(workdir, results, title="O-DICE vs true- / semi-gradient DICE and BC (normalized return)",
                   extra_text=note)
    return {f"{arm}/{m}": v["mean"] for arm, r in results["arms"].items() for m, v in r["metrics"].items()}

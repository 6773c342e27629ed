"""The O-DICE experiment: the gridworld is a proper MDP, the point mass's dynamics and expert
behave, the reference rows and weight spread are what they claim, and the quick run goes
through the protocol and writes its fields; bad configs name the key."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import odice as odice_config
from experiments import odice, registry
from tests.experiments.configs import resolved


def config_with(**values):
    return resolved(odice_config, **values)


def test_gridworld_is_a_proper_mdp_and_returns_match_monte_carlo():
    config = config_with(quick=True)  # the quick run's shapes: its compiled rollouts are reused
    env = odice.GridWorld(config.grid, config.slip, config.gamma)
    np.testing.assert_allclose(np.asarray(env.P.sum(-1)), 1.0, atol=1e-6)
    q = env.optimal_q()
    greedy = jax.nn.one_hot(jnp.argmax(q, 1), 4)
    j_opt, j_rand = float(env.policy_return(greedy)), float(env.policy_return(jnp.full((env.num_states, 4), 0.25)))
    assert j_opt == pytest.approx(float(jnp.max(q[env.start])), rel=1e-4) and j_opt > j_rand > 0
    episodes, horizon = config.episodes // 3, config.horizon
    discounted = []
    for seed in range(10):  # greedy episodes; the goal is reached well within the horizon
        data = env.rollouts(jax.random.key(seed), q, jnp.float32(0.0), episodes, horizon)
        rewards = np.asarray(data["r"] * data["valid"]).reshape(episodes, horizon)
        discounted.extend(np.sum(rewards * config.gamma ** np.arange(horizon), axis=1))
    assert np.mean(discounted) == pytest.approx(j_opt, abs=3 * np.std(discounted) / np.sqrt(len(discounted)))


def test_point_mass_wall_blocks_and_the_expert_reaches_the_goal():
    env = odice.PointMass()
    key = jax.random.key(0)
    s = jnp.array([-0.5, -0.05])
    s2, r, done = env.transition(s, jnp.array([0.0, 1.0]), key)  # straight up into the wall: undone
    np.testing.assert_array_equal(np.asarray(s2), np.asarray(s))
    s2, _, _ = env.transition(jnp.array([0.6, -0.05]), jnp.array([0.0, 1.0]), key)  # through the gap
    assert float(s2[1]) > 0
    rollouts = jax.jit(lambda eps: odice.point_rollouts(env, lambda s, k: env.expert_action(s), key, eps, 64, 60, 0.99))
    data, returns = rollouts(0.0)
    assert float(jnp.mean(returns > 0)) > 0.95  # the noiseless expert reaches the goal
    _, random_returns = rollouts(1.0)
    assert float(jnp.mean(random_returns)) < 0.1 * float(jnp.mean(returns))
    valid = np.asarray(data["valid"]).reshape(64, 60)
    assert np.all(np.diff(valid, axis=1) <= 0)  # an episode stays over once done


def test_reference_rows_and_weight_spread():
    """In-support greedy on expert-ish data is near-optimal, the weights with V* under reward
    100 spread (reward 1 leaves them within 1 +- 0.02: no signal), and BC scores below greedy."""
    config = config_with(quick=True)
    task = odice.GridTask(config)
    data = jax.device_put(task.dataset("mixed", 0))
    greedy, bc = task.evaluate("greedy", None, data, 0), task.evaluate("bc", None, data, 0)
    wbc = task.evaluate("wbc_vstar", None, data, 0)
    assert greedy["normalized_return"] > 95 and bc["normalized_return"] < greedy["normalized_return"] - 5
    assert wbc["weight_std"] > 0.1 and wbc["normalized_return"] > bc["normalized_return"]
    v = jnp.max(task.q, 1)  # reward 1: the weights barely move from 1
    w1 = odice.f_star_weight(data["r"] / config.reward_scale + config.gamma * (1 - data["d"]) * v[data["s2"]]
                             - v[data["s"]])[1]
    assert float(jnp.max(jnp.abs(w1 - 1) * data["valid"])) < 0.02


def test_quick_run_goes_through_the_protocol_and_writes_its_fields(tmp_path):
    config = config_with(quick=True)
    results = registry.get("odice")(config, str(tmp_path))
    with open(tmp_path / "results.json") as f:
        saved = json.load(f)
    arms = saved["arms"]
    assert set(arms) == set(odice.make_arms(config))
    for name, arm in arms.items():
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert arm["seeds"] == list(config.seeds)
        m = arm["metrics"]["normalized_return"]
        assert {"mean", "std", "ci95"} <= set(m) and len(m["values"]) == len(config.seeds)
        assert -100.0 < m["mean"] <= 100.0 + 1e-3 and np.isfinite(results[f"{name}/normalized_return"])
        if name.split("@")[0] in odice.METHODS:
            assert set(arm["chosen"]) == ({"lam"} if name.startswith("semi") else {"lam", "eta"})
            assert arm["metrics"]["weight_std"]["mean"] > 0.5  # reward 100: the weights carry signal
    assert [c["text"] for c in saved["claims"]] == list(config.claims)
    assert all(c["verdict"] in ("agrees", "disagrees", "inconclusive") for c in saved["claims"])
    assert "| claim |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("values, key", [
    (dict(methods=("odice", "iql")), "config.methods"),
    (dict(datasets=("expert", "human")), "config.datasets"),
    (dict(envs=("grid", "maze")), "config.envs"),
    (dict(gamma=1.0), "config.gamma"),
    (dict(slip=1.5), "config.slip"),
    (dict(lam_grid=(0.5, 1.0)), "config.lam_grid"),
    (dict(selection_seeds=(0,)), "config.selection_seeds"),
])
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        odice.validate(config_with(**values))

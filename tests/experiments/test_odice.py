"""The O-DICE experiment: the gridworld is a proper MDP, the quick run trains all three value
updates over vmapped seeds and writes its table, curves and summary; bad configs name the key."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import odice as odice_config
from experiments import harness, odice, registry
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


def test_quick_run_writes_table_curves_and_summary(tmp_path):
    config = config_with(quick=True)
    results = registry.get("odice")(config, str(tmp_path))
    for method in config.methods:
        assert -50.0 < results[f"mixed/{method}/normalized_return"] <= 100.0 + 1e-6
        assert -1.0 <= results[f"mixed/{method}/cosine_fb"] <= 1.0
        history = harness.read_history(str(tmp_path / "mixed" / method))
        assert [r["step"] for r in history if "normalized_return" in r] == [50, 100]
        assert all(np.isfinite(r["train/loss"]) for r in history if "train/loss" in r)
    with open(tmp_path / "results.json") as f:
        assert [r["method"] for r in json.load(f)["rows"]] == list(config.methods)
    with open(tmp_path / "mixed_curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("values, key", [
    (dict(methods=("odice", "iql")), "config.methods"),
    (dict(datasets=("expert", "human")), "config.datasets"),
    (dict(gamma=1.0), "config.gamma"),
    (dict(slip=1.5), "config.slip"),
])
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        odice.validate(config_with(**values))

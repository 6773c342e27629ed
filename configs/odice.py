"""Offline RL on a stochastic gridworld generated in JAX: O-DICE (mo.orthogonal_gradient) vs
true-gradient and semi-gradient DICE value learning, with weighted behaviour cloning.

    python -m experiments.run --config configs/odice.py --workdir /tmp/odice
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("odice")
    c.methods = ("odice", "true", "semi")
    c.datasets = ("expert", "medium", "random", "mixed")
    c.num_seeds = 5  # seeds seed .. seed + num_seeds - 1, vmapped in one compiled step
    # environment and behaviour data
    c.grid = 8
    c.slip = 0.2
    c.gamma = 0.99
    c.episodes = 300
    c.horizon = 60
    # O-DICE (ALGORITHMS.md): lambda 0.8, eta 1.0, target EMA 0.005; paper lr 2e-4 over 1M
    # steps, here 1e-3 over a few thousand
    c.lam = 0.8
    c.eta = 1.0
    c.tau = 0.005
    c.learning_rate = 1e-3
    c.hidden = 64
    c.num_steps = 5000
    c.batch_size = 256
    c.eval_every = 500
    c.log_every = 50
    c.checkpoint_every = 0
    c.quick_overrides = ml_collections.ConfigDict(
        dict(datasets=("mixed",), num_seeds=2, episodes=60, num_steps=100, eval_every=50, log_every=20, hidden=32)
    )
    return c

"""Continual learning on scikit-learn's digits: plain fine-tuning vs protected subspaces from
layer inputs (GPM / FOT rule) and from the weights' SVD (Sculpting Subspaces), and a federated
variant (FedAvg vs Federated Orthogonal Training) with vmapped clients.

    python -m experiments.run --config configs/continual.py --workdir /tmp/continual
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("continual")
    c.benchmarks = ("permuted", "split")  # permuted pixels (shared head), split classes (head per task)
    c.methods = ("finetune", "gpm", "sculpt", "fedavg", "fot")
    c.seeds = (0, 1, 2)
    c.num_tasks = 5
    c.steps_per_task = 300  # SGD steps per task (federated: steps_per_task / local_steps rounds)
    c.batch_size = 32
    c.learning_rate = 0.05
    c.momentum = 0.9  # centralized methods; federated clients run plain SGD
    c.hidden = 100
    c.threshold = 0.98  # GPM / FOT energy threshold
    c.sculpt_rank_fraction = 0.1  # Sculpting Subspaces: fraction of each side frozen per task
    c.probe_samples = 100  # layer-input samples per task (per client when federated)
    c.clients = 4
    c.local_steps = 5
    c.eval_every = 50  # must divide steps_per_task
    c.log_every = 25
    c.checkpoint_every = 0
    c.quick_overrides = ml_collections.ConfigDict(
        dict(benchmarks=("permuted",), seeds=(0,), num_tasks=3, steps_per_task=40, eval_every=20, log_every=10,
             hidden=32, probe_samples=50)
    )
    return c

"""Model merging on scikit-learn's digits: a pool of task experts plus irrelevant models, merged for
4 target tasks by task arithmetic, TIES, DARE, AdaMerging, FW-Merging hard and soft.

    python -m experiments.run --config configs/merging.py --workdir /tmp/merging
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("merging")
    c.num_seeds = 3  # seeds config.seed, config.seed + 1, ...
    c.pool_sizes = (4, 8, 16)  # the 4 target experts, then irrelevant models appended
    c.methods = ("pretrained", "task_arithmetic", "ties", "dare", "adamerging", "fw_hard", "fw_soft")
    c.hidden = 64  # MLP body 64 -> hidden -> hidden (merged); a frozen 10-way head from pretraining
    c.test_fraction = 0.3
    c.dtype = "float32"
    c.pretrain_mix = 0.1  # pretraining adds this fraction of the digits seen through every task's transform
    c.pretrain_steps = 400
    c.finetune_steps = 200
    c.learning_rate = 3e-3  # Adam, full batch, pretraining and fine-tuning
    c.proxy_per_task = 100  # labelled proxy samples per target task (FW relevance)
    c.ta_scaling = 0.3  # task arithmetic lambda
    c.ties_density = 0.2
    c.ties_scaling = 1.0
    c.dare_drop_rate = 0.9  # then task arithmetic with ta_scaling
    c.fw_iterations = 10
    c.fw_init_scaling = 0.0  # hard FW starts at the pretrained body
    c.fw_step_size = 1.0
    c.fw_scaling = 0.3  # gamma_t = 2/(t+2) * fw_step_size * fw_scaling
    c.soft_steps = 500  # AdaMerging and FW-soft: Adam on the prediction entropy
    c.soft_learning_rate = 1e-3
    c.soft_init = 0.3
    c.quick_overrides = ml_collections.ConfigDict(
        dict(num_seeds=1, pool_sizes=(4, 8), pretrain_steps=150, finetune_steps=80, soft_steps=100, fw_iterations=3)
    )
    return c

"""Online orthogonal dictionary learning by Frank-Wolfe (Xue & Lau 2021) on streaming samples
y = D* x, D* a random n x n orthogonal matrix, x Bernoulli(theta)-Gaussian; the offline l4
matching-stretching-projection method (Zhai et al. 2020) is the batch reference.

    python -m experiments.run --config configs/dictionary_learning.py --workdir /tmp/dl
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("dictionary_learning")
    c.n = 32  # dictionary size (n x n), 16..64
    c.theta = 0.3  # Bernoulli probability of a nonzero code entry
    c.batch_size = 8  # samples arriving per step
    c.num_steps = 4000
    c.seeds = (0, 1, 2)
    c.step_exponent = 0.75  # FW step gamma_t = (t + 1)^(-step_exponent)
    c.averaging_exponent = 0.5  # gradient averaging weight rho_t = (t + 1)^(-averaging_exponent)
    c.msp_iterations = 30  # offline MSP iterations on all samples the online run saw
    c.eval_every = 100
    c.log_every = 100
    c.checkpoint_every = 1000
    c.quick_overrides = ml_collections.ConfigDict(
        dict(n=16, num_steps=600, seeds=(0,), msp_iterations=20, eval_every=50, log_every=50, checkpoint_every=300)
    )
    return c

"""Online orthogonal dictionary learning by Frank-Wolfe (Xue & Lau 2021) on streaming samples
y = D* x, D* a random n x n orthogonal matrix, x Bernoulli(theta)-Gaussian, against online
Riemannian SGD on O(n) at the same sample budget (its rate tuned by the protocol); the offline
l4 matching-stretching-projection method (Zhai et al. 2020) is the batch reference.

    python -m experiments.run --config configs/dictionary_learning.py --workdir /tmp/dl
"""
import ml_collections

from configs.common import base_config
from experiments.harness import protocol


def get_config() -> ml_collections.ConfigDict:
    c = base_config("dictionary_learning")
    protocol.add_config_keys(
        c, seeds=(0, 1, 2, 3, 4), selection_seeds=(100,), max_grid_extensions=2,
        claims=(
            # Xue & Lau: projection-free online FW recovers the dictionary (compared with the
            # Riemannian online baseline at the same samples, and with the batch method).
            "online_fw < rsgd on recovery_error",
            "online_fw < msp on recovery_error by -0.02",  # within 0.02 of the batch method
        ),
    )
    c.rsgd_learning_rates = (0.3, 1.0, 3.0)  # RSGD's grid: eta_t = lr / sqrt(t + 1)
    c.n = 32  # dictionary size (n x n), 16..64
    c.theta = 0.3  # Bernoulli probability of a nonzero code entry
    c.batch_size = 8  # samples arriving per step
    c.num_steps = 4000
    c.step_exponent = 0.75  # FW step gamma_t = (t + 1)^(-step_exponent)
    c.averaging_exponent = 0.5  # gradient averaging weight rho_t = (t + 1)^(-averaging_exponent)
    c.msp_iterations = 30  # offline MSP iterations on all samples the online run saw
    c.eval_every = 100
    c.log_every = 100
    c.checkpoint_every = 0
    c.quick_overrides = ml_collections.ConfigDict(
        dict(n=16, num_steps=600, seeds=(0, 1), rsgd_learning_rates=(0.3, 1.0), max_grid_extensions=0,
             msp_iterations=20, eval_every=50)
    )
    return c

"""Quickstart: a small Flax NNX classifier on scikit-learn's digits whose hidden kernels live on
O(64) and Stiefel(64, 32), trained with mo.riemannian_adam and with optax.adamw.

    python -m experiments.run --config configs/quickstart.py --workdir /tmp/quickstart
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("quickstart")
    c.optimizers = ("riemannian_adam", "adamw")
    c.learning_rate = 1e-2
    c.weight_decay = 1e-4  # adamw only
    c.hidden = 64  # kernel of the first layer: 64 x hidden on Stiefel (O(64) when hidden = 64)
    c.bottleneck = 32  # kernel of the second layer: hidden x bottleneck on Stiefel
    c.test_fraction = 0.2
    c.dtype = "float32"
    c.num_steps = 2000
    c.eval_every = 100
    c.checkpoint_every = 500
    c.quick_overrides = ml_collections.ConfigDict(
        dict(num_steps=200, eval_every=50, log_every=10, checkpoint_every=100)
    )
    return c

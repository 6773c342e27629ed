"""Quickstart: a small Flax NNX classifier on scikit-learn's digits whose hidden kernels live on
O(64) and Stiefel(64, 32), trained with mo.riemannian_adam and with optax.adamw, each at the
learning rate the fair-comparison protocol picks on a selection split held out of the training
data, then reported on the test split over paired seeds.

    python -m experiments.run --config configs/quickstart.py --workdir /tmp/quickstart
"""
import ml_collections

from configs.common import base_config
from experiments.harness import protocol


def get_config() -> ml_collections.ConfigDict:
    c = base_config("quickstart")
    c.optimizers = ("riemannian_adam", "adamw")  # the protocol's arms
    # Each arm's initial learning-rate grid (the same size), extended at an edge by the protocol.
    c.learning_rates = ml_collections.ConfigDict(dict(riemannian_adam=(3e-3, 1e-2, 3e-2), adamw=(3e-3, 1e-2, 3e-2)))
    c.learning_rate = 1e-2  # the single step of benchmarks/scaling.py and the parallel tests
    c.weight_decay = 1e-4  # adamw only
    c.hidden = 64  # kernel of the first layer: 64 x hidden on Stiefel (O(64) when hidden = 64)
    c.bottleneck = 32  # kernel of the second layer: hidden x bottleneck on Stiefel
    c.test_fraction = 0.2  # the report split
    c.selection_fraction = 0.2  # of the remaining training examples: the selection split (tuning)
    c.dtype = "float32"
    c.num_steps = 2000
    c.eval_every = 100
    c.checkpoint_every = 500
    protocol.add_config_keys(c, claims=("riemannian_adam > adamw on accuracy",))
    c.quick_overrides = ml_collections.ConfigDict(
        dict(num_steps=100, eval_every=25, log_every=10, checkpoint_every=50, seeds=(0, 1), max_grid_extensions=0)
    )
    return c

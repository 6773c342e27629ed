"""Hyper-connection mixers in a weight-tied recursive model (one attention + MLP layer applied
`recursions` times, each block in one shared hyper-connection, so the mixers compound) on
generated ARC-style grid tasks: plain residual, HC, mHC, orthostochastic, JPmHC-Stiefel and sHC,
each at its own learning rate chosen by the fair-comparison protocol, on paired seeds.

    python -m experiments.run --config configs/hyperconnections.py --workdir /tmp/hyperconnections
"""
import ml_collections

from configs.common import base_config
from experiments.harness import protocol


def get_config() -> ml_collections.ConfigDict:
    c = base_config("hyperconnections")
    # "identity" with one stream is the plain residual baseline; the others use n_streams.
    c.mixers = ("identity", "unconstrained", "birkhoff", "orthostochastic", "stiefel", "spectral_sphere")
    protocol.add_config_keys(
        c, seeds=(0, 1, 2, 3, 4), selection_seeds=(100,), max_grid_extensions=2,
        claims=(
            # JPmHC: an isometric (Stiefel) mixer trains better and faster than a doubly stochastic one.
            "stiefel > birkhoff on exact_match",
            "stiefel < birkhoff on steps_to_threshold",
            # mHC: the doubly stochastic constraint beats unconstrained HC.
            "birkhoff > unconstrained on exact_match",
            # sHC: the spectral-sphere mixer beats mHC.
            "spectral_sphere > birkhoff on exact_match",
            # any hyper-connection beats the plain residual recursion (all three papers' premise)
            "stiefel > identity on exact_match",
        ),
    )
    c.learning_rates = (1e-3, 3e-3, 1e-2)  # every arm's initial grid (extended at an edge)
    c.n_streams = 4
    c.tasks = ("rotate", "reflect", "colormap", "count", "gravity")
    c.grid = 4  # grid side; a sequence is one task token and grid * grid cells
    c.colors = 6  # cell colors, 0 = background
    c.density = 0.3  # fraction of non-background input cells
    c.d_model = 16
    c.num_heads = 2
    c.mlp_ratio = 2
    c.recursions = 8  # applications of the tied layer (JPmHC's recursive model uses 8-16)
    c.spectrum_depths = (1, 2, 4, 8)  # recursions at which the Jacobian is measured and predicted
    c.loss_threshold = 0.3  # steps_to_threshold: first evaluation with report loss <= this
    c.num_steps = 1000
    c.batch_size = 32
    c.eval_every = 100
    c.eval_size = 256
    c.log_every = 100
    c.checkpoint_every = 0
    c.quick_overrides = ml_collections.ConfigDict(
        dict(
            mixers=("identity", "spectral_sphere"),
            learning_rates=(3e-3, 1e-2),
            seeds=(0, 1),
            max_grid_extensions=0,
            claims=("spectral_sphere < identity on loss",),
            grid=3,
            d_model=8,
            recursions=2,
            spectrum_depths=(1, 2),
            loss_threshold=1.5,
            num_steps=20,
            eval_every=10,
            eval_size=32,
            batch_size=16,
        )
    )
    return c

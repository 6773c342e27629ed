"""Hyper-connection mixers on generated ARC-style grid tasks: plain residual, HC, mHC,
orthostochastic, JPmHC-Stiefel, JPmHC-Grassmann and sHC in one small NNX transformer, over
seeds; loss / exact-match curves, step time, composite gain over depth, Jacobian spectra at init
and after training, and a depth stress run.

    python -m experiments.run --config configs/hyperconnections.py --workdir /tmp/hyperconnections
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("hyperconnections")
    # "identity" with n_streams = 1 is the plain residual baseline; the others use n_streams.
    c.mixers = ("identity", "unconstrained", "birkhoff", "orthostochastic", "stiefel", "grassmann", "spectral_sphere")
    c.n_streams = 4
    c.seeds = (0, 1, 2)
    c.tasks = ("rotate", "reflect", "colormap", "count", "gravity")
    c.grid = 5  # grid side; a sequence is one task token and grid * grid cells
    c.colors = 6  # cell colors, 0 = background
    c.density = 0.3  # fraction of non-background input cells
    c.d_model = 32
    c.num_heads = 4
    c.num_layers = 4  # transformer blocks; each has an attention and an MLP hyper-connection
    c.mlp_ratio = 2
    c.learning_rate = 3e-3
    c.power_iters = 0  # sHC: 0 = exact top singular pair by SVD (the harness carries params only,
    # so a warm-started power iterate would restart cold every step)
    c.num_steps = 1500
    c.batch_size = 64
    c.eval_every = 100
    c.eval_size = 512
    c.log_every = 50
    c.checkpoint_every = 0
    # Depth stress: deep, narrow, at a higher learning rate, one seed.
    c.stress_mixers = ("identity", "unconstrained", "birkhoff", "stiefel", "spectral_sphere")
    c.stress_layers = 24
    c.stress_d_model = 16
    c.stress_learning_rate = 1e-2
    c.stress_steps = 200
    c.quick_overrides = ml_collections.ConfigDict(
        dict(
            mixers=("identity", "spectral_sphere"),
            seeds=(0,),
            grid=3,
            d_model=8,
            num_heads=2,
            num_layers=1,
            num_steps=10,
            eval_every=5,
            eval_size=32,
            log_every=5,
            batch_size=16,
            stress_mixers=("stiefel",),
            stress_layers=2,
            stress_d_model=8,
            stress_steps=5,
        )
    )
    return c

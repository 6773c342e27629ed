"""Character-level language model on the Python standard library's own sources: steps to a
target validation loss for AdamW, Muon, Muon with Polar Express coefficients, MuonH (where
mo.muon has hyperball=True), NorMuon and Conda, each at a learning rate bracketed by the
protocol on a separate selection split, on paired seeds; the papers' claims judged by the
protocol (experiments/harness/protocol.py).

    python -m experiments.run --config configs/char_lm.py --workdir /tmp/char_lm
"""
import math

import ml_collections

from configs.common import base_config
from experiments.harness import protocol

# ln of the claimed step ratios: "a < b on log_steps_to_target by ln(r)" = a needs r x fewer steps.
NORMUON_OVER_ADAM = math.log(1.217)  # NorMuon (Li et al. 2025): 21.74% better training efficiency than Adam
CONDA_OVER_ADAMW = math.log(2.0)  # Conda: 2-2.5x fewer steps than AdamW (the lower end)


def claims(optimizers) -> tuple[str, ...]:
    """The papers' claims among `optimizers` (the protocol judges them)."""
    declared = (
        "muon < adamw on log_steps_to_target",  # modded-nanogpt: AdamW 5625 steps, Muon 3375
        f"normuon < adamw on log_steps_to_target by {NORMUON_OVER_ADAM:.4f}",
        "normuon < adamw on final_loss",
        f"conda < adamw on log_steps_to_target by {CONDA_OVER_ADAMW:.4f}",
        "conda < adamw on final_loss",
        "muon_pe < muon on log_steps_to_target",  # Polar Express (Amsel et al. 2025)
        "muon_pe < muon on final_loss",
        "muonh < muon on log_steps_to_target",  # MuonH: 3325 against Muon's 3375 steps
        "muonh < muon on final_loss",
    )
    return tuple(c for c in declared if protocol.parse_claim(c).arms <= set(optimizers))


def get_config() -> ml_collections.ConfigDict:
    from experiments.char_lm import available_optimizers  # muonh only where mo.muon has hyperball

    c = base_config("char_lm")
    c.optimizers = tuple(n for n in ("adamw", "muon", "muon_pe", "muonh", "normuon", "conda")
                         if n in available_optimizers())
    # Peak learning rates tried on the selection split (3 per arm, x2 apart; the protocol extends
    # a grid whose best is at an edge). Embeddings, head, norms and biases of the orthogonalized
    # optimizers: AdamW at adam_learning_rate, the same for every arm.
    c.learning_rate_grids = ml_collections.ConfigDict(dict(
        adamw=(3e-3, 6e-3, 1.2e-2), muon=(0.025, 0.05, 0.1), muon_pe=(0.025, 0.05, 0.1), muonh=(0.025, 0.05, 0.1),
        normuon=(0.025, 0.05, 0.1), conda=(6e-3, 1.2e-2, 2.4e-2), auon=(0.04, 0.08, 0.16),
        hybrid_auon=(0.025, 0.05, 0.1), root=(1e-3, 2e-3, 4e-3),
    ))
    c.adam_learning_rate = 6e-3
    c.weight_decay = 0.0  # one policy: every branch of every arm
    c.warmup_fraction = 0.05  # linear warmup, then cosine decay to 10% of the peak rate
    c.conda_update_proj_gap = 50
    c.target_loss = 2.3  # nats/char on the report split: steps_to_target's threshold
    # Corpus: the first corpus_bytes of the sorted *.py files of os.path.dirname(os.__file__).
    c.corpus_bytes = 1_000_000
    c.selection_fraction = 0.05  # chooses the learning rates
    c.val_fraction = 0.1  # the report split
    c.val_batches = 2  # each eval split: val_batches x batch_size fixed windows
    # Model and batch: fixed for every arm.
    c.context = 32
    c.d_model = 48
    c.num_heads = 4
    c.num_layers = 2
    c.mlp_ratio = 4
    c.num_steps = 300
    c.batch_size = 32
    c.eval_every = 10
    c.log_every = 50
    c.checkpoint_every = 0
    c.arm_threads = 1  # > 1: tune and run that many arms at once (threads; the numbers do not change)
    protocol.add_config_keys(c, seeds=(0, 1, 2, 3, 4), selection_seeds=(0,), max_grid_extensions=2,
                             claims=claims(c.optimizers))
    c.quick_overrides = ml_collections.ConfigDict(dict(
        optimizers=("adamw", "muon"),
        claims=claims(("adamw", "muon")),
        seeds=(0, 1),
        max_grid_extensions=1,
        num_steps=30,
        eval_every=5,
        log_every=10,
        target_loss=3.0,
        corpus_bytes=100_000,
        val_batches=1,
        batch_size=16,
        context=32,
        d_model=32,
        num_layers=1,
    ))
    return c

"""Character-level language model on the Python standard library's own sources: AdamW vs the
orthogonalized-momentum optimizers (Muon, AuON, Hybrid-AuON, NorMuon, Conda, ROOT), each at a
learning rate chosen by a short sweep, then trained for the same number of steps.

    python -m experiments.run --config configs/char_lm.py --workdir /tmp/char_lm
"""
import ml_collections

from configs.common import base_config


def get_config() -> ml_collections.ConfigDict:
    c = base_config("char_lm")
    c.optimizers = ("adamw", "muon", "auon", "hybrid_auon", "normuon", "conda", "root")
    # Base learning rates (ALGORITHMS.md defaults; AdamW: a usual small-transformer value).
    c.learning_rates = ml_collections.ConfigDict(
        dict(adamw=3e-3, muon=0.02, auon=0.08, hybrid_auon=0.02, normuon=0.02, conda=0.01, root=1e-3)
    )
    # Sweep: each optimizer tries base_lr * factor for `sweep_steps` steps; the lowest
    # validation loss wins. Empty factors: no sweep, the base rates are used as they are.
    # Embeddings, head, norms and biases of the orthogonalized optimizers go to AdamW at
    # AdamW's chosen rate.
    c.sweep_factors = (0.3, 1.0, 3.0)
    c.sweep_steps = 150
    c.warmup_fraction = 0.05  # linear warmup, then cosine decay to 10% of the peak rate
    c.weight_decay = 0.0  # adamw only; the others keep their own defaults
    c.conda_update_proj_gap = 50  # ALGORITHMS.md: the reference CLI's value
    # Corpus: the first corpus_bytes of the sorted *.py files of os.path.dirname(os.__file__).
    c.corpus_bytes = 1_000_000
    c.val_fraction = 0.1
    c.val_batches = 4  # validation: val_batches x batch_size fixed windows of the held-out text
    # Model: pre-norm causal transformer.
    c.context = 64
    c.d_model = 64
    c.num_heads = 4
    c.num_layers = 2
    c.mlp_ratio = 4
    c.num_steps = 600
    c.batch_size = 32
    c.eval_every = 50
    c.log_every = 25
    c.checkpoint_every = 0
    c.quick_overrides = ml_collections.ConfigDict(
        dict(
            optimizers=("adamw", "muon"),
            sweep_factors=(1.0, 3.0),
            sweep_steps=10,
            num_steps=40,
            eval_every=10,
            log_every=10,
            corpus_bytes=100_000,
            val_batches=1,
            batch_size=16,
            context=32,
            d_model=32,
            num_layers=1,
        )
    )
    return c

"""Copying memory (the main job): an RNN whose recurrent kernel lives on O(n), trained with
mo.riemannian_adam, against the same RNN unconstrained (optax.adamw) and an LSTM, each at the
learning rate the fair-comparison protocol picks on a held-out selection split.

    python -m experiments.run --config configs/copy_memory.py --workdir /tmp/copy_memory
"""
import ml_collections

from configs.common import base_config
from experiments.harness import protocol


def get_config() -> ml_collections.ConfigDict:
    c = base_config("copy_memory")
    c.arms = ("orthogonal_rnn", "rnn_adamw", "lstm")
    c.delay = 200  # T: blanks between the symbols and the delimiter
    c.copy_length = 10  # K symbols to recall
    c.symbols = 8  # A: alphabet size
    c.hidden = 64  # RNN state size n (the recurrent kernel is n x n, on O(n) for orthogonal_rnn)
    c.lstm_hidden = 32  # LSTM state size: about the RNN's parameter count (5.8k vs 5.4k)
    c.num_steps = 400
    c.batch_size = 16
    c.eval_every = 25  # steps between scores of the report split (for steps_to_half)
    c.eval_size = 128  # sequences in each of the selection and report splits
    c.learning_rates = (1e-3, 3e-3, 1e-2)  # every arm's initial grid (extended at an edge)
    c.weight_decay = 0.0  # the same for every arm
    c.clip_norm = 0.0  # >0: clip gradients by global norm, the same for every arm
    c.dtype = "float32"
    c.parallel = "none"
    protocol.add_config_keys(
        c,
        claims=(
            "orthogonal_rnn < rnn_adamw on steps_to_half",
            "orthogonal_rnn < rnn_adamw on loss",
            "orthogonal_rnn > rnn_adamw on accuracy",
            "orthogonal_rnn > lstm on accuracy",
        ),
    )
    c.quick_overrides = ml_collections.ConfigDict(
        dict(delay=10, hidden=8, lstm_hidden=4, num_steps=40, eval_every=10, batch_size=8, eval_size=32, seeds=(0, 1),
             max_grid_extensions=0)
    )
    return c

"""Experiment names (`config.experiment`) to the modules implementing them, imported lazily.

Each module exposes `validate(config)` (ValueError naming the first bad key) and
`run(config, workdir) -> dict[str, float]` (final metrics)."""
from __future__ import annotations

import importlib

EXPERIMENTS = {
    "copy_memory": "experiments.copy_memory",
    "quickstart": "experiments.quickstart",
    "char_lm": "experiments.char_lm",
    "merging": "experiments.merging",
    "continual": "experiments.continual",
    "odice": "experiments.odice",
    "dictionary_learning": "experiments.dictionary_learning",
    "hyperconnections": "experiments.hyperconnections",
}


def load(name: str):
    """The module of experiment `name`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"config.experiment: unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def get(name: str):
    """The `run` function of experiment `name`."""
    return load(name).run

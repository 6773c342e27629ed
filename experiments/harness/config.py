"""Config resolution and validation shared by every experiment.

Unknown keys already fail when the CLI parses `--config.key=value` (the ConfigDict is locked);
these checks catch bad values before any work starts, with a message naming the key.
"""
from __future__ import annotations

import ml_collections

PARALLEL_MODES = ("none", "jit_sharded", "pmap")


def resolve(config: ml_collections.ConfigDict, explicit=()) -> ml_collections.ConfigDict:
    """A locked copy of `config` with `config.quick_overrides` applied when `config.quick`.

    Keys named in `explicit` (set on the command line) keep their value: an explicit
    `--config.num_steps=7` wins over the quick variant's step count."""
    config = ml_collections.ConfigDict(config.to_dict())
    if config.get("quick"):
        for key, value in config.get("quick_overrides", {}).items():
            if key not in config:
                raise ValueError(f"config.quick_overrides: unknown key {key!r}")
            if key not in explicit:
                config[key] = value
    config.lock()
    return config


def check_option(config, key: str, allowed) -> None:
    if config[key] not in allowed:
        raise ValueError(f"config.{key}: got {config[key]!r}; expected one of {list(allowed)}")


def check_int(config, key: str, minimum: int = 1) -> None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"config.{key}: expected an int >= {minimum}, got {value!r}")


def check_positive_float(config, key: str) -> None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"config.{key}: expected a positive number, got {value!r}")


def check_mesh_shape(config, key: str = "mesh_shape") -> None:
    shape = tuple(config[key])
    if len(shape) != 2 or any(not isinstance(s, int) or s == 0 or s < -1 for s in shape) or shape.count(-1) > 1:
        raise ValueError(
            f"config.{key}: expected (data, fsdp) positive ints with at most one -1, got {shape!r}"
        )


def check_common(config) -> None:
    """Validate the keys every experiment config shares (see configs/common.py)."""
    check_option(config, "parallel", PARALLEL_MODES)
    check_mesh_shape(config)
    check_int(config, "num_steps")
    check_int(config, "batch_size")
    check_int(config, "log_every")
    check_int(config, "checkpoint_every", minimum=0)
    check_int(config, "stop_after", minimum=0)
    check_int(config, "seed", minimum=0)
    check_distributed(config)


def check_distributed(config) -> None:
    """The multi-host keys: types, and jit_sharded as the only mode that spans processes."""
    if not isinstance(config.distributed, bool):
        raise ValueError(f"config.distributed: expected True or False, got {config.distributed!r}")
    if not isinstance(config.coordinator_address, str):
        raise ValueError(f"config.coordinator_address: expected 'host:port' or '', got {config.coordinator_address!r}")
    check_int(config, "num_processes", minimum=0)
    check_int(config, "process_id", minimum=-1)
    if config.distributed and config.parallel != "jit_sharded":
        raise ValueError(
            f"config.parallel: a distributed (multi-host) run needs 'jit_sharded', got {config.parallel!r}"
        )
    if config.num_processes and config.process_id >= config.num_processes:
        raise ValueError(
            f"config.process_id: {config.process_id} is not below config.num_processes={config.num_processes}"
        )

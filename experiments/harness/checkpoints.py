"""Orbax checkpoints of a train state, saved every N steps and restored to resume."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Synchronous orbax CheckpointManager under `directory`, keeping the last `max_to_keep`;
    saves are atomic, and half-written ones left by a killed run are removed on start."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, step: int, like):
        """The state saved at `step`, with the shapes, dtypes and shardings of `like`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()

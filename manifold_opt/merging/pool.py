"""Candidate pools: sequences of pytrees read one at a time.

Every merging function takes its candidates as a `Sequence` of pytrees with the structure,
shapes and dtypes of the pretrained model: a list of host (NumPy) or device arrays, or a
`CheckpointPool` that restores one orbax checkpoint per access. `stream` walks such a sequence,
checking each candidate as it arrives, so only the candidate being used is ever materialized
and a pool larger than device memory can be merged.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Iterator

import jax
import numpy as np


def _signature(tree):
    """(tree structure, ((shape, dtype), ...)) of a pytree of arrays."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), np.dtype(getattr(x, "dtype", np.asarray(x).dtype))) for x in leaves)


def check_candidates(name: str, candidates) -> int:
    """len(candidates); TypeError unless a non-empty Sequence (a list, tuple or lazy pool)."""
    if not isinstance(candidates, Sequence) or isinstance(candidates, (str, bytes)):
        raise TypeError(f"{name}: candidates must be a sequence of pytrees (list or CheckpointPool), "
                        f"got {type(candidates).__name__}")
    if len(candidates) == 0:
        raise ValueError(f"{name}: candidates must hold at least one pytree, got an empty sequence")
    return len(candidates)


def stream(name: str, reference, candidates) -> Iterator:
    """Yield candidates[0], candidates[1], ... one at a time, each checked against `reference`
    (same tree structure, leaf shapes and dtypes; ValueError naming `name` and the index)."""
    check_candidates(name, candidates)
    want = _signature(reference)
    for i in range(len(candidates)):
        candidate = candidates[i]
        got = _signature(candidate)
        if got[0] != want[0]:
            raise ValueError(f"{name}: candidates[{i}] has tree structure {got[0]}, expected {want[0]}")
        if got[1] != want[1]:
            bad = next(j for j, (g, w) in enumerate(zip(got[1], want[1])) if g != w)
            raise ValueError(f"{name}: candidates[{i}] leaf {bad} has (shape, dtype) {got[1][bad]}, "
                             f"expected {want[1][bad]} as in pretrained")
        yield candidate


class Subset(Sequence):
    """The view candidates[indices[j]], read on access (a lazy pool stays lazy)."""

    def __init__(self, candidates, indices):
        self._candidates, self._indices = candidates, list(indices)

    def __len__(self):
        return len(self._indices)

    def __getitem__(self, j):
        return self._candidates[self._indices[j]]


class CheckpointPool(Sequence):
    """A lazy candidate sequence: item i is restored from the orbax checkpoint at paths[i] when
    accessed (and dropped by the caller after use), so the pool never sits in memory at once.

    `like` (a pytree of arrays or ShapeDtypeStructs) fixes the restored structure and dtypes.
    """

    def __init__(self, paths, like):
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        missing = [p for p in self.paths if not os.path.isdir(p)]
        if missing:
            raise ValueError(f"CheckpointPool: no checkpoint directory at {missing[0]!r}")
        self._abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), like)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as checkpointer:
            return checkpointer.restore(self.paths[index], self._abstract)


def save_pool(directory: str, candidates) -> CheckpointPool:
    """Save each candidate as an orbax checkpoint directory/candidate_XXXX (read one at a time)
    and return the `CheckpointPool` over them."""
    import orbax.checkpoint as ocp

    n = check_candidates("save_pool", candidates)
    paths = [os.path.join(os.path.abspath(directory), f"candidate_{i:04d}") for i in range(n)]
    first = None
    with ocp.StandardCheckpointer() as checkpointer:
        for path, candidate in zip(paths, stream("save_pool", candidates[0], candidates)):
            first = candidate if first is None else first
            checkpointer.save(path, candidate, force=True)
    return CheckpointPool(paths, like=first)

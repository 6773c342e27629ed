"""Device meshes, sharding specs and pmap helpers for data-parallel and FSDP training;
distributed orthogonalization."""
from manifold_opt.parallel.mesh import (
    AXES,
    DATA_AXIS,
    FSDP_AXIS,
    batch_sharding,
    fsdp_shardings,
    fsdp_spec,
    global_batch,
    make_mesh,
    per_device_bytes,
    process_rows,
    replicated,
    replicated_shardings,
)
from manifold_opt.parallel.orthogonalize import collective_bytes, sharded_orthogonalizer
from manifold_opt.parallel.pmap import PMAP_AXIS, replicate, split_batch, unreplicate

__all__ = [
    "AXES",
    "DATA_AXIS",
    "FSDP_AXIS",
    "PMAP_AXIS",
    "batch_sharding",
    "collective_bytes",
    "fsdp_shardings",
    "fsdp_spec",
    "global_batch",
    "make_mesh",
    "per_device_bytes",
    "process_rows",
    "replicate",
    "replicated",
    "replicated_shardings",
    "sharded_orthogonalizer",
    "split_batch",
    "unreplicate",
]

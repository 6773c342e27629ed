"""Model merging on pytrees: FW-Merging and the baselines it is compared with, streaming the
candidate pool one pytree at a time (`mo.merging`)."""
from manifold_opt.merging.baselines import average, dare, drop_and_rescale, task_arithmetic, ties, trim_top_k
from manifold_opt.merging.fw import FWMergeResult, fw_merge
from manifold_opt.merging.ortho import merge_rotations, orthomerge, procrustes_rotation
from manifold_opt.merging.pool import CheckpointPool, Subset, save_pool
from manifold_opt.merging.soft import SoftMergeResult, adamerging, prediction_entropy

__all__ = [
    "CheckpointPool",
    "FWMergeResult",
    "SoftMergeResult",
    "Subset",
    "adamerging",
    "average",
    "dare",
    "drop_and_rescale",
    "fw_merge",
    "merge_rotations",
    "orthomerge",
    "prediction_entropy",
    "procrustes_rotation",
    "save_pool",
    "task_arithmetic",
    "ties",
    "trim_top_k",
]

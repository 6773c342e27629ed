"""Model merging on pytrees: FW-Merging and the baselines it is compared with, streaming the
candidate pool one pytree at a time (`mo.merging`)."""
from manifold_opt.merging.baselines import average, dare, drop_and_rescale, task_arithmetic, ties, trim_top_k
from manifold_opt.merging.continual import ContinualMerge, continual_merge
from manifold_opt.merging.curvature import adam_second_moments, fisher_graft, ota_merge
from manifold_opt.merging.fw import FWMergeResult, fw_merge
from manifold_opt.merging.geometric import karcher_mean, model_stock, slerp
from manifold_opt.merging.lora import do_merge, orthogonalize_factors
from manifold_opt.merging.ortho import merge_rotations, orthomerge, procrustes_rotation
from manifold_opt.merging.pool import CheckpointPool, Subset, save_pool
from manifold_opt.merging.rebasin import align, permute
from manifold_opt.merging.regmean import regmean
from manifold_opt.merging.soft import SoftMergeResult, adamerging, prediction_entropy
from manifold_opt.merging.sparse import breadcrumbs, breadcrumbs_mask, della, della_keep_probability
from manifold_opt.merging.spectral import dc_merge, iso_c, iso_cts, tsv_compress, tsv_merge

__all__ = [
    "CheckpointPool",
    "ContinualMerge",
    "FWMergeResult",
    "SoftMergeResult",
    "Subset",
    "adam_second_moments",
    "adamerging",
    "align",
    "average",
    "breadcrumbs",
    "breadcrumbs_mask",
    "continual_merge",
    "dare",
    "dc_merge",
    "della",
    "della_keep_probability",
    "do_merge",
    "drop_and_rescale",
    "fisher_graft",
    "fw_merge",
    "iso_c",
    "iso_cts",
    "karcher_mean",
    "merge_rotations",
    "model_stock",
    "orthogonalize_factors",
    "orthomerge",
    "ota_merge",
    "permute",
    "prediction_entropy",
    "procrustes_rotation",
    "regmean",
    "save_pool",
    "slerp",
    "task_arithmetic",
    "ties",
    "trim_top_k",
    "tsv_compress",
    "tsv_merge",
]

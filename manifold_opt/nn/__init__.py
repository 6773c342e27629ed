"""Flax (NNX and linen) building blocks: manifold-aware initializers and parameter metadata,
orthogonally constrained layers, hyper-connections with manifold-constrained mixers and the
Jacobian-spectrum tools. The only package besides experiments/ that imports Flax.

NNX: `with_manifold(M)` (kernel_init tagging `nnx.Param(value, manifold=M)`), `OrthogonalDense`,
`HyperConnections`; linen (`mo.nn.linen`): `with_manifold(M)` (boxes values in `ManifoldBoxed`),
`OrthogonalDense`, and `HyperConnectionsLinen`; both: `manifold_init(M)` (plain initializer),
`manifold_tree_of(model_or_variables)`.
"""
from manifold_opt.nn import linen  # mo.nn.linen: with_manifold, ManifoldBoxed, OrthogonalDense
from manifold_opt.nn.attention import logit_recording_attention, max_logits
from manifold_opt.nn.hyper_connections import HyperConnections
from manifold_opt.nn.hyper_connections_linen import HyperConnections as HyperConnectionsLinen
from manifold_opt.nn.jacobian import jacobian_spectrum, predict_jacobian_spectrum
from manifold_opt.nn.metadata import manifold_init, manifold_tree_of, with_manifold
from manifold_opt.nn.mixers import MIXERS, composite_gain, expand_streams, reduce_streams
from manifold_opt.nn.orthogonal import OrthogonalDense

__all__ = [
    "HyperConnections",
    "HyperConnectionsLinen",
    "MIXERS",
    "OrthogonalDense",
    "composite_gain",
    "expand_streams",
    "jacobian_spectrum",
    "linen",
    "logit_recording_attention",
    "manifold_init",
    "manifold_tree_of",
    "max_logits",
    "predict_jacobian_spectrum",
    "reduce_streams",
    "with_manifold",
]

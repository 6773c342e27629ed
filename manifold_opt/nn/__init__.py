"""Flax modules (NNX and linen) built on the library: hyper-connection mixers."""
from manifold_opt.nn.hyper_connections import HyperConnections
from manifold_opt.nn.hyper_connections_linen import HyperConnections as HyperConnectionsLinen
from manifold_opt.nn.jacobian import jacobian_spectrum, predict_jacobian_spectrum
from manifold_opt.nn.mixers import MIXERS, composite_gain, expand_streams, reduce_streams

__all__ = [
    "HyperConnections",
    "HyperConnectionsLinen",
    "MIXERS",
    "composite_gain",
    "expand_streams",
    "jacobian_spectrum",
    "predict_jacobian_spectrum",
    "reduce_streams",
]

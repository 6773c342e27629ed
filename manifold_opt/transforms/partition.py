"""Constrained parameters to a Riemannian transform, the rest to any optax optimizer."""
from __future__ import annotations

import optax

from manifold_opt.manifolds.params import CONSTRAINED, FREE, partition_labels


def riemannian_partition(riemannian, other, manifolds) -> optax.GradientTransformationExtraArgs:
    """`optax.partition` sending the parameters on a manifold (non-None leaves of `manifolds`) to
    `riemannian` and the unconstrained ones to `other`, e.g.

        tx = mo.riemannian_partition(mo.riemannian_adam(1e-3, manifolds), optax.adamw(1e-3), manifolds)

    Works unchanged under `nnx.Optimizer(model, tx, wrt=nnx.Param)`, with linen (boxed or
    unboxed) params and with plain dicts. Pass `riemannian` the full manifold tree; the masked
    leaves are skipped. Equivalent to `optax.partition({"manifold": riemannian, "free": other},
    mo.partition_labels(manifolds))`.
    """
    for name, tx in (("riemannian", riemannian), ("other", other)):
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"riemannian_partition: {name} must be an optax.GradientTransformation, got {tx!r}")
    return optax.partition({CONSTRAINED: riemannian, FREE: other}, partition_labels(manifolds))

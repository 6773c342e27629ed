"""Dense layers with an orthogonal kernel: y = x W + b with W^T W = I (W in O(n) when square).

Two ways to keep W orthogonal (`parameterization`):

- "riemannian": W is itself the parameter, an `nnx.Param` tagged `manifold=Stiefel(n, p)` (or
  `OrthogonalGroup(n)` when n = p). A Riemannian transform keeps it there exactly, e.g.
  `mo.riemannian_partition(mo.riemannian_adam(lr, tree), optax.adamw(lr), mo.nn.manifold_tree_of(model))`.
  Cheapest forward pass; needs the Riemannian transform.
- "cayley" / "exp": W = Q(S) W0 with S = A - A^T skew-symmetric built from a free parameter A
  (n x n, initialized at 0) and a fixed random W0 in St(n, p) (drawn at init, not trained);
  Q(S) = (I - S)^{-1} (I + S) (Cayley) or expm(S). Q(S) is in SO(n) for every A, so any optimizer
  (optax.adamw, Muon, ...) keeps W orthogonal. This is the orthogonal fine-tuning (OFT) form:
  W starts at W0 and only rotates. Cayley cannot reach rotations with eigenvalue -1; expm
  reaches all of SO(n) at a higher cost.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from manifold_opt import linalg
from manifold_opt.manifolds import OrthogonalGroup, Stiefel
from manifold_opt.manifolds.base import check_positive_int
from manifold_opt.nn.metadata import manifold_init

PARAMETERIZATIONS = ("riemannian", "cayley", "exp")


def kernel_manifold(in_features: int, out_features: int):
    """O(n) for a square kernel, St(in_features, out_features) otherwise."""
    if in_features == out_features:
        return OrthogonalGroup(in_features)
    return Stiefel(in_features, out_features)


def check_orthogonal_dense(owner: str, in_features, out_features, parameterization) -> None:
    """ValueError naming `owner` for a kernel that cannot have orthonormal columns or an unknown
    parameterization."""
    check_positive_int(owner, "in_features", in_features)
    check_positive_int(owner, "out_features", out_features)
    if out_features > in_features:
        raise ValueError(
            f"{owner}: orthonormal columns need out_features <= in_features, got {in_features} -> {out_features}"
        )
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"{owner}: parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")


def rotation(generator: jax.Array, parameterization: str) -> jax.Array:
    """Q(S) in SO(n) for S = A - A^T: Cayley (I - S)^{-1}(I + S) or the matrix exponential."""
    skew = generator - jnp.swapaxes(generator, -1, -2)
    if parameterization == "cayley":
        return linalg.cayley(skew)
    return jax.scipy.linalg.expm(skew)


class OrthogonalDense(nnx.Module):
    """NNX dense layer y = x W + b whose (in_features x out_features) kernel W has orthonormal
    columns (module docstring: "riemannian", "cayley", "exp"). `orthogonal_kernel()` is W."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        parameterization: str = "riemannian",
        use_bias: bool = True,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        check_orthogonal_dense("OrthogonalDense", in_features, out_features, parameterization)
        self.parameterization = parameterization
        manifold = kernel_manifold(in_features, out_features)
        shape = (in_features, out_features)
        if parameterization == "riemannian":
            self.kernel = nnx.Param(manifold_init(manifold)(rngs.params(), shape, param_dtype), manifold=manifold)
        else:
            self.generator = nnx.Param(jnp.zeros((in_features, in_features), param_dtype))
            self.base = nnx.Variable(manifold_init(manifold)(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None

    def orthogonal_kernel(self) -> jax.Array:
        """The kernel W (in_features x out_features), W^T W = I."""
        if self.parameterization == "riemannian":
            return self.kernel[...]
        return rotation(self.generator[...], self.parameterization) @ self.base[...]

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.orthogonal_kernel()
        return y if self.bias is None else y + self.bias[...]

"""The doubly stochastic multinomial manifold (Douik & Hassibi 2019, "Manifold optimization over
the set of doubly stochastic matrices: a second-order geometry"): n x n matrices with strictly
positive entries whose rows and columns sum to 1, with the Fisher information metric

    <U, V>_X = sum_ij U_ij V_ij / X_ij.

Tangent space: zero row and column sums, dimension (n - 1)^2. The Fisher-orthogonal projection
is Proj_X(Z) = Z - (alpha 1^T + 1 beta^T) * X with alpha, beta making the row and column sums
zero (`linalg.birkhoff_tangent_projection`); the Riemannian gradient is Proj_X(G * X); the
retraction is Sinkhorn normalization of X * exp(U / X), computed in log space as
sinkhorn(log X + U / X); transport is projection onto T_Y.

Riemannian Hessian (as in Douik & Hassibi 2019): the Fisher metric on the positive orthant has
Christoffel symbols Gamma^i_ii = -1 / (2 x_i), and the manifold's connection is its projection,
so with G = egrad, H = ehvp and R = Proj_X(G * X),

    Hess f(X)[U] = Proj_X(D R[U] - U * R / (2 X)) = Proj_X(H * X + U * R / (2 X))

(D R[U] = H * X + U * R / X modulo the normal space {(a 1^T + 1 b^T) * X}).

Near the boundary U / X blows up: entries are floored at the smallest normal float before
dividing or taking logs, and the log-kernel is clipped to a finite range, so no NaN appears.
At a point with exact zeros the step U / X is astronomically large, and the result (finite,
nonnegative, rows summing to 1) can miss the column sums when Sinkhorn hits its iteration cap:
keep iterates strictly inside (small steps, or `project` after a boundary hit).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from manifold_opt import linalg
from manifold_opt.manifolds.base import Manifold, check_positive_int


# Jitted once at module level so eager (un-jitted) calls reuse the compiled Sinkhorn loop
# instead of retracing its while_loop every call; inside an outer jit it is simply inlined.
_sinkhorn = jax.jit(linalg.sinkhorn, static_argnames=("num_iters", "tol", "implicit_diff"))


def _floor(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, jnp.finfo(x.dtype).tiny)


@dataclasses.dataclass(frozen=True)
class Birkhoff(Manifold):
    """n x n strictly positive doubly stochastic matrices with the Fisher metric.

    `sinkhorn_iters` caps the Sinkhorn sweeps of `retract`, `project` and `random_point`; each
    stops early at `linalg.sinkhorn`'s default tolerance (1e-6 in float32, 1e-12 in float64).
    """

    n: int
    sinkhorn_iters: int = 10000

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("Birkhoff", "n", self.n))
        object.__setattr__(
            self, "sinkhorn_iters", check_positive_int("Birkhoff", "sinkhorn_iters", self.sinkhorn_iters)
        )

    @property
    def shape(self):
        return (self.n, self.n)

    @property
    def dim(self):
        return (self.n - 1) ** 2

    def _sinkhorn(self, log_k):
        bound = jnp.sqrt(jnp.finfo(log_k.dtype).max)
        return _sinkhorn(jnp.clip(log_k, -bound, bound), num_iters=self.sinkhorn_iters)

    def random_point(self, key, dtype=None, batch_shape=()):
        """Sinkhorn normalization of exp(Gaussian)."""
        return self._sinkhorn(jax.random.normal(key, tuple(batch_shape) + self.shape, dtype))

    def proj(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        return linalg.birkhoff_tangent_projection(x, u)

    def egrad_to_rgrad(self, x, egrad):
        self.check_point(x)
        self.check_point(egrad, "egrad")
        return linalg.birkhoff_tangent_projection(x, egrad * x)

    def inner(self, x, u, v):
        self.check_point(x)
        self.check_point(u, "u")
        self.check_point(v, "v")
        return jnp.sum(u * v / _floor(x), axis=(-2, -1))

    def retract(self, x, u):
        self.check_point(x)
        self.check_point(u, "u")
        x = _floor(x)
        return self._sinkhorn(jnp.log(x) + u / x)

    def project(self, x):
        """Sinkhorn normalization of max(x, tiny) (the Fisher-metric analogue of a projection)."""
        self.check_point(x)
        return self._sinkhorn(jnp.log(_floor(x)))

    def feasibility(self, x):
        """Largest row/column-sum error plus the total negative mass."""
        self.check_point(x)
        rows = jnp.max(jnp.abs(jnp.sum(x, axis=-1) - 1), axis=-1)
        cols = jnp.max(jnp.abs(jnp.sum(x, axis=-2) - 1), axis=-1)
        negative = jnp.sum(jnp.maximum(-x, 0), axis=(-2, -1))
        return jnp.maximum(rows, cols) + negative

    @property
    def typical_dist(self):
        """n, as in Manopt (the manifold is not compact; any scale is a convention)."""
        return float(self.n)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        rgrad = linalg.birkhoff_tangent_projection(x, egrad * x)
        return linalg.birkhoff_tangent_projection(x, ehvp * x + u * rgrad / (2 * _floor(x)))

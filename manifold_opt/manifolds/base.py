"""The interface every manifold implements.

A manifold is a frozen (hashable, immutable) dataclass holding only shapes and options, so it is
safe as a `jax.jit` static argument and as a leaf of a manifold tree. Every method is a pure
function of arrays that accepts leading batch dimensions (a point has shape
`batch_shape + M.shape`) and preserves dtype. Points and tangent vectors are ambient arrays.

Defaults below suit embedded submanifolds with the Euclidean metric: `egrad_to_rgrad = proj`,
`transport(x, y, v) = proj(y, v)` (projection transport), `inner` = Frobenius inner product.
Manifolds with another metric (canonical Stiefel, Fisher-Birkhoff) override them.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Manifold:
    """Base class. Subclasses define `shape`, `dim`, `random_point`, `proj`, `retract`,
    `project` and `feasibility`, and override the defaults where their geometry differs."""

    # ----- shapes ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Dimension of the manifold."""
        raise NotImplementedError

    def check_point(self, x: jax.Array, name: str = "x") -> None:
        """ValueError unless x has shape batch_shape + self.shape (checked at trace time)."""
        nd = len(self.shape)
        if not hasattr(x, "shape") or tuple(x.shape[x.ndim - nd:]) != tuple(self.shape) or x.ndim < nd:
            got = getattr(x, "shape", type(x).__name__)
            raise ValueError(
                f"{type(self).__name__}: {name} must have shape (..., {', '.join(map(str, self.shape))}), got {got}"
            )

    def check_points(self, **arrays) -> None:
        """check_point on each keyword argument, named by its keyword."""
        for name, value in arrays.items():
            self.check_point(value, name)

    # ----- point structure ------------------------------------------------------------------
    # A point (and a tangent vector) is one array here. Manifolds whose points are tuples of
    # arrays (FixedRankEmbedded's (U, s, Vt), Product's one entry per factor) override these
    # three, which is all the tree walker (tree.py) and the optax transforms need to know.
    @property
    def point_structure(self) -> jax.tree_util.PyTreeDef:
        """The pytree structure of a point: a single array here. A tangent vector has the same
        structure (its arrays may have other shapes)."""
        return jax.tree_util.tree_structure(0)

    def batch_shape(self, x) -> tuple[int, ...]:
        """The leading batch shape of x (the shape of `inner`'s and `feasibility`'s output)."""
        return tuple(x.shape[: x.ndim - len(self.shape)])

    def zero_tangent(self, x):
        """The zero tangent vector at x."""
        return jnp.zeros_like(x)

    def _axes(self) -> tuple[int, ...]:
        """The trailing axes that belong to one point."""
        return tuple(range(-len(self.shape), 0))

    # ----- sampling -------------------------------------------------------------------------
    def random_point(self, key: jax.Array, dtype=None, batch_shape=()) -> jax.Array:
        raise NotImplementedError

    def random_tangent(self, key: jax.Array, x: jax.Array) -> jax.Array:
        """A random tangent vector at x with unit norm (Gaussian ambient vector, projected);
        zero where the tangent space is {0}."""
        self.check_point(x)
        u = self.proj(x, jax.random.normal(key, x.shape, x.dtype))
        norm = self.norm(x, u)
        return u / jnp.where(norm > 0, norm, 1)[(...,) + (None,) * len(self.shape)]

    # ----- tangent spaces and metric --------------------------------------------------------
    def proj(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """Orthogonal projection (for this manifold's metric) of ambient u onto T_x M."""
        raise NotImplementedError

    def egrad_to_rgrad(self, x: jax.Array, egrad: jax.Array) -> jax.Array:
        """Riemannian gradient from the Euclidean gradient (Riesz representative)."""
        self.check_point(x)
        self.check_point(egrad, "egrad")
        return self.proj(x, egrad)

    def inner(self, x: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
        """<u, v>_x, one value per point (shape batch_shape); Re sum(conj(u) v) for complex
        arrays (the real inner product of C^n = R^2n)."""
        self.check_point(x)
        self.check_point(u, "u")
        self.check_point(v, "v")
        return jnp.real(jnp.sum(jnp.conj(u) * v, axis=self._axes()))

    def norm(self, x: jax.Array, u: jax.Array) -> jax.Array:
        return jnp.sqrt(jnp.maximum(self.inner(x, u, u), 0.0))

    # ----- moving ---------------------------------------------------------------------------
    def retract(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """A first-order retraction R_x(u)."""
        raise NotImplementedError

    def transport(self, x: jax.Array, y: jax.Array, v: jax.Array) -> jax.Array:
        """Vector transport of v in T_x M to T_y M (default: projection onto T_y M)."""
        self.check_point(x)
        self.check_point(y, "y")
        self.check_point(v, "v")
        return self.proj(y, v)

    def retract_transport(self, x: jax.Array, u: jax.Array, v: jax.Array):
        """(R_x(u), transport of v to R_x(u)); manifolds override where fusing saves work."""
        y = self.retract(x, u)
        return y, self.transport(x, y, v)

    def project(self, x: jax.Array) -> jax.Array:
        """An ambient point to the manifold (the nearest point where it exists)."""
        raise NotImplementedError

    def feasibility(self, x: jax.Array) -> jax.Array:
        """Nonnegative residual per point, exactly 0 on the manifold."""
        raise NotImplementedError

    # ----- closed-form geodesics (where they exist) ----------------------------------------
    def exp(self, x: jax.Array, u: jax.Array) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form exponential map")

    def log(self, x: jax.Array, y: jax.Array) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form logarithm")

    def dist(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.norm(x, self.log(x, y))

    @property
    def typical_dist(self) -> float:
        """A typical distance between points (Manopt's `typicaldist`): the scale trust regions
        take their default radii from."""
        raise NotImplementedError(f"{type(self).__name__} has no typical_dist")

    # ----- second order ---------------------------------------------------------------------
    @property
    def has_hessian(self) -> bool:
        """Whether `ehess_to_rhess` exists (what trust regions and ARC need)."""
        return True

    def ehess_to_rhess(self, x: jax.Array, egrad: jax.Array, ehvp: jax.Array, u: jax.Array) -> jax.Array:
        """Riemannian Hessian-vector product Hess f(x)[u] = nabla_u grad f from the Euclidean
        gradient `egrad` and the Euclidean Hessian-vector product `ehvp` = D egrad(x)[u] of f
        (Absil, Mahony & Trumpler 2013): proj(x, ehvp) plus the Weingarten term of an embedded
        submanifold, plus the connection terms of a non-Euclidean metric."""
        raise NotImplementedError(f"{type(self).__name__} has no ehess_to_rhess")


def check_positive_int(owner: str, name: str, value) -> int:
    """`value` as an int, or a ValueError naming `owner`'s argument `name`."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


def check_complex_dtype(owner: str, dtype):
    """`dtype` as a NumPy dtype (None: JAX's default complex dtype, complex128 with x64 on), or a
    ValueError naming `owner`'s random_point argument unless it is complex64 or complex128."""
    dtype = np.dtype(jax.dtypes.canonicalize_dtype(np.complex128) if dtype is None else dtype)
    if dtype not in (np.complex64, np.complex128):
        raise ValueError(f"{owner}.random_point: dtype must be complex64 or complex128, got {dtype}")
    return dtype


def check_option(owner: str, name: str, value, allowed) -> None:
    """ValueError naming `owner`'s argument `name` unless value is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{owner}: unknown {name} {value!r}; expected one of {sorted(allowed)}")


def feasibility_tolerance(dtype) -> float:
    """The largest `feasibility(x)` of a point taken as on the manifold by the solvers' and
    transforms' input checks: sqrt(eps) of its dtype (3.5e-4 in float32, 1.5e-8 in float64), far
    above the rounding left by any retraction or projection."""
    return float(np.sqrt(np.finfo(dtype).eps))

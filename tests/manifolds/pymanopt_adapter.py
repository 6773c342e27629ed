"""Our manifolds behind Pymanopt 2.2's interface, so Pymanopt's own manifold tests (rewritten in
test_pymanopt_suite.py) and side-by-side comparisons run against them.

`adapt(ours, copies=k)` stands for Pymanopt's `Manifold(..., k=k)`: k copies are a batch of k
points (batch_shape (k,); k = 1 means no batch axis), inner products and squared distances are
summed over the copies as in Pymanopt. Inputs and outputs are float64 / complex128 NumPy arrays;
random draws take their seeds from `np.random`, so Pymanopt's seeding applies. Methods are
available under Pymanopt 2.x and 0.x names (`projection`/`proj`, `retraction`/`retr`, ...).
Points and tangent vectors of FixedRankEmbedded are tuples supporting Pymanopt's tangent
arithmetic (+, -, scalar * and /).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np


class Triple(tuple):
    """A tuple of arrays with the vector-space operations Pymanopt's tangent tuples have."""

    def __add__(self, other):
        return Triple(a + b for a, b in zip(self, other))

    def __sub__(self, other):
        return Triple(a - b for a, b in zip(self, other))

    def __mul__(self, c):
        return Triple(c * a for a in self)

    __rmul__ = __mul__

    def __truediv__(self, c):
        return Triple(a / c for a in self)

    def __neg__(self):
        return Triple(-a for a in self)


def to_numpy(value):
    if isinstance(value, (tuple, list)):
        return Triple(to_numpy(v) for v in value)
    return np.asarray(value)


def to_jax(value):
    if isinstance(value, (tuple, list)):
        return tuple(to_jax(v) for v in value)
    return jnp.asarray(value)


def _seed():
    return jax.random.PRNGKey(np.random.randint(2**31 - 1))


class Adapted:
    """Pymanopt's manifold interface over one of ours (`copies` points batched)."""

    def __init__(self, manifold, copies=1, dtype=np.float64):
        self.ours = manifold
        self.copies = copies
        self.dtype = dtype
        self.batch = (copies,) if copies > 1 else ()

    def _call(self, method, *args):
        return to_numpy(getattr(self.ours, method)(*map(to_jax, args)))

    # ----- sizes ----------------------------------------------------------------------------
    @property
    def dim(self):
        return self.ours.dim * self.copies

    @property
    def typical_dist(self):
        return self.ours.typical_dist * math.sqrt(self.copies)

    # ----- metric ---------------------------------------------------------------------------
    def inner_product(self, x, u, v):
        return float(np.sum(self._call("inner", x, u, v)))

    inner = inner_product

    def norm(self, x, u):
        return math.sqrt(max(self.inner_product(x, u, u), 0.0))

    def dist(self, x, y):
        return float(np.sqrt(np.sum(self._call("dist", x, y) ** 2)))

    # ----- tangent spaces -------------------------------------------------------------------
    def projection(self, x, u):
        return self._call("proj", x, u)

    proj = to_tangent_space = projection

    def euclidean_to_riemannian_gradient(self, x, egrad):
        return self._call("egrad_to_rgrad", x, egrad)

    egrad2rgrad = euclidean_to_riemannian_gradient

    def euclidean_to_riemannian_hessian(self, x, egrad, ehess, u):
        return self._call("ehess_to_rhess", x, egrad, ehess, u)

    ehess2rhess = euclidean_to_riemannian_hessian

    # ----- moving ---------------------------------------------------------------------------
    def retraction(self, x, u):
        return self._call("retract", x, u)

    retr = retraction

    def transport(self, x, y, u):
        return self._call("transport", x, y, u)

    transp = transport

    def exp(self, x, u):
        return self._call("exp", x, u)

    def log(self, x, y):
        return self._call("log", x, y)

    def pair_mean(self, x, y):
        return self.exp(x, self.log(x, y) / 2)

    # ----- sampling -------------------------------------------------------------------------
    def random_point(self):
        return to_numpy(self.ours.random_point(_seed(), self.dtype, self.batch))

    def random_tangent_vector(self, x):
        """A tangent vector of unit norm over all copies (as Pymanopt's)."""
        u = self._call("random_tangent", _seed(), x)
        return u / math.sqrt(self.copies)

    def zero_vector(self, x):
        return self.projection(x, np.zeros_like(x)) if not isinstance(x, tuple) else self.random_tangent_vector(x) * 0.0

    # ----- extras of single manifolds --------------------------------------------------------
    def __getattr__(self, name):
        """Pymanopt's manifold-specific methods (conformal_factor, mobius_addition, embedding,
        ...) by their names on ours; `_apply_ambient` is FixedRankEmbedded's `_apply`."""
        target = {"_apply_ambient": "_apply", "_apply_ambient_transpose": "_apply_transpose"}.get(name, name)
        ours = self.__dict__["ours"]
        if target == name and name.startswith("_"):
            raise AttributeError(name)
        method = getattr(ours, target)
        return lambda *args: to_numpy(method(*map(to_jax, args)))


def adapt(manifold, copies=1, complex_=False):
    return Adapted(manifold, copies, np.complex128 if complex_ else np.float64)

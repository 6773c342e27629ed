"""Our manifolds behind Pymanopt 2.2's interface, so Pymanopt's own manifold tests (rewritten in
test_pymanopt_suite.py) and side-by-side comparisons run against them.

`adapt(ours, copies=k)` stands for Pymanopt's `Manifold(..., k=k)`: k copies are a batch of k
points (batch_shape (k,); k = 1 means no batch axis), inner products and squared distances are
summed over the copies as in Pymanopt. Inputs and outputs are float64 / complex128 NumPy arrays;
random draws take their seeds from `np.random`, so Pymanopt's seeding applies. Methods are
available under Pymanopt 2.x and 0.x names (`projection`/`proj`, `retraction`/`retr`, ...).
Points and tangent vectors of FixedRankEmbedded and Product are tuples supporting Pymanopt's
tangent arithmetic (+, -, scalar * and /).

Two representations differ from ours and are translated: `adapt(Sphere(m * n), shape=(m, n))`
is Pymanopt's Sphere(m, n) (the unit Frobenius sphere of m x n matrices, ours on the flattened
matrices), and `adapt_group(OrthogonalGroup(n, special=True))` is Pymanopt's
SpecialOrthogonalGroup(n), whose tangent vector at X is the skew W of our ambient X W.
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


class Reshaped:
    """One of ours on arrays of another point shape: array arguments ending in `shape` are
    reshaped to ours' point shape and results ending in ours' shape back (other attributes pass
    through)."""

    def __init__(self, manifold, shape):
        self.ours = manifold
        self.shape = tuple(shape)

    @staticmethod
    def _move(a, source, target):
        if not isinstance(a, (jax.Array, np.ndarray)) or a.ndim < len(source) or tuple(a.shape[a.ndim - len(source):]) != source:
            return a
        return jnp.reshape(a, a.shape[: a.ndim - len(source)] + target)

    def __getattr__(self, name):
        value = getattr(self.__dict__["ours"], name)
        if not callable(value):
            return value
        ours_shape = self.ours.shape

        def call(*args):
            out = value(*(self._move(a, self.shape, ours_shape) for a in args))
            return self._move(out, ours_shape, self.shape)

        return call


class Adapted:
    """Pymanopt's manifold interface over one of ours (`copies` points batched; `shape`:
    Pymanopt's point shape where it differs from ours, see Reshaped)."""

    def __init__(self, manifold, copies=1, dtype=np.float64, shape=None):
        self.ours = manifold if shape is None else Reshaped(manifold, shape)
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


class LieAlgebraTangents(Adapted):
    """Pymanopt's matrix groups: a tangent vector at X is the skew matrix W (ours: X W).
    Ambient arguments (vectors to project, Euclidean gradients and Hessians) are unchanged."""

    @staticmethod
    def _in(x, w):
        return np.asarray(x) @ w

    @staticmethod
    def _out(x, u):
        return np.conj(np.swapaxes(x, -1, -2)) @ u

    def inner_product(self, x, u, v):
        return super().inner_product(x, self._in(x, u), self._in(x, v))

    inner = inner_product

    def projection(self, x, u):
        return self._out(x, super().projection(x, u))

    proj = to_tangent_space = projection

    def euclidean_to_riemannian_gradient(self, x, egrad):
        return self._out(x, super().euclidean_to_riemannian_gradient(x, egrad))

    egrad2rgrad = euclidean_to_riemannian_gradient

    def euclidean_to_riemannian_hessian(self, x, egrad, ehess, u):
        return self._out(x, super().euclidean_to_riemannian_hessian(x, egrad, ehess, self._in(x, u)))

    ehess2rhess = euclidean_to_riemannian_hessian

    def retraction(self, x, u):
        return super().retraction(x, self._in(x, u))

    retr = retraction

    def transport(self, x, y, u):
        return self._out(y, super().transport(x, y, self._in(x, u)))

    transp = transport

    def exp(self, x, u):
        return super().exp(x, self._in(x, u))

    def log(self, x, y):
        return self._out(x, super().log(x, y))

    def random_tangent_vector(self, x):
        return self._out(x, super().random_tangent_vector(x))

    def zero_vector(self, x):
        return np.zeros_like(x)


def adapt(manifold, copies=1, complex_=False, shape=None):
    return Adapted(manifold, copies, np.complex128 if complex_ else np.float64, shape)


def adapt_group(manifold, copies=1, complex_=False):
    return LieAlgebraTangents(manifold, copies, np.complex128 if complex_ else np.float64)

"""Hyperbolic space H^n in two isometric models.

Poincare ball (Pymanopt's `PoincareBall`; Ganea, Becigneul & Hofmann 2018): the open unit ball
of R^n with the conformal metric <U, V>_x = lambda_x^2 U.V, lambda_x = 2 / (1 - |x|^2). With the
Mobius addition a (+) b = ((1 + 2 a.b + |b|^2) a + (1 - |a|^2) b) / (1 + 2 a.b + |a|^2 |b|^2):

    exp_x(u) = x (+) tanh(lambda_x |u| / 2) u / |u|,
    log_x(y) = (2 / lambda_x) artanh(|w|) w / |w|,   w = (-x) (+) y,
    dist(x, y) = arccosh(1 + 2 |x - y|^2 / ((1 - |x|^2)(1 - |y|^2)))
               = 2 arcsinh(|x - y| / sqrt((1 - |x|^2)(1 - |y|^2)))  (the accurate form used),
    rgrad = G / lambda^2,
    Hess f(x)[U] = (H / lambda + (x.G) U - (x.U) G - (G.U) x) / lambda

(the last from the Levi-Civita connection of a conformal metric). The retraction is exp, the
transport the isometric rescaling v lambda_x / lambda_y (every tangent space is R^n).

Hyperboloid (Lorentz model): {x in R^{n+1} : <x, x>_L = -1, x_0 > 0} with the Minkowski form
<u, v>_L = -u_0 v_0 + sum_i u_i v_i restricted to tangent spaces {u : <x, u>_L = 0}. With
J = diag(-1, 1, ..., 1), proj(x, u) = u + <x, u>_L x (orthogonal for <.,.>_L), and

    exp_x(u) = cosh(|u|_L) x + sinh(|u|_L) u / |u|_L,
    dist(x, y) = arccosh(-<x, y>_L) = 2 arcsinh(|y - x|_L / 2),
    log_x(y) = dist(x, y) v / |v|_L,   v = proj(x, y),
    rgrad = proj(x, J G),   Hess f(x)[U] = proj(x, J H) + (x.G) U,

(Wilson & Leimeister 2018; Boumal 2023, sec. 7.6). The retraction is exp, the transport
projection onto T_y.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from manifold_opt.manifolds.base import Manifold, check_positive_int
from manifold_opt.manifolds.sphere import _safe_divide


def _dot(a, b):
    return jnp.sum(a * b, axis=-1, keepdims=True)


def mobius_addition(a, b):
    """a (+) b in the Poincare ball (last axis)."""
    ab, aa, bb = _dot(a, b), _dot(a, a), _dot(b, b)
    return ((1 + 2 * ab + bb) * a + (1 - aa) * b) / (1 + 2 * ab + aa * bb)


@dataclasses.dataclass(frozen=True)
class PoincareBall(Manifold):
    """The open unit ball of R^n with the hyperbolic (Poincare) metric."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("PoincareBall", "n", self.n))

    @property
    def shape(self):
        return (self.n,)

    @property
    def dim(self):
        return self.n

    @property
    def typical_dist(self):
        return self.n / 8

    def conformal_factor(self, x):
        """lambda_x = 2 / (1 - |x|^2), keeping the last axis (size 1)."""
        self.check_point(x)
        return 2 / (1 - _dot(x, x))

    def mobius_addition(self, a, b):
        """a (+) b."""
        self.check_points(a=a, b=b)
        return mobius_addition(a, b)

    def random_point(self, key, dtype=None, batch_shape=()):
        """Uniform in the ball (a Gaussian direction, radius U^(1/n))."""
        k1, k2 = jax.random.split(key)
        shape = tuple(batch_shape) + self.shape
        g = jax.random.normal(k1, shape, dtype)
        radius = jax.random.uniform(k2, tuple(batch_shape) + (1,), dtype) ** (1 / self.n)
        return radius * g / jnp.sqrt(_dot(g, g))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return u

    def egrad_to_rgrad(self, x, egrad):
        self.check_points(x=x, egrad=egrad)
        return egrad / self.conformal_factor(x) ** 2

    def inner(self, x, u, v):
        self.check_points(x=x, u=u, v=v)
        return (self.conformal_factor(x) ** 2 * _dot(u, v))[..., 0]

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        norm = jnp.sqrt(_dot(u, u))
        return mobius_addition(x, jnp.tanh(self.conformal_factor(x) * norm / 2) * _safe_divide(u, norm))

    def retract(self, x, u):
        return self.exp(x, u)

    def log(self, x, y):
        self.check_points(x=x, y=y)
        w = mobius_addition(-x, y)
        norm = jnp.sqrt(_dot(w, w))
        return 2 / self.conformal_factor(x) * jnp.arctanh(norm) * _safe_divide(w, norm)

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        d = y - x
        scale = jnp.sqrt((1 - _dot(x, x)) * (1 - _dot(y, y)))
        return (2 * jnp.arcsinh(jnp.sqrt(_dot(d, d)) / scale))[..., 0]

    def transport(self, x, y, v):
        self.check_points(x=x, y=y, v=v)
        return v * self.conformal_factor(x) / self.conformal_factor(y)

    def project(self, x):
        """x scaled into the ball of radius 1 - sqrt(eps) where it lies outside."""
        self.check_point(x)
        limit = 1 - jnp.sqrt(jnp.finfo(x.dtype).eps)
        norm = jnp.sqrt(_dot(x, x))
        return jnp.where(norm > limit, x * limit / jnp.where(norm > 0, norm, 1), x)

    def feasibility(self, x):
        """max(0, |x| - (1 - eps)): zero strictly inside the ball."""
        self.check_point(x)
        return jnp.maximum(jnp.sqrt(_dot(x, x))[..., 0] - (1 - jnp.finfo(x.dtype).eps), 0)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        lam = self.conformal_factor(x)
        return (ehvp / lam + _dot(x, egrad) * u - _dot(x, u) * egrad - _dot(egrad, u) * x) / lam


def _lorentz(a, b):
    """<a, b>_L = -a_0 b_0 + sum_i a_i b_i, keeping the last axis (size 1)."""
    return _dot(a, b) - 2 * a[..., :1] * b[..., :1]


def _flip_time(a):
    """J a = (-a_0, a_1, ..., a_n)."""
    return a.at[..., 0].multiply(-1)


@dataclasses.dataclass(frozen=True)
class Hyperboloid(Manifold):
    """H^n as the upper sheet of the hyperboloid in Minkowski space R^{n+1} (Lorentz model)."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", check_positive_int("Hyperboloid", "n", self.n))

    @property
    def shape(self):
        return (self.n + 1,)

    @property
    def dim(self):
        return self.n

    @property
    def typical_dist(self):
        return self.n / 8

    def _lift(self, spatial):
        """The hyperboloid point above the spatial coordinates: x_0 = sqrt(1 + |spatial|^2)."""
        return jnp.concatenate([jnp.sqrt(1 + _dot(spatial, spatial)), spatial], axis=-1)

    def random_point(self, key, dtype=None, batch_shape=()):
        """The lift of a standard Gaussian in R^n."""
        return self._lift(jax.random.normal(key, tuple(batch_shape) + (self.n,), dtype))

    def proj(self, x, u):
        self.check_points(x=x, u=u)
        return u + _lorentz(x, u) * x

    def egrad_to_rgrad(self, x, egrad):
        self.check_points(x=x, egrad=egrad)
        return self.proj(x, _flip_time(egrad))

    def inner(self, x, u, v):
        self.check_points(x=x, u=u, v=v)
        return _lorentz(u, v)[..., 0]

    def exp(self, x, u):
        self.check_points(x=x, u=u)
        norm = jnp.sqrt(jnp.maximum(_lorentz(u, u), 0))
        y = jnp.cosh(norm) * x + jnp.sinh(norm) * _safe_divide(u, norm)
        return self._lift(y[..., 1:])

    def retract(self, x, u):
        return self.exp(x, u)

    def dist(self, x, y):
        self.check_points(x=x, y=y)
        d = y - x
        return (2 * jnp.arcsinh(jnp.sqrt(jnp.maximum(_lorentz(d, d), 0)) / 2))[..., 0]

    def log(self, x, y):
        self.check_points(x=x, y=y)
        v = self.proj(x, y)
        norm = jnp.sqrt(jnp.maximum(_lorentz(v, v), 0))
        return self.dist(x, y)[..., None] * _safe_divide(v, norm)

    def project(self, x):
        """The point above x's spatial coordinates (x_0 replaced by sqrt(1 + |x_1:|^2))."""
        self.check_point(x)
        return self._lift(x[..., 1:])

    def feasibility(self, x):
        """|<x, x>_L + 1| + max(-x_0, 0)."""
        self.check_point(x)
        return jnp.abs(_lorentz(x, x)[..., 0] + 1) + jnp.maximum(-x[..., 0], 0)

    def ehess_to_rhess(self, x, egrad, ehvp, u):
        self.check_points(x=x, egrad=egrad, ehvp=ehvp, u=u)
        return self.proj(x, _flip_time(ehvp)) + _dot(x, egrad) * u

"""A cost function with hand-written Euclidean derivatives, and the derivatives every solver asks
for (the hand-written ones where given, autodiff otherwise).

Pymanopt and Manopt let users hand in the Euclidean gradient and Hessian of a cost; autodiff
cannot see structure such as a symmetric A in tr(X^T A X), where a hand-written gradient 2 A X
costs one product with A and reverse-mode autodiff two. Every solver accepts a `Cost` wherever
it accepts a plain function:

    cost = mo.solvers.Cost(lambda x: -jnp.sum(x * (a @ x)),
                           egrad=lambda x: -2 * a @ x,
                           ehvp=lambda x, u: -2 * a @ u)
    mo.solvers.trust_regions(cost, Grassmann(n, p), x0)

The Riemannian gradient and Hessian follow from the manifold (`egrad_to_rgrad`,
`ehess_to_rhess`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Cost:
    """`fn(x) -> scalar` with optional Euclidean derivatives, all JAX-traceable (for complex x the
    gradient df/dRe x + i df/dIm x, the conjugate of what `jax.grad` returns):
    `egrad(x)` (the gradient), `value_and_egrad(x) -> (fn(x), egrad(x))` (used instead of the two
    when given, so they can share work), `ehvp(x, u)` (the Euclidean Hessian applied to u).
    Missing derivatives come from autodiff: of `egrad` for the Hessian when only it is given.
    Hashable (by the functions' identities), so it is a static jit argument like a function."""

    fn: Callable
    egrad: Callable | None = None
    value_and_egrad: Callable | None = None
    ehvp: Callable | None = None

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"Cost: fn must be a callable x -> scalar, got {type(self.fn).__name__}")
        for name in ("egrad", "value_and_egrad", "ehvp"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"Cost: {name} must be a callable or None, got {type(value).__name__}")

    def __call__(self, x):
        return self.fn(x)


def _conj_complex(tree):
    """Complex leaves conjugated: `jax.grad` of a real cost at complex z returns
    conj(df/dRe z + i df/dIm z), the manifolds take df/dRe z + i df/dIm z (as Pymanopt)."""
    return jax.tree_util.tree_map(lambda a: jnp.conj(a) if jnp.iscomplexobj(a) else a, tree)


def _autodiff_gradient(cost):
    return lambda x: _conj_complex(jax.grad(cost)(x))


def _gradient_function(cost):
    """x -> Euclidean gradient: the cost's own where given, else reverse-mode autodiff."""
    if isinstance(cost, Cost):
        if cost.egrad is not None:
            return cost.egrad
        if cost.value_and_egrad is not None:
            return lambda x: cost.value_and_egrad(x)[1]
    return _autodiff_gradient(cost)


def euclidean_value_and_grad(cost, x):
    """(f(x), Euclidean gradient of f at x)."""
    if isinstance(cost, Cost):
        if cost.value_and_egrad is not None:
            return cost.value_and_egrad(x)
        if cost.egrad is not None:
            return cost(x), cost.egrad(x)
    value, grad = jax.value_and_grad(cost)(x)
    return value, _conj_complex(grad)


def euclidean_grad_and_hvp(cost, x):
    """(Euclidean gradient at x, u -> Euclidean Hessian at x applied to u), each product one
    linear pass: a hand-written `ehvp` is linearized in u at u = 0 (it is linear in u, and its
    parts that depend on x alone, say an eigendecomposition, are evaluated once, not once per
    product); without one, the gradient function is linearized at x (forward over reverse)."""
    if isinstance(cost, Cost) and cost.ehvp is not None:
        zero = jax.tree_util.tree_map(jnp.zeros_like, x)
        return _gradient_function(cost)(x), jax.linearize(functools.partial(cost.ehvp, x), zero)[1]
    return jax.linearize(_gradient_function(cost), x)

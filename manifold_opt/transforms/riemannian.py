"""Riemannian first-order methods as optax transforms.

Every transform takes a manifold tree (see `manifold_opt.manifolds.tree`): a single manifold,
a pytree matching the params with `Manifold` or `None` (unconstrained) leaves, or the output of
`mo.manifold_tree`. Inside `optax.partition` pass the full tree; masked leaves are skipped.

Retraction inside optax: a tangent step u at x becomes the additive update R_x(u) - x, so
`optax.apply_updates(x, update)` lands on R_x(u) up to one rounding. Incoming gradients are
Euclidean; `egrad_to_rgrad` turns them into Riemannian gradients (this differs from `proj` for
non-induced metrics such as Birkhoff's Fisher metric). Nothing may follow a retracting
transform in a chain except `optax.apply_updates`, or the params leave the manifold.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.manifolds.tree import check_manifold_tree, map_manifold_tree


def _require_params(owner: str, params) -> None:
    if params is None:
        raise ValueError(f"{owner}: update needs params (the current point x); call update(grads, state, params)")


def _checked(owner: str, manifolds, params):
    """The manifold tree, validated against params in update (params are required)."""
    _require_params(owner, params)
    check_manifold_tree(manifolds, params)
    return manifolds


def _point_norm_shape(manifold, x):
    """Batch shape of x for `manifold` (the shape of one norm per point)."""
    return x.shape[: x.ndim - len(manifold.shape)]


def _expand(manifold, s):
    """A per-point scalar array broadcastable against points of `manifold`."""
    return s[(...,) + (None,) * len(manifold.shape)]


def _learning_rate(learning_rate, count):
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _retraction_update(manifold, x, u):
    return manifold.retract(x, u) - x


# ----- building blocks ------------------------------------------------------------------------


def project_to_tangent(manifolds) -> optax.GradientTransformation:
    """Euclidean gradients to Riemannian gradients: g -> egrad_to_rgrad(x, g) (= Proj_x g for
    an embedded manifold with the induced metric)."""

    def init_fn(params):
        check_manifold_tree(manifolds, params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        tree = _checked("project_to_tangent", manifolds, params)
        return map_manifold_tree(lambda m, x, g: m.egrad_to_rgrad(x, g), tree, params, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def retract(manifolds) -> optax.GradientTransformation:
    """Tangent steps u to additive updates R_x(u) - x, so `optax.apply_updates` lands on R_x(u).

    Use last in a chain, e.g. `optax.chain(project_to_tangent(M), optax.scale(-lr), retract(M))`
    is Riemannian gradient descent."""

    def init_fn(params):
        check_manifold_tree(manifolds, params)
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        tree = _checked("retract", manifolds, params)
        return map_manifold_tree(_retraction_update, tree, params, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


# ----- Riemannian SGD -------------------------------------------------------------------------


class RiemannianSgdState(NamedTuple):
    count: jax.Array
    momentum: optax.Params  # the momentum, a tangent vector at the current params ( () if unused)


def riemannian_sgd(
    learning_rate: optax.ScalarOrSchedule, manifolds, momentum: float = 0.0, nesterov: bool = False
) -> optax.GradientTransformation:
    """Riemannian SGD with heavy-ball or Nesterov momentum (Bonnabel 2013).

    g = egrad_to_rgrad(x, egrad); m <- mu * m + g; d = g + mu * m (Nesterov) or m;
    x+ = R_x(-lr d); m is transported to x+ with the manifold's vector transport.
    With momentum 0 this is x+ = R_x(-lr g). `learning_rate` may be an optax schedule.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"riemannian_sgd: momentum must be in [0, 1), got {momentum!r}")
    if nesterov and momentum == 0.0:
        raise ValueError("riemannian_sgd: nesterov=True needs momentum > 0")

    def init_fn(params):
        check_manifold_tree(manifolds, params)
        trace = optax.tree_utils.tree_zeros_like(params) if momentum else ()
        return RiemannianSgdState(jnp.zeros([], jnp.int32), trace)

    def update_fn(updates, state, params=None):
        tree = _checked("riemannian_sgd", manifolds, params)
        lr = _learning_rate(learning_rate, state.count)

        def leaf(m, x, g, *trace):
            rg = m.egrad_to_rgrad(x, g)
            step = jnp.asarray(-lr, x.dtype)
            if not momentum:
                return _retraction_update(m, x, step * rg), ()
            buf = momentum * trace[0] + rg
            direction = rg + momentum * buf if nesterov else buf
            y, buf = m.retract_transport(x, step * direction, buf)
            return y - x, buf

        if momentum:
            new_updates, trace = map_manifold_tree(leaf, tree, params, updates, state.momentum, num_outputs=2)
        else:
            new_updates, _ = map_manifold_tree(leaf, tree, params, updates, num_outputs=2)
            trace = ()
        return new_updates, RiemannianSgdState(optax.safe_increment(state.count), trace)

    return optax.GradientTransformation(init_fn, update_fn)


# ----- Riemannian Adam ------------------------------------------------------------------------


class RiemannianAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Params  # first moment, a tangent vector at the current params
    nu: optax.Params  # second moment, one scalar per manifold factor (per point)
    nu_max: optax.Params  # running max of the bias-corrected nu for AMSGrad ( () if unused)


def riemannian_adam(
    learning_rate: optax.ScalarOrSchedule,
    manifolds,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """Riemannian Adam / AMSGrad (Becigneul & Ganea 2019, "Riemannian Adaptive Optimization").

    Per manifold factor (one point of a batched leaf; every entry of an unconstrained leaf):
      g = egrad_to_rgrad(x, egrad); m <- b1 tau(m) + (1 - b1) g; v <- b2 v + (1 - b2) ||g||_x^2;
      x+ = R_x(-lr * mhat / (sqrt(vhat) + eps))
    with bias-corrected mhat = m / (1 - b1^t), vhat = v / (1 - b2^t) (AMSGrad: vhat replaced by its
    running max, as in optax.amsgrad); tau is the vector transport of m to x+. On unconstrained
    leaves this is exactly optax.adam / optax.amsgrad.
    """
    for name, value in (("b1", b1), ("b2", b2)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"riemannian_adam: {name} must be in [0, 1), got {value!r}")
    if not eps > 0.0:
        raise ValueError(f"riemannian_adam: eps must be positive, got {eps!r}")

    def init_fn(params):
        check_manifold_tree(manifolds, params)
        nu = map_manifold_tree(lambda m, x: jnp.zeros(_point_norm_shape(m, x), x.dtype), manifolds, params)
        return RiemannianAdamState(
            jnp.zeros([], jnp.int32), optax.tree_utils.tree_zeros_like(params), nu, nu if amsgrad else ()
        )

    def update_fn(updates, state, params=None):
        tree = _checked("riemannian_adam", manifolds, params)
        count = optax.safe_increment(state.count)
        lr = _learning_rate(learning_rate, state.count)

        def leaf(m, x, g, mu, nu, *nu_max):
            rg = m.egrad_to_rgrad(x, g)
            mu = b1 * mu + (1.0 - b1) * rg
            nu = b2 * nu + (1.0 - b2) * m.inner(x, rg, rg)
            t = count.astype(x.dtype)
            nu_hat = nu / (1.0 - jnp.asarray(b2, x.dtype) ** t)
            nu_hat = jnp.maximum(nu_max[0], nu_hat) if amsgrad else nu_hat
            step_size = jnp.asarray(lr, x.dtype) / (1.0 - jnp.asarray(b1, x.dtype) ** t)
            denom = jnp.sqrt(nu_hat) + jnp.asarray(eps, x.dtype)
            y, mu = m.retract_transport(x, -step_size * mu / _expand(m, denom), mu)
            return y - x, mu, nu, nu_hat

        rest = (updates, state.mu, state.nu) + ((state.nu_max,) if amsgrad else ())
        new_updates, mu, nu, nu_hat = map_manifold_tree(leaf, tree, params, *rest, num_outputs=4)
        return new_updates, RiemannianAdamState(count, mu, nu, nu_hat if amsgrad else ())

    return optax.GradientTransformation(init_fn, update_fn)

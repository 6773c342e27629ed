"""Riemannian first-order methods as optax transforms.

Every transform takes a manifold tree (see `manifold_opt.manifolds.tree`): a single manifold,
a pytree matching the params with `Manifold` or `None` (unconstrained) leaves, or the output of
`mo.manifold_tree`. Inside `optax.partition` pass the full tree; masked leaves are skipped.

Retraction inside optax: a tangent step u at x becomes the additive update R_x(u) - x, so
`optax.apply_updates(x, update)` lands on R_x(u) up to one rounding. Incoming gradients are
Euclidean; `egrad_to_rgrad` turns them into Riemannian gradients (this differs from `proj` for
non-induced metrics such as Birkhoff's Fisher metric). Nothing may follow a retracting
transform in a chain except `optax.apply_updates`, or the params leave the manifold.

Params must start on their manifolds: a retracting transform initialized on infeasible params
warns (or raises, or stays silent: `on_infeasible`), since its first update would snap them
onto the manifold in one jump. Float hyperparameters may be traced (`optax.inject_hyperparams`);
only Python numbers are validated.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from manifold_opt.manifolds.base import check_option
from manifold_opt.manifolds.tree import check_manifold_tree, infeasible_leaves, map_manifold_tree
from manifold_opt.transforms.arguments import is_python_number

ON_INFEASIBLE = ("warn", "raise", "ignore")


def _require_params(owner: str, params) -> None:
    if params is None:
        raise ValueError(f"{owner}: update needs params (the current point x); call update(grads, state, params)")


def _checked(owner: str, manifolds, params):
    """The manifold tree, validated against params in update (params are required)."""
    _require_params(owner, params)
    check_manifold_tree(manifolds, params)
    return manifolds


def _dtype(x):
    """The dtype of a point (one array, or a tuple of arrays of one dtype)."""
    return jax.tree_util.tree_leaves(x)[0].dtype


def _divide_per_point(u, s):
    """Each point's (or tangent vector's) arrays divided by that point's entry of s (shape
    batch_shape)."""
    return jax.tree_util.tree_map(lambda a: a / s[(...,) + (None,) * (a.ndim - s.ndim)], u)


def _learning_rate(learning_rate, count):
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _retraction_update(manifold, x, u):
    return optax.tree_utils.tree_sub(manifold.retract(x, u), x)


def _check_hyperparameter(owner: str, name: str, value, ok, expected: str) -> None:
    """TypeError unless value is a number or an array (traced under optax.inject_hyperparams);
    ValueError when it is a Python number failing `ok` (arrays are not checked)."""
    if not (is_python_number(value) or isinstance(value, (jax.Array, np.ndarray, np.number))):
        raise TypeError(f"{owner}: {name} must be a float (or a traced array), got {type(value).__name__}")
    if is_python_number(value) and not ok(value):
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")


def _is_zero(value) -> bool:
    """True only for a Python 0: an array hyperparameter may change, so its term is kept."""
    return is_python_number(value) and value == 0


def _check_init(owner: str, manifolds, params, on_infeasible: str) -> None:
    """Validate the tree and, unless on_infeasible == "ignore", warn/raise for params off their
    manifold (concrete params only)."""
    check_manifold_tree(manifolds, params)
    if on_infeasible == "ignore":
        return
    for path, manifold, residual, tolerance in infeasible_leaves(manifolds, params):
        message = (
            f"{owner}: initialized on params {path!r} that are off {manifold!r} "
            f"(feasibility {residual:.3g} > {tolerance:.2g}); the first update would snap them onto "
            "the manifold in one jump. Start from the manifold's project() (mo.project_params), "
            "or pass on_infeasible='ignore'"
        )
        if on_infeasible == "raise":
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)


def _decay_direction(manifold, x, weight_decay):
    """wd * grad r(x) for r(x) = ||x||_F^2 / 2 (Riemannian gradient: egrad_to_rgrad(x, x); for a
    tuple point the squares of all its arrays, which on FixedRankEmbedded is ||U s Vt||_F^2 / 2
    plus a constant)."""
    return optax.tree_utils.tree_scale(jnp.asarray(weight_decay, _dtype(x)), manifold.egrad_to_rgrad(x, x))


def _guarded(tx: optax.GradientTransformation, guard_nonfinite: bool):
    """With `guard_nonfinite`, a step whose gradients hold NaN/inf gives a zero update and keeps
    the state (optax.apply_if_finite, never giving up; its state counts the skipped steps)."""
    return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1) if guard_nonfinite else tx


def _zero_tangents(manifolds, params):
    """The zero tangent vector at every point of params (a moment buffer's initial value)."""
    return map_manifold_tree(lambda m, x: m.zero_tangent(x), manifolds, params)


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


def retract(manifolds, on_infeasible: str = "warn") -> optax.GradientTransformation:
    """Tangent steps u to additive updates R_x(u) - x, so `optax.apply_updates` lands on R_x(u).

    Use last in a chain, e.g. `optax.chain(project_to_tangent(M), optax.scale(-lr), retract(M))`
    is Riemannian gradient descent. `on_infeasible` ("warn", "raise", "ignore"): what init does
    with params off their manifold."""
    check_option("retract", "on_infeasible", on_infeasible, ON_INFEASIBLE)

    def init_fn(params):
        _check_init("retract", manifolds, params, on_infeasible)
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
    learning_rate: optax.ScalarOrSchedule,
    manifolds,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    guard_nonfinite: bool = False,
    on_infeasible: str = "warn",
) -> optax.GradientTransformation:
    """Riemannian SGD with heavy-ball or Nesterov momentum (Bonnabel 2013).

    g = egrad_to_rgrad(x, egrad); m <- mu * m + g; d = g + mu * m (Nesterov) or m;
    x+ = R_x(-lr (d + wd * grad r(x))); m is transported to x+ with the manifold's vector transport.
    With momentum 0 this is x+ = R_x(-lr g). `learning_rate` may be an optax schedule.

    Decoupled weight decay (Loshchilov & Hutter 2019) on a manifold: a Riemannian gradient step
    on r(x) = ||x||_F^2 / 2, grad r(x) = egrad_to_rgrad(x, x), added to the step but kept out of
    the momentum. On unconstrained leaves it is x <- x - lr wd x; on manifolds of constant norm
    (Sphere, Oblique, Stiefel, Grassmann, O(n)) grad r = 0, so decay does nothing there (every
    point has the same norm); on Birkhoff it pulls toward the uniform matrix J / n, the doubly
    stochastic matrix of least norm. `guard_nonfinite`: a step with NaN/inf gradients gives a
    zero update and keeps the state. `on_infeasible`: see the module docstring. Float
    hyperparameters may be traced (optax.inject_hyperparams); a traced momentum keeps a buffer.
    """
    owner = "riemannian_sgd"
    _check_hyperparameter(owner, "momentum", momentum, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
    _check_hyperparameter(owner, "weight_decay", weight_decay, lambda v: v >= 0.0, "nonnegative")
    check_option(owner, "on_infeasible", on_infeasible, ON_INFEASIBLE)
    if nesterov and _is_zero(momentum):
        raise ValueError("riemannian_sgd: nesterov=True needs momentum > 0")
    uses_momentum = not _is_zero(momentum)

    def init_fn(params):
        _check_init(owner, manifolds, params, on_infeasible)
        trace = _zero_tangents(manifolds, params) if uses_momentum else ()
        return RiemannianSgdState(jnp.zeros([], jnp.int32), trace)

    def update_fn(updates, state, params=None):
        tree = _checked(owner, manifolds, params)
        lr = _learning_rate(learning_rate, state.count)

        def leaf(m, x, g, *trace):
            direction = m.egrad_to_rgrad(x, g)
            if uses_momentum:
                mu = jnp.asarray(momentum, _dtype(x))
                buf = optax.tree_utils.tree_add_scale(direction, mu, trace[0])
                direction = optax.tree_utils.tree_add_scale(direction, mu, buf) if nesterov else buf
            if not _is_zero(weight_decay):
                direction = optax.tree_utils.tree_add(direction, _decay_direction(m, x, weight_decay))
            step = optax.tree_utils.tree_scale(-jnp.asarray(lr, _dtype(x)), direction)
            if not uses_momentum:
                return _retraction_update(m, x, step), ()
            y, buf = m.retract_transport(x, step, buf)
            return optax.tree_utils.tree_sub(y, x), buf

        if uses_momentum:
            new_updates, trace = map_manifold_tree(leaf, tree, params, updates, state.momentum, num_outputs=2)
        else:
            new_updates, _ = map_manifold_tree(leaf, tree, params, updates, num_outputs=2)
            trace = ()
        return new_updates, RiemannianSgdState(optax.safe_increment(state.count), trace)

    return _guarded(optax.GradientTransformation(init_fn, update_fn), guard_nonfinite)


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
    weight_decay: float = 0.0,
    guard_nonfinite: bool = False,
    on_infeasible: str = "warn",
) -> optax.GradientTransformation:
    """Riemannian Adam / AMSGrad (Becigneul & Ganea 2019, "Riemannian Adaptive Optimization").

    Per manifold factor (one point of a batched leaf; every entry of an unconstrained leaf):
      g = egrad_to_rgrad(x, egrad); m <- b1 tau(m) + (1 - b1) g; v <- b2 v + (1 - b2) ||g||_x^2;
      x+ = R_x(-lr * (mhat / (sqrt(vhat) + eps) + wd * grad r(x)))
    with bias-corrected mhat = m / (1 - b1^t), vhat = v / (1 - b2^t) (AMSGrad: vhat replaced by its
    running max, as in optax.amsgrad); tau is the vector transport of m to x+. On unconstrained
    leaves this is exactly optax.adamw / optax.amsgrad (+ decoupled decay). Weight decay wd is
    the Riemannian gradient of r(x) = ||x||_F^2 / 2, decoupled from the moments, and does nothing
    on manifolds of constant norm (see `riemannian_sgd`). `guard_nonfinite`, `on_infeasible` and
    traced hyperparameters as in `riemannian_sgd`.
    """
    owner = "riemannian_adam"
    for name, value in (("b1", b1), ("b2", b2)):
        _check_hyperparameter(owner, name, value, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
    _check_hyperparameter(owner, "eps", eps, lambda v: v > 0.0, "positive")
    _check_hyperparameter(owner, "weight_decay", weight_decay, lambda v: v >= 0.0, "nonnegative")
    check_option(owner, "on_infeasible", on_infeasible, ON_INFEASIBLE)

    def init_fn(params):
        _check_init(owner, manifolds, params, on_infeasible)
        nu = map_manifold_tree(lambda m, x: jnp.zeros(m.batch_shape(x), _dtype(x)), manifolds, params)
        return RiemannianAdamState(jnp.zeros([], jnp.int32), _zero_tangents(manifolds, params), nu, nu if amsgrad else ())

    def update_fn(updates, state, params=None):
        tree = _checked(owner, manifolds, params)
        count = optax.safe_increment(state.count)
        lr = _learning_rate(learning_rate, state.count)

        def leaf(m, x, g, mu, nu, *nu_max):
            dtype = _dtype(x)
            beta1, beta2 = jnp.asarray(b1, dtype), jnp.asarray(b2, dtype)
            rg = m.egrad_to_rgrad(x, g)
            mu = jax.tree_util.tree_map(lambda a, b: beta1 * a + (1.0 - beta1) * b, mu, rg)
            nu = beta2 * nu + (1.0 - beta2) * m.inner(x, rg, rg)
            t = count.astype(dtype)
            nu_hat = nu / (1.0 - beta2**t)
            nu_hat = jnp.maximum(nu_max[0], nu_hat) if amsgrad else nu_hat
            denom = jnp.sqrt(nu_hat) + jnp.asarray(eps, dtype)
            direction = _divide_per_point(mu, denom * (1.0 - beta1**t))
            if not _is_zero(weight_decay):
                direction = optax.tree_utils.tree_add(direction, _decay_direction(m, x, weight_decay))
            step = optax.tree_utils.tree_scale(-jnp.asarray(lr, dtype), direction)
            y, mu = m.retract_transport(x, step, mu)
            return optax.tree_utils.tree_sub(y, x), mu, nu, nu_hat

        rest = (updates, state.mu, state.nu) + ((state.nu_max,) if amsgrad else ())
        new_updates, mu, nu, nu_hat = map_manifold_tree(leaf, tree, params, *rest, num_outputs=4)
        return new_updates, RiemannianAdamState(count, mu, nu, nu_hat if amsgrad else ())

    return _guarded(optax.GradientTransformation(init_fn, update_fn), guard_nonfinite)

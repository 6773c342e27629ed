"""NorMuon (2025): Muon with a per-neuron second moment after Newton-Schulz.

    m <- beta m + (1 - beta) g;  u = (1 - beta) g + beta m;  O = NS_5(u)
    v <- beta2 v + (1 - beta2) mean_{fan-in}(O^2)        (one scalar per OUTPUT neuron)
    O_hat = O / (sqrt(v) + 1e-10)
    reference code (default):  U = O_hat ||O||_F / (||O_hat||_F + 1e-10),
                               update -lr sqrt(max(1, fan_out / fan_in)) U
    paper (scaling="paper"):   update -lr 0.2 sqrt(fan_in fan_out) O_hat / ||O_hat||_F

In optax's (in, out) layout the fan-in axis is the rows, so v has shape (batch, fan_out).
Defaults: lr 0.02, beta 0.95, beta2 0.95, decoupled weight decay 0; AdamW for non-matrix params.
At scale, pass `orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh)` to spread the
Newton-Schulz work over devices (whole matrices per device, then gathered).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from manifold_opt.linalg.polar import newton_schulz, ns_coefficients
from manifold_opt.manifolds.base import check_option
from manifold_opt.transforms.arguments import checked_keywords, hyper, optimizer_constructor, static_int
from manifold_opt.transforms.matrix_params import (
    Orthogonalizer,
    map_matrices,
    orthogonalize_matrices,
    resolve_dimension_numbers,
    scale_by_shape,
    to_matrices,
)
from manifold_opt.transforms.momentum import check_beta, muon_momentum, resolve_convention
from manifold_opt.transforms.step_rules import orthogonalized_optimizer


class NorMuonState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates  # per leaf: (batch, fan_out) second moment of O, at least float32


@checked_keywords("mo.scale_by_normuon")
def scale_by_normuon(
    beta: float = 0.95,
    beta2: float = 0.95,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    scaling: str = "reference",
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float = 1e-7,
    ns_dtype=None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
) -> optax.GradientTransformation:
    """NorMuon's core (see module doc); no learning rate, and for scaling="reference" no shape
    scale (the full optimizer adds it)."""
    check_beta("scale_by_normuon: beta", beta)
    check_beta("scale_by_normuon: beta2", beta2)
    check_option("scale_by_normuon", "scaling", scaling, ("reference", "paper"))
    ns_steps = static_int("mo.scale_by_normuon", "ns_steps", ns_steps, 5)
    ns_coefficients(ns_coeffs, ns_steps, (2, 2))
    ns = functools.partial(newton_schulz, steps=ns_steps, coeffs=ns_coeffs, eps=ns_eps, compute_dtype=ns_dtype)

    def init_fn(params):
        dims = resolve_dimension_numbers(params, weight_dimension_numbers)

        def nu(x, d):
            if d is None:
                raise ValueError(f"scale_by_normuon: got a non-matrix leaf of shape {x.shape}")
            return jnp.zeros(to_matrices(x, d).shape[::2], jnp.promote_types(x.dtype, jnp.float32))

        return NorMuonState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params), jax.tree.map(nu, params, dims))

    def normalize(o, nu):
        o32 = o.astype(nu.dtype)
        o_hat = o32 / (jnp.sqrt(nu)[..., None, :] + 1e-10)
        o_hat_norm = jnp.linalg.norm(o_hat, axis=(-2, -1), keepdims=True) + 1e-10
        if scaling == "paper":
            target = 0.2 * math.sqrt(o.shape[-2] * o.shape[-1])
        else:
            target = jnp.linalg.norm(o32, axis=(-2, -1), keepdims=True)
        return (o_hat * (target / o_hat_norm)).astype(o.dtype)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu, u = muon_momentum(updates, state.mu, beta, nesterov, bias_correction, count)
        o = orthogonalize_matrices(ns, u, weight_dimension_numbers, name="scale_by_normuon",
                                   orthogonalizer=orthogonalizer)
        dims = resolve_dimension_numbers(o, weight_dimension_numbers)
        nu = jax.tree.map(
            lambda x, d, v: v + (1 - hyper(beta2, v)) * (jnp.mean(to_matrices(x, d).astype(v.dtype) ** 2, axis=-2) - v),
            o, dims, state.nu,
        )
        out = map_matrices(normalize, o, weight_dimension_numbers, name="scale_by_normuon", extra=nu)
        return out, NorMuonState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


@optimizer_constructor("mo.normuon", adam_learning_rate=None, adam_b2=None, adam_nesterov=None)
def normuon(
    learning_rate=0.02,
    beta: float = 0.95,
    beta2: float = 0.95,
    weight_decay: float = 0.0,
    *,
    convention: str = "reference",
    nesterov: bool = True,
    bias_correction: bool | None = None,
    scaling: str = "reference",
    ns_steps: int | None = None,
    ns_coeffs="muon",
    ns_eps: float | None = None,
    ns_dtype=None,
    weight_dimension_numbers=None,
    orthogonalizer: Orthogonalizer | None = None,
    guard_nonfinite: bool = False,
    adamw=None,
) -> optax.GradientTransformation:
    """NorMuon on matrix params, AdamW (adam_* keywords, see mo.muon) on the rest.

    `convention` ("reference" or "optax") sets the keywords left at None as in mo.muon:
    "optax" is optax.contrib.muon's momentum (bias correction), NS eps, selection (every 2-D
    leaf) and AdamW branch, with NorMuon's normalization after Newton-Schulz.
    """
    opt = resolve_convention("mo.normuon", convention, learning_rate, bias_correction=bias_correction, ns_eps=ns_eps,
                             weight_dimension_numbers=weight_dimension_numbers, **adamw)
    dims = opt["weight_dimension_numbers"]
    ns_steps = static_int("mo.normuon", "ns_steps", ns_steps, 5)
    core = scale_by_normuon(
        beta, beta2, nesterov=nesterov, bias_correction=opt["bias_correction"], scaling=scaling, ns_steps=ns_steps,
        ns_coeffs=ns_coeffs, ns_eps=opt["ns_eps"], ns_dtype=ns_dtype, weight_dimension_numbers=dims,
        orthogonalizer=orthogonalizer,
    )
    return orthogonalized_optimizer(
        core, learning_rate=learning_rate, weight_decay=weight_decay,
        shape_scaling=scale_by_shape(dims) if scaling == "reference" else None,
        weight_dimension_numbers=dims, guard_nonfinite=guard_nonfinite, **{k: opt[k] for k in adamw},
    )

"""Input-output Jacobian spectra: measured by autodiff, predicted by free probability.

Measured: the singular values of J = d vec f(x) / d vec x (`jacobian_spectrum`).

Predicted (`predict_jacobian_spectrum`): the moments m_k = E[s^(2k)] of the squared singular
values of a depth-L stack on n streams of width d,

    J = prod_l (M_l (x) I_d) B_l,

with stream mixers M_l and blocks B_l whose Jacobians are rotation invariant (B_l = U_l D_l V_l
with Haar U_l, V_l: random orthogonal or Gaussian layers). As d -> infinity the factors are
asymptotically free, so the law of J^T J is the free multiplicative convolution of the laws of
M_l^T M_l (each singular value with multiplicity d) and B_l^T B_l (Voiculescu 1987; Pennington,
Schoenholz & Ganguli 2017 for deep networks). It is computed with the S-transform:
psi(z) = sum_k m_k z^k, chi = psi^(-1), S(z) = chi(z) (1 + z) / z, S of the product = the product
of the S's, all as power series truncated at order K.

JPmHC's design rule in these terms: an isometric mixer (Stiefel) keeps the law of the blocks,
a doubly stochastic one contracts every direction but the all-ones one (mass 1/n stays at 1, the
rest decays: "identity degeneration"), an unconstrained one spreads the spectrum exponentially.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def jacobian_spectrum(fn, x) -> jax.Array:
    """Singular values (descending) of the Jacobian of vec fn(x) with respect to vec x, by
    forward- or reverse-mode autodiff (whichever needs fewer passes)."""
    x = jnp.asarray(x)
    out = jax.eval_shape(fn, x)
    jac_fn = jax.jacfwd if x.size <= np.prod(out.shape, dtype=int) else jax.jacrev
    jac = jac_fn(fn)(x).reshape(int(np.prod(out.shape, dtype=int)), x.size)
    return jnp.linalg.svd(jac, compute_uv=False)


def spectrum_moments(singular_values, num_moments: int = 4) -> np.ndarray:
    """m_k = mean(s^(2k)), k = 1..num_moments, of singular values s."""
    s2 = np.asarray(singular_values, np.float64) ** 2
    return np.array([np.mean(s2**k) for k in range(1, num_moments + 1)])


def _compose(f, g):
    """Coefficients (index = power, [0] = 0) of f(g(z)) truncated to len(f) - 1."""
    order = len(f) - 1
    out, power = np.zeros(order + 1), np.zeros(order + 1)
    power[0] = 1.0
    for k in range(1, order + 1):
        power = np.convolve(power, g)[: order + 1]
        out += f[k] * power
    return out


def _inverse(f):
    """The compositional inverse g of f (f[0] = 0, f[1] != 0): f(g(z)) = z + O(z^(K+1))."""
    order = len(f) - 1
    g = np.zeros(order + 1)
    g[1] = 1.0 / f[1]
    for k in range(2, order + 1):
        g[k] = -_compose(f, g)[k] / f[1]
    return g


def _s_transform(moments):
    """Power series of S(z) = chi(z) (1 + z) / z, K coefficients, from moments m_1..m_K."""
    psi = np.concatenate([[0.0], moments])
    chi_over_z = _inverse(psi)[1:]  # chi(z) / z
    return (chi_over_z + np.concatenate([[0.0], chi_over_z[:-1]]))


def free_multiplicative_convolution(*moment_sequences) -> np.ndarray:
    """Moments m_1..m_K of the free multiplicative convolution of laws on [0, inf) given by
    their moments (each with m_1 > 0), all of the same length K."""
    order = len(moment_sequences[0])
    s = np.zeros(order)
    s[0] = 1.0
    for m in moment_sequences:
        m = np.asarray(m, np.float64)
        if m.shape != (order,) or not m[0] > 0:
            raise ValueError(
                f"predict_jacobian_spectrum: every law needs {order} moments with m_1 > 0, got {m}"
            )
        s = np.convolve(s, _s_transform(m))[:order]
    # chi(z) = S(z) z / (1 + z); psi = chi^(-1)
    one_plus_z_inv = (-1.0) ** np.arange(order)
    chi = np.concatenate([[0.0], np.convolve(s, one_plus_z_inv)[:order]])
    return _inverse(chi)[1:]


def predict_jacobian_spectrum(mixers, depth: int | None = None, block_moments=None, num_moments: int = 4):
    """Predicted moments E[s^(2k)], k = 1..num_moments, of the Jacobian singular values s of the
    stack prod_l (M_l (x) I_d) B_l (see the module docstring), in the limit of wide streams.

    mixers: (L, n, n) residual mixers, or one (n, n) mixer repeated `depth` times.
    block_moments: moments of each block's B^T B law (default: isometric blocks, all ones).
    """
    mixers = np.asarray(mixers, np.float64)
    if mixers.ndim == 2:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"predict_jacobian_spectrum: depth must be a positive int for one mixer, got {depth!r}")
        mixers = np.broadcast_to(mixers, (depth,) + mixers.shape)
    elif mixers.ndim != 3 or depth not in (None, mixers.shape[0]):
        raise ValueError(
            f"predict_jacobian_spectrum: mixers must be (n, n) with depth or (L, n, n), got shape {mixers.shape} "
            f"and depth={depth!r}"
        )
    if mixers.shape[-1] != mixers.shape[-2]:
        raise ValueError(f"predict_jacobian_spectrum: mixers must be square, got shape {mixers.shape}")
    if isinstance(num_moments, bool) or not isinstance(num_moments, int) or num_moments < 1:
        raise ValueError(f"predict_jacobian_spectrum: num_moments must be a positive int, got {num_moments!r}")
    laws = [spectrum_moments(np.linalg.svd(m, compute_uv=False), num_moments) for m in mixers]
    if block_moments is not None:
        laws += [np.asarray(block_moments, np.float64)] * len(mixers)
    return free_multiplicative_convolution(*laws)

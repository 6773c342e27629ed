"""Jacobian spectra: autodiff measurement against SVD, free multiplicative convolution against
the Fuss-Catalan closed form, and prediction against measurement on random linear stacks."""
from math import comb

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.nn import mixers
from manifold_opt.nn.jacobian import free_multiplicative_convolution, spectrum_moments


def test_jacobian_spectrum_is_the_svd_of_the_jacobian_matrix():
    a = np.random.default_rng(0).normal(size=(6, 4))
    fn = lambda x: jnp.tanh(a @ x.reshape(-1)).reshape(3, 2)  # noqa: E731
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2)))
    jac = (1 - np.tanh(a @ np.asarray(x).reshape(-1)) ** 2)[:, None] * a
    np.testing.assert_allclose(mo.nn.jacobian_spectrum(fn, x), np.linalg.svd(jac, compute_uv=False), rtol=1e-12)


def test_free_product_of_marchenko_pastur_laws_is_fuss_catalan():
    catalan = [comb(2 * k, k) / (k + 1) for k in range(1, 6)]  # free Poisson(1) moments
    for copies in (1, 2, 3):
        fuss = [comb((copies + 1) * k, k) / (copies * k + 1) for k in range(1, 6)]
        np.testing.assert_allclose(free_multiplicative_convolution(*[catalan] * copies), fuss, rtol=1e-12)


def family_mixers(name, key, n, count):
    """`count` random mixers of the family: its constrained images of random raw matrices."""
    raw = jax.random.normal(key, (count, n, n), jnp.float64)
    if name == "unconstrained":
        raw = jnp.eye(n) + 0.3 * raw
    return mixers.MixerSpec(name, n).residual(raw, jnp.ones(n) / np.sqrt(n))[0]


N, D, DEPTH, DRAWS = 4, 32, 6, 4


@jax.jit
def measured_moments(ms, key):
    """Mean over DRAWS of the moments of J = prod_l (M_l (x) I_d) O_l, O_l Haar on R^(n d), each
    J built as a matrix and its spectrum taken by SVD (jacobian_spectrum's autodiff route is
    checked against the SVD above; compiling it through this stack costs ~10x more)."""

    def one(key):
        rotations = jax.random.orthogonal(key, N * D, (DEPTH,), jnp.float64)
        jac = jnp.eye(N * D)
        for m, o in zip(ms, rotations):
            jac = jnp.kron(m, jnp.eye(D)) @ o @ jac
        s2 = jnp.linalg.svd(jac, compute_uv=False) ** 2
        return jnp.stack([jnp.mean(s2), jnp.mean(s2**2)])

    return jnp.mean(jax.vmap(one)(jax.random.split(key, DRAWS)), axis=0)


def test_prediction_matches_measured_spectra_of_random_linear_stacks():
    """n = 4 streams of width d = 32, depth 6. Tolerance: the moments of a Haar-rotated product
    fluctuate by O(1/(n d)) (second-order freeness). Measured over 10 draws at n d = 256, one
    draw's m_1, m_2 deviate from the prediction by a relative standard deviation of at most
    (2.7%, 6.6%) (birkhoff, the worst family) with a finite-size bias below (1%, 3.5%)
    (orthostochastic, not run here); at n d = 128 both double, so the mean of 4 draws has standard deviation
    below (2.7%, 6.6%) and bias below (2%, 7%): rtol (8%, 25%) is about 3 sigma beyond the bias.
    The classical (commuting) prediction prod_l m_k(M_l) is far outside it: the test tells
    free from commuting factors."""
    for i, family in enumerate(("stiefel", "birkhoff", "grassmann", "spectral_sphere", "unconstrained")):
        ms = family_mixers(family, jax.random.PRNGKey(i), N, DEPTH)
        measured = np.asarray(measured_moments(ms, jax.random.PRNGKey(100 + i)))
        predicted = mo.nn.predict_jacobian_spectrum(ms, num_moments=2)
        deviation = np.abs(measured / predicted - 1)
        assert np.all(deviation < [0.08, 0.25]), (family, measured, predicted)
        classical = np.prod([spectrum_moments(np.linalg.svd(m, compute_uv=False), 2) for m in np.asarray(ms)], 0)
        if family in ("birkhoff", "unconstrained"):
            assert abs(classical[1] / predicted[1] - 1) > 0.5, family
        if family == "stiefel":  # isometric mixers and blocks: every singular value is 1
            np.testing.assert_allclose(predicted, 1.0, rtol=1e-10)
        if family == "birkhoff":  # only the all-ones direction survives, with weight 1/n
            assert predicted[0] < 0.5


def test_bad_arguments_name_the_function():
    with pytest.raises(ValueError, match="predict_jacobian_spectrum: depth"):
        mo.nn.predict_jacobian_spectrum(np.eye(3))
    with pytest.raises(ValueError, match="predict_jacobian_spectrum: mixers must be"):
        mo.nn.predict_jacobian_spectrum(np.ones(3), depth=2)

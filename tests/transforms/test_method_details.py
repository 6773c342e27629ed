"""Method-specific facts: AuON's cosh RMS is ~1 at realistic sizes, ROOT's approximate quantile,
SPECTRA's clip against an SVD, Conda's basis refresh by lax.cond."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.transforms.auon import cosh_rms
from manifold_opt.transforms.root import abs_quantile
from manifold_opt.transforms.spectral_clip import soft_spectral_clip
from tests.transforms import reference as ref

RNG = np.random.default_rng(5)


def test_auon_cosh_rms_is_one_at_realistic_sizes():
    """1 + gamma^2/N <= r^2 <= 1 + sinh^2(gamma)/N: at N = 512 x 512 the scaling is the identity
    to 1e-5, which is why AuON's update is essentially its momentum."""
    gamma = 1.5
    for shape in [(8, 8), (512, 512)]:
        n = np.prod(shape)
        g = RNG.standard_normal(shape)
        r2 = float(cosh_rms(jnp.asarray(g), gamma)[0, 0]) ** 2
        assert 1 + gamma**2 / n - 1e-12 <= r2 <= 1 + np.sinh(gamma) ** 2 / n + 1e-12
        assert np.isclose(r2, np.mean(np.cosh(gamma * g / np.linalg.norm(g)) ** 2), rtol=1e-12)
    assert r2 - 1 < 1e-5


def test_root_bisection_quantile_matches_exact():
    x = jnp.asarray(RNG.standard_normal((3, 64, 48)) * RNG.exponential(size=(3, 1, 48)))
    exact = abs_quantile(x, 0.9, "exact")
    approx = abs_quantile(x, 0.9, "bisect", bisect_steps=20)
    np.testing.assert_allclose(exact[:, 0, 0], np.quantile(np.abs(np.asarray(x)).reshape(3, -1), 0.9, axis=-1))
    assert approx.shape == exact.shape
    # within 2^-20 of the range plus the gap between neighbouring order statistics
    np.testing.assert_allclose(approx, exact, rtol=2e-3)
    tx = mo.root(0.01, quantile_method="bisect")
    p = {"w": x[0]}
    u, _ = tx.update({"w": x[1]}, tx.init(p), p)
    assert np.all(np.isfinite(u["w"]))
    with pytest.raises(ValueError, match="quantile_method"):
        mo.root(quantile_method="sort")


@pytest.mark.parametrize("shape", [(12, 20), (20, 12)])
def test_spectral_clip_matches_svd(shape):
    c = 2.0
    u, _ = np.linalg.qr(RNG.standard_normal((shape[0], min(shape))))
    v, _ = np.linalg.qr(RNG.standard_normal((shape[1], min(shape))))
    x = (u * RNG.uniform(0.0, 3 * c, min(shape))) @ v.T  # singular values up to 3c
    out = np.asarray(soft_spectral_clip(jnp.asarray(x), c, num_iters=20))
    np.testing.assert_allclose(out, ref.soft_clip_svd(x, c), atol=1e-10)
    sv = np.linalg.svd(out, compute_uv=False)
    assert sv.max() < c
    assert np.all(soft_spectral_clip(jnp.zeros(shape), c) == 0)
    # the default 10 iterations are accurate to ~1e-4 at this condition
    np.testing.assert_allclose(soft_spectral_clip(jnp.asarray(x), c), ref.soft_clip_svd(x, c), atol=1e-4)
    with pytest.raises(ValueError, match="c must be positive"):
        mo.spectral_clip(c=0.0)


def test_conda_refreshes_basis_with_lax_cond_in_one_trace():
    p = {"w": jnp.asarray(RNG.standard_normal((5, 7)))}
    tx = mo.scale_by_conda(update_proj_gap=3)
    traces = []

    @jax.jit
    def step(g, s):
        traces.append(1)
        return tx.update(g, s, p)

    s = tx.init(p)
    bases = []
    for _ in range(5):
        _, s = step({"w": jnp.asarray(RNG.standard_normal((5, 7)))}, s)
        bases.append(np.asarray(s.basis["w"]))
    assert len(traces) == 1
    assert np.array_equal(bases[0], bases[1]) and np.array_equal(bases[1], bases[2])
    assert not np.allclose(bases[2], bases[3]) and np.array_equal(bases[3], bases[4])
    with pytest.raises(ValueError, match="update_proj_gap"):
        mo.conda(update_proj_gap=0)

"""Cayley transform: orthogonality, det = +1, and a NumPy reference."""
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt import linalg


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_cayley_of_skew_is_a_rotation_matching_numpy(dtype, atol):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5, 5))
    a = (a - np.swapaxes(a, -1, -2)) / 2
    q = np.asarray(linalg.cayley(jnp.asarray(a, dtype)))
    assert q.dtype == dtype
    eye = np.eye(5)
    ref = np.stack([np.linalg.inv(eye - ai) @ (eye + ai) for ai in a])
    np.testing.assert_allclose(q, ref, atol=atol)
    np.testing.assert_allclose(np.swapaxes(q, -1, -2) @ q, np.broadcast_to(eye, q.shape), atol=atol)
    np.testing.assert_allclose(np.linalg.det(q), 1.0, atol=atol)


def test_bad_input():
    with pytest.raises(ValueError, match="a must be square"):
        linalg.cayley(jnp.ones((3, 4)))

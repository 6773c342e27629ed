"""Oblique manifold = columnwise spheres: compared with Sphere on each column."""
import numpy as np
import pytest

from manifold_opt.manifolds import Oblique, Sphere


def test_every_operation_is_the_sphere_columnwise():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3))
    x /= np.linalg.norm(x, axis=0)
    y = rng.standard_normal((5, 3))
    y /= np.linalg.norm(y, axis=0)
    z = rng.standard_normal((5, 3))
    ob, sp = Oblique(5, 3), Sphere(5)
    u = np.asarray(ob.proj(x, z))
    for op, args in [("proj", (x, z)), ("retract", (x, u)), ("exp", (x, u)), ("log", (x, y))]:
        got = np.asarray(getattr(ob, op)(*args))
        ref = np.asarray(getattr(sp, op)(*(a.T for a in args))).T
        np.testing.assert_allclose(got, ref, atol=1e-12, err_msg=op)
    angles = np.arccos(np.clip(np.sum(x * y, 0), -1, 1))
    np.testing.assert_allclose(ob.dist(x, y), np.linalg.norm(angles), rtol=1e-10)
    np.testing.assert_allclose(ob.feasibility(x * [1, 2, 1]), 1.0, rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="p"):
        Oblique(3, 0)
    with pytest.raises(ValueError, match="x must have shape"):
        Oblique(3, 2).project(np.ones((2, 3)))

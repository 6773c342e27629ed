"""FixedRankEmbedded, whose points (U, s, Vt) and tangent vectors (Up, M, Vp) are tuples of
differently shaped arrays: the property battery's checks written for that layout, against
conditions on the dense m x n matrices (float64 unless stated)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from manifold_opt.manifolds import FixedRankEmbedded

M = FixedRankEmbedded(6, 5, 2)
tmap = jax.tree_util.tree_map


def setup(dtype=jnp.float64, batch_shape=(2,), seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = M.random_point(k1, dtype, batch_shape)
    return x, M.random_tangent(k2, x), k3


def max_abs(t):
    return max(float(jnp.max(jnp.abs(a))) for a in jax.tree_util.tree_leaves(t))


def gram_error(a):
    return max_abs(jnp.swapaxes(a, -1, -2) @ a - jnp.eye(a.shape[-1]))


def membership(x):
    u, s, vt = x
    return gram_error(u) + gram_error(jnp.swapaxes(vt, -1, -2)) + (0.0 if float(jnp.min(s)) > 0 else 1.0)


def tangency(x, t):
    return max_abs(jnp.swapaxes(x[0], -1, -2) @ t[0]) + max_abs(x[2] @ t[2])


def test_random_point_and_tangent():
    x, u, _ = setup()
    assert membership(x) < 1e-12 and float(jnp.max(M.feasibility(x))) < 1e-12
    assert tangency(x, u) < 1e-12
    np.testing.assert_allclose(M.norm(x, u), 1.0, rtol=1e-12)
    np.testing.assert_allclose(M.inner(x, u, u), jnp.sum(M.to_dense(x, u) ** 2, axis=(-2, -1)), rtol=1e-12)


def test_proj_is_the_orthogonal_projection_of_the_dense_matrix():
    x, v, key = setup()
    z = jax.random.normal(key, (2, 6, 5), jnp.float64)
    t = M.proj(x, z)
    assert tangency(x, t) < 1e-12
    assert max_abs(tmap(jnp.subtract, M.proj(x, M.to_dense(x, t)), t)) < 1e-12
    assert max_abs(tmap(jnp.subtract, M.proj(x, M.embedding(x, t)), t)) < 1e-12
    normal = z - M.to_dense(x, t)
    assert max_abs(jnp.sum(normal * M.to_dense(x, v), axis=(-2, -1))) < 1e-12


def test_retraction_is_feasible_and_first_order():
    x, u, _ = setup()
    assert max_abs(M.to_dense(M.retract(x, tmap(lambda a: 0 * a, u))) - M.to_dense(x)) < 1e-12
    assert membership(M.retract(x, u)) < 1e-12
    errs = [max_abs(M.to_dense(M.retract(x, tmap(lambda a: t * a, u))) - M.to_dense(x) - t * M.to_dense(x, u))
            for t in (1e-2, 5e-3)]
    assert 3.0 < errs[0] / errs[1] < 5.0, errs


def test_riemannian_gradient_from_the_factors_gradient():
    """For f(U, s, Vt) = F(U diag(s) Vt): <rgrad, v> = <grad F, dense(v)> and the finite
    difference of f along the retraction."""
    x, v, key = setup(batch_shape=())
    w = jax.random.normal(key, (6, 5), jnp.float64)

    def big_f(a):
        return jnp.sum(jnp.sin(w * a) + a**3 / 3)

    def f(p):
        return big_f(M.to_dense(p))

    rgrad = M.egrad_to_rgrad(x, jax.grad(f)(x))
    assert tangency(x, rgrad) < 1e-12
    np.testing.assert_allclose(M.inner(x, rgrad, v), jnp.sum(jax.grad(big_f)(M.to_dense(x)) * M.to_dense(x, v)),
                               rtol=1e-10)
    dense_rgrad = M.egrad_to_rgrad(x, jax.grad(big_f)(M.to_dense(x)))  # a dense gradient: proj
    assert max_abs(tmap(jnp.subtract, dense_rgrad, rgrad)) < 1e-10
    h = 1e-5
    fd = (f(M.retract(x, tmap(lambda a: h * a, v))) - f(M.retract(x, tmap(lambda a: -h * a, v)))) / (2 * h)
    np.testing.assert_allclose(M.inner(x, rgrad, v), fd, rtol=1e-6)


def test_transport_lands_in_the_target_tangent_space():
    x, u, key = setup()
    v = M.random_tangent(key, x)
    y, w = M.retract_transport(x, u, v)
    assert tangency(y, w) < 1e-12
    assert max_abs(tmap(jnp.subtract, w, M.proj(y, M.to_dense(x, v)))) < 1e-12


def test_batched_equals_loop_and_jit_vmap_agree():
    x, u, key = setup()
    z = jax.random.normal(key, (2, 6, 5), jnp.float64)

    def ops(x, u, z):
        return {"proj": M.proj(x, z), "retract": M.retract(x, u), "inner": M.inner(x, u, u),
                "feas": M.feasibility(x), "rgrad": M.egrad_to_rgrad(x, x)}

    batched = ops(x, u, z)
    for i in range(2):
        one = ops(*tmap(lambda a: a[i], (x, u, z)))
        assert max_abs(tmap(lambda a, b: a[i] - b, batched, one)) < 1e-12
    assert max_abs(tmap(jnp.subtract, jax.jit(ops)(x, u, z), batched)) < 1e-12
    assert max_abs(tmap(jnp.subtract, jax.vmap(ops)(x, u, z), batched)) < 1e-12


def test_float32():
    x, u, _ = setup(jnp.float32)
    y = M.retract(x, tmap(lambda a: 0.5 * a, u))
    outs = [x, u, y, M.transport(x, y, u), M.inner(x, u, u), M.feasibility(y), M.project(y)]
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(outs))
    assert membership(y) < 1e-5


def test_project():
    x, _, key = setup()
    keys = jax.random.split(key, 3)
    noisy = tuple(a + 1e-4 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(x, keys))
    assert float(jnp.min(M.feasibility(noisy))) > 0
    p = M.project(noisy)
    assert membership(p) < 1e-12
    assert max_abs(M.to_dense(p) - M.to_dense(noisy)) < 1e-12  # same matrix, cleaned factors
    dense = jax.random.normal(key, (6, 5), jnp.float64)
    best = M.to_dense(M.project(dense))
    u, s, vh = np.linalg.svd(np.asarray(dense))
    np.testing.assert_allclose(best, (u[:, :2] * s[:2]) @ vh[:2], atol=1e-12)


def test_errors_name_the_argument_and_missing_closed_forms():
    x, u, _ = setup(batch_shape=())
    with pytest.raises(ValueError, match="x must be a point"):
        M.proj(x[:2], M.to_dense(x))
    with pytest.raises(ValueError, match="z must be an array of shape"):
        M.proj(x, jnp.zeros((5, 6)))
    with pytest.raises(ValueError, match="u must be a tangent"):
        M.retract(x, x)
    with pytest.raises(ValueError, match="egrad must be a point"):
        M.egrad_to_rgrad(x, u)
    with pytest.raises(ValueError, match="k must be <= min"):
        FixedRankEmbedded(3, 4, 4)
    for call in (lambda: M.exp(x, u), lambda: M.log(x, x), lambda: M.ehess_to_rhess(x, x, x, u)):
        with pytest.raises(NotImplementedError):
            call()
    assert M.dim == (6 + 5 - 2) * 2 and hash(M) == hash(FixedRankEmbedded(6, 5, 2))

"""project_out and its subspace helpers against float64 NumPy references (GPM / FOT energy rule,
weight SVD), the protected-output property of a linear layer, batched kernels, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo
from manifold_opt.transforms import DimensionNumbers, extend_basis

RNG = np.random.default_rng(5)
SPEC = {"w": True, "conv": True, "stack": DimensionNumbers(1, 2), "b": None}


def orthonormal(n, k):
    return np.linalg.qr(RNG.standard_normal((n, k)))[0]


def params_f32():
    shapes = {"w": (6, 5), "conv": (3, 3, 2, 4), "stack": (3, 6, 5), "b": (5,)}
    return {k: jnp.asarray(RNG.standard_normal(s), jnp.float32) for k, s in shapes.items()}


def projector(basis):
    return basis @ basis.T


def test_updates_are_orthogonal_to_the_protected_bases_float32_for_dense_conv_and_stacked_kernels():
    params = params_f32()
    bases = {"w": (orthonormal(6, 2), orthonormal(5, 3)), "conv": (orthonormal(18, 7), orthonormal(4, 1)),
             "stack": (np.stack([orthonormal(6, 3) for _ in range(3)]), orthonormal(5, 2)), "b": None}
    grads = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape), jnp.float32), params)
    for side in ("input", "output", "both"):
        given = bases if side == "both" else jax.tree.map(
            lambda pair: pair[side == "output"], bases, is_leaf=lambda x: isinstance(x, tuple))
        tx = optax.chain(optax.adam(0.1), mo.project_out(given, side=side, weight_dimension_numbers=SPEC))
        updates, _ = tx.update(grads, tx.init(params), params)
        adam, _ = optax.adam(0.1).update(grads, optax.adam(0.1).init(params))
        np.testing.assert_array_equal(updates["b"], adam["b"])  # not a matrix: unchanged
        for name in ("w", "conv", "stack"):
            u, v = bases[name]
            m = np.asarray(updates[name], np.float64)
            a = np.asarray(adam[name], np.float64)
            m = m.reshape(18, 4) if name == "conv" else m
            a = a.reshape(18, 4) if name == "conv" else a
            us = np.broadcast_to(u, m.shape[:-2] + u.shape[-2:])
            left = np.eye(m.shape[-2]) - us @ np.swapaxes(us, -1, -2) if side != "output" else np.eye(m.shape[-2])
            right = np.eye(m.shape[-1]) - projector(v) if side != "input" else np.eye(m.shape[-1])
            np.testing.assert_allclose(m, left @ a @ right, rtol=1e-5, atol=1e-6)  # float64 reference
            scale = np.linalg.norm(m)
            if side != "output":
                assert np.max(np.abs(np.swapaxes(us, -1, -2) @ m)) <= 1e-6 * scale
            if side != "input":
                assert np.max(np.abs(m @ v)) <= 1e-6 * scale


def gpm_reference(basis, samples, threshold):
    """GPM's rule, float64: the existing basis (n, r) removed, then the top left singular
    vectors of the residual until the captured energy reaches threshold * ||R||^2."""
    inside = basis @ basis.T @ samples
    u, s, _ = np.linalg.svd(samples - inside, full_matrices=False)
    total, captured = np.sum(samples**2), np.sum(inside**2)
    k = 0
    while k < len(s) and captured < threshold * total and s[k] > 1e-10 * s[0]:
        captured += s[k] ** 2
        k += 1
    return np.concatenate([basis, u[:, :k]], axis=1)


def columns(padded):
    padded = np.asarray(padded)
    return padded[:, np.sum(padded**2, axis=0) > 0.5]


def test_energy_threshold_rule_matches_reference_and_stays_orthonormal():
    n = 12
    spectrum = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.25] + [0.0] * 6)
    grow = jax.jit(extend_basis, static_argnums=(2, 3))
    basis = jnp.zeros((1, n, n))
    expected = np.zeros((n, 0))
    for task in range(3):
        samples = orthonormal(n, n) @ np.diag(np.roll(spectrum, 2 * task)) @ orthonormal(n, 40).T[:n]
        basis = grow(basis, jnp.asarray(samples[None]), 0.9, None)
        expected = gpm_reference(expected, samples, 0.9)
        got = columns(basis[0])
        assert got.shape == expected.shape and got.shape[1] > 0
        np.testing.assert_allclose(got.T @ got, np.eye(got.shape[1]), atol=1e-12)
        np.testing.assert_allclose(projector(got), projector(expected), atol=1e-10)
        assert np.all(np.asarray(basis[0])[:, got.shape[1]:] == 0)
        inside = projector(got) @ samples  # the threshold is met by the whole basis
        assert np.sum(inside**2) >= 0.9 * np.sum(samples**2) * (1 - 1e-12)
    full = grow(basis, jnp.asarray(RNG.standard_normal((1, n, 50))), 1.0, None)
    np.testing.assert_allclose(np.asarray(full[0]).T @ np.asarray(full[0]), np.eye(n), atol=1e-12)  # saturates at n
    samples = RNG.standard_normal((n, 50))
    capped = grow(jnp.zeros((1, n, n)), jnp.asarray(samples[None]), 1.0, 2)
    assert columns(capped[0]).shape[1] == 2
    # a capacity of 3 columns (project_out(max_rank=3)): the top 3 directions, then full
    small = grow(jnp.zeros((1, n, 3)), jnp.asarray(samples[None]), 1.0, None)
    np.testing.assert_allclose(projector(np.asarray(small[0])), projector(np.linalg.svd(samples)[0][:, :3]), atol=1e-10)
    full_again = grow(small, jnp.asarray(samples[None] + 1.0), 1.0, None)
    np.testing.assert_allclose(projector(np.asarray(full_again[0])), projector(np.asarray(small[0])), atol=1e-12)


def test_weight_svd_subspace_is_the_top_singular_directions():
    params = {"w": jnp.asarray(RNG.standard_normal((8, 6)))}
    for side, rank_fraction, k in [("input", 0.25, 2), ("output", 0.5, 3)]:
        tx = mo.project_out(side=side)
        state = mo.protect_from_weights((tx.init(params), optax.EmptyState()), params, threshold=1.0,
                                        rank_fraction=rank_fraction)[0]
        u, _, vt = np.linalg.svd(np.asarray(params["w"]))
        top = u[:, :k] if side == "input" else vt[:k].T
        got = columns((state.input if side == "input" else state.output)["w"][0])
        np.testing.assert_allclose(projector(got), projector(top), atol=1e-10)
    tx = mo.project_out(side="both")  # the energy rule on both sides
    state = mo.protect_from_weights(tx.init(params), params, threshold=0.5)
    s = np.linalg.svd(np.asarray(params["w"]), compute_uv=False)
    k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.5) + 1)
    assert columns(state.input["w"][0]).shape[1] == columns(state.output["w"][0]).shape[1] == k


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-10), (jnp.float32, 2e-5)])
def test_protected_linear_layer_keeps_task1_outputs_while_learning_task2(dtype, tol):
    """y = x W: task 1's inputs span 4 of 10 dims; after protecting them (GPM rule on the
    collected inputs), training on task 2 moves W but not x1 W."""
    basis = orthonormal(10, 4)
    x1 = jnp.asarray(RNG.standard_normal((64, 4)) @ basis.T, dtype)
    x2 = jnp.asarray(RNG.standard_normal((64, 10)), dtype)
    y2 = jnp.asarray(RNG.standard_normal((64, 3)), dtype)
    params = {"w": jnp.asarray(RNG.standard_normal((10, 3)), dtype)}
    tx = optax.chain(optax.adam(0.05), mo.project_out(max_rank=6))
    state = tx.init(params)
    state = jax.jit(lambda s, x: mo.protect_from_inputs(s, x, threshold=1.0))(state, {"w": x1})
    assert columns(state[1].input["w"][0]).shape[1] == 4

    def loss(p):
        return jnp.mean((x2 @ p["w"] - y2) ** 2)

    @jax.jit
    def train(p, s):
        def step(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(step, (p, s), None, length=200)[0]

    trained, _ = train(params, state)
    assert float(loss(trained)) < 0.7 * float(loss(params))  # it learns task 2
    before, after = np.asarray(x1 @ params["w"]), np.asarray(x1 @ trained["w"])
    assert np.max(np.abs(after - before)) <= tol * np.max(np.abs(before))
    assert np.max(np.abs(np.asarray(trained["w"] - params["w"]))) > 0.1


def test_bad_input_gets_a_value_error_naming_it():
    params = {"w": jnp.ones((6, 5)), "b": jnp.ones(5)}
    with pytest.raises(ValueError, match=r"project_out: bases\['w'\] has shape \(5, 2\)"):
        mo.project_out({"w": np.zeros((5, 2)), "b": None}).init(params)
    with pytest.raises(ValueError, match=r"project_out: bases\['b'\]"):
        mo.project_out({"w": None, "b": np.zeros((5, 1))}).init(params)
    with pytest.raises(ValueError, match=r"project_out: bases\['w'\] has shape \(6, 3\).*k <= 2"):
        mo.project_out({"w": orthonormal(6, 3), "b": None}, max_rank=2).init(params)
    with pytest.raises(ValueError, match="project_out: max_rank"):
        mo.project_out(max_rank=0)
    with pytest.raises(ValueError, match="project_out: side"):
        mo.project_out(side="left")
    state = mo.project_out().init(params)
    for threshold in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="protect_from_inputs: threshold"):
            mo.protect_from_inputs(state, {"w": np.ones((3, 6)), "b": None}, threshold=threshold)
    with pytest.raises(ValueError, match="protect_from_inputs: samples of shape"):
        mo.protect_from_inputs(state, {"w": np.ones((3, 5)), "b": None})
    with pytest.raises(ValueError, match="protect_from_weights: rank_fraction"):
        mo.protect_from_weights(state, params, rank_fraction=2.0)
    with pytest.raises(ValueError, match="protect_from_weights: opt_state holds no project_out state"):
        mo.protect_from_weights(optax.adam(1.0).init(params), params)

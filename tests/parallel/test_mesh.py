"""Meshes, FSDP sharding and the parallel train steps on 8 virtual CPU devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import manifold_opt as mo
from configs import quickstart as quickstart_config
from experiments import harness, quickstart
from manifold_opt import parallel


def test_make_mesh_fills_minus_one_and_rejects_bad_shapes():
    assert dict(parallel.make_mesh((2, -1)).shape) == {"data": 2, "fsdp": 4}
    assert dict(parallel.make_mesh((-1, 1)).shape) == {"data": 8, "fsdp": 1}
    for bad in [(3, -1), (2, 2), (0, 8), (-1, -1), (8,)]:
        with pytest.raises(ValueError, match="make_mesh: shape"):
            parallel.make_mesh(bad)


@pytest.mark.parametrize("seed", range(3))
def test_fsdp_spec_shards_largest_divisible_axis(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        shape = tuple(int(d) for d in rng.integers(1, 5, size=rng.integers(0, 4)) * rng.choice([1, 3, 8], size=1))
        spec = parallel.fsdp_spec(shape, 8)
        divisible = [d for d in shape if d % 8 == 0]
        if not divisible:
            assert spec == PartitionSpec()
        else:
            axis = len(spec) - 1
            assert spec[axis] == "fsdp" and shape[axis] == max(divisible)
            assert shape.index(max(divisible)) == axis
    assert parallel.fsdp_spec((64, 64), 1) == PartitionSpec()


def quickstart_problem():
    config = quickstart_config.get_config()
    config.update(dict(optimizers=("riemannian_adam",), dtype="float32"))
    config = harness.resolve(config)
    params, loss_fn, tree, _ = quickstart.build(config)
    train, _ = quickstart.load_data(config)
    batches = quickstart.batch_fn(train, config.batch_size, config.seed)
    return params, loss_fn, mo.riemannian_adam(config.learning_rate, tree), batches, tree


def loss_curve(mode, mesh_shape, steps=20):
    params, loss_fn, optimizer, batches, _ = quickstart_problem()
    state = {"params": params, "opt_state": optimizer.init(params)}
    compiled = harness.compile_step(loss_fn, optimizer, mode, mesh_shape, state)
    placed, losses = compiled.place_state(state), []
    for step in range(steps):
        placed, metrics = compiled.step(placed, compiled.place_batch(batches(step)))
        losses.append(float(metrics["loss"]))
    return np.array(losses), compiled.to_logical(placed)


def test_sharded_and_pmap_loss_curves_match_single_device():
    reference, ref_state = loss_curve("none", (1, 1))
    assert reference[-1] < reference[0]  # it trains
    for mode, mesh_shape in [("jit_sharded", (1, 8)), ("jit_sharded", (2, 4)), ("pmap", (8, 1))]:
        losses, state = loss_curve(mode, mesh_shape)
        np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-5, err_msg=f"{mode} {mesh_shape}")
        for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(ref_state["params"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_fsdp_keeps_about_an_eighth_of_params_and_optimizer_state_per_device():
    params, loss_fn, optimizer, batches, _ = quickstart_problem()
    state = {"params": params, "opt_state": optimizer.init(params)}
    compiled = harness.compile_step(loss_fn, optimizer, "jit_sharded", (1, 8), state)
    placed = compiled.place_state(state)
    placed, _ = compiled.step(placed, compiled.place_batch(batches(0)))  # out_shardings keep it sharded
    for part in ("params", "opt_state"):
        total = sum(x.nbytes for x in jax.tree.leaves(placed[part]))
        per_device = parallel.per_device_bytes(placed[part])
        assert 1 / 8 <= per_device / total < 1.1 / 8, (part, per_device, total)
    kernel = placed["params"]["hidden"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec("fsdp") and kernel.addressable_shards[0].data.shape == (8, 64)


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_retraction_on_sharded_stiefel_parameter_matches_unsharded(dtype, tol):
    manifold = mo.manifolds.Stiefel(256, 16)
    kx, ku = jax.random.split(jax.random.key(7))
    x = manifold.random_point(kx, dtype)
    u = 0.3 * manifold.random_tangent(ku, x)
    mesh = parallel.make_mesh((1, 8))
    rows = NamedSharding(mesh, parallel.fsdp_spec(x.shape, 8))
    retract = jax.jit(manifold.retract, in_shardings=(rows, rows), out_shardings=rows)
    y = retract(jax.device_put(x, rows), jax.device_put(u, rows))
    assert y.sharding.spec == PartitionSpec("fsdp") and y.addressable_shards[0].data.shape == (32, 16)
    y64 = np.asarray(y, np.float64)
    np.testing.assert_allclose(y64.T @ y64, np.eye(16), atol=10 * tol)
    np.testing.assert_allclose(y64, np.asarray(manifold.retract(x, u)), atol=10 * tol)
    # independent reference: QR retraction = Q factor of x + u with positive diag(R)
    q, r = np.linalg.qr(np.asarray(x, np.float64) + np.asarray(u, np.float64))
    np.testing.assert_allclose(y64, q * np.sign(np.diag(r)), atol=100 * tol)

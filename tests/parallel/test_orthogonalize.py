"""Distributed orthogonalization on 8 virtual CPU devices: same updates as one device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import manifold_opt as mo
from manifold_opt.linalg import newton_schulz
from manifold_opt.transforms import DimensionNumbers

RNG = np.random.default_rng(21)


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8
    return Mesh(np.array(jax.devices()).reshape(8), ("data",))


@pytest.mark.parametrize("mode", ["owner", "replicated"])
def test_sharded_orthogonalizer_matches_direct(mesh, mode):
    shapes = [(3, 16, 24), (2, 24, 16), (5, 8, 8)]  # stacks padded to 8 (replicated: a tall one transposed)
    mats = [jnp.asarray(RNG.standard_normal(s), jnp.float32) for s in shapes]
    orth = mo.parallel.sharded_orthogonalizer(mesh, mode=mode)
    out = jax.jit(lambda ms: orth(newton_schulz, ms))(mats)
    direct = jax.jit(lambda ms: [newton_schulz(m) for m in ms])(mats)
    for o, d, m in zip(out, direct, mats):
        assert o.shape == m.shape
        np.testing.assert_allclose(o, d, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="axis_name"):
        mo.parallel.sharded_orthogonalizer(mesh, "model")
    with pytest.raises(ValueError, match="mode"):
        mo.parallel.sharded_orthogonalizer(mesh, mode="gather")


def test_owner_mode_keeps_shardings_and_moves_twice_the_matrix_bytes(mesh):
    """FSDP-sharded (rows over 8 devices) matrices: owner mode returns each result sharded like
    its input, with one all-to-all in and one out (2x the matrix bytes when each stack divides
    over the devices), where gather-everywhere moves about `devices` x the matrix bytes."""
    shapes = [(8, 32, 64), (8, 64, 32), (16, 32, 32)]
    rows = NamedSharding(mesh, PartitionSpec(None, "data"))
    mats = [jax.device_put(jnp.asarray(RNG.standard_normal(s), jnp.float32), rows) for s in shapes]
    per_device = sum(m.nbytes for m in mats) / 8
    moved = {}
    for mode in ("owner", "replicated"):
        orth = mo.parallel.sharded_orthogonalizer(mesh, mode=mode)
        fn = jax.jit(lambda ms: orth(newton_schulz, ms))
        out = fn(mats)
        for o, m in zip(out, mats):
            np.testing.assert_allclose(o, newton_schulz(m), rtol=1e-5, atol=1e-5)
            assert o.sharding.is_equivalent_to(rows if mode == "owner" else NamedSharding(mesh, PartitionSpec()), 3)
        moved[mode] = mo.parallel.collective_bytes(fn.lower(mats).compile())
    assert moved["owner"]["all-gather"] == 0
    assert moved["owner"]["total"] <= 2.0 * per_device
    assert moved["replicated"]["total"] >= 7.0 * per_device


def test_collective_bytes_reads_hlo_shapes():
    text = """
  %all-to-all.2 = (f32[1,8,64]{2,1,0}, f32[1,8,64]{2,1,0}) all-to-all(%a, %b), channel_id=1
  %all-gather-start = (bf16[4,16]{1,0}, bf16[32,16]{1,0}) all-gather-start(%c), dimensions={0}
  %all-gather-done = bf16[32,16]{1,0} all-gather-done(%all-gather-start)
  %add = f32[8]{0} add(%x, %y)
  %all-reduce = f64[3]{0} all-reduce(%z), to_apply=%sum
"""
    got = mo.parallel.collective_bytes(text)
    assert got["all-to-all"] == 2 * 8 * 64 * 4
    assert got["all-gather"] == 32 * 16 * 2
    assert got["all-reduce"] == 3 * 8
    assert got["total"] == got["all-to-all"] + got["all-gather"] + got["all-reduce"]


@pytest.mark.parametrize("name, mode", [("muon", "owner"), ("muon", "replicated"), ("normuon", "owner")])
def test_sharded_optimizer_update_matches_single_device(mesh, name, mode):
    """Params sharded over the mesh; each device orthogonalizes whole matrices, then gathers."""
    params = {
        "blocks": jnp.asarray(RNG.standard_normal((4, 16, 8)), jnp.float32),  # 4 layers, batched
        "w_in": jnp.asarray(RNG.standard_normal((8, 16)), jnp.float32),
        "w_out": jnp.asarray(RNG.standard_normal((16, 8)), jnp.float32),
        "bias": jnp.asarray(RNG.standard_normal(8), jnp.float32),
    }
    spec = {"blocks": DimensionNumbers(1, 2), "w_in": True, "w_out": True, "bias": None}
    row_sharded = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())
    place = {"blocks": NamedSharding(mesh, PartitionSpec(None, "data")), "w_in": row_sharded,
             "w_out": row_sharded, "bias": replicated}
    make = getattr(mo, name)
    single = make(0.02, weight_decay=0.01, weight_dimension_numbers=spec)
    spread = make(0.02, weight_decay=0.01, weight_dimension_numbers=spec,
                  orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh, "data", mode=mode))
    sharded_params = jax.device_put(params, place)
    s1, s2 = single.init(params), spread.init(sharded_params)
    step1, step2 = jax.jit(single.update), jax.jit(spread.update)
    for _ in range(2):
        g = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape), jnp.float32), params)
        u1, s1 = step1(g, s1, params)
        u2, s2 = step2(jax.device_put(g, place), s2, sharded_params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(a)))
        if mode == "owner":  # every update comes back in its parameter's sharding
            for u, p in zip(jax.tree.leaves(u2), jax.tree.leaves(sharded_params)):
                assert u.sharding.is_equivalent_to(p.sharding, p.ndim), (u.sharding, p.sharding)

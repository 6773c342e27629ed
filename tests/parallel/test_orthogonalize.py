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


def test_sharded_orthogonalizer_matches_direct(mesh):
    shapes = [(3, 16, 24), (2, 24, 16), (5, 8, 8)]  # groups of 5 (a tall one transposed) and 5, padded to 8
    mats = [jnp.asarray(RNG.standard_normal(s), jnp.float32) for s in shapes]
    orth = mo.parallel.sharded_orthogonalizer(mesh)
    out = jax.jit(lambda ms: orth(newton_schulz, ms))(mats)
    direct = jax.jit(lambda ms: [newton_schulz(m) for m in ms])(mats)
    for o, d, m in zip(out, direct, mats):
        assert o.shape == m.shape
        np.testing.assert_allclose(o, d, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="axis_name"):
        mo.parallel.sharded_orthogonalizer(mesh, "model")


@pytest.mark.parametrize("name", ["muon", "normuon"])
def test_sharded_optimizer_update_matches_single_device(mesh, name):
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
                  orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh, "data"))
    sharded_params = jax.device_put(params, place)
    s1, s2 = single.init(params), spread.init(sharded_params)
    step1, step2 = jax.jit(single.update), jax.jit(spread.update)
    for _ in range(2):
        g = jax.tree.map(lambda x: jnp.asarray(RNG.standard_normal(x.shape), jnp.float32), params)
        u1, s1 = step1(g, s1, params)
        u2, s2 = step2(jax.device_put(g, place), s2, sharded_params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(a)))

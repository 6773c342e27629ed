"""One process of a two-process check (run by tests/parallel/test_multihost_parallel.py):
`python multihost_worker.py COORDINATOR_ADDRESS PROCESS_ID`.

On a (2, 4) mesh over both processes' devices: FSDP keeps 1/4 of every sharded parameter's
bytes per device; mo.muon with `sharded_orthogonalizer` (matrices spread over all 8 devices of
both processes) gives the same updates as mo.muon on this process's first device alone.
Prints "ok"."""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))

import numpy as np  # noqa: E402

import manifold_opt as mo  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
mesh = mo.parallel.make_mesh((2, 4))
rng = np.random.default_rng(0)  # the same numbers on both processes
params = {"w_in": rng.standard_normal((16, 32)), "w_out": rng.standard_normal((32, 8)),
          "blocks": rng.standard_normal((3, 8, 16)), "bias": rng.standard_normal(8)}
params = jax.tree.map(lambda x: x.astype(np.float32), params)
grads = [jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(np.float32), params) for _ in range(2)]
spec = {"blocks": mo.transforms.DimensionNumbers(1, 2), "w_in": True, "w_out": True, "bias": None}

shardings = mo.parallel.fsdp_shardings(params, mesh)
placed = jax.device_put(params, shardings)
for name in ("w_in", "w_out"):  # split 4 ways over fsdp: a quarter of the bytes on each device
    assert mo.parallel.per_device_bytes(placed[name]) == params[name].nbytes // 4, name

spread = mo.muon(0.02, weight_dimension_numbers=spec, orthogonalizer=mo.parallel.sharded_orthogonalizer(mesh, mesh.axis_names))
single = mo.muon(0.02, weight_dimension_numbers=spec)
step_spread = jax.jit(spread.update, out_shardings=(shardings, None))
state_spread, state_single = spread.init(placed), single.init(params)
local = jax.local_devices()[0]
for g in grads:
    updates, state_spread = step_spread(jax.device_put(g, shardings), state_spread, placed)
    expected, state_single = jax.jit(single.update, device=local)(g, state_single, params)
    gathered = jax.jit(lambda u: u, out_shardings=mo.parallel.replicated(mesh))(updates)
    for key in params:
        got, want = np.asarray(gathered[key]), np.asarray(expected[key])
        assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want)), key
print("ok")

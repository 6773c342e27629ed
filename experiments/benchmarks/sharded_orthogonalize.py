"""Owner-sharded vs replicated orthogonalization: bytes moved (read from compiled HLO) and time.

    python -m experiments.benchmarks.sharded_orthogonalize [--devices 8] [--d-model 256] [--layers 8]

A transformer's hidden matrices, stacked per layer as under `nn.scan` ((L, d, 3d) qkv, (L, d, d)
out, (L, d, 4d) and (L, 4d, d) MLP), FSDP-sharded over their rows on a mesh of `--devices`
devices (virtual CPU devices unless a GPU/TPU mesh is there). For each mode of
mo.parallel.sharded_orthogonalizer it prints the bytes each device's collectives move per call
(from `collective_bytes` of the compiled HLO), that as a multiple of the matrix bytes a device
holds (owner: ~2, an all-to-all in and one out; replicated: ~devices, gather-everywhere), the
median time of one call after warm-up, and whether every result kept its input's sharding.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if "jax" not in sys.modules:
        os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={args.devices}")
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import manifold_opt as mo
    from experiments.benchmarks.timing import median_time
    from manifold_opt.linalg import newton_schulz

    devices = jax.devices()[: args.devices]
    mesh = Mesh(np.array(devices), ("fsdp",))
    d, L = args.d_model, args.layers
    rows = NamedSharding(mesh, PartitionSpec(None, "fsdp"))
    rng = np.random.default_rng(0)
    shapes = [(L, d, 3 * d), (L, d, d), (L, d, 4 * d), (L, 4 * d, d)]
    mats = [jax.device_put(jnp.asarray(rng.standard_normal(s), jnp.float32), rows) for s in shapes]
    per_device = sum(m.nbytes for m in mats) / len(devices)
    print(f"{len(devices)} devices ({devices[0].platform}), {L} layers, d={d}: "
          f"{per_device / 2**20:.2f} MiB of matrices per device")
    print(f"{'mode':<11} {'bytes/device':>13} {'x matrix bytes':>15} {'median ms':>10} {'kept sharding':>14}")
    times = {}
    for mode in ("owner", "replicated"):
        orth = mo.parallel.sharded_orthogonalizer(mesh, "fsdp", mode=mode)
        fn = jax.jit(lambda ms: orth(newton_schulz, ms))
        moved = mo.parallel.collective_bytes(fn.lower(mats).compile())["total"]
        out = fn(mats)
        kept = all(o.sharding.is_equivalent_to(m.sharding, 3) for o, m in zip(out, mats))
        times[mode] = median_time(fn, mats, repeats=args.repeats)
        print(f"{mode:<11} {moved:>13,d} {moved / per_device:>15.2f} {1e3 * times[mode]:>10.2f} {str(kept):>14}")
    print(f"time ratio replicated / owner: {times['replicated'] / times['owner']:.2f}")


if __name__ == "__main__":
    main()

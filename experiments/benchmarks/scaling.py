"""Steps/s of the quickstart train step (Riemannian Adam) at 1, 2, 4 and 8 devices.

    python -m experiments.benchmarks.scaling [--batch_size 128]

Each device count runs in its own process (XLA_FLAGS forces that many host devices before
jax is imported); per count it times data parallel ("jit_sharded" mesh (n, 1)), FSDP
("jit_sharded" mesh (1, n)) and "pmap", next to the single-device "none" step, and prints
steps/s and the ratio to "none". On CPU the virtual devices share the same cores, so these
figures are a smoke check of the parallel paths, not a measure of scaling.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

DEVICE_COUNTS = (1, 2, 4, 8)


def measure(batch_size: int) -> dict:
    """steps/s per mode on all the devices of this process."""
    import jax

    from configs import quickstart as quickstart_config
    from experiments import harness, quickstart
    from experiments.benchmarks.timing import median_time
    import manifold_opt as mo

    n = jax.device_count()
    config = quickstart_config.get_config()
    config.batch_size = batch_size
    config = harness.resolve(config)
    params, loss_fn, tree, _ = quickstart.build(config)
    train, _ = quickstart.load_data(config)
    batch = quickstart.batch_fn(train, config.batch_size, config.seed)(0)
    optimizer = mo.riemannian_adam(config.learning_rate, tree)
    state = {"params": params, "opt_state": optimizer.init(params)}
    settings = {"none": ("none", (1, 1)), "data parallel": ("jit_sharded", (n, 1)),
                "fsdp": ("jit_sharded", (1, n)), "pmap": ("pmap", (n, 1))}
    rates = {}
    for name, (mode, mesh_shape) in settings.items():
        compiled = harness.compile_step(loss_fn, optimizer, mode, mesh_shape, state)
        placed, placed_batch = compiled.place_state(state), compiled.place_batch(batch)
        rates[name] = 1.0 / median_time(compiled.step, placed, placed_batch, warmup=3, repeats=50)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.batch_size)))
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(f"quickstart step (riemannian_adam, batch {args.batch_size}), steps/s; ratio = mode / none")
    print(f"{'devices':>7} {'none':>9} {'data parallel':>20} {'fsdp':>20} {'pmap':>20}")
    for count in DEVICE_COUNTS:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", PYTHONPATH=root)
        out = subprocess.run(
            [sys.executable, "-m", "experiments.benchmarks.scaling", "--child", "--batch_size", str(args.batch_size)],
            cwd=root, env=env, capture_output=True, text=True, check=True,
        )
        rates = json.loads(out.stdout.strip().splitlines()[-1])
        cells = [f"{rates[m]:9.1f} ({rates[m] / rates['none']:4.2f}x)" for m in ("data parallel", "fsdp", "pmap")]
        print(f"{count:>7} {rates['none']:>9.1f} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()

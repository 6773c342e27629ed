"""Keys every experiment config shares; experiment configs start from `base_config`."""
import ml_collections


def base_config(experiment: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = experiment
    c.seed = 0
    c.num_steps = 1000
    c.batch_size = 128
    c.log_every = 10
    c.checkpoint_every = 200  # 0: no periodic checkpoints (the final step is always saved)
    c.stop_after = 0  # >0: stop after this many steps, as if preempted (resume with --workdir)
    c.parallel = "none"  # "none" | "jit_sharded" | "pmap"
    c.mesh_shape = (1, -1)  # (data, fsdp) for jit_sharded; -1 = all remaining devices
    # Multi-host (jit_sharded only): every host runs the same command with distributed=True.
    c.distributed = False  # join jax.distributed (experiments/harness/distributed.py)
    c.coordinator_address = ""  # process 0's "host:port"; "" = $JAX_COORDINATOR_ADDRESS or auto-detect
    c.num_processes = 0  # 0 = $JAX_NUM_PROCESSES or auto-detect
    c.process_id = -1  # -1 = $JAX_PROCESS_ID or auto-detect
    c.quick = False  # apply quick_overrides: a variant finishing in well under a minute
    c.quick_overrides = ml_collections.ConfigDict()
    return c

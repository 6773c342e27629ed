"""Run an experiment from a config file:

    python -m experiments.run --config configs/<name>.py --workdir DIR [--config.key=value ...]

The workdir receives TensorBoard scalars, metrics.jsonl histories, summary.json, PNG plots
and orbax checkpoints; rerunning with the same workdir resumes from the last checkpoint.
On N hosts, run the same command on each with `--config.distributed=True` (and the
coordinator address, process count and id, unless the environment or cluster provides them).
"""
from __future__ import annotations

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and plots.", required=True)


def parse_flags(argv):
    """Parse flags; an unknown config key or an unparsable value exits naming the flag."""
    try:
        return flags.FLAGS(argv)
    except AttributeError as e:  # locked ConfigDict: unknown key
        key = str(e).strip("\"'")
        sys.exit(f"experiments.run: unknown config key {key!r} (in --config.{key}); see the config file for its keys")
    except flags.Error as e:
        sys.exit(f"experiments.run: {e}")


def explicit_config_keys(argv) -> set[str]:
    """Top-level config keys set on the command line (`--config.key=value` or `--config.key value`)."""
    return {a[len("--config."):].split("=")[0].split(".")[0] for a in argv if a.startswith("--config.")}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from experiments import harness, registry  # after flag parsing: config errors fail fast
    # Orbax reports every checkpoint step at INFO; keep the log to our progress and warnings.
    logging.get_absl_handler().addFilter(lambda r: "orbax" not in r.pathname or r.levelno >= std_logging.WARNING)
    try:
        config = harness.resolve(_CONFIG.value, explicit=explicit_config_keys(sys.argv))
        harness.check_common(config)
        harness.initialize_distributed(config)  # before anything touches a device
        experiment = registry.load(config.experiment)
        experiment.validate(config)
    except ValueError as e:
        sys.exit(f"experiments.run: {e}")
    try:
        metrics = experiment.run(config, _WORKDIR.value)
    except harness.Preempted as e:
        sys.exit(f"experiments.run: {e}")
    if not harness.is_main_process():
        return
    print("final metrics:")
    for key in sorted(metrics):
        value = metrics[key]
        print(f"  {key}: {value:.6g}" if isinstance(value, (int, float)) else f"  {key}: {value}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)

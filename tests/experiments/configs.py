"""Config helper for the experiment tests."""
from experiments import harness


def resolved(config_module, **values):
    """config_module.get_config() with `values` set, resolved (quick overrides) and locked."""
    config = config_module.get_config()
    for k, v in values.items():
        config[k] = v
    return harness.resolve(config)

"""The char-level LM experiment: the quick config sweeps, trains, and writes its table and plot."""
import glob
import json
import math
import os

import jax
import numpy as np
import pytest
from flax import nnx
from optax.contrib import MuonDimensionNumbers

from configs import char_lm as char_lm_config
from experiments import char_lm, harness, registry
from manifold_opt.transforms.matrix_params import matrix_labels


def config_with(**values):
    config = char_lm_config.get_config()
    for k, v in values.items():
        config[k] = v
    return harness.resolve(config)


def test_quick_run_sweeps_trains_and_writes_table_and_plot(tmp_path):
    config = config_with(quick=True)
    results = registry.get("char_lm")(config, str(tmp_path))
    names = config.optimizers
    with open(tmp_path / "results.json") as f:
        table = json.load(f)
    assert [row["optimizer"] for row in table["rows"]] == list(names)
    for row in table["rows"]:
        base = config.learning_rates[row["optimizer"]]
        swept = {float(lr): loss for lr, loss in row["sweep"].items()}
        assert len(swept) == len(config.sweep_factors) and all(map(math.isfinite, swept.values()))
        # the chosen rate is the sweep's best
        assert math.isclose(row["learning_rate"], min(swept, key=swept.get), rel_tol=1e-2)
        assert any(math.isclose(row["learning_rate"], base * f, rel_tol=1e-9) for f in config.sweep_factors)
    vocab_loss = math.log(256)
    for name in names:
        history = harness.read_history(str(tmp_path / name))
        val = [r["val/loss"] for r in history if "val/loss" in r]
        assert [r["step"] for r in history if "val/loss" in r] == list(range(10, config.num_steps + 1, 10))
        assert all(map(math.isfinite, val))
        assert val[-1] < val[0] < vocab_loss  # it learns, and beats a uniform guess
        assert results[f"{name}/val/loss"] == pytest.approx(val[-1])
    assert results["adamw/steps_to_adamw_loss"] == config.num_steps
    markdown = (tmp_path / "results.md").read_text()
    assert all(f"| {name} |" in markdown for name in names)
    with open(tmp_path / "val_loss.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(tmp_path / "summary.json")


def test_matrix_params_are_the_hidden_kernels_with_q_k_v_separate():
    abstract = nnx.eval_shape(lambda: char_lm.CharTransformer(50, 16, 32, 4, 1, 4, nnx.Rngs(0)))
    params = nnx.to_pure_dict(nnx.state(abstract))  # shapes only: nothing is compiled
    dims = char_lm.matrix_dimension_numbers(params)
    labels = matrix_labels(params, dims)
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(labels)}
    matrices = sorted(k for k, v in flat.items() if v == "matrix")
    assert matrices == sorted(f"['blocks'][0]['{m}']['kernel']" for m in ("qkv", "out", "fc1", "fc2"))
    qkv = dims["blocks"][0]["qkv"]["kernel"]
    assert isinstance(qkv, MuonDimensionNumbers) and qkv.output_axis == (2, 3)


def test_corpus_is_deterministic_stdlib_text():
    config = config_with(corpus_bytes=5000)
    train, val, vocab = char_lm.load_data(config)
    again = char_lm.load_data(config)
    assert len(train) + len(val) == 5000 and vocab == len(np.unique(np.concatenate([train, val])))
    np.testing.assert_array_equal(train, again[0])
    first = min(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    with open(first, "rb") as f:
        assert char_lm.stdlib_corpus(5000).startswith(f.read(1000))


def test_steps_to_reach():
    history = [{"step": 10, "val/loss": 3.0}, {"step": 20, "train/loss": 1.0}, {"step": 30, "val/loss": 2.0}]
    assert char_lm.steps_to_reach(history, "val/loss", 2.5) == 30
    assert char_lm.steps_to_reach(history, "val/loss", 1.0) is None


@pytest.mark.parametrize(
    "values, key",
    [
        (dict(optimizers=("muon",)), "config.optimizers"),
        (dict(optimizers=("adamw", "sgd")), "config.optimizers"),
        (dict(num_heads=3), "config.num_heads"),
        (dict(learning_rates=dict(adamw=3e-3, muon=-0.02, auon=0.08, hybrid_auon=0.02, normuon=0.02, conda=0.01,
                                  root=1e-3)), "config.learning_rates.muon"),
        (dict(sweep_factors=(1.0, -2.0)), "config.sweep_factors"),
        (dict(warmup_fraction=1.5), "config.warmup_fraction"),
        (dict(val_fraction=0.0), "config.val_fraction"),
    ],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        char_lm.validate(config_with(**values))


def test_too_short_corpus_names_corpus_bytes():
    with pytest.raises(ValueError, match="config.corpus_bytes"):
        char_lm.load_data(config_with(corpus_bytes=100))

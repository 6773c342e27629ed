"""The char-level LM experiment on the protocol: the quick config brackets each arm's learning
rate on the selection split, reruns the choice on paired seeds, scores steps to the target loss
on the report split and writes the protocol's results.json, the table and the plots."""
import glob
import inspect
import json
import math
import os

import jax
import numpy as np
import pytest
from flax import nnx
from optax.contrib import MuonDimensionNumbers

import manifold_opt as mo
from configs import char_lm as char_lm_config
from experiments import char_lm, harness, registry
from experiments.harness import protocol
from manifold_opt.transforms.matrix_params import matrix_labels
from tests.experiments.configs import resolved


def config_with(**values):
    return resolved(char_lm_config, **values)


def test_quick_run_writes_the_protocol_results(tmp_path):
    config = config_with(quick=True, arm_threads=2)  # the arms' runs fill the cache on two threads
    results = registry.get("char_lm")(config, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["arms"]) == list(config.optimizers)
    root = tmp_path / "protocol" / saved["config_hash"]
    for name, arm in saved["arms"].items():
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert arm["seeds"] == list(config.seeds)
        grid = arm["grid"]["learning_rate"]
        assert set(config.learning_rate_grids[name]) <= set(grid)
        # the choice is the best final selection-split loss among the rates tried
        best = min(arm["selection"], key=arm["selection"].get)
        assert best == protocol.settings_key(arm["chosen"])
        for metric in ("final_loss", "steps_to_target", "log_steps_to_target", "speedup_vs_adamw", "speedup_vs_muon"):
            assert {"mean", "std", "ci95"} <= set(arm["metrics"][metric])
        # the report metrics are the report-split curve of each paired seed's run
        for seed, final, steps in zip(config.seeds, arm["metrics"]["final_loss"]["values"],
                                      arm["metrics"]["steps_to_target"]["values"]):
            history = harness.read_history(str(root / name / protocol.settings_key(arm["chosen"]) / f"seed{seed}"))
            val = [r["val/loss"] for r in history if "val/loss" in r]
            assert [r["step"] for r in history if "val/loss" in r] == list(range(5, config.num_steps + 1, 5))
            assert final == pytest.approx(val[-1])
            assert val[-1] < math.log(256)  # it learns: better than a uniform guess over bytes
            assert (steps == pytest.approx(char_lm.steps_to_reach(history, "val/loss", config.target_loss))
                    or math.isnan(steps))
        assert results[f"{name}/final_loss"] == pytest.approx(arm["metrics"]["final_loss"]["mean"])
    adamw, muon = (np.asarray(saved["arms"][n]["metrics"]["steps_to_target"]["values"]) for n in ("adamw", "muon"))
    np.testing.assert_allclose(saved["arms"]["muon"]["metrics"]["speedup_vs_adamw"]["values"], adamw / muon)
    assert saved["arms"]["adamw"]["metrics"]["speedup_vs_adamw"]["values"] == [1.0] * len(config.seeds)
    assert [c["text"] for c in saved["claims"]] == list(config.claims)
    assert all(c["verdict"] in protocol.VERDICTS for c in saved["claims"])
    assert "| muon |" in (tmp_path / "results.md").read_text()
    for png in (char_lm.PLOT, char_lm.SELECTION_PLOT):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_selection_and_report_splits_are_disjoint_and_deterministic():
    config = config_with(corpus_bytes=5000)
    train, selection, report, vocab = char_lm.load_data(config)
    assert (len(selection), len(report)) == (int(5000 * config.selection_fraction), int(5000 * config.val_fraction))
    ids = np.concatenate([train, selection, report])
    assert len(ids) == 5000 and vocab == len(np.unique(ids))
    np.testing.assert_array_equal(ids, np.concatenate(char_lm.load_data(config)[:3]))
    raw = np.frombuffer(char_lm.stdlib_corpus(5000), np.uint8)
    np.testing.assert_array_equal(np.unique(raw)[ids], raw)  # contiguous, in order: no overlap
    first = min(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    with open(first, "rb") as f:
        assert char_lm.stdlib_corpus(5000).startswith(f.read(1000))


def test_every_arm_gets_the_same_weight_decay_and_embedding_rate():
    """One weight-decay policy: with decay on and a zero gradient, every arm shrinks every
    matrix and every non-matrix leaf the same way as AdamW does (decoupled, lr x wd). (MuonH
    keeps each matrix's norm, so decay has nothing to act on there.)"""
    config = config_with(weight_decay=0.1, adam_learning_rate=0.01, num_steps=10, warmup_fraction=0.0)
    params = {"blocks": [{"fc1": {"kernel": jax.random.normal(jax.random.key(0), (4, 6)), "bias": np.ones(6)}}],
              "embed": {"embedding": np.ones((5, 4))}}
    dims = {"blocks": [{"fc1": {"kernel": True, "bias": False}}], "embed": {"embedding": False}}
    zeros = jax.tree.map(np.zeros_like, params)
    for name in set(config.optimizers) - {"muonh"}:
        lr = 0.01  # the same peak for matrices and the AdamW branch: only decay moves the params
        optimizer = char_lm.make_optimizer(name, dims, config)(learning_rate=lr)
        _, state = optimizer.update(zeros, optimizer.init(params), params)  # step 0: warmup, rate 0
        updates, _ = optimizer.update(zeros, state, params)  # step 1: the peak rate
        expected = jax.tree.map(lambda p: -lr * 0.1 * p, params)
        jax.tree.map(lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-5, atol=1e-7), updates, expected)


def test_polar_express_and_hyperball_arms_use_their_options():
    assert "muon_pe" in char_lm.available_optimizers()
    assert ("muonh" in char_lm.available_optimizers()) == ("hyperball" in inspect.signature(mo.muon).parameters)
    config = char_lm_config.get_config()
    assert set(config.optimizers) >= {"adamw", "muon", "muon_pe", "normuon", "conda"}
    # each declared claim names configured arms only
    assert all(protocol.parse_claim(c).arms <= set(config.optimizers) for c in config.claims)
    assert any(c.startswith("conda < adamw on log_steps_to_target by 0.69") for c in config.claims)


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


def test_steps_to_reach_interpolates_between_evaluations():
    history = [{"step": 10, "val/loss": 3.0}, {"step": 20, "train/loss": 1.0}, {"step": 30, "val/loss": 2.0}]
    assert char_lm.steps_to_reach(history, "val/loss", 2.5) == pytest.approx(20.0)  # halfway from 10 to 30
    assert char_lm.steps_to_reach(history, "val/loss", 2.0) == pytest.approx(30.0)
    assert char_lm.steps_to_reach(history, "val/loss", 3.5) == 10.0  # reached at the first evaluation
    assert math.isnan(char_lm.steps_to_reach(history, "val/loss", 1.0))


@pytest.mark.parametrize(
    "values, key",
    [
        (dict(optimizers=("muon",)), "config.optimizers"),
        (dict(optimizers=("adamw", "muon", "sgd")), "config.optimizers"),
        (dict(num_heads=5), "config.num_heads"),
        (dict(optimizers=("adamw", "muon"), learning_rate_grids=dict(adamw=(1e-3, 2e-3), muon=(0.02, -0.04))),
         "config.learning_rate_grids.muon"),
        (dict(optimizers=("adamw", "muon"), learning_rate_grids=dict(adamw=(1e-3, 2e-3), muon=(0.02,))),
         "config.learning_rate_grids.muon"),
        (dict(optimizers=("adamw", "muon", "conda"), learning_rate_grids=dict(adamw=(1e-3, 2e-3), muon=(0.02, 0.04))),
         "config.learning_rate_grids"),
        (dict(warmup_fraction=1.5), "config.warmup_fraction"),
        (dict(val_fraction=0.0), "config.val_fraction"),
        (dict(selection_fraction=0.7), "config.selection_fraction"),
        (dict(target_loss=0.0), "config.target_loss"),
        (dict(weight_decay=-1.0), "config.weight_decay"),
    ],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        char_lm.validate(config_with(**values))


def test_too_short_corpus_names_corpus_bytes():
    with pytest.raises(ValueError, match="config.corpus_bytes"):
        char_lm.load_data(config_with(corpus_bytes=100))

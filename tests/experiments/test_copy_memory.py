"""The copy_memory experiment: the task and the memoryless score against hand computations, the
RNN against a slow NumPy loop, the quick run writes the protocol's results and a PNG, and bad
config values name their key."""
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from configs import copy_memory as copy_config
from experiments import copy_memory, registry
from tests.experiments.configs import resolved


def test_batches_hold_symbols_delimiter_and_delayed_targets():
    config = resolved(copy_config, delay=7, copy_length=3, symbols=5)
    inputs, targets = copy_memory.batches(config, 4, 0, 2, 6)
    assert inputs.shape == targets.shape == (2, 6, 7 + 2 * 3)
    symbols = inputs[..., :3]
    assert symbols.min() >= 1 and symbols.max() <= 5
    expected_inputs = np.zeros_like(inputs)
    expected_inputs[..., :3], expected_inputs[..., 9] = symbols, 6  # delimiter at T + K - 1
    np.testing.assert_array_equal(inputs, expected_inputs)
    expected_targets = np.zeros_like(targets)
    expected_targets[..., -3:] = symbols
    np.testing.assert_array_equal(targets, expected_targets)
    # streams differ by seed and split, and repeat exactly
    np.testing.assert_array_equal(inputs, copy_memory.batches(config, 4, 0, 2, 6)[0])
    assert not np.array_equal(inputs, copy_memory.batches(config, 4, 1, 2, 6)[0])
    assert not np.array_equal(inputs, copy_memory.batches(config, 5, 0, 2, 6)[0])


def test_memoryless_scores_equal_the_blank_then_uniform_predictor():
    """The closed form K ln A / (T + 2K) against `scores` of the predictor that outputs blank
    with certainty, then uniform probabilities over the A symbols."""
    config = resolved(copy_config, delay=11, copy_length=4, symbols=6)
    _, targets = copy_memory.batches(config, 0, 2, 1, 32)
    length, big = copy_memory.sequence_length(config), 1e4
    logits = np.full((32, length, 7), -big)
    logits[:, :-4, 0] = 0.0
    logits[:, -4:, 1:] = 0.0
    logits[:, -4:, 0] = -big
    got = copy_memory.scores(jnp.asarray(logits), jnp.asarray(targets[0]), 4)
    assert float(got["loss"]) == pytest.approx(copy_memory.memoryless(config)["loss"], rel=1e-12)
    assert copy_memory.memoryless(config)["loss"] == pytest.approx(4 * math.log(6) / 19)


def test_rnn_matches_a_numpy_loop_and_starts_orthogonal():
    config = resolved(copy_config, delay=5, copy_length=2, symbols=3, hidden=6, dtype="float64")
    params = copy_memory.init_rnn(config, 1)
    w = np.asarray(params["recurrent"])
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-12)
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in params.items()}
    inputs, _ = copy_memory.batches(config, 0, 0, 1, 3)
    got = copy_memory.rnn_logits(params, jnp.asarray(inputs[0]))
    p = {k: np.asarray(v) for k, v in params.items()}
    for b in range(3):
        h = np.zeros(6)
        for t, token in enumerate(inputs[0, b]):
            z = h @ p["recurrent"] + p["input"][token]
            h = np.sign(z) * np.maximum(np.abs(z) + p["bias"], 0.0)
            np.testing.assert_allclose(got[b, t], h @ p["readout"] + p["readout_bias"], rtol=1e-10, atol=1e-12)


def test_steps_to_threshold_counts_evaluations_and_marks_never():
    config = resolved(copy_config, num_steps=100, eval_every=20)
    assert copy_memory.steps_to([0.5, 0.3, 0.1, 0.05, 0.2], 0.1, config) == 60
    assert copy_memory.steps_to([0.5, 0.3, 0.2, 0.15, 0.2], 0.1, config) == 120  # never: past the budget


def test_quick_run_writes_protocol_results_and_plot(tmp_path):
    config = resolved(copy_config, quick=True)
    summary = registry.get("copy_memory")(config, str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["arms"]) == {*config.arms, copy_memory.REFERENCE}
    for name in config.arms:
        arm = results["arms"][name]
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert arm["chosen"]["learning_rate"] in arm["grid"]["learning_rate"]
        assert arm["seeds"] == list(config.seeds)
        for metric in ("loss", "accuracy", "steps_to_half"):
            assert {"mean", "std", "ci95"} <= set(arm["metrics"][metric])
            assert np.all(np.isfinite(arm["metrics"][metric]["values"]))
    assert [c["text"] for c in results["claims"]] == list(config.claims)
    for claim in results["claims"]:
        assert claim["verdict"] in ("agrees", "disagrees", "inconclusive") and len(claim["difference_ci95"]) == 2
    assert summary["orthogonal_rnn/orthogonality"] < 1e-5  # riemannian_adam keeps W on O(n)
    assert summary["rnn_adamw/orthogonality"] > 1e-3  # adamw lets it drift
    assert summary["memoryless/loss"] == pytest.approx(copy_memory.memoryless(config)["loss"])
    assert results["runtime_seconds"] > 0 and results["cpu_seconds"] > 0
    assert (tmp_path / "copy_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = list(tmp_path.glob(f"protocol/*/*/*/seed0/{copy_memory.CURVE_FILE}"))
    assert curves and all(np.load(c).dtype == np.float32 for c in curves)  # float32 training under x64


@pytest.mark.parametrize(
    "values, key",
    [(dict(arms=("orthogonal_rnn", "gru")), "config.arms"), (dict(arms=()), "config.arms"),
     (dict(hidden=7), "config.hidden"), (dict(delay=0), "config.delay"),
     (dict(learning_rates=(1e-3,)), "config.learning_rates"), (dict(learning_rates=(1e-3, -1.0)), "config.learning_rates"),
     (dict(clip_norm=-1.0), "config.clip_norm"), (dict(num_steps=100, eval_every=30), "config.eval_every"), (dict(dtype="bfloat16"), "config.dtype"),
     (dict(parallel="pmap"), "config.parallel"), (dict(seeds=()), "config.seeds"),
     (dict(claims=("orthogonal_rnn > gru on accuracy",)), "config.claims")],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key):
        copy_memory.validate(resolved(copy_config, **values))


"""The merging experiment on the protocol: the quick variant writes the protocol's results.json,
its caches never return numbers for another config, and its pool construction is what it says."""
import json

import jax
import numpy as np
import pytest

from configs import merging as merging_config
from experiments import harness, merging
from experiments.harness import protocol


def quick_config(**values):
    config = merging_config.get_config()
    config.quick = True
    config.update(values)
    return harness.resolve(config, explicit=set(values))  # as on the command line: explicit keys win


def test_quick_run_writes_protocol_results_and_caches_by_config_hash(tmp_path, monkeypatch):
    config = quick_config()
    calls = []
    real_merge = merging.merge
    monkeypatch.setattr(merging, "merge", lambda method, *a: calls.append(method) or real_merge(method, *a))
    summary = merging.run(config, str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config_hash"] == protocol.config_hash(config)
    expected_arms = {f"{m}@{n}" for m in config.methods for n in config.pool_sizes}
    assert set(results["arms"]) == expected_arms
    for name, arm in results["arms"].items():
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert arm["seeds"] == list(config.seeds)
        for metric in ["accuracy"] + [f"accuracy/{t}" for t in merging.TARGETS]:
            assert {"mean", "std", "ci95"} <= set(arm["metrics"][metric])
        assert 0.0 <= arm["metrics"]["accuracy"]["mean"] <= 1.0
        assert summary[f"{name}/accuracy"] == arm["metrics"]["accuracy"]["mean"]
        if name.startswith(("ta@", "regmean@")):  # tuned: chosen from the (possibly extended) grid
            key = next(iter(arm["grid"]))
            assert arm["chosen"][key] in arm["grid"][key]
    assert [c["text"] for c in results["claims"]] == list(config.claims)
    for claim in results["claims"]:
        assert claim["verdict"] in protocol.VERDICTS and len(claim["difference_ci95"]) == 2
    # FW-Merging actually iterates (an LMO step, a gap and a proxy loss per iteration) and says what it picked:
    # hard one candidate per leaf (layer-wise LMO, 4 leaves) per iteration, soft one per target task and iteration
    names = {spec[1] for spec in merging.CANDIDATES}
    assert config.fw_granularity == "layer"
    for seed in map(str, config.seeds):
        for arm, iterations, picks in (("fw_hard@8", config.fw_iterations, 4),
                                       ("fw_soft@8", config.soft_iterations, len(merging.TARGETS))):
            fw = results["fw"][arm][seed]
            assert fw["iterations"] == iterations == len(fw["gaps"]) == len(fw["proxy_losses"]) - 1
            assert [len(row) for row in fw["picked"]] == [picks] * iterations
            assert {p for row in fw["picked"] for p in row} <= names
            assert all(np.isfinite(fw["gaps"])) and all(np.isfinite(fw["proxy_losses"]))
    # merged from the pool: the pretrained row equals the pretrained body at every pool size; FW-soft at 4
    # candidates picks among the 4 experts
    assert results["arms"]["pretrained@4"]["metrics"] == results["arms"]["pretrained@8"]["metrics"]
    assert results["arms"]["fw_soft@4"]["metrics"]["relevant_picks"]["mean"] == 1.0
    with open(tmp_path / merging.PLOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / harness.RESULTS_MD).read_text()
    assert "| fw_soft@8 |" in text and "| ta | " in text and "picked" in text

    # an identical rerun merges nothing and returns the same numbers
    n = len(calls)
    assert merging.run(config, str(tmp_path)) == summary and len(calls) == n
    # a changed hyperparameter (fine-tuning length) gets its own hash: a new pool, new merges, new numbers
    changed = quick_config(finetune_steps=40, methods=("pretrained", "ta"),
                           claims=("ta@8 - ta@4 > pretrained@8 - pretrained@4 on accuracy",))
    assert protocol.config_hash(changed) != results["config_hash"]
    other = merging.run(changed, str(tmp_path))
    assert len(calls) > n
    pools = sorted((tmp_path / "protocol").glob("*/pools/seed0.npz"))
    assert len(pools) == 2
    with np.load(pools[0]) as a, np.load(pools[1]) as b:
        key = next(k for k in a.files if "pool" in k)
        assert not np.allclose(a[key], b[key])
    assert other["ta@8/accuracy"] != summary["ta@8/accuracy"]


def test_distractors_are_rescaled_to_the_experts_norm():
    rng = np.random.default_rng(0)
    pre = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
    stacked = {k: v + rng.normal(size=(6,) + v.shape) * rng.uniform(0.5, 3.0, size=(6,) + (1,) * v.ndim)
               for k, v in pre.items()}
    out = merging.rescale_to_experts(pre, stacked, 2)
    for k in pre:
        tau = (stacked[k] - pre[k]).reshape(6, -1)
        new = (out[k] - pre[k]).reshape(6, -1)
        np.testing.assert_allclose(new[:2], tau[:2], rtol=1e-12)  # experts unchanged
        target = np.linalg.norm(tau[:2], axis=1).mean()
        np.testing.assert_allclose(np.linalg.norm(new[2:], axis=1), target, rtol=1e-12)
        cos = np.sum(new * tau, 1) / np.linalg.norm(new, axis=1) / np.linalg.norm(tau, axis=1)
        np.testing.assert_allclose(cos, 1.0, rtol=1e-12)  # direction kept


def test_input_grams_match_numpy():
    body, _ = merging.init_params(jax.random.key(1), 6, np.float64)
    x = np.random.default_rng(2).normal(size=(20, 64))
    grams = merging.input_grams(body, x)
    w, b = np.asarray(body["layer1"]["kernel"]), np.asarray(body["layer1"]["bias"])
    h = np.asarray(jax.nn.gelu(x @ w + b))
    np.testing.assert_allclose(grams["layer1"]["kernel"], x.T @ x / 20, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grams["layer2"]["kernel"], h.T @ h / 20, rtol=1e-10, atol=1e-14)
    assert grams["layer1"]["bias"] is None


def test_candidate_data_kinds():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 64)).astype(np.float32), rng.integers(0, 10, 40)
    spec = dict((s[1], s) for s in merging.CANDIDATES)
    xs, ys = merging.candidate_data(spec["mix:rotate90|rotate180"], x, y, 0, 4)
    np.testing.assert_array_equal(xs[:20], merging.transform("rotate90", x[:20], 0))
    np.testing.assert_array_equal(xs[20:], merging.transform("rotate180", x[20:], 0))
    np.testing.assert_array_equal(ys, y)
    xs, ys = merging.candidate_data(spec["shifted:invert"], x, y, 0, 7)
    np.testing.assert_array_equal(xs, -x)
    np.testing.assert_array_equal(ys, (y + 1) % 10)
    _, ys = merging.candidate_data(spec["shuffled:plain"], x, y, 0, 3)
    assert sorted(ys) == sorted(y) and not np.array_equal(ys, y)
    near, exact = merging._permutation(0, True), merging._permutation(0, False)
    assert 40 <= np.sum(near == exact) < 64 and sorted(near) == list(range(64))
    np.testing.assert_array_equal(merging.transform("invert+half", x, 0), -0.5 * x)
    assert len(merging.CANDIDATES) == merging.MAX_POOL == 32
    assert [s[0] for s in merging.CANDIDATES[:4]] == ["expert"] * 4


@pytest.mark.parametrize(
    "values, key",
    [(dict(pool_sizes=(2,)), "config.pool_sizes"), (dict(methods=("soup",)), "config.methods"),
     (dict(methods=("tsv",)), "config.grids"), (dict(test_fraction=1.5), "config.test_fraction"),
     (dict(fw_granularity="row"), "config.fw_granularity"), (dict(fw_relevance="norm"), "config.fw_relevance")],
)
def test_validate_names_the_bad_key(values, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        merging.validate(quick_config(**values))

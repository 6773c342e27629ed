"""The fair-comparison protocol: grid edges, intervals, verdicts, budgets, config hashing."""
import json
import math

import ml_collections
import numpy as np
import pytest
from scipy import stats

from experiments.harness import protocol


def make_config(**overrides):
    c = ml_collections.ConfigDict({"experiment": "synthetic", "scale": 1.0})
    protocol.add_config_keys(c, seeds=(0, 1, 2, 3, 4), selection_seeds=(0, 1))
    for k, v in overrides.items():
        c[k] = v
    return c


def quadratic_runner(optimum_lr, calls=None, noise=0.0):
    """Selection loss (log10 lr - log10 optimum)^2 (+ seeded noise); report accuracy = -loss."""
    def run_one(arm, settings, seed, rundir):
        if calls is not None:
            calls.append((arm, settings["lr"], seed))
        rng = np.random.default_rng(seed)
        loss = (math.log10(settings["lr"]) - math.log10(optimum_lr[arm])) ** 2 + noise * rng.standard_normal()
        return {"selection": {"loss": loss}, "report": {"loss": loss, "accuracy": -loss}}
    return run_one


def test_edge_extends_log_spaced_until_interior(tmp_path):
    arms = {"a": protocol.Arm(grid={"lr": [1e-3, 1e-2, 1e-1]})}
    config = make_config(max_grid_extensions=3)
    results = protocol.compare(config, arms, quadratic_runner({"a": 10.0}), select_on="loss", minimize=True,
                               workdir=str(tmp_path))
    arm = results["arms"]["a"]
    np.testing.assert_allclose(arm["grid"]["lr"], [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    assert arm["chosen"] == {"lr": pytest.approx(10.0)}
    assert arm["at_edge"] == []
    assert arm["evaluations"] == 6


def test_edge_reported_when_extensions_run_out(tmp_path):
    arms = {"a": protocol.Arm(grid={"lr": [1e-3, 1e-2, 1e-1]})}
    results = protocol.compare(make_config(max_grid_extensions=1), arms, quadratic_runner({"a": 10.0}),
                               select_on="loss", minimize=True, workdir=str(tmp_path))
    assert results["arms"]["a"]["chosen"]["lr"] == pytest.approx(1.0)
    assert results["arms"]["a"]["at_edge"] == ["lr"]
    # downward too
    results = protocol.compare(make_config(max_grid_extensions=1), arms, quadratic_runner({"a": 1e-6}),
                               select_on="loss", minimize=True, workdir=str(tmp_path / "low"))
    assert results["arms"]["a"]["chosen"]["lr"] == pytest.approx(1e-4)
    assert results["arms"]["a"]["at_edge"] == ["lr"]


def test_domain_bound_is_not_an_edge(tmp_path):
    """A best value at the bound of the hyperparameter's domain is an answer, not a bad grid."""
    arms = {"a": protocol.Arm(grid={"lr": [0.25, 0.5, 1.0]}, bounds={"lr": (0.0, 1.0)})}
    results = protocol.compare(make_config(), arms, quadratic_runner({"a": 3.0}), select_on="loss",
                               minimize=True, workdir=str(tmp_path))
    assert results["arms"]["a"]["chosen"]["lr"] == 1.0
    assert results["arms"]["a"]["at_edge"] == []


def test_interval_matches_scipy():
    x = np.random.default_rng(3).normal(0.4, 1.3, size=7)
    got = protocol.interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose(got["ci95"], [lo, hi], rtol=1e-12)
    np.testing.assert_allclose(got["std"], np.std(x, ddof=1), rtol=1e-12)


def test_paired_difference_matches_scipy_ttest_rel():
    rng = np.random.default_rng(4)
    a = rng.normal(size=6)
    b = a - 0.3 + 0.1 * rng.normal(size=6)
    claim = protocol.parse_claim("A > B on m")
    judged = protocol.judge(claim, {"A": {"m": a}, "B": {"m": b}})
    res = stats.ttest_rel(a, b)
    lo, hi = res.confidence_interval(0.95)
    np.testing.assert_allclose(judged["difference_ci95"], [lo, hi], rtol=1e-10)


@pytest.mark.parametrize("shift, noise, delta, expected", [
    (1.0, 0.05, 0.0, "agrees"),
    (-1.0, 0.05, 0.0, "disagrees"),
    (0.0, 1.0, 0.0, "inconclusive"),
    (0.5, 0.05, 1.0, "disagrees"),  # better, but not by the claimed margin
])
def test_verdicts_on_known_answers(shift, noise, delta, expected):
    base = np.random.default_rng(0).normal(size=8)
    a = base + shift + noise * np.array([1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5])  # paired diffs: mean = shift
    claim = protocol.parse_claim(f"A > B on acc by {delta}")
    assert protocol.judge(claim, {"A": {"acc": a}, "B": {"acc": base}})["verdict"] == expected
    # "lower is better" flips the sign
    claim = protocol.parse_claim(f"A < B on acc by {delta}")
    flipped = protocol.judge(claim, {"A": {"acc": -a}, "B": {"acc": -base}})["verdict"]
    assert flipped == expected


def test_contrast_claim_degrades_less():
    rng = np.random.default_rng(1)
    base = rng.normal(size=6)
    values = {
        "fw@4": {"acc": base + 0.8}, "fw@32": {"acc": base + 0.7},  # drops 0.1
        "ta@4": {"acc": base + 0.9}, "ta@32": {"acc": base + 0.2 + 0.01 * rng.normal(size=6)},  # drops 0.7
    }
    claim = protocol.parse_claim("fw@32 - fw@4 > ta@32 - ta@4 on acc")
    judged = protocol.judge(claim, values)
    assert judged["verdict"] == "agrees"
    assert judged["difference_mean"] == pytest.approx(0.6, abs=0.02)


def test_compare_verdicts_and_fields(tmp_path):
    arms = {"good": protocol.Arm(grid={"lr": [1e-2, 1e-1, 1.0]}), "bad": protocol.Arm(grid={"lr": [1e-2, 1e-1, 1.0]}),
            "ref": protocol.Arm()}

    def run_one(arm, settings, seed, rundir):
        rng = np.random.default_rng([seed, len(arm)])  # arm-specific noise around a paired seed
        skill = {"good": 0.9, "bad": 0.6, "ref": 0.5}[arm]
        acc = skill - (math.log10(settings.get("lr", 0.1)) + 1) ** 2 + 0.01 * rng.standard_normal()
        return {"selection": {"acc": acc}, "report": {"acc": acc}}

    config = make_config(claims=("good > bad on acc by 0.1", "bad > good on acc", "good > ref on acc by 0.4"))
    results = protocol.compare(config, arms, run_one, select_on="acc", minimize=False, workdir=str(tmp_path))
    assert [c["verdict"] for c in results["claims"]] == ["agrees", "disagrees", "inconclusive"]
    for arm in results["arms"].values():
        assert {"grid", "chosen", "at_edge", "seeds", "metrics"} <= set(arm)
        assert {"mean", "std", "ci95"} <= set(arm["metrics"]["acc"])
        assert arm["seeds"] == [0, 1, 2, 3, 4]
    assert results["arms"]["good"]["chosen"] == {"lr": pytest.approx(0.1)}
    protocol.write(str(tmp_path), results, title="synthetic")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"][0]["verdict"] == "agrees"
    assert "**agrees**" in (tmp_path / "results.md").read_text()


def test_changed_config_reruns_identical_config_resumes(tmp_path):
    arms = {"a": protocol.Arm(grid={"lr": [0.1, 1.0, 10.0]})}
    calls = []
    runner = quadratic_runner({"a": 1.0}, calls)
    first = protocol.compare(make_config(), arms, runner, select_on="loss", minimize=True, workdir=str(tmp_path))
    n = len(calls)
    assert n == 3 * 2 + 5 - 2  # grid x selection seeds, plus the report seeds not already run
    again = protocol.compare(make_config(), arms, runner, select_on="loss", minimize=True, workdir=str(tmp_path))
    assert len(calls) == n and again == first
    relabelled = make_config(claims=("a > a on loss",))  # claims do not change runs
    protocol.compare(relabelled, arms, runner, select_on="loss", minimize=True, workdir=str(tmp_path))
    assert len(calls) == n
    changed = make_config(scale=2.0)
    assert protocol.config_hash(changed) != protocol.config_hash(make_config())
    protocol.compare(changed, arms, runner, select_on="loss", minimize=True, workdir=str(tmp_path))
    assert len(calls) == 2 * n


@pytest.mark.parametrize("claims, match", [
    (("a beats b",), "cannot read"),
    (("a > zzz on loss",), "unknown arms"),
    (("a > b + on loss",), "cannot read the side"),
    (("a > b on loss by much",), "not a number"),
])
def test_bad_claims_name_the_key(claims, match):
    arms = {"a": protocol.Arm(grid={"lr": [1.0, 2.0]}), "b": protocol.Arm(grid={"lr": [1.0, 2.0]})}
    with pytest.raises(ValueError, match=f"config.claims.*{match}|{match}"):
        protocol.check_config(make_config(claims=claims), arms)


def test_unequal_budget_rejected():
    arms = {"a": protocol.Arm(grid={"lr": [1.0, 2.0, 3.0]}), "b": protocol.Arm(grid={"lr": [1.0, 2.0]})}
    with pytest.raises(ValueError, match="same grid budget"):
        protocol.check_config(make_config(), arms)


def test_bad_seeds_rejected():
    with pytest.raises(ValueError, match="config.seeds"):
        protocol.check_config(make_config(seeds=()), {})
    with pytest.raises(ValueError, match="config.max_grid_extensions"):
        protocol.check_config(make_config(max_grid_extensions=-1), {})

"""experiments/benchmarks/run_all.py runs every benchmark: none is left out of the one command."""
import pathlib

from experiments.benchmarks import run_all

BENCHMARKS = pathlib.Path(run_all.__file__).parent


def test_run_all_lists_every_benchmark():
    modules = {p.stem for p in BENCHMARKS.glob("*.py")} - {"__init__", "timing", "run_all"}
    assert set(run_all.BENCHMARKS) == modules


def test_report_is_one_table_then_outputs():
    results = [{"name": "x", "command": "python -m experiments.benchmarks.x", "seconds": 1.5, "status": "ok",
                "ratios": ["ratio ours/theirs: 0.5 | a"], "output": "ratio ours/theirs: 0.5 | a\n"}]
    text = run_all.report(results, "1 cpu")
    assert text.splitlines()[2] == "| benchmark | seconds | status | ratio lines |"
    assert "| `python -m experiments.benchmarks.x` | 2 | ok | ratio ours/theirs: 0.5 \\| a |" in text
    assert "## x" in text and "```" in text

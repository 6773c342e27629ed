"""experiments/tables.py: README blocks between results markers are regenerated from results.json
(command, runtime, the protocol's table); the rest of the README and blocks without results stay."""
import json

import pytest

from experiments import tables
from experiments.harness import protocol

README = """# title
intro text
<!-- results:alpha -->
old alpha table
<!-- /results:alpha -->
middle text
<!-- results:beta -->
old beta table
<!-- /results:beta -->
end
"""


def alpha_results():
    values = {"a": {"acc": [0.9, 0.8, 0.85]}, "b": {"acc": [0.5, 0.6, 0.55]}}
    arms = {
        name: {"grid": {"lr": [0.1, 1.0]}, "chosen": {"lr": 0.1}, "at_edge": [], "seeds": [0, 1, 2],
               "metrics": {"acc": {**protocol.interval(v["acc"]), "values": v["acc"]}}}
        for name, v in values.items()
    }
    claim = protocol.judge(protocol.parse_claim("a > b on acc"), values)
    return {"config_hash": "x", "select_on": "loss", "minimize": True, "arms": arms, "claims": [claim],
            "runtime_seconds": 12.3, "cpu_seconds": 20.4, "cpus": 2}


def test_regenerate_replaces_blocks_with_results_and_keeps_the_rest(tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "results.json").write_text(json.dumps(alpha_results()))
    text, updated, missing = tables.regenerate(README, str(tmp_path))
    assert (updated, missing) == (["alpha"], ["beta"])
    assert "old alpha table" not in text and "old beta table" in text
    assert text.startswith("# title\nintro text\n<!-- results:alpha -->\n`python -m experiments.run")
    assert "--config configs/alpha.py --workdir /tmp/alpha` (12 s, 20 s CPU time on 2 CPU cores)" in text
    assert "| a > b on acc | 0.3 [" in text and "**agrees** |" in text
    assert "| a | lr=0.1 | no | 0.85 ± " in text
    assert text.split("<!-- /results:alpha -->")[1] == README.split("<!-- /results:alpha -->")[1]
    assert tables.regenerate(text, str(tmp_path))[0] == text  # idempotent
    (tmp_path / "alpha" / "run.md").write_text("`the exact command` (5 s); chosen after seeing results: nothing\n")
    noted = tables.regenerate(README, str(tmp_path))[0]
    assert "<!-- results:alpha -->\n`the exact command` (5 s); chosen after seeing results: nothing\n\n" in noted


def test_main_rewrites_the_readme_file(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "results.json").write_text(json.dumps(alpha_results()))
    assert tables.main(["--readme", str(readme), "--results", str(tmp_path)]) == 0
    assert "**agrees**" in readme.read_text()
    assert "updated: alpha" in capsys.readouterr().out


def test_results_without_protocol_fields_are_an_error(tmp_path):
    (tmp_path / "alpha").mkdir()
    (tmp_path / "alpha" / "results.json").write_text(json.dumps({"rows": {}}))
    with pytest.raises(ValueError, match="alpha.*protocol fields"):
        tables.regenerate(README, str(tmp_path))

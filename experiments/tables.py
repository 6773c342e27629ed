"""Regenerate the README's result tables from the experiments' results.json files:

    python -m experiments.tables [--readme README.md] [--results docs/results]

Every block `<!-- results:NAME -->` ... `<!-- /results:NAME -->` in the README is replaced by the
stored full run's note (RESULTS/NAME/run.md: the exact command, its runtime, anything chosen after
seeing results), or else the command that produces NAME's results (`python -m experiments.run
--config configs/NAME.py --workdir /tmp/NAME`) with the time that run recorded, and the protocol's
table of RESULTS/NAME/results.json (arms, chosen settings, intervals, computed verdicts). A block
whose results.json is missing is left as it is and reported. No table in the README is typed by
hand; docs/results/NAME/ holds a full run's results.json, run.md and figures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from experiments.harness import protocol
from experiments.harness.metrics import RESULTS_JSON

BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.-]+) -->\n)(.*?)(<!-- /results:(?P=name) -->)", re.S)


def command(name: str) -> str:
    return f"python -m experiments.run --config configs/{name}.py --workdir /tmp/{name}"


def block(name: str, results: dict, results_dir: str) -> str:
    """The generated content of NAME's block: the command, its runtime, the protocol table."""
    if "arms" not in results or "claims" not in results:
        raise ValueError(f"experiments.tables: {name}'s {RESULTS_JSON} has no protocol fields ('arms', 'claims')")
    note = os.path.join(results_dir, name, "run.md")
    if os.path.exists(note):
        with open(note) as f:
            return f.read().strip() + "\n\n" + protocol.markdown(results)
    line = f"`{command(name)}`"
    if "runtime_seconds" in results:
        cpu = f", {results['cpu_seconds']:.0f} s CPU time" if "cpu_seconds" in results else ""
        cores = f" on {results['cpus']} CPU cores" if "cpus" in results else ""
        line += f" ({results['runtime_seconds']:.0f} s{cpu}{cores})"
    return line + "\n\n" + protocol.markdown(results)


def regenerate(readme: str, results_dir: str) -> tuple[str, list[str], list[str]]:
    """(new README text, names updated, names whose results.json is missing)."""
    updated, missing = [], []

    def replace(match):
        name = match["name"]
        path = os.path.join(results_dir, name, RESULTS_JSON)
        if not os.path.exists(path):
            missing.append(name)
            return match[0]
        with open(path) as f:
            updated.append(name)
            return match[1] + block(name, json.load(f), results_dir) + match[4]

    return BLOCK.sub(replace, readme), updated, missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--results", default="docs/results", help="directory holding NAME/results.json per experiment")
    args = parser.parse_args(argv)
    with open(args.readme) as f:
        text, updated, missing = regenerate(f.read(), args.results)
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"updated: {', '.join(updated) or 'none'}")
    if missing:
        print(f"no {RESULTS_JSON} (left as is): {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

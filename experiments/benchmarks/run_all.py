"""Every benchmark in one command, for the day a GPU (or a bigger machine) is lent:

    python -m experiments.benchmarks.run_all [--out benchmarks.md] [--quick] [--only NAME,...]

Runs each benchmark module below in its own process (so each sees a fresh JAX and its own
device-count flags), with the arguments listed for the full or the `--quick` run, and writes one
Markdown file: a table of every benchmark (command, seconds, exit status, the ratio lines it
printed) followed by each benchmark's full output. Nothing is typed by hand: every number in the
file is what a benchmark printed in this run. Benchmarks needing an optional package
(`pip install ".[bench]"`: Pymanopt) report their import error and the run goes on.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

# name -> (arguments of the full run, arguments of the quick run)
BENCHMARKS = {
    "orthogonalize": ([], ["--d-model", "128", "--repeats", "1"]),
    "sharded_orthogonalize": (["--d-model", "1024", "--layers", "16"], ["--d-model", "64", "--repeats", "1"]),
    "gram_newton_schulz": ([], ["--m", "64", "--repeats", "1"]),
    "retractions": ([], []),
    "orthogonal_dense": ([], ["--quick"]),
    "orthogonal_gradient": ([], ["--quick"]),
    "solvers_vs_pymanopt": ([], ["--quick"]),
    "solvers_tight_tolerance": ([], ["--n", "100", "--p", "5"]),
    "frank_wolfe": ([], ["--simplex-n", "1000", "--completion-n", "50", "--birkhoff-n", "20", "--max-iterations", "50"]),
    "hyperconnections": ([], ["--quick", "--repeats", "1"]),
    "merging": ([], ["--quick"]),
    "rebasin": ([], []),
    "scaling": ([], ["--batch_size", "32"]),
}
RATIO = re.compile(r"ratio|speed-?up|\bx\b|×", re.I)


def run(name: str, args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", f"experiments.benchmarks.{name}", *args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
        output, status = proc.stdout + proc.stderr[-4000:], "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired as e:
        output, status = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    seconds = time.perf_counter() - start
    ratios = [line.strip() for line in output.splitlines() if RATIO.search(line)][:6]
    return {"name": name, "command": " ".join(["python", "-m", f"experiments.benchmarks.{name}", *args]),
            "seconds": seconds, "status": status, "ratios": ratios, "output": output}


def report(results: list[dict], device: str) -> str:
    lines = [f"# Benchmarks ({device})", "", "| benchmark | seconds | status | ratio lines |", "|---|---|---|---|"]
    for r in results:
        ratios = "<br>".join(x.replace("|", "\\|") for x in r["ratios"]) or "-"
        lines.append(f"| `{r['command']}` | {r['seconds']:.0f} | {r['status']} | {ratios} |")
    for r in results:
        lines += ["", f"## {r['name']}", "", f"`{r['command']}` ({r['status']}, {r['seconds']:.0f} s)", "", "```",
                  r["output"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(BENCHMARKS)}")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown benchmarks {unknown}; expected some of {list(BENCHMARKS)}")
    device = subprocess.run([sys.executable, "-c", "import jax; d = jax.devices(); print(len(d), d[0].device_kind)"],
                            capture_output=True, text=True).stdout.strip() or "unknown device"
    results = []
    for name in names:
        full, quick = BENCHMARKS[name]
        print(f"[run_all] {name} ...", flush=True)
        results.append(run(name, quick if args.quick else full, args.timeout))
        print(f"[run_all] {name}: {results[-1]['status']} in {results[-1]['seconds']:.0f} s", flush=True)
    with open(args.out, "w") as f:
        f.write(report(results, device))
    print(f"[run_all] wrote {args.out}")


if __name__ == "__main__":
    main()

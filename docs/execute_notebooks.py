"""Execute notebooks/*.ipynb (as the test suite runs them: CPU, quick sizes, the inline backend) and
store the executed copies with their outputs and figures in docs/notebooks/, which the
documentation site renders. Run from the repository root after changing a notebook:

    python docs/execute_notebooks.py [NAME.ipynb ...]

tests/docs/test_docs.py checks that the stored copies' code cells equal the sources'.
"""
import os
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


def execute(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the inline backend: figures as outputs
    env["PYTHONPATH"] = str(ROOT)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute(env=env)
    out = ROOT / "docs" / "notebooks" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in names:
        execute(ROOT / "notebooks" / name)

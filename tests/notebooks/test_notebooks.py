"""Every notebooks/*.ipynb runs top to bottom on CPU without errors, and is committed clean.

Each notebook is executed by nbclient in a fresh `python3` kernel started from the repository
root, with the root on PYTHONPATH (so the Colab install cell finds the package and does nothing)
and the non-interactive Agg matplotlib backend.
"""
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120
VIRTUAL_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def _read(path):
    return nbformat.read(path, as_version=4)


def test_the_issue_notebooks_exist():
    names = {path.name for path in NOTEBOOKS}
    assert {"01_manifolds_tour.ipynb", "02_riemannian_training_in_flax.ipynb"} <= names
    assert "06_model_merging.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {index} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_errors(path):
    nb = _read(path)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "REPO_URL" in first_code.source and "pip" in first_code.source, "the first code cell installs the package"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # as a user runs it: without the test-wide virtual CPU devices of tests/conftest.py
    xla_flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(VIRTUAL_DEVICES_FLAG)]
    env = dict(os.environ, PYTHONPATH=pythonpath, MPLBACKEND="Agg", XLA_FLAGS=" ".join(xla_flags))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=env)  # raises CellExecutionError (with the traceback) on the first failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert not errors

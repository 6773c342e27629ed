"""The documentation site: it builds with warnings as errors, documents every public name, shows
the executed notebooks, runs the docstring examples, and renders (math laid out, figures decoded)
in a headless browser."""
import doctest
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the page generator the build uses)

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def html(site, page: str) -> str:
    return (site / page / "index.html").read_text() if not page.endswith(".html") else (site / page).read_text()


def test_every_public_name_has_an_entry(site):
    for module_name in hooks.PACKAGES:
        page = html(site, f"api/{hooks.page_name(module_name)}" if module_name != "manifold_opt" else "api")
        ids = set(re.findall(r'id="([^"]+)"', page))
        names = hooks.public_names(module_name)
        assert names, module_name
        for name in names:
            if module_name == "manifold_opt" and hooks.home_of(getattr(importlib.import_module(module_name), name), name):
                home = hooks.home_of(getattr(importlib.import_module(module_name), name), name)
                assert f"{home}.{name}" in page, f"mo.{name}: no link to its entry"
                continue
            assert f"{module_name}.{name}" in ids, f"{module_name}.{name} is not documented"


def test_public_names_follow_the_package():
    """The generator reads the packages themselves, so a name added to a package's public list
    is documented; a module attribute left out of __all__ is not."""
    names = hooks.public_names("manifold_opt.manifolds")
    import manifold_opt.manifolds as manifolds

    assert set(names) == {n for n in manifolds.__all__ if not isinstance(getattr(manifolds, n), type(os))}
    assert "muon" in hooks.public_names("manifold_opt") and "nn" not in hooks.public_names("manifold_opt")


def test_experiment_pages_and_math(site):
    from experiments.registry import EXPERIMENTS

    for name in EXPERIMENTS:
        page = html(site, f"experiments/{name}")
        assert f"Experiment: {name}" in page and "experiments.run" in page and f"configs/{name}.py" in page
    guide = html(site, "guide")
    assert "<math" in guide and "arithmatex" not in guide  # math rendered to MathML at build time


def test_notebooks_are_executed_copies_of_the_sources(site):
    sources = sorted((ROOT / "notebooks").glob("*.ipynb"))
    images = 0
    for source in sources:
        copy = ROOT / "docs" / "notebooks" / source.name
        assert copy.exists(), f"run `python docs/execute_notebooks.py {source.name}`"
        a, b = nbformat.read(source, as_version=4), nbformat.read(copy, as_version=4)
        code = lambda nb: [c.source for c in nb.cells if c.cell_type == "code"]  # noqa: E731
        assert code(a) == code(b), f"docs/notebooks/{source.name} is stale: run docs/execute_notebooks.py"
        assert all(c.outputs or not c.source.strip() for c in b.cells if c.cell_type == "code" and "print(" in c.source)
        images += sum("image/png" in o.get("data", {}) for c in b.cells if c.cell_type == "code" for o in c.outputs)
        assert (site / "notebooks" / source.stem / "index.html").exists()
    assert images >= len(sources) // 2


def test_docstring_examples_run():
    modules = []
    for path in sorted((ROOT / "manifold_opt").rglob("*.py")):
        if ">>>" in path.read_text():
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules.append(importlib.import_module(name))
    assert modules
    for module in modules:
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert attempted > 0 and failed == 0, module.__name__


def rendered(page_path: pathlib.Path) -> str:
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", page_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def body_count(dom: str, attribute: str) -> int:
    match = re.search(rf'<body[^>]*{attribute}="(\d+)"', dom)
    assert match, f"{attribute} missing: the page's scripts did not run"
    return int(match.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (.ci/run installs Debian's chromium)")
def test_pages_render_in_a_browser(site):
    index = rendered(site / "index.html")
    assert "<title>manifold_opt</title>" in index
    assert body_count(index, "data-math-rendered") >= 1
    muon = rendered(site / "api" / "transforms" / "index.html")
    assert 'id="manifold_opt.transforms.muon"' in muon
    assert body_count(muon, "data-math-rendered") >= 1
    assert body_count(muon, "data-math-rendered") == body_count(muon, "data-math-total")
    notebook = rendered(site / "notebooks" / "01_manifolds_tour" / "index.html")
    assert "Manifolds" in re.search(r"<title>(.*?)</title>", notebook).group(1) or "manifold" in notebook.lower()
    assert body_count(notebook, "data-images-decoded") >= 1

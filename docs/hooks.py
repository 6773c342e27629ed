"""MkDocs hooks for the documentation site (mkdocs.yml names this file).

- API pages: one page per package, generated from the package's public names (`__all__`, or
  the top level's non-module attributes), so a new public name cannot be left out.
- Experiment pages: one per registered experiment, from its module and config docstrings and,
  when a full run is stored in docs/results/<name>/, its results.json (the protocol's table and
  computed verdicts) and PNG figures.
- Math: `$...$` / `$$...$$` (pymdownx.arithmatex, in pages and docstrings) become MathML at build
  time (latex2mathml), which browsers render natively: no JavaScript, no network.
- Cross-links to Python, JAX, optax and Flax through inventories shipped in docs/inventories/.
"""
from __future__ import annotations

import ast
import html
import json
import os
import re
import sys
import types

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {
    "manifold_opt": "Top level (`import manifold_opt as mo`)",
    "manifold_opt.manifolds": "Manifolds",
    "manifold_opt.sets": "Constraint sets",
    "manifold_opt.linalg": "Kernels",
    "manifold_opt.transforms": "Transforms",
    "manifold_opt.solvers": "Solvers",
    "manifold_opt.nn": "Flax modules",
    "manifold_opt.merging": "Merging",
    "manifold_opt.parallel": "Parallel",
}


def public_names(module_name: str) -> list[str]:
    """The public names of a package: its `__all__`, else its non-module, non-underscore
    attributes (the top level, whose `mo.nn` loads lazily and has its own page)."""
    import importlib

    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return sorted(n for n in names if not isinstance(getattr(module, n), types.ModuleType))


def page_name(module_name: str) -> str:
    return "index" if module_name == "manifold_opt" else module_name.split(".", 1)[1]


def home_of(obj, name: str) -> str | None:
    """The subpackage whose public names hold `obj` as `name` (where its entry is documented)."""
    import importlib

    for module_name in PACKAGES:
        if module_name == "manifold_opt":
            continue
        module = importlib.import_module(module_name)
        if name in public_names(module_name) and getattr(module, name) is obj:
            return module_name
    return None


def api_page(module_name: str) -> str:
    import importlib

    module = importlib.import_module(module_name)
    doc = (module.__doc__ or "").strip()
    lines = [f"# {PACKAGES[module_name]}: `{module_name}`", "", doc, ""]
    inline = []
    if module_name == "manifold_opt":
        lines += ["| name | documented at |", "|---|---|"]
        for name in public_names(module_name):
            home = home_of(getattr(module, name), name)
            if home is None:
                inline.append(name)
                continue
            lines.append(f"| `mo.{name}` | [`{home}.{name}`]({page_name(home)}.md#{home}.{name}) |")
        lines += ["", f"Packages: " + ", ".join(f"[`{m}`]({page_name(m)}.md)" for m in PACKAGES if m != module_name), ""]
    else:
        inline = public_names(module_name)
    for name in inline:
        obj = getattr(module, name)
        origin = getattr(obj, "__module__", None) if isinstance(obj, (type, types.FunctionType)) else None
        if origin and not origin.startswith("manifold_opt"):  # a re-exported third-party object
            public = ".".join(part for part in origin.split(".") if not part.startswith("_"))
            lines += [f"### `{module_name}.{name}` {{ #{module_name}.{name} }}", "",
                      f"The same object as `{public}.{obj.__qualname__}`, re-exported here.", ""]
        else:
            lines += [f"::: {module_name}.{name}", ""]
    return "\n".join(lines)


def _docstring(path: str) -> str:
    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def experiment_page(name: str, module: str) -> str:
    sys.path.insert(0, ROOT)
    from experiments.harness import protocol

    doc = _docstring(os.path.join(ROOT, *module.split(".")) + ".py")
    config_doc = _docstring(os.path.join(ROOT, "configs", f"{name}.py"))
    commands = [line.strip() for line in config_doc.splitlines() if line.strip().startswith("python")]
    lines = [f"# Experiment: {name}", "", doc, "", "## Command", "", "```bash"]
    lines += commands or [f"python -m experiments.run --config configs/{name}.py --workdir /tmp/{name}"]
    lines += ["```", "", "## Results", ""]
    stored = os.path.join(ROOT, "docs", "results", name)
    results_json = os.path.join(stored, "results.json")
    if os.path.exists(results_json):
        with open(results_json) as f:
            results = json.load(f)
        note = os.path.join(stored, "run.md")
        if os.path.exists(note):
            with open(note) as f:
                lines += [f.read().strip(), ""]
        if "arms" in results:
            lines.append(protocol.markdown(results))
        for png in sorted(p for p in os.listdir(stored) if p.endswith(".png")):
            lines += [f"![{png}](../results/{name}/{png})", ""]
    else:
        lines.append("No full run of this experiment is stored in docs/results/ yet; the command above produces one.")
    return "\n".join(lines) + "\n"


@event_priority(100)  # before mkdocstrings reads its inventories
def on_config(config):
    sys.path.insert(0, ROOT)
    from experiments.registry import EXPERIMENTS

    api = [{PACKAGES[m].split(" (")[0]: f"api/{page_name(m)}.md"} for m in PACKAGES]
    experiments = [{name: f"experiments/{name}.md"} for name in EXPERIMENTS]
    notebooks = sorted(f"notebooks/{p}" for p in os.listdir(os.path.join(ROOT, "docs", "notebooks")) if p.endswith(".ipynb"))
    nav = config["nav"]
    changelog = nav.pop()  # generated sections go before the changelog
    nav += [{"Notebooks": notebooks}, {"API reference": api}, {"Experiments": experiments}, changelog]
    handler = config.plugins["mkdocstrings"].config["handlers"]["python"]
    for inventory in handler.get("inventories", []):  # shipped files: nothing is downloaded
        if not inventory["url"].startswith(("http:", "https:", "file:")):
            inventory["url"] = "file://" + os.path.join(ROOT, inventory["url"])
    return config


def on_files(files, config):
    sys.path.insert(0, ROOT)
    from experiments.registry import EXPERIMENTS

    for module_name in PACKAGES:
        files.append(File.generated(config, f"api/{page_name(module_name)}.md", content=api_page(module_name)))
    for name, module in EXPERIMENTS.items():
        files.append(File.generated(config, f"experiments/{name}.md", content=experiment_page(name, module)))
    return files


_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def to_mathml(tex: str, display: str) -> str:
    from latex2mathml.converter import convert

    return convert(html.unescape(tex).strip(), display=display)


def on_page_content(content, page, config, files):
    content = _BLOCK.sub(lambda m: to_mathml(m.group(1), "block"), content)
    return _INLINE.sub(lambda m: to_mathml(m.group(1), "inline"), content)

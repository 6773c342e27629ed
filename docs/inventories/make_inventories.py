"""Write the Sphinx inventories (objects.inv format, version 2) that the site's cross-links to
JAX, optax and Flax use, from those projects' own documentation sources (their .rst files), so
the build never downloads anything. Run once per upgrade, with git checkouts of the projects:

    python docs/inventories/make_inventories.py JAX_REPO OPTAX_REPO FLAX_REPO

Each `.. autosummary::` entry under `.. currentmodule:: M` with `:toctree: DIR` becomes the page
DIR/M.NAME.html beside its .rst file; each `.. autoclass::` / `.. autofunction::` (and friends)
an anchor #M.NAME on the .rst file's own page.
"""
import os
import re
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECTS = {  # name -> (docs folder in the repository, folders under it to read)
    "jax": ("docs", ["."]),
    "optax": ("docs", ["api"]),
    "flax": ("docs_nnx", ["api_reference"]),
}
DIRECTIVE = re.compile(r"^\s*\.\. (auto\w+|currentmodule|module)::\s*(\S+)?")


def rst_files(repo: str, docs: str, folders: list[str]) -> dict[str, str]:
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD", docs], capture_output=True,
                         text=True, check=True).stdout.split()
    keep = [p for p in out if p.endswith(".rst") and any(os.path.relpath(p, docs).startswith(f) or f == "." for f in folders)]
    return {p: subprocess.run(["git", "-C", repo, "show", f"HEAD:{p}"], capture_output=True, text=True).stdout for p in keep}


def entries(path: str, text: str, docs: str):
    page = os.path.splitext(os.path.relpath(path, docs))[0]
    folder = os.path.dirname(page)
    module, in_summary, toctree = "", False, None
    for line in text.splitlines():
        m = DIRECTIVE.match(line)
        if m:
            kind, arg = m.group(1), m.group(2)
            in_summary, toctree = kind == "autosummary", None
            if kind in ("currentmodule", "module"):
                module = arg or module
            elif arg and kind != "autosummary":
                name = arg if arg.startswith(module + ".") or not module else f"{module}.{arg}"
                yield name, f"{page}.html#{name}"
            continue
        if in_summary:
            opt = re.match(r"^\s+:toctree:\s*(\S+)", line)
            if opt:
                toctree = opt.group(1).rstrip("/")
            elif re.match(r"^\s+:", line) or not line.strip():
                continue
            elif re.match(r"^\s+[\w.]+\s*$", line) and toctree:
                name = f"{module}.{line.strip()}" if module else line.strip()
                yield name, os.path.normpath(os.path.join(folder, toctree, f"{name}.html")) + f"#{name}"
            elif not line.startswith(" "):
                in_summary = False


def write(project: str, pairs: dict[str, str]) -> str:
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: latest\n# The remainder of this file is compressed using zlib.\n"
    body = "".join(f"{name} py:obj 1 {uri} -\n" for name, uri in sorted(pairs.items()))
    path = os.path.join(HERE, f"{project}.inv")
    with open(path, "wb") as f:
        f.write(header.encode() + zlib.compress(body.encode()))
    return path


if __name__ == "__main__":
    for (project, (docs, folders)), repo in zip(PROJECTS.items(), sys.argv[1:]):
        pairs = {}
        for path, text in rst_files(repo, docs, folders).items():
            for name, uri in entries(path, text, docs):
                pairs.setdefault(name, uri)
        print(project, len(pairs), "names ->", write(project, pairs))

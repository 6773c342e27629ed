"""The README's example runs as written and reaches the optimum it claims."""
import importlib
import os
import re
import subprocess
import sys

from experiments import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_example_runs_and_reaches_the_eigenvalue_optimum():
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    adam_cost, solver_cost, optimum, feasibility = map(float, out.stdout.split())
    assert abs(solver_cost - optimum) <= 1e-4 * abs(optimum)
    assert abs(adam_cost - optimum) <= 2e-2 * abs(optimum)
    assert feasibility < 1e-5


def test_readme_flax_section_trains_nnx_and_linen_models_on_their_manifolds():
    """The "In your own Flax model" blocks, run together in one subprocess: both losses fall and
    both Stiefel kernels end on the manifold. The same process first checks that
    `import manifold_opt` alone does not import Flax (mo.nn loads on first use)."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## In your own Flax model", 1)[1].split("\n## ", 1)[0]
    flax_free = "import sys, manifold_opt\nassert 'flax' not in sys.modules, 'the core imported Flax'\n"
    example = flax_free + "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(maxsplit=1) for line in out.stdout.splitlines())
    assert set(lines) == {"nnx", "linen"}
    for name, numbers in lines.items():
        first, last, feasibility = map(float, numbers.split())
        assert last < 0.8 * first, name
        assert feasibility < 1e-5, name


def test_readme_first_command_runs_a_registered_experiment_config():
    """The first command (the main job) names a config file and a workdir, and the config's
    experiment is registered, so the command works as written."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    first = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    match = re.search(r"-m experiments\.run --config configs/(\w+)\.py --workdir \S+", first)
    assert match, first
    config = importlib.import_module(f"configs.{match.group(1)}").get_config()
    assert config.experiment in registry.EXPERIMENTS

"""The README's example runs as written and reaches the optimum it claims."""
import os
import re
import subprocess
import sys

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

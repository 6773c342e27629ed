"""manifold_opt: constrained and manifold optimization for JAX, optax and Flax."""
from setuptools import find_packages, setup

setup(
    name="manifold_opt",
    version="0.1.0",
    description="Constrained and manifold optimization for JAX, optax and Flax.",
    packages=find_packages(include=["manifold_opt", "manifold_opt.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.35",
        "jaxlib>=0.4.35",
        "optax>=0.2.4",
        "flax>=0.10.0",
        "chex>=0.1.87",
        "absl-py>=2.0",
        "ml_collections>=0.1.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "orbax-checkpoint>=0.6",
        "tensorboardX>=2.6",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "scikit-learn>=1.3",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.25",
            "matplotlib>=3.8",
            "pymanopt>=2.2",  # tests/manifolds compare with Pymanopt and run its manifold tests
            # the documentation site, built and browsed by tests/docs (see mkdocs.yml)
            "mkdocs>=1.6",
            "mkdocstrings-python>=1.10",
            "mkdocs-material>=9.5",
            "mkdocs-jupyter>=0.24",
            "pymdown-extensions>=10.0",
            "latex2mathml>=3.77",
        ],
        "bench": [
            "pymanopt>=2.2",
            "autograd>=1.6",
        ],
    },
)

"""manifold_opt: constrained and manifold optimization for JAX, optax and Flax.

    import manifold_opt as mo
"""
from manifold_opt import linalg, manifolds

__version__ = "0.1.0"

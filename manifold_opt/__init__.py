"""manifold_opt: constrained and manifold optimization for JAX, optax and Flax.

    import manifold_opt as mo
"""
from manifold_opt import linalg, manifolds, solvers
from manifold_opt import parallel
from manifold_opt.manifolds.tree import manifold_tree
from manifold_opt.transforms import project_to_tangent, retract, riemannian_adam, riemannian_sgd

__version__ = "0.1.0"

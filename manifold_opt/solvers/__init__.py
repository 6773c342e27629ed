"""Full-batch solvers: each one jitted lax.while_loop with stopping criteria, returning a
SolverResult (see result.py) whose stop_reason says honestly why it stopped."""
from manifold_opt.solvers.arc import arc
from manifold_opt.solvers.checks import DerivativeCheck, check_gradient, check_hessian
from manifold_opt.solvers.conjugate_gradient import conjugate_gradient
from manifold_opt.solvers.constrained import ConstrainedResult, augmented_lagrangian, exact_penalty
from manifold_opt.solvers.cost import Cost
from manifold_opt.solvers.frank_wolfe import frank_wolfe
from manifold_opt.solvers.lbfgs import lbfgs
from manifold_opt.solvers.result import SolverLog, SolverResult, StopReason, stop_reason_name
from manifold_opt.solvers.steepest_descent import steepest_descent
from manifold_opt.solvers.trust_regions import trust_regions

__all__ = [
    "ConstrainedResult",
    "Cost",
    "DerivativeCheck",
    "SolverLog",
    "SolverResult",
    "StopReason",
    "arc",
    "augmented_lagrangian",
    "check_gradient",
    "check_hessian",
    "conjugate_gradient",
    "exact_penalty",
    "frank_wolfe",
    "lbfgs",
    "steepest_descent",
    "stop_reason_name",
    "trust_regions",
]

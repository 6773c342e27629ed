"""Full-batch solvers: each one jitted lax.while_loop with stopping criteria, returning a
SolverResult (see result.py)."""
from manifold_opt.solvers.conjugate_gradient import conjugate_gradient
from manifold_opt.solvers.result import SolverLog, SolverResult, StopReason, stop_reason_name
from manifold_opt.solvers.steepest_descent import steepest_descent
from manifold_opt.solvers.trust_regions import trust_regions

__all__ = ["SolverLog", "SolverResult", "StopReason", "stop_reason_name", "conjugate_gradient", "steepest_descent", "trust_regions"]

from manifold_opt.solvers.cost import Cost  # noqa: E402
from manifold_opt.solvers.lbfgs import lbfgs  # noqa: E402

__all__ += ["Cost", "lbfgs"]

from manifold_opt.solvers.arc import arc  # noqa: E402

__all__ += ["arc"]

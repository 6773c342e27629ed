"""Frank-Wolfe (conditional gradient) over a constraint set of `mo.sets`, one jitted
lax.while_loop (Frank & Wolfe 1956; Jaggi 2013; Lacoste-Julien & Jaggi 2015; FrankWolfe.jl).

At x with g = grad f(x) and s = LMO(g) = argmin_{v in C} <g, v>, the duality gap
gap(x) = <g, x - s> >= f(x) - min_C f bounds the suboptimality of a convex f and is the stopping
test. Each iteration moves x <- x + gamma d along

- vanilla:          d = s - x                                   (gamma <= 1)
- away:             d = s - x if <g, x - s> >= <g, a - x>, else the away direction d = x - a
                    with a = argmax_{active atoms} <g, a>        (gamma <= w_a / (1 - w_a))
- pairwise:         d = s - a                                   (gamma <= w_a)
- blended_pairwise: d = l - a with l = argmin_{active} <g, l> when <g, a - l> >= gap (a local
                    pairwise step, no LMO vertex added), else d = s - x (Tsuji, Tanaka &
                    Pokutta 2022)
- block_coordinate: over a ProductSet, d = s - x on block i = t mod m only, s_i = LMO_i(g_i)
                    (cyclic block-coordinate FW, Lacoste-Julien, Jaggi, Schmidt & Pletscher
                    2013); the stopping test sums the blocks' last gaps and is certified by all
                    blocks' LMOs at x when that sum is under the tolerance.
- lazy_blended_pairwise: the same local step whenever <g, a - l> >= phi / K (K = 2), without
                    calling the LMO; otherwise the LMO is called and d = s - x when the gap
                    <g, x - s> >= phi / K, else x stays and phi <- min(gap, phi / 2) (a dual step;
                    phi starts at the first gap). Lazification as in Braun, Pokutta & Zink 2017
                    and FrankWolfe.jl's lazy blended pairwise.

The default variant is blended_pairwise on sets with vertex codes (linear convergence on
polytopes for strongly convex f, FrankWolfe.jl's recommendation) and vanilla elsewhere.

The active set (x = sum_i w_i v_i) holds at most `active_set_size` vertices as integer codes
(`set.atom_code`); an atom whose weight reaches 0 (a drop step) frees its slot. Step sizes:
"agnostic" gamma_t = 2 / (t + 2); "short" gamma = clamp(-<g, d> / (L ||d||^2), 0, gamma_max) with
the given `lipschitz` L; "adaptive" the same with L estimated by backtracking (Pedregosa, Negiar,
Askari & Jaggi 2020: L shrinks by 0.9 before each step and doubles until the step is accepted).
We accept on the first-order form of their sufficient-decrease test, <grad f(x + gamma d), d> <= 0
(the step does not pass the minimum along d): on a quadratic both accept exactly
L >= d^T H d / ||d||^2, but theirs compares differences of f that sink below f's rounding near the
optimum (the estimate of L then blows up and the iterates stall), ours does not.
The accepted trial's gradient is the next iterate's.

Honest stopping: `converged` needs an exact gap with -rounding <= gap <= tolerance. Where the LMO
is approximate (`set.lmo_is_exact` False: power iteration, Newton-Schulz) its gap only bounds the
true gap from below, so a gap under the tolerance is recomputed with `set.lmo_exact` before the
run may stop. Vanilla calls `set.lmo_factored`: the nuclear ball's power iteration is
warm-started from the previous iteration's singular vector, and its rank-one vertex is carried as
two vectors. The returned `gap` is always the exact gap at the returned x.

Best iterate: no FW step rule guarantees a decrease (the agnostic schedule, a short step with too
small an L), so the lowest-cost iterate is kept beside the loop (ties within rounding count as no
worse, `common.no_worse`, as in the Riemannian solvers) and returned when the last one is worse,
with the exact gap at it; the run converges only at an iterate no worse than the best so far.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from manifold_opt.manifolds.base import check_option
from manifold_opt.sets.base import vdot
from manifold_opt.sets.product import ProductSet
from manifold_opt.solvers import common
from manifold_opt.solvers.result import SolverLog, SolverResult, StopReason

VARIANTS = ("vanilla", "away", "pairwise", "blended_pairwise", "lazy_blended_pairwise", "block_coordinate")
LAZY_K = 2.0  # lazy variants: a cached step is taken while it gains >= phi / LAZY_K
ROUNDING = 32  # a gap above -ROUNDING eps ||g|| (||x|| + ||s||) is rounding, not an inexact LMO
STEPS = ("agnostic", "short", "adaptive")


class FrankWolfeIterate(NamedTuple):
    x: object
    value: jax.Array
    grad: object
    grad_norm: jax.Array | None  # ||grad f(x)|| where tracked (log, lazy, block), else None
    vertex: object  # s = LMO(grad)
    code: jax.Array | None  # its atom code (active-set variants)
    gap: jax.Array  # the duality gap at x (+inf where a lazy step did not call the LMO)
    gap_floor: jax.Array  # gaps below this are not rounding: never convergence
    warm: object  # the LMO's warm start (sets with lmo_warm), else None
    phi: jax.Array | None  # lazy variants: the gap estimate
    lipschitz: jax.Array  # the current estimate of L (adaptive) or the given L (short)
    codes: jax.Array | None  # active set: atom codes, (capacity, *code_shape)
    weights: jax.Array | None  # active set: weights, (capacity,); 0 marks a free slot
    full: jax.Array  # a new atom found no free slot
    iteration: jax.Array
    log: SolverLog | None


class Best(NamedTuple):
    """The lowest-cost iterate so far (`common.no_worse`): returned when the last one is worse.
    `x` is its point only once a later, worse iterate is current: it is saved from the previous
    iterate by a cond when that one, the best, is left behind (no pass over x per iteration). Its
    gradient is recomputed after the loop if it is returned."""

    x: object
    value: jax.Array
    iteration: jax.Array


def _sub(u, v):
    return jax.tree_util.tree_map(lambda a, b: a - b, u, v)


def _norm2(u):
    return vdot(u, u)


def _arg_extrema(*searches):
    """[argmax(key) if largest else argmin(key) for key, largest in searches] over 1-d keys of one
    length, in one variadic reduction with jnp.argmax's rule (NaN first, the lower index on ties):
    one pass over the active set, where separate searches make one each (XLA does not fuse them)."""
    index = lax.iota(jnp.int32, searches[0][0].shape[0])
    comparators = [lax.gt if largest else lax.lt for _, largest in searches]

    def pick(new, acc):
        out = []
        for j, better in enumerate(comparators):
            value, i, acc_value, acc_i = new[2 * j], new[2 * j + 1], acc[2 * j], acc[2 * j + 1]
            take = better(value, acc_value) | (value != value)
            out += [jnp.where(take, value, acc_value), jnp.where(take | ((value == acc_value) & (i < acc_i)), i, acc_i)]
        return tuple(out)

    operands, inits = [], []
    for key, largest in searches:
        info = jnp.finfo(key.dtype) if jnp.issubdtype(key.dtype, jnp.floating) else jnp.iinfo(key.dtype)
        identity = (-jnp.inf if largest else jnp.inf) if isinstance(info, jnp.finfo) else (info.min if largest else info.max)
        operands += [key, index]
        inits += [jnp.asarray(identity, key.dtype), jnp.zeros([], jnp.int32)]
    return lax.reduce(tuple(operands), tuple(inits), pick, (0,))[1::2]


@common.jitted_solver(
    static_argnames=("variant", "step", "max_iterations", "log", "active_set_size", "max_backtracks"), geometry="set"
)
def frank_wolfe(
    cost,
    set,
    x0,
    *,
    variant: str | None = None,
    step: str = "adaptive",
    max_iterations: int = 10000,
    tolerance=1e-7,
    lipschitz=None,
    log: bool = False,
    active_set_size: int | None = None,
    max_backtracks: int = 50,
) -> SolverResult:
    """Minimize `cost` (x -> scalar, differentiated by autodiff) over the convex `set`.

    `variant` defaults to "blended_pairwise" on sets with vertex codes, else "vanilla".
    Returns a SolverResult whose `gap` is the Frank-Wolfe duality gap at x (computed with the
    exact LMO), `converged` is 0 <= gap <= tolerance up to rounding (stop reason GAP_TOLERANCE;
    never on an approximate LMO's gap alone), and `gradient_norm` holds the Euclidean norm
    ||grad f(x)|| (not a stationarity measure under constraints). With log=True the SolverLog
    also holds the gap per iteration (+inf where a lazy variant did not call the LMO).
    `lipschitz` is required by step="short" and, when given, is adaptive's first estimate. Vanilla starts at x0, which must lie in the set (iterates
    are convex combinations of x0 and LMO vertices). The active-set variants start from the vertex
    atom(atom_code(-x0)) (x0 itself when x0 is a vertex of the Simplex, L1Ball, KSparse or
    BirkhoffPolytope) and need a set with vertex codes; `active_set_size` defaults to
    min(`set.max_atoms(x0)`, max_iterations + 1) (each iteration adds at most one atom, and the
    bookkeeping costs O(capacity) per iteration); running out of slots stops with ACTIVE_SET_FULL.
    `cost` and `set` are static; `jax.vmap` over x0 (and over data the cost closes over) works.
    """
    owner = "solvers.frank_wolfe"
    if variant is None:
        variant = "blended_pairwise" if getattr(set, "has_atoms", False) else "vanilla"
    check_option(owner, "variant", variant, VARIANTS)
    check_option(owner, "step", step, STEPS)
    if not hasattr(set, "lmo"):
        raise TypeError(f"{owner}: set must be a constraint set of mo.sets, got {type(set).__name__}")
    if step == "short" and lipschitz is None:
        raise ValueError(f"{owner}: step='short' needs lipschitz (the smoothness constant L of cost)")
    block = variant == "block_coordinate"
    use_atoms = variant not in ("vanilla", "block_coordinate")
    lazy = variant.startswith("lazy")
    factored = variant == "vanilla"  # the vertex is carried as set.lmo_factored's factors
    track_norm = log or lazy or block  # ||grad f|| per iteration (else only at the end)
    if block and not isinstance(set, ProductSet):
        raise ValueError(f"{owner}: variant='block_coordinate' needs a ProductSet, got {type(set).__name__}")
    if use_atoms and not set.has_atoms:
        raise ValueError(
            f"{owner}: variant={variant!r} needs a set with vertex codes (Simplex, L1Ball, KSparse, "
            f"Hypersimplex, BirkhoffPolytope, ConvexHull), got {type(set).__name__}; use variant='vanilla'"
        )
    if not callable(cost):
        raise TypeError(f"{owner}: cost must be a callable x -> scalar, got {type(cost).__name__}")
    set.check_point(x0, "x0")
    if jax.eval_shape(cost, x0).shape != ():
        raise ValueError(f"{owner}: cost must return a scalar")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 0:
        raise ValueError(f"{owner}: max_iterations must be a nonnegative int, got {max_iterations!r}")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(x0))
    eps = jnp.finfo(dtype).eps

    def vertex(g, warm):
        """(s = LMO(g), as factors for vanilla, its code, the warm start for the next call)."""
        if use_atoms:
            code = set.atom_code(g)
            return set.atom(code, g), code, None
        factors, warm = set.lmo_factored(g, warm)
        return factors, None, warm

    def dense(s):
        """The vertex s as a point (vanilla carries it as factors, expanded where it is used: XLA
        fuses a rank-one vertex into the passes that read it instead of storing it)."""
        return set.vertex(s) if factored else s

    def gap_at(x, g, s):
        """The duality gap <g, x - s>."""
        return vdot(g, _sub(x, s))

    def floor_at(x, g, s):
        """The gap below which <g, x - s> is not rounding: -ROUNDING eps ||g|| (||x|| + ||s||)."""
        return -ROUNDING * eps * jnp.sqrt(_norm2(g)) * (jnp.sqrt(_norm2(x)) + jnp.sqrt(_norm2(s)))

    def floor_if_small(x, g, s, gap):
        """The floor where the gap is a convergence candidate (gap <= tolerance), else -inf: the
        norms are computed only then (a scalar cond, no pass over x, g and s per iteration)."""
        return lax.cond(gap <= tolerance, lambda: floor_at(x, g, s), lambda: jnp.asarray(-jnp.inf, dtype))

    def certified(x, g, s, gap):
        """(s, gap, floor): a gap under the tolerance gets its rounding floor; an approximate
        LMO's gap is first recomputed with the exact LMO, whose vertex replaces s."""
        if set.lmo_is_exact:
            return s, gap, floor_if_small(x, g, dense(s), gap)

        def exact():
            e = set.lmo_factored(g, exact=True)[0] if factored else set.lmo_exact(g)
            return e, gap_at(x, g, dense(e)), floor_at(x, g, dense(e))

        return lax.cond(gap <= tolerance, exact, lambda: (s, gap, jnp.asarray(-jnp.inf, dtype)))

    def block_vertex(x, g, state):
        """Block-coordinate FW: (s = x with block i replaced by LMO_i(g_i), the sum of the blocks'
        last gaps, the next state). The state is (i, each block's gap when last computed); when
        their sum is under the tolerance, every block's gap is recomputed at x (exact LMO)."""
        i, gaps = state
        blocks = range(len(set.sets))

        def replaced(j):
            s_j = set.sets[j].lmo(g[j])
            return tuple(s_j if b == j else x[b] for b in blocks), gap_at(x[j], g[j], s_j)

        s, gap_i = lax.switch(i, [lambda j=j: replaced(j) for j in blocks])
        gaps = gaps.at[i].set(gap_i)
        exact_gaps = lambda: jnp.stack([gap_at(x[j], g[j], e) for j, e in zip(blocks, set.lmo_exact(g))])
        gaps = lax.cond(jnp.sum(gaps) <= tolerance, exact_gaps, lambda: gaps)
        return s, jnp.sum(gaps), ((i + 1) % len(set.sets), gaps)

    def evaluate(x, warm, value_grad=None, oracle=True):
        """f, grad f, ||grad f||, s = LMO(grad f), its code, the gap at x and its floor, and the
        LMO's warm start (reusing a known (f(x), grad f(x)) from the adaptive step's last trial);
        without `oracle` (lazy steps) s and the gap are left for the step to fill in."""
        value, g = jax.value_and_grad(cost)(x) if value_grad is None else value_grad
        grad_norm = jnp.sqrt(_norm2(g)) if track_norm else None
        if not oracle:
            return value, g, grad_norm, None, None, None, None, warm
        if block:
            s, gap, warm = block_vertex(x, g, warm)
            return value, g, grad_norm, s, None, gap, floor_if_small(x, g, s, gap), warm
        s, code, warm = vertex(g, warm)
        s, gap, floor = certified(x, g, s, gap_at(x, g, dense(s)))
        return value, g, grad_norm, s, code, gap, floor, warm

    def record(log_, k, value, grad_norm, gap):
        if log_ is None:
            return None
        return SolverLog(log_.cost.at[k].set(value), log_.gradient_norm.at[k].set(grad_norm), log_.gap.at[k].set(gap))

    # ----- start ----------------------------------------------------------------------------
    if use_atoms:
        code0 = set.atom_code(jax.tree_util.tree_map(lambda a: -a, x0))
        x = set.atom(code0, x0)
        capacity = active_set_size or min(set.max_atoms(x0), max_iterations + 1)
        codes = jnp.zeros((capacity,) + code0.shape, jnp.int32).at[0].set(code0)
        weights = jnp.zeros((capacity,), dtype).at[0].set(1)
    else:
        x, codes, weights = x0, None, None
    start = (jnp.zeros([], jnp.int32), jnp.full(len(set.sets), jnp.inf, dtype)) if block else None
    value, g, grad_norm, s, code, gap, floor, warm = evaluate(x, start)
    if lipschitz is None:  # Pedregosa et al.'s first estimate from a gradient difference
        h = 1e-3
        d0 = _sub(dense(s), x)
        dd = _norm2(d0)
        g_h = jax.grad(cost)(common.axpy(h, d0, x))
        estimate = jnp.sqrt(_norm2(_sub(g_h, g))) / (h * jnp.sqrt(dd))
        lip0 = jnp.where((dd > 0) & (estimate > 0) & jnp.isfinite(estimate), estimate, 1.0)
    else:
        lip0 = jnp.asarray(lipschitz, dtype)
    new_log = None
    if log:
        fill = jnp.full((max_iterations + 1,), jnp.nan, dtype)
        new_log = record(SolverLog(fill, fill, fill), 0, value, grad_norm, gap)
    phi = gap if lazy else None
    it = FrankWolfeIterate(x, value, g, grad_norm, s, code, gap, floor, warm, phi, lip0.astype(dtype), codes, weights,
                           jnp.asarray(False), jnp.zeros([], jnp.int32), new_log)

    def reason_of(it, best):
        """The loop's stop reason; convergence only at an iterate no worse than the best so far."""
        # a non-finite gradient shows in the gap <g, x - s> (a sum over every entry), except where
        # the gap is not computed each iteration (lazy, block-coordinate): ||g|| is tracked there
        finite_grad = jnp.isfinite(it.grad_norm) & ~jnp.isnan(it.gap) if track_norm else jnp.isfinite(it.gap)
        non_finite = ~(jnp.isfinite(it.value) & finite_grad)
        converged = (it.gap <= tolerance) & (it.gap >= it.gap_floor) & (best.iteration == it.iteration)
        return jnp.select(
            [non_finite, converged, it.full, it.iteration >= max_iterations],
            [StopReason.NON_FINITE, StopReason.GAP_TOLERANCE, StopReason.ACTIVE_SET_FULL, StopReason.MAX_ITERATIONS],
            StopReason.RUNNING,
        ).astype(jnp.int32)

    # ----- step size --------------------------------------------------------------------------
    def step_size(it, d, gamma_max, slope, dd=None):
        """(gamma, L, the accepted trial's (f, grad f) for adaptive) along d, whose slope <g, d> < 0
        the caller knows from the gap and the atom scores (no pass over g and d)."""
        dd = _norm2(d) if dd is None else dd
        descent = (slope < 0) & (dd > 0)
        safe_dd = jnp.where(descent, dd, 1)

        def clipped(lip):
            return jnp.where(descent, jnp.clip(-slope / (lip * safe_dd), 0, gamma_max), 0)

        if step == "agnostic":
            return jnp.minimum(2 / (it.iteration + 2).astype(dtype), gamma_max), it.lipschitz, None
        if step == "short":
            return clipped(it.lipschitz), it.lipschitz, None

        def trial(lip):  # past the minimum along d (positive slope there): the step is too long
            value, g = jax.value_and_grad(cost)(common.axpy(clipped(lip), d, it.x))
            return (vdot(g, d) <= 0) | ~descent, value, g

        def grow(carry):
            lip, k, *_ = carry
            return (2 * lip, k + 1) + trial(2 * lip)

        lip = 0.9 * it.lipschitz
        lip, _, _, value, g = lax.while_loop(lambda c: ~c[2] & (c[1] < max_backtracks), grow, (lip, 0) + trial(lip))
        return clipped(lip), lip, (value, g)

    # ----- one iteration ----------------------------------------------------------------------
    def body(it):
        if not use_atoms:
            s = dense(it.vertex)
            d = _sub(s, it.x)
            slope = vdot(it.grad, d) if block else -it.gap  # block-coordinate's gap sums the blocks' last gaps
            # ||d||^2 as ||x - s||^2: a subtraction of its own that XLA fuses into the reduction
            # (d itself would be materialized for its two uses)
            gamma, lip, value_grad = step_size(it, d, jnp.asarray(1, dtype), slope, _norm2(_sub(it.x, s)))
            x = common.axpy(gamma, d, it.x)
            codes, weights, full, s, code, phi, known_gap = None, None, it.full, None, None, None, None
        else:
            x, codes, weights, full, lip, value_grad, s, code, phi, known_gap = active_set_step(it)
        value, g, grad_norm, new_s, new_code, gap, floor, warm = evaluate(x, it.warm, value_grad, oracle=not lazy)
        if lazy:  # the gap is known only where a dual step left x in place
            new_s, new_code, gap, floor = s, code, known_gap, floor_if_small(x, g, s, known_gap)
        k = it.iteration + 1
        return FrankWolfeIterate(x, value, g, grad_norm, new_s, new_code, gap, floor, warm, phi, lip, codes, weights,
                                 full, k, record(it.log, k, value, grad_norm, gap))

    def slot_priority(it, active, code):
        """2 on an active slot holding `code`, 1 on a free slot, else 0: the first maximum is the
        slot of the vertex with `code` (0 with neither: the active set is full)."""
        same = jnp.all((it.codes == code).reshape(it.codes.shape[0], -1), axis=1) & active
        return jnp.where(same, 2, jnp.where(active, 0, 1))

    def active_set_step(it):
        active = it.weights > 0
        scores = set.atom_scores(it.grad, it.codes)
        # one pass over the active set: the away atom a, the local pairwise target (blended
        # pairwise), the slot of the vertex s = it.vertex (lazy: s is chosen below)
        searches = [(jnp.where(active, scores, -jnp.inf), True)]
        if variant.endswith("blended_pairwise"):
            searches.append((jnp.where(active, scores, jnp.inf), False))
        if not lazy:
            priority = slot_priority(it, active, it.code)
            searches.append((priority, True))
        found = _arg_extrema(*searches)
        a = found[0]
        w_a = it.weights[a]
        atom_a = set.atom(it.codes[a], it.x)
        no, yes = jnp.asarray(False), jnp.asarray(True)
        target = a  # the local pairwise target (blended pairwise only)
        s, code, gap, phi, known_gap = it.vertex, it.code, it.gap, it.phi, None
        score_s = set.atom_scores(it.grad, it.code[None])[0]  # <g, s>: with the gap, <g, x> = gap + <g, s>
        if variant == "away":
            g_x = it.gap + score_s
            fw_step = it.gap >= scores[a] - g_x
            away_step, pairwise, local = ~fw_step, no, no
            d = common.select(fw_step, _sub(it.vertex, it.x), _sub(it.x, atom_a))
            slope = jnp.where(fw_step, -it.gap, g_x - scores[a])
            gamma_max = jnp.where(fw_step, 1, w_a / jnp.maximum(1 - w_a, jnp.finfo(dtype).tiny))
        elif variant == "pairwise":
            fw_step, away_step, pairwise, local = no, no, yes, no
            d, gamma_max, slope = _sub(it.vertex, atom_a), w_a, score_s - scores[a]
        else:
            target = found[1]
            if lazy:
                s, code, gap, phi, local, fw_step = lazy_choice(it, scores[a] - scores[target])
                known_gap = jnp.where(local | fw_step, jnp.inf, gap)
            else:
                local = scores[a] - scores[target] >= it.gap
                fw_step = ~local
            away_step, pairwise = no, no
            d = common.select(local, _sub(set.atom(it.codes[target], it.x), atom_a), _sub(s, it.x))
            slope = jnp.where(local, scores[target] - scores[a], -gap)
            gamma_max = jnp.where(local, w_a, jnp.where(fw_step, 1, 0))  # 0: a lazy dual step
        gamma, lip, value_grad = step_size(it, d, jnp.asarray(gamma_max, dtype), slope)
        # the weights: w <- c w + gamma e_in - gamma e_out (an atom whose weight hits 0 is dropped)
        adds_vertex = fw_step | pairwise
        if lazy:
            priority = slot_priority(it, active, code)
            found = found + _arg_extrema((priority, True))
        slot = found[-1]
        full = adds_vertex & (gamma > 0) & (priority[slot] == 0)
        slot_in = jnp.where(adds_vertex, slot, target)
        c = jnp.where(fw_step, 1 - gamma, jnp.where(away_step, 1 + gamma, 1))
        w = (c * it.weights).at[slot_in].add(jnp.where(adds_vertex | local, gamma, 0))
        is_out = (jnp.arange(w.shape[0]) == a) & (away_step | pairwise | local)
        w = jnp.maximum(jnp.where(is_out, jnp.where(gamma >= gamma_max, 0, w - gamma), w), 0)
        codes = it.codes.at[slot_in].set(jnp.where(adds_vertex, code, it.codes[slot_in]))
        x = common.axpy(gamma, d, it.x)
        # no free slot for the new vertex: stay put and report ACTIVE_SET_FULL
        if value_grad is not None:
            value_grad = common.select(full, (it.value, it.grad), value_grad)
        return (common.select(full, it.x, x), jnp.where(full, it.codes, codes), jnp.where(full, it.weights, w),
                full, lip, value_grad, s, code, phi, known_gap)

    def lazy_choice(it, local_gain):
        """(s, code, gap, phi, local, fw_step): a local step while it gains >= phi / K (no LMO
        call); else the LMO's vertex if its gap >= phi / K (and above the tolerance), else a
        dual step phi <- min(gap, phi / 2) that leaves x, whose gap is then known."""
        local = (local_gain >= it.phi / LAZY_K) & (local_gain > 0)

        def oracle():
            s, code, _ = vertex(it.grad, None)
            return s, code, gap_at(it.x, it.grad, s)

        s, code, gap = lax.cond(local, lambda: (it.vertex, it.code, jnp.asarray(jnp.inf, dtype)), oracle)
        fw_step = ~local & (gap >= it.phi / LAZY_K) & (gap > tolerance)
        phi = jnp.where(local | fw_step, it.phi, jnp.minimum(gap, it.phi / 2))
        return s, code, gap, phi, local, fw_step

    # ----- the loop, keeping the best iterate beside it (common.run's rule) ----------------------
    def loop_body(carry):
        previous, best = carry
        it = body(previous)
        better = common.no_worse(it.value, best.value)
        left_behind = ~better & (best.iteration == previous.iteration)  # save x only then
        x = lax.cond(left_behind, lambda: previous.x, lambda: best.x)
        return it, Best(x, jnp.where(better, it.value, best.value), jnp.where(better, it.iteration, best.iteration))

    it, best = lax.while_loop(lambda c: reason_of(*c) == StopReason.RUNNING, loop_body,
                              (it, Best(it.x, it.value, it.iteration)))
    reason = reason_of(it, best)

    def exact_gap(x, g):
        e = set.lmo_exact(g)
        gap = gap_at(x, g, e)
        return gap, (gap <= tolerance) & (gap >= floor_at(x, g, e))

    def last():
        gap = it.gap
        if lazy or block or not set.lmo_is_exact:  # a converged run's gap is exact; recompute any other
            gap = lax.cond(reason == StopReason.GAP_TOLERANCE, lambda: it.gap,
                           lambda: exact_gap(it.x, it.grad)[0])
        return it.x, it.value, jnp.sqrt(_norm2(it.grad)), gap, reason

    def best_so_far():  # the last iterate is worse: return the best, with its own gradient and exact gap
        g = jax.grad(cost)(best.x)
        gap, converged = exact_gap(best.x, g)
        return best.x, best.value, jnp.sqrt(_norm2(g)), gap, jnp.where(converged, StopReason.GAP_TOLERANCE, reason).astype(jnp.int32)

    x, value, grad_norm, gap, reason = lax.cond(best.iteration == it.iteration, last, best_so_far)
    return SolverResult(x, value, grad_norm, it.iteration, reason == StopReason.GAP_TOLERANCE, reason, it.log, gap)

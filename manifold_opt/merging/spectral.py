"""Merges in the singular spaces of the task matrices: TSV-M / TSV-C, Iso-C / Iso-CTS, DC-Merge.

Every 2-D leaf (a kernel) of the task vectors tau_i = theta_i - theta_pre is merged through SVDs;
every other leaf (biases, norms) by the mean of the task vectors, as the papers' code does.
With T candidates and r = min(m, n), each task keeps k = max(1, r // T) components.

- TSV-M (Gargiulo et al. 2025, "Task Singular Vectors", Sec. 4, Eq. 7-8): tau_i ~ U_i S_i V_i^T
  truncated to k; U = [U_1 .. U_T], V = [V_1 .. V_T] are orthogonalized, U_perp = polar(U) (the
  Procrustes-closest orthonormal basis), and the merge is U_perp diag(S_1 .. S_T) V_perp^T.
  TSV-C (Sec. 3) is the per-task truncation alone, a compression of each fine-tune.
- Iso-C (Marczak et al. 2025, "No Task Left Behind", Eq. 6): the sum Delta = sum_i tau_i =
  U S V^T with S replaced by its mean: mean(S) U V^T.
- Iso-CTS (ibid., Sec. 4.2, Alg. 1): the top `common_fraction` of Delta's singular directions
  plus, per task, the top directions of tau_i with the common left space projected out
  (r - common split evenly); both bases orthogonalized by polar; isotropic spectrum mean(S).
- DC-Merge (Zhang et al. 2026, arXiv 2603.06242, Sec. 3, and its official code): per-task
  truncations with their singular values optionally smoothed at equal energy sum(s): "average"
  to their mean, "linear" to a linear ramp s'_j = sum(s) w_j / sum(w), w = linspace(q, 1, k),
  q = min(rho, s_1 / s_k) (the official LoRA code's choices; rho = 5), a shared orthonormal cover
  basis U_c = polar([U_1 .. U_T]), V_c = polar([V_1 .. V_T]), the projections M_i = U_c^T tau_i^k V_c,
  each trimmed to its top `density` entries, aggregated by TIES' elect + disjoint mean, masked
  to the block diagonal (block i holds task i's own directions), and projected back:
  U_c (M o mask) V_c^T.

All of them stream the candidates (Iso-CTS in two passes) and hold k = r / T columns per task,
about one matrix per leaf in all.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from manifold_opt import linalg
from manifold_opt.merging.baselines import _check_fraction, _check_scaling, add_signed, disjoint_mean, trim_top_k
from manifold_opt.merging.pool import check_candidates, stream


def _is_matrix(x):
    return jnp.ndim(x) == 2


def _rank_per_task(shape, num_tasks):
    return max(1, min(shape) // num_tasks)


@jax.jit
def _svd(x):
    return jnp.linalg.svd(x, full_matrices=False)


SMOOTHINGS = ("none", "average", "linear")


def _smooth(s, smoothing, rho):
    """DC-Merge's energy smoothing of the top-k singular values s (descending), sum(s) kept."""
    if smoothing == "none":
        return s
    if smoothing == "average":
        return jnp.full_like(s, jnp.mean(s))
    ratio = jnp.minimum(rho, s[0] / jnp.where(s[-1] > 0, s[-1], jnp.finfo(s.dtype).tiny))
    ramp = ratio + (1 - ratio) * jnp.linspace(0, 1, len(s), dtype=s.dtype)
    return jnp.sum(s) * ramp / jnp.sum(ramp)


def _task_factors(name, pretrained, finetuned, num_tasks, smoothing="none", rho=5.0):
    """Stream the task vectors: per 2-D leaf j the lists of truncated (U_ik, s_ik, V_ik^T), and the
    sum of each other leaf. Returns (factors: {j: [(u, s, vh), ...]}, sums: {j: array})."""
    leaves = jax.tree_util.tree_leaves(pretrained)
    factors, sums = {}, {}
    for candidate in stream(name, pretrained, finetuned):
        for j, (p, c) in enumerate(zip(leaves, jax.tree_util.tree_leaves(candidate))):
            tau = jnp.asarray(c) - p
            if _is_matrix(p):
                k = _rank_per_task(p.shape, num_tasks)
                u, s, vh = _svd(tau)
                s = _smooth(s[:k], smoothing, rho)
                factors.setdefault(j, []).append((u[:, :k], s, vh[:k]))
            else:
                sums[j] = tau if j not in sums else sums[j] + tau
    return factors, sums


def _assemble(pretrained, num_tasks, scaling, merged_matrix, sums):
    leaves, treedef = jax.tree_util.tree_flatten(pretrained)
    out = [p + scaling * (merged_matrix(j) if _is_matrix(p) else sums[j] / num_tasks) for j, p in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


@jax.jit
def _tsv_matrix(us, ss, vhs):
    u = linalg.polar(jnp.concatenate(us, axis=1))
    vh = linalg.polar(jnp.concatenate(vhs, axis=0))
    return (u * jnp.concatenate(ss)) @ vh


def tsv_merge(pretrained, finetuned, scaling: float = 1.0):
    """TSV-M: per kernel, each task's top r/T singular triplets, the concatenated singular
    vectors orthogonalized (polar), reconstructed with the kept singular values; other leaves by
    the mean task vector; theta_pre + scaling * merged (module docstring)."""
    t = check_candidates("tsv_merge", finetuned)
    scaling = _check_scaling("tsv_merge", scaling)
    factors, sums = _task_factors("tsv_merge", pretrained, finetuned, t)
    return _assemble(pretrained, t, scaling, lambda j: _tsv_matrix(*zip(*factors[j])), sums)


def tsv_compress(pretrained, finetuned, rank_fraction: float | None = None):
    """TSV-C: each fine-tune with its 2-D task matrices truncated to their top
    k = max(1, floor(rank_fraction * r)) singular triplets (default rank_fraction = 1/T), other
    leaves kept; a list of pytrees, one per candidate (computed one at a time)."""
    t = check_candidates("tsv_compress", finetuned)
    fraction = 1.0 / t if rank_fraction is None else _check_fraction("tsv_compress", "rank_fraction", rank_fraction)
    compressed = []
    for candidate in stream("tsv_compress", pretrained, finetuned):
        def truncate(p, c):
            if not _is_matrix(p):
                return jnp.asarray(c)
            u, s, vh = _svd(jnp.asarray(c) - p)
            k = max(1, int(fraction * min(p.shape)))
            return p + (u[:, :k] * s[:k]) @ vh[:k]

        compressed.append(jax.tree.map(truncate, pretrained, candidate))
    return compressed


@functools.partial(jax.jit, donate_argnums=0)
def _add_task_vector(total, pretrained, candidate):
    return jax.tree.map(lambda t, p, c: t + (c - p), total, pretrained, candidate)


def _task_sums(name, pretrained, finetuned):
    total = jax.tree.map(jnp.zeros_like, pretrained)
    for candidate in stream(name, pretrained, finetuned):
        total = _add_task_vector(total, pretrained, candidate)
    return total


@jax.jit
def _isotropic(delta):
    u, s, vh = jnp.linalg.svd(delta, full_matrices=False)
    return jnp.mean(s) * (u @ vh)


def iso_c(pretrained, finetuned, scaling: float = 1.0):
    """Iso-C: per kernel mean(S) U V^T of the summed task matrix U S V^T; other leaves by the
    mean task vector; theta_pre + scaling * merged."""
    t = check_candidates("iso_c", finetuned)
    scaling = _check_scaling("iso_c", scaling)
    total = _task_sums("iso_c", pretrained, finetuned)
    return jax.tree.map(lambda p, d: p + scaling * (_isotropic(d) if _is_matrix(p) else d / t), pretrained, total)


def _common_rank(shape, num_tasks, common_fraction):
    """Iso-CTS' split of r = min(shape): common rank and per-task rank (the task part is a
    multiple of T, rounded)."""
    r = min(shape)
    common = int(r * common_fraction)
    specific = round((r - common) / num_tasks) * num_tasks
    return r - specific, specific // num_tasks


@jax.jit
def _iso_cts_matrix(us, ss, vhs):
    return jnp.mean(jnp.concatenate(ss)) * (linalg.polar(jnp.concatenate(us, axis=1)) @ linalg.polar(jnp.concatenate(vhs, axis=0)))


def iso_cts(pretrained, finetuned, scaling: float = 1.0, *, common_fraction: float = 0.8):
    """Iso-CTS: per kernel the common subspace (top directions of the summed task matrix) plus each
    task's top directions orthogonal to it on the left, both bases orthogonalized (polar), with the
    isotropic spectrum mean(S) of the kept singular values; two streamed passes."""
    t = check_candidates("iso_cts", finetuned)
    scaling = _check_scaling("iso_cts", scaling)
    common_fraction = _check_fraction("iso_cts", "common_fraction", common_fraction)
    total = _task_sums("iso_cts", pretrained, finetuned)
    leaves, treedef = jax.tree_util.tree_flatten(pretrained)
    sums = jax.tree_util.tree_leaves(total)
    bases = {}
    for j, (p, delta) in enumerate(zip(leaves, sums)):
        if _is_matrix(p):
            common, _ = _common_rank(p.shape, t, common_fraction)
            u, s, vh = _svd(delta)
            bases[j] = [(u[:, :common], s[:common], vh[:common])]
    for candidate in stream("iso_cts", pretrained, finetuned):
        for j, (p, c) in enumerate(zip(leaves, jax.tree_util.tree_leaves(candidate))):
            if j in bases:
                _, per_task = _common_rank(p.shape, t, common_fraction)
                common_u = bases[j][0][0]
                tau = jnp.asarray(c) - p
                u, s, vh = _svd(tau - common_u @ (common_u.T @ tau))
                bases[j].append((u[:, :per_task], s[:per_task], vh[:per_task]))

    out = [p + scaling * (_iso_cts_matrix(*zip(*bases[j])) if j in bases else d / t) for j, (p, d) in enumerate(zip(leaves, sums))]
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.partial(jax.jit, static_argnames="density")
def _dc_matrix(factors, density):
    us, ss, vhs = zip(*factors)
    cover_u = linalg.polar(jnp.concatenate(us, axis=1))
    cover_vh = linalg.polar(jnp.concatenate(vhs, axis=0))
    acc = None
    for u, s, vh in factors:
        projected = trim_top_k((cover_u.T @ u * s) @ (vh @ cover_vh.T), density)
        zero = jnp.zeros(projected.shape, jnp.int32)
        acc = add_signed(acc if acc is not None else (jnp.zeros_like(projected), zero, jnp.zeros_like(projected), zero),
                         projected)
    aggregated = disjoint_mean(acc)
    blocks = np.repeat(np.arange(len(factors)), [u.shape[1] for u in us])
    return cover_u @ jnp.where(blocks[:, None] == blocks[None, :], aggregated, 0) @ cover_vh


def dc_merge(pretrained, finetuned, scaling: float = 1.0, *, density: float = 1e-3, smoothing: str = "none",
             rho: float = 5.0):
    """DC-Merge: per kernel, each task's top r/T triplets (singular values smoothed at equal
    energy: "average" to their mean, "linear" to a ramp from min(rho, s_1/s_k) down to 1, the
    paper's LoRA choices; the official full-fine-tune runs use "none"), projected onto the shared
    cover basis, trimmed to the top `density` entries (official default 1e-3), TIES-aggregated,
    kept on the block diagonal, projected back; other leaves by the mean task vector;
    theta_pre + scaling * merged."""
    t = check_candidates("dc_merge", finetuned)
    scaling = _check_scaling("dc_merge", scaling)
    density = _check_fraction("dc_merge", "density", density)
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"dc_merge: smoothing must be one of {list(SMOOTHINGS)}, got {smoothing!r}")
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho >= 1:
        raise ValueError(f"dc_merge: rho must be a number >= 1 (the largest ratio of the smoothed ramp), got {rho!r}")
    factors, sums = _task_factors("dc_merge", pretrained, finetuned, t, smoothing, float(rho))
    return _assemble(pretrained, t, scaling, lambda j: _dc_matrix(factors[j], density), sums)

"""Polar factors: exact (SVD) and by Newton-Schulz iteration.

The polar factor of G = U S V^T is polar(G) = U V^T, the nearest matrix with orthonormal
rows/columns (in Frobenius norm) and the LMO of the spectral-norm ball. Newton-Schulz
approximates it with matmuls only: after normalizing X = G / (s ||G||_F + eps), each step applies
an odd polynomial to the singular values,

    A = X X^T,   X <- a X + (b A + c A A) X,

which pushes them toward 1 (Jordan et al. 2024, "Muon"; Amsel et al. 2025, "Polar Express").
Muon's single triple maps normalized singular values above ~2e-3 into its attracting band
[0.682, 1.202] in 5 steps (not exactly 1). Polar Express uses the reference's 8 polynomials
(rows 1-7 shrunk by 1.01, 1.01^3, 1.01^5 for safety), then repeats the classic (15, -10, 3)/8
Newton-Schulz step, whose fixed point is exactly 1: its error to polar(G) keeps falling with
more steps (the circulating 5-step variant with 1.02 baked in plateaus near 3.5%).
The "root" set (ROOT, 2025) picks one (a, b, c) triple per matrix shape, keyed by
(min dim, max dim), and falls back to Muon's for shapes outside its table.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Named coefficient sets: a (k, 3) table of (a, b, c) per step and the Frobenius-norm safety
# factor s. Steps beyond a table's length repeat its last row.
MUON_COEFFS = ((3.4445, -4.7750, 2.0315),)
DION_COEFFS = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
# Polar Express (Amsel et al. 2025), the authors' 8-polynomial table. Rows 1-7 are divided by
# (1.01, 1.01^3, 1.01^5) for safety; the last row (15/8, -10/8, 3/8) has its fixed point at 1
# and is repeated beyond 8 steps. The input is normalized by 1.01 ||X||_F.
_POLAR_EXPRESS_RAW = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
)
POLAR_EXPRESS_COEFFS = tuple((a / 1.01, b / 1.01**3, c / 1.01**5) for a, b, c in _POLAR_EXPRESS_RAW) + (
    (15 / 8, -10 / 8, 3 / 8),
)
# ROOT's per-shape triples, keyed by (min(m, n), max(m, n)); other shapes use Muon's.
ROOT_SHAPE_COEFFS = {
    (2048, 2048): (3.4916, -4.8224, 2.1095),
    (2048, 3072): (3.4509, -4.5790, 1.9325),
    (2048, 8192): (2.9794, -3.6674, 1.6207),
    (2048, 16384): (3.1943, -3.8221, 1.5322),
}
COEFF_SETS = {
    "muon": (MUON_COEFFS, 1.0),
    "dion": (DION_COEFFS, 1.0),
    "polar_express": (POLAR_EXPRESS_COEFFS, 1.01),
}


def polar(g: jax.Array) -> jax.Array:
    """Exact polar factor U V^T of g (..., m, n) from a thin SVD."""
    if g.ndim < 2:
        raise ValueError(f"polar: g must have at least 2 dimensions, got shape {g.shape}")
    u, _, vh = jnp.linalg.svd(g, full_matrices=False)
    return u @ vh


def ns_coefficients(coeffs="muon", steps: int = 5, shape=None) -> tuple[np.ndarray, float]:
    """The (steps, 3) coefficient table and the normalization safety factor for `coeffs`.

    `coeffs` is a name in COEFF_SETS, "root" (per-shape table; needs the matrix `shape`), a
    single (a, b, c) triple, or a (k, 3) table; a table shorter than `steps` repeats its last
    row.
    """
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"newton_schulz: steps must be a positive int, got {steps!r}")
    if isinstance(coeffs, str) and coeffs == "root":
        if shape is None or len(shape) < 2:
            raise ValueError(f"newton_schulz: coeffs='root' needs a matrix shape, got {shape!r}")
        key = (min(shape[-2:]), max(shape[-2:]))
        table, safety = (ROOT_SHAPE_COEFFS.get(key, MUON_COEFFS[0]),), 1.0
    elif isinstance(coeffs, str):
        if coeffs not in COEFF_SETS:
            raise ValueError(
                f"newton_schulz: unknown coeffs {coeffs!r}; expected one of "
                f"{sorted(COEFF_SETS) + ['root']} or a (k, 3) array"
            )
        table, safety = COEFF_SETS[coeffs]
    else:
        table, safety = coeffs, 1.0
    table = np.asarray(table, dtype=np.float64)
    if table.ndim == 1:
        table = table[None]
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < 1:
        raise ValueError(
            f"newton_schulz: coeffs must be a name, an (a, b, c) triple or a (k, 3) array, "
            f"got shape {table.shape}"
        )
    rows = np.minimum(np.arange(steps), table.shape[0] - 1)
    return table[rows], safety


def _gram_steps(x, table):
    """The Newton-Schulz polynomials applied through the Gram matrix of wide x (..., m, n)."""
    s = x @ jnp.swapaxes(x, -1, -2)
    eye = jnp.broadcast_to(jnp.eye(s.shape[-1], dtype=x.dtype), s.shape)

    def step(carry, abc):
        s, q = carry
        p = abc[0] * eye + abc[1] * s + abc[2] * (s @ s)
        return (p @ s @ p, p @ q), None

    (_, q), _ = jax.lax.scan(step, (s, eye), table, unroll=True)
    return q @ x


def newton_schulz(
    g: jax.Array,
    steps: int = 5,
    coeffs="muon",
    *,
    eps: float = 1e-7,
    compute_dtype=None,
    preconditioning: str = "frobenius",
    gram: bool = False,
) -> jax.Array:
    """Approximate polar factor of g (..., m, n) by `steps` quintic Newton-Schulz iterations.

    Tall inputs are transposed so the Gram matrix is min(m, n) square. The iteration runs in
    `compute_dtype` (default: g's dtype; e.g. jnp.bfloat16 for speed) and the result is cast
    back to g's dtype. `coeffs`: "muon", "dion", "polar_express" (normalizes by 1.01 ||G||_F),
    "root" (per-shape triple from ROOT_SHAPE_COEFFS), an (a, b, c) triple or a (k, 3) table.
    A zero input gives a zero output. `preconditioning`: "frobenius" (X / (s ||X||_F + eps)) or
    "aol" (Turbo-Muon, Boissin et al. 2025, as optax's: rows scaled by
    1 / sqrt(max(sum_j |X X^T|_ij, eps)), which bounds the spectral norm by 1 (Gershgorin) and
    starts the iteration closer to the polar factor). `gram=True` (Gram Newton-Schulz, as
    microsoft/dion's) iterates on the small Gram matrix instead: with S = X X^T (m x m, m <= n),
    each step is P = a + b S + c S^2, S <- P S P, Q <- P Q, and the result is Q X; the same
    polynomial, 4 m^3 flops a step instead of 2 m^2 n + m^3, so it pays for wide aspect ratios
    (see experiments/benchmarks/gram_newton_schulz.py).
    """
    if preconditioning not in ("frobenius", "aol"):
        raise ValueError(f"newton_schulz: preconditioning must be 'frobenius' or 'aol', got {preconditioning!r}")
    if g.ndim < 2:
        raise ValueError(f"newton_schulz: g must have at least 2 dimensions, got shape {g.shape}")
    table, safety = ns_coefficients(coeffs, steps, g.shape)
    out_dtype = g.dtype
    x = g.astype(compute_dtype or g.dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    if preconditioning == "aol":
        row_sums = jnp.sum(jnp.abs(x @ jnp.swapaxes(x, -1, -2)), axis=-1, keepdims=True)
        x = x * jax.lax.rsqrt(jnp.maximum(row_sums, eps).astype(x.dtype))
    else:
        norm = jnp.linalg.norm(x, axis=(-2, -1), keepdims=True)
        x = x / (safety * norm + eps).astype(x.dtype)

    def step(x, abc):
        a, b, c = abc[0], abc[1], abc[2]
        gram = x @ jnp.swapaxes(x, -1, -2)
        poly = b * gram + (c * gram) @ gram  # optax.contrib.muon's order of operations
        return a * x + poly @ x, None

    if gram:
        x = _gram_steps(x, jnp.asarray(table, dtype=x.dtype))
    else:
        x, _ = jax.lax.scan(step, x, jnp.asarray(table, dtype=x.dtype), unroll=True)
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    return x.astype(out_dtype)

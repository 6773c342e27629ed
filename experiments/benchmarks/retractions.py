"""Cost of Stiefel / O(n) retractions, float32, jitted, as multiples of one matmul X^T U.

    python -m experiments.benchmarks.retractions

For each shape, times (median after warm-up) QR, polar by the p x p eigh closed form
(what Stiefel(retraction="polar") uses), polar by a thin SVD (`linalg.polar`), approximate
polar by 5 Newton-Schulz steps (`linalg.newton_schulz`, Muon coefficients), and Cayley
(Wen & Yin low-rank form on St(n, p); X cayley(W / 2) on O(n)), all applied to X + U with U
tangent, next to one plain matmul X^T U of the same shape in the same run. Also prints the
orthonormality error ||Y^T Y - I||_F of each result (Newton-Schulz is only approximate).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import median_time
from manifold_opt import linalg
from manifold_opt.manifolds import OrthogonalGroup, Stiefel
from manifold_opt.manifolds._matrix import orthonormality_error

CASES = [  # (label, manifold factory, repeats); the first (untimed) call also compiles
    ("St(1000, 10)", lambda r: Stiefel(1000, 10, retraction=r), 20),
    ("St(1000, 100)", lambda r: Stiefel(1000, 100, retraction=r), 10),
    ("St(4096, 1024)", lambda r: Stiefel(4096, 1024, retraction=r), 2),
    ("O(512)", lambda r: OrthogonalGroup(512, retraction=r), 5),
]


def methods(make):
    return {
        "qr": jax.jit(make("qr").retract),
        "polar (eigh)": jax.jit(make("polar").retract),
        "polar (svd)": jax.jit(lambda x, u: linalg.polar(x + u)),
        "polar (NS-5)": jax.jit(lambda x, u: linalg.newton_schulz(x + u)),
        "cayley": jax.jit(make("cayley").retract),
    }


def main():
    print(f"backend: {jax.default_backend()}, float32, median seconds; ratio = time / time(X^T U)")
    print(f"{'shape':<16}{'method':<15}{'seconds':>11}{'ratio':>9}{'||Y^T Y - I||':>16}")
    for label, make, repeats in CASES:
        m = make("qr")
        kx, ku = jax.random.split(jax.random.PRNGKey(0))
        x = m.random_point(kx, jnp.float32)
        u = 0.1 * m.random_tangent(ku, x) * jnp.sqrt(jnp.float32(m.dim))
        matmul = jax.jit(lambda x, u: x.T @ u)
        base = median_time(matmul, x, u, warmup=1, repeats=max(repeats, 10))
        print(f"{label:<16}{'x.T @ u':<15}{base:>11.2e}{1.0:>9.2f}{'':>16}")
        for name, fn in methods(make).items():
            err = float(orthonormality_error(fn(x, u)))  # compiles and warms up
            t = median_time(fn, x, u, warmup=0, repeats=repeats)
            print(f"{label:<16}{name:<15}{t:>11.2e}{t / base:>9.2f}{err:>16.1e}", flush=True)


if __name__ == "__main__":
    main()

"""Independent float64 NumPy references for the orthogonalized optimizers (one step each)."""
import numpy as np

MUON = (3.4445, -4.7750, 2.0315)


def ns(x, steps=5, coeffs=MUON, eps=1e-7):
    """Quintic Newton-Schulz on one matrix, written out from the formula."""
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        a = x @ x.T
        x = coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x
    return x.T if tall else x


def width(p):
    return np.sqrt(max(1.0, p.shape[1] / p.shape[0]))


def nesterov(state, g, beta):
    m = beta * state.get("m", 0 * g) + (1 - beta) * g
    return {**state, "m": m}, (1 - beta) * g + beta * m


def muon(state, g, p, lr, wd, beta=0.95):
    state, u = nesterov(state, g, beta)
    return state, -lr * (width(p) * ns(u) + wd * p)


def cosh_scaled(u, gamma=1.5):
    r = np.sqrt(np.mean(np.cosh(gamma * u / np.linalg.norm(u)) ** 2))
    return u / (r + 1e-8)


def auon(state, g, p, lr, wd, beta=0.95):
    state, u = nesterov(state, g, beta)
    return state, -lr * (cosh_scaled(u) + wd * p)


def hybrid_auon(state, g, p, lr, wd, beta=0.95):
    state, u = nesterov(state, g, beta)
    return state, -lr * (cosh_scaled(ns(u)) + wd * p)


def normuon(state, g, p, lr, wd, beta=0.95, beta2=0.95):
    state, u = nesterov(state, g, beta)
    o = ns(u)
    v = beta2 * state.get("v", np.zeros(p.shape[1])) + (1 - beta2) * np.mean(o**2, axis=0)  # per output
    o_hat = o / (np.sqrt(v) + 1e-10)
    o_hat *= np.linalg.norm(o) / (np.linalg.norm(o_hat) + 1e-10)
    return {**state, "v": v}, -lr * (width(p) * o_hat + wd * p)


def conda(state, g, p, lr, wd, gap, b1=0.9, b2=0.99, eps=1e-8, scale=0.25):
    t = state.get("t", 0) + 1
    w = g.T  # reference layout (out, in)
    m = b1 * state.get("m", 0 * w) + (1 - b1) * w
    rows_ge_cols = w.shape[0] >= w.shape[1]
    q = state.get("q")
    if (t - 1) % gap == 0:
        u, _, vh = np.linalg.svd(m, full_matrices=False)
        q = vh.T if rows_ge_cols else u
    proj = (lambda x: x @ q) if rows_ge_cols else (lambda x: q.T @ x)
    back = (lambda y: y @ q.T) if rows_ge_cols else (lambda y: q @ y)
    v = b2 * state.get("v", 0 * w) + (1 - b2) * proj(w) ** 2
    step = scale * np.sqrt(1 - b2**t) / (1 - b1**t)
    upd = back(proj(m) / (np.sqrt(v) + eps)) * step
    return {"t": t, "m": m, "v": v, "q": q}, -lr * (upd.T + wd * p)


def root(state, g, p, lr, wd, mu=0.95):
    m = mu * state.get("m", 0 * g) + g
    u = g + mu * m
    eps = np.quantile(np.abs(u), 0.9)
    o = ns(np.clip(u, -eps, eps))
    return {"m": m}, -lr * (0.2 * np.sqrt(max(p.shape)) * o + wd * p)


def soft_clip_svd(x, c):
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    return (u * (s / np.sqrt(1 + s**2 / c**2))) @ vh


def adam(state, g, b1=0.9, b2=0.999, eps=1e-8):
    t = state.get("t", 0) + 1
    m = b1 * state.get("m", 0 * g) + (1 - b1) * g
    v = b2 * state.get("v", 0 * g) + (1 - b2) * g**2
    return {"t": t, "m": m, "v": v}, (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


def spectral_clip(state, g, p, lr, wd, c):
    state, u = adam(state, g)
    return state, -lr * (width(p) * soft_clip_svd(u, c) + wd * p)


def spectral_clip_vector(state, g, lr, c):
    state, u = adam(state, g)
    n = np.linalg.norm(u)
    return state, -lr * (u / np.sqrt(1 + (n / c) ** 2) if n > c else u)


def nesterov_bias_corrected(state, g, beta):
    """optax.contrib.muon's momentum: u = beta m / (1 - beta^(t+1)) + (1 - beta) g / (1 - beta^t)."""
    t = state.get("t", 0) + 1
    m = beta * state.get("m", 0 * g) + (1 - beta) * g
    return {**state, "t": t, "m": m}, beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)


def normuon_optax(state, g, p, lr, wd, beta=0.95, beta2=0.95):
    """NorMuon with optax's momentum and NS eps 1e-8."""
    state, u = nesterov_bias_corrected(state, g, beta)
    o = ns(u, eps=1e-8)
    v = beta2 * state.get("v", np.zeros(p.shape[1])) + (1 - beta2) * np.mean(o**2, axis=0)
    o_hat = o / (np.sqrt(v) + 1e-10)
    o_hat *= np.linalg.norm(o) / (np.linalg.norm(o_hat) + 1e-10)
    return {**state, "v": v}, -lr * (width(p) * o_hat + wd * p)


def cautious_step(direction, p, lr, wd):
    """-lr (u + wd 1[u p >= 0] p) for the optimizer's direction u (Chen et al. 2025)."""
    return -lr * (direction + wd * (direction * p >= 0) * p)


def hyperball_step(update, p, radius):
    """The update that lands p + update back on the sphere of Frobenius radius `radius`."""
    new = p + update
    return radius * new / np.linalg.norm(new) - p


def polar(x):
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    return u @ vh


def manifold_muon_direction(w, g, steps=100, alpha=0.1, tol=1e-6):
    """Dual ascent of "Modular Manifolds" on tall w (orthonormal columns), g scaled to RMS
    singular value 1: A = msign(G + 2 W Lambda), Lambda -= alpha (1 - k / K) (W^T A + A^T W),
    stopping once the RMS of W^T A + A^T W is <= tol."""
    if w.shape[0] < w.shape[1]:
        return manifold_muon_direction(w.T, g.T, steps, alpha, tol).T
    g = g * np.sqrt(g.shape[1]) / np.linalg.norm(g)
    lam = -0.25 * (w.T @ g + g.T @ w)
    for k in range(steps):
        a = polar(g + 2 * w @ lam)
        h = w.T @ a + a.T @ w
        if np.sqrt(np.mean(h**2)) <= tol:
            break
        lam = lam - alpha * (1 - k / steps) * h
    return polar(g + 2 * w @ lam)


def manifold_muon(state, g, p, lr, beta=0.95):
    state, u = nesterov(state, g, beta)
    return state, polar(p - lr * manifold_muon_direction(p, u)) - p


def tangent_steepest_direction(w, g):
    """argmax <G, A> s.t. ||A||_2 <= 1, W^T A + A^T W = 0 for tall w, solved exactly: the KKT
    condition sym(W^T msign(G + 2 W Lambda)) = 0 by scipy's root finder, then certified by a zero
    duality gap: <G, A> = ||G + 2 W Lambda||_* with A feasible. Returns (A, gap, tangent residual)."""
    from scipy import optimize

    n = w.shape[1]
    upper = np.triu_indices(n)

    def sym(v):
        lam = np.zeros((n, n))
        lam[upper] = v
        return lam + lam.T - np.diag(np.diag(lam))

    def kkt(v):
        a = polar(g + 2 * w @ sym(v))
        return (w.T @ a + a.T @ w)[upper]

    lam = sym(optimize.root(kkt, (-0.25 * (w.T @ g + g.T @ w))[upper], method="hybr", tol=1e-14).x)
    a = polar(g + 2 * w @ lam)
    gap = np.linalg.svd(g + 2 * w @ lam, compute_uv=False).sum() - np.sum(g * a)
    return a, abs(gap), np.linalg.norm(w.T @ a + a.T @ w)


def dion2(state, g, p, lr, wd, fraction=0.25, ef=0.95):
    """Dion2 with Muon's Newton-Schulz: accumulate, orthogonalize the top-L1 slices along the
    shorter side, decay those slices of the momentum by ef."""
    m = state.get("m", 0 * g) + g
    flip = m.shape[0] > m.shape[1]
    x = m.T.copy() if flip else m.copy()
    rows = np.argsort(-np.abs(x).sum(axis=1))[: max(1, int(np.ceil(fraction * x.shape[0])))]
    u = np.zeros_like(x)
    u[rows] = ns(x[rows])
    x[rows] *= ef
    u, x = (u.T, x.T) if flip else (u, x)
    return {"m": x}, -lr * (width(p) * u + wd * p)


def ns_aol(x, steps=5, coeffs=MUON, eps=1e-8):
    """Newton-Schulz with Turbo-Muon's AOL start: rows scaled by 1 / sqrt(sum_j |X X^T|_ij)
    instead of dividing by the Frobenius norm."""
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / np.sqrt(np.maximum(np.abs(x @ x.T).sum(axis=1), eps))[:, None]
    for _ in range(steps):
        a = x @ x.T
        x = coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x
    return x.T if tall else x


def muon_aol_adaptive(state, g, p, lr, wd, beta=0.95):
    """Muon with AOL preconditioning and the adaptive (dual-norm) scale <u, O> O."""
    state, u = nesterov(state, g, beta)
    o = ns_aol(u, eps=1e-7)
    return state, -lr * (width(p) * np.sum(u * o) * o + wd * p)


def aro(state, g, p, lr, wd, beta=0.95):
    """ARO with row normalization on the (fan_out, fan_in) view, rotation by QR."""
    m = beta * state.get("m", 0 * g) + (1 - beta) * g
    mt = m.T
    r = state.get("r", np.eye(mt.shape[0]))

    def f(x):  # rows below sqrt(eps) of the longest are zero rows
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        keep = norms > max(np.sqrt(np.finfo(float).eps) * norms.max(), 1e-8)
        return np.where(keep, np.sqrt(x.shape[1]) * x / np.where(keep, norms, 1.0), 0.0)

    q, _ = np.linalg.qr(mt @ f(r.T @ mt).T)
    u = (q @ f(q.T @ mt)).T
    return {"m": m, "r": q}, -lr * (0.2 * np.sqrt(max(p.shape)) * u + wd * p)


def _spd_power(a, power):
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * w**power) @ v.T


def fismo(state, g, p, lr, wd, beta=0.95, decay=0.95, damping=1e-3):
    """FISMO on the (fan_out, fan_in) view: Kronecker Fisher factors, whitened momentum, NS."""
    gt = g.T
    m, n = gt.shape
    left, right = state.get("P", np.eye(m)), state.get("Q", np.eye(n))
    left_t = decay * left + (1 - decay) * (gt @ np.linalg.inv(right) @ gt.T / n + damping * np.trace(left) / m * np.eye(m))
    left = m * left_t / np.trace(left_t)
    right_t = decay * right + (1 - decay) * (gt.T @ np.linalg.inv(left) @ gt / m
                                             + damping * np.trace(right) / n * np.eye(n))
    right = n * right_t / np.trace(right_t)
    ph, qh = _spd_power(left, -0.5), _spd_power(right, -0.5)
    mom = beta * state.get("M", np.zeros_like(gt)) + (1 - beta) * ph @ gt @ qh
    return {"P": left, "Q": right, "M": mom}, -lr * ((ph @ ns(mom) @ qh).T + wd * p)

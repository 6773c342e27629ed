"""Git Re-Basin on digits: the loss barrier along the linear path between two MLPs trained
independently, before and after weight matching (`mo.merging.align`).

    python -m experiments.benchmarks.rebasin [--quick]

Two 64-H-H-10 ReLU MLPs from different seeds (Adam, full batch). For lambda in [0, 1] the train
and test cross-entropy of (1 - lambda) theta_A + lambda pi(theta_B) is printed with pi the
identity ("naive") and the weight-matching permutations ("aligned"), and the barrier
max_lambda [L(lambda) - ((1 - lambda) L(0) + lambda L(1))] (Ainsworth et al. 2023, Sec. 2).
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import manifold_opt as mo

SPEC = {
    "dense0": {"kernel": (None, "P0"), "bias": ("P0",)},
    "dense1": {"kernel": ("P0", "P1"), "bias": ("P1",)},
    "dense2": {"kernel": ("P1", None), "bias": (None,)},
}


def init(key, hidden):
    sizes = [(64, hidden), (hidden, hidden), (hidden, 10)]
    keys = jax.random.split(key, len(sizes))
    return {f"dense{i}": {"kernel": jax.random.normal(k, s) * jnp.sqrt(2.0 / s[0]), "bias": jnp.zeros(s[1])}
            for i, (k, s) in enumerate(zip(keys, sizes))}


def apply(params, x):
    for i in range(2):
        x = jax.nn.relu(x @ params[f"dense{i}"]["kernel"] + params[f"dense{i}"]["bias"])
    return x @ params["dense2"]["kernel"] + params["dense2"]["bias"]


def loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(apply(params, x), y).mean()


def train(seed, x, y, hidden, steps):
    params = init(jax.random.key(seed), hidden)
    opt = optax.adam(1e-3)

    @jax.jit
    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss)(params, x, y)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


def path_losses(a, b, x, y, lambdas):
    return np.array([float(loss(jax.tree.map(lambda p, q: (1 - t) * p + t * q, a, b), x, y)) for t in lambdas])


def barrier(losses, lambdas):
    return float(np.max(losses - ((1 - lambdas) * losses[0] + lambdas * losses[-1])))


def main(argv):
    quick = "--quick" in argv
    hidden, steps = (64, 500) if quick else (256, 3000)
    features, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(features))
    test, trainset = order[:360], order[360:]
    mean, std = features[trainset].mean(0), features[trainset].std(0) + 1.0
    data = {name: (jnp.asarray((features[idx] - mean) / std, jnp.float32), jnp.asarray(labels[idx]))
            for name, idx in (("train", trainset), ("test", test))}
    a = train(0, *data["train"], hidden, steps)
    b = train(1, *data["train"], hidden, steps)
    aligned, perms = mo.merging.align(a, b, SPEC)
    moved = {name: int(np.sum(p != np.arange(len(p)))) for name, p in perms.items()}
    lambdas = np.linspace(0.0, 1.0, 11)
    print(f"two 64-{hidden}-{hidden}-10 MLPs on digits, Adam 1e-3 full batch, {steps} steps, seeds 0 and 1; "
          f"units moved by alignment: {moved}")
    for split in ("train", "test"):
        naive = path_losses(a, b, *data[split], lambdas)
        matched = path_losses(a, aligned, *data[split], lambdas)
        print(f"\n{split} loss along (1 - lambda) A + lambda B")
        print("lambda   " + " ".join(f"{t:6.1f}" for t in lambdas))
        print("naive    " + " ".join(f"{v:6.3f}" for v in naive))
        print("aligned  " + " ".join(f"{v:6.3f}" for v in matched))
        print(f"barrier: naive {barrier(naive, lambdas):.3f}, aligned {barrier(matched, lambdas):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""ODICE's orthogonal-gradient rule and PCGrad surgery against float64 NumPy references."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import manifold_opt as mo

RNG = np.random.default_rng(11)
SHAPES = {"w": (3, 4), "b": (5,), "block": {"c": (2, 2, 2)}}


def random_tree(scale=1.0, dtype=np.float64):
    return jax.tree.map(lambda s: (scale * RNG.standard_normal(s)).astype(dtype), SHAPES,
                        is_leaf=lambda s: isinstance(s, tuple))


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def odice_reference(g_f, g_b, eta, per_leaf):
    """g_f + eta (g_b - <g_b, g_f>/max(||g_f||^2, 1e-10) g_f), written out in float64."""
    def combine(f, b):
        f, b = np.asarray(f, np.float64), np.asarray(b, np.float64)
        return f + eta * (b - (b.ravel() @ f.ravel()) / max(f.ravel() @ f.ravel(), 1e-10) * f)

    if per_leaf:
        return jax.tree.map(combine, g_f, g_b)
    f, b = flat(g_f), flat(g_b)
    c = (b @ f) / max(f @ f, 1e-10)
    return jax.tree.map(lambda x, y: np.asarray(x) + eta * (np.asarray(y) - c * np.asarray(x)), g_f, g_b)


def assert_trees_close(actual, expected, **tol):
    jax.tree.map(lambda a, e: np.testing.assert_allclose(np.asarray(a), e, **tol), actual, expected)


@pytest.mark.parametrize("per_leaf", [False, True])
def test_odice_rule_matches_reference_and_its_added_part_is_normal_to_g_forward(per_leaf):
    g_f, g_b = random_tree(), random_tree(3.0)
    tx = mo.orthogonal_gradient(0.7, per_leaf=per_leaf)
    out, _ = tx.update((g_f, g_b), tx.init(g_f))
    assert_trees_close(out, odice_reference(g_f, g_b, 0.7, per_leaf), rtol=1e-12, atol=1e-12)
    added = jax.tree.map(lambda o, f: np.asarray(o) - f, out, g_f)
    if per_leaf:
        for a, f in zip(jax.tree.leaves(added), jax.tree.leaves(g_f)):
            assert abs(a.ravel() @ f.ravel()) < 1e-12 * np.linalg.norm(a) * np.linalg.norm(f)
    else:
        assert abs(flat(added) @ flat(g_f)) < 1e-12 * np.linalg.norm(flat(added)) * np.linalg.norm(flat(g_f))


def test_zero_and_tiny_forward_gradients_stay_finite():
    g_b = random_tree()
    tx = mo.orthogonal_gradient(0.5)
    zero = jax.tree.map(np.zeros_like, g_b)
    out, _ = tx.update((zero, g_b), tx.init(g_b))
    assert_trees_close(out, jax.tree.map(lambda b: 0.5 * b, g_b), rtol=0, atol=0)  # exactly eta g_b
    for scale, dtype in [(1e-8, np.float64), (1e-30, np.float32), (1e-20, np.float32)]:
        g_f = random_tree(scale, dtype)
        b32 = jax.tree.map(lambda b: b.astype(dtype), g_b)
        out, _ = tx.update((g_f, b32), tx.init(g_f))
        assert all(np.all(np.isfinite(x)) and x.dtype == dtype for x in jax.tree.leaves(out))
        assert_trees_close(out, odice_reference(g_f, b32, 0.5, False), rtol=1e-5, atol=1e-30)


def test_jit_inside_optax_chain_float32_equals_adam_on_the_reference_direction():
    params = random_tree(dtype=np.float32)
    pairs = [(random_tree(dtype=np.float32), random_tree(dtype=np.float32)) for _ in range(3)]
    tx = optax.chain(mo.orthogonal_gradient(1.0), optax.adam(2e-4))
    adam = optax.adam(2e-4)
    step = jax.jit(tx.update)
    state, ref_state = tx.init(params), adam.init(params)
    for g_f, g_b in pairs:
        updates, state = step((g_f, g_b), state, params)
        combined = jax.tree.map(lambda x: x.astype(np.float32), odice_reference(g_f, g_b, 1.0, False))
        expected, ref_state = adam.update(combined, ref_state, params)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(updates))
        assert_trees_close(updates, jax.tree.map(np.asarray, expected), rtol=1e-4, atol=1e-9)


def pcgrad_reference(grads, orders, reduction):
    """PCGrad (Yu et al. 2020, Alg. 1) on flat float64 vectors, projecting sequentially."""
    vecs = [flat(g) for g in grads]
    out = []
    for i, order in enumerate(orders):
        g = vecs[i].copy()
        for j in order:
            d = g @ vecs[j]
            if d < 0:
                g -= d / (vecs[j] @ vecs[j]) * vecs[j]
        out.append(g)
    total = np.sum(out, axis=0)
    return total if reduction == "sum" else total / len(grads)


def test_pcgrad_matches_sequential_reference_in_fixed_and_random_order():
    base = random_tree()
    # three tasks, two of them conflicting with the first
    grads = (base, jax.tree.map(lambda x: -0.8 * x + 0.5 * RNG.standard_normal(x.shape), base), random_tree())
    for reduction in ("sum", "mean"):
        tx = mo.pcgrad(None, reduction=reduction)
        out, _ = tx.update(grads, tx.init(base))
        fixed = [[j for j in range(3) if j != i] for i in range(3)]
        np.testing.assert_allclose(flat(out), pcgrad_reference(grads, fixed, reduction), rtol=1e-12, atol=1e-12)
    # random order: the result is the reference for one choice of per-task orders, and it changes per step
    tx = mo.pcgrad(0)
    state = tx.init(base)
    step = jax.jit(tx.update)
    candidates = [pcgrad_reference(grads, orders, "sum")
                  for orders in itertools.product(*[list(itertools.permutations(o)) for o in fixed])]
    for _ in range(3):
        out, state = step(grads, state)
        assert min(np.max(np.abs(flat(out) - c)) for c in candidates) < 1e-12
    # no conflict: the plain sum
    agree = (base, jax.tree.map(lambda x: 2 * x, base))
    out, _ = mo.pcgrad(None).update(agree, mo.pcgrad(None).init(base))
    np.testing.assert_allclose(flat(out), 3 * flat(base), rtol=1e-12)


def test_pcgrad_per_leaf_matches_reference_leaf_by_leaf():
    grads = (random_tree(), random_tree(), random_tree())
    tx = mo.pcgrad(None, per_leaf=True)
    out, _ = tx.update(grads, tx.init(grads[0]))
    fixed = [[j for j in range(3) if j != i] for i in range(3)]
    leaves = [jax.tree.leaves(g) for g in grads]
    for index, leaf in enumerate(jax.tree.leaves(out)):
        expected = pcgrad_reference([{"x": lv[index]} for lv in leaves], fixed, "sum")
        np.testing.assert_allclose(np.ravel(leaf), expected, rtol=1e-12, atol=1e-12)


def test_bad_input_names_the_argument():
    g = random_tree()
    with pytest.raises(ValueError, match="orthogonal_gradient: eta"):
        mo.orthogonal_gradient(-1.0)
    tx = mo.orthogonal_gradient()
    with pytest.raises(ValueError, match="orthogonal_gradient: updates must be a pair"):
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match=r"orthogonal_gradient: updates\[1\]"):
        tx.update((g, {"w": g["w"]}), tx.init(g))
    with pytest.raises(ValueError, match="pcgrad: reduction"):
        mo.pcgrad(reduction="max")
    with pytest.raises(ValueError, match="pcgrad: updates"):
        mo.pcgrad().update((g,), mo.pcgrad().init(g))

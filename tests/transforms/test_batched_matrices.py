"""Batched matrices (issue 19.2): stacked layers, per-expert (E, d, f) kernels, conv kernels and a
fused GQA QKV kernel split into its parts, each equal to a loop over the single matrices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import manifold_opt as mo
from manifold_opt.transforms import DimensionNumbers as DN
from manifold_opt.transforms import SplitMatrix, matrix_rules, resolve_dimension_numbers
from manifold_opt.transforms.matrix_params import orthogonalize_matrices
from tests.transforms import reference as ref

RNG = np.random.default_rng(23)
SIZES = (8, 4, 4)  # q, k, v widths of a GQA kernel (6, 16)


def tree():
    return {"experts": {"w_in": RNG.standard_normal((3, 6, 10))},  # (E, d, f)
            "layers": {"stack": RNG.standard_normal((2, 10, 6))},   # scanned layers
            "conv": {"kernel": RNG.standard_normal((3, 3, 2, 5))},
            "attn": {"qkv": {"kernel": RNG.standard_normal((6, sum(SIZES)))}}}


RULES = matrix_rules({"experts/*": DN(1, 2), "layers/*": DN(1, 2), "conv/*": True},
                     split_sizes={"attn/qkv/kernel": SIZES})


def loop_over_matrices(params, grads, step):
    """The expected update: `step(g, p)` on every single matrix, written out."""
    out = {"experts": {"w_in": np.stack([step(g, p) for g, p in zip(grads["experts"]["w_in"], params["experts"]["w_in"])])},
           "layers": {"stack": np.stack([step(g, p) for g, p in zip(grads["layers"]["stack"], params["layers"]["stack"])])},
           "conv": {"kernel": step(grads["conv"]["kernel"].reshape(18, 5),
                                   params["conv"]["kernel"].reshape(18, 5)).reshape(3, 3, 2, 5)}}
    cuts = np.cumsum(SIZES)[:-1]
    g_parts, p_parts = np.split(grads["attn"]["qkv"]["kernel"], cuts, 1), np.split(params["attn"]["qkv"]["kernel"], cuts, 1)
    out["attn"] = {"qkv": {"kernel": np.concatenate([step(g, p) for g, p in zip(g_parts, p_parts)], axis=1)}}
    return out


@pytest.mark.parametrize("name", ["muon", "normuon", "spectral_clip"])
def test_batched_and_split_matrices_equal_a_loop(name):
    params, grads = tree(), tree()
    make, reference = {"muon": (mo.muon, ref.muon), "normuon": (mo.normuon, ref.normuon),
                       "spectral_clip": (mo.spectral_clip, lambda *a, **k: ref.spectral_clip(*a, c=3.0, **k))}[name]
    extra = {"c": 3.0, "num_iters": 20} if name == "spectral_clip" else {}
    tx = make(0.1, weight_decay=0.05, weight_dimension_numbers=RULES, **extra)
    upd, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    expected = loop_over_matrices(params, grads, lambda g, p: reference({}, g, p, lr=0.1, wd=0.05)[1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9), upd, expected)


def test_split_parts_reach_a_custom_orthogonalizer_one_by_one():
    params = tree()
    seen = []

    def orthogonalizer(fn, stacks):
        seen.extend(m.shape for m in stacks)
        return [fn(m) for m in stacks]

    ns = lambda m: mo.linalg.newton_schulz(m)  # noqa: E731
    ours = jax.jit(lambda p: orthogonalize_matrices(ns, p, RULES, name="t", orthogonalizer=orthogonalizer))(params)
    plain = jax.jit(lambda p: orthogonalize_matrices(ns, p, RULES, name="t"))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, plain)
    assert sorted(seen) == sorted([(3, 6, 10), (2, 10, 6), (1, 18, 5), (1, 6, 8), (1, 6, 4), (1, 6, 4)])


def test_bad_split_sizes():
    params = {"qkv": jnp.ones((6, 16))}
    with pytest.raises(ValueError, match="split sizes \\(8, 4\\) of 'qkv' must add up to its fan-out 16"):
        resolve_dimension_numbers(params, matrix_rules(split_sizes={"qkv": (8, 4)}))
    with pytest.raises(TypeError, match="matrix_rules: split_sizes 'qkv'"):
        matrix_rules(split_sizes={"qkv": (8, -4)})
    assert resolve_dimension_numbers(params, {"qkv": SplitMatrix(DN(0, 1), (8, 8))})["qkv"].sizes == (8, 8)

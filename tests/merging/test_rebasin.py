"""Git Re-Basin weight matching: exact recovery of planted permutations (an MLP and a
transformer-block-like spec) and the weight-matching objective checked by brute force."""
import itertools

import jax
import numpy as np
import pytest

from manifold_opt import merging

MLP_SPEC = {
    "dense0": {"kernel": (None, "P0"), "bias": ("P0",)},
    "dense1": {"kernel": ("P0", "P1"), "bias": ("P1",)},
    "dense2": {"kernel": ("P1", None), "bias": (None,)},
}
# A pre-norm transformer block on a residual stream R: attention with query/key features H
# (shared so q k^T is kept), value features V, an MLP with hidden units M.
BLOCK_SPEC = {
    "embed": (None, "R"),
    "norm": {"scale": ("R",)},
    "query": ("R", "H"), "key": ("R", "H"), "value": ("R", "V"), "out": ("V", "R"),
    "mlp_in": {"kernel": ("R", "M"), "bias": ("M",)},
    "mlp_out": {"kernel": ("M", "R"), "bias": ("R",)},
    "head": ("R", None),
}


def random_params(spec, sizes, rng):
    return jax.tree.map(lambda axes: rng.standard_normal([sizes[a] for a in axes]), spec,
                        is_leaf=lambda x: isinstance(x, tuple))


@pytest.mark.parametrize("spec,sizes", [
    (MLP_SPEC, {None: 5, "P0": 12, "P1": 9}),
    (BLOCK_SPEC, {None: 7, "R": 10, "H": 6, "V": 5, "M": 14}),
])
def test_align_recovers_a_planted_permutation_exactly(spec, sizes):
    rng = np.random.default_rng(0)
    reference = random_params(spec, sizes, rng)
    planted = {name: rng.permutation(n) for name, n in sizes.items() if name is not None}
    other = merging.permute(reference, spec, planted)
    aligned, perms = merging.align(reference, other, spec, seed=1)
    for name, perm in planted.items():
        np.testing.assert_array_equal(np.asarray(perm)[perms[name]], np.arange(sizes[name]))
    for got, want in zip(jax.tree_util.tree_leaves(aligned), jax.tree_util.tree_leaves(reference)):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_align_finds_the_best_permutation_of_one_layer_by_brute_force():
    """One hidden layer: coordinate descent is a single exact assignment, so it must equal the
    argmax of sum <W_ref, pi(W_other)> over all 5! permutations."""
    rng = np.random.default_rng(2)
    spec = {"dense0": {"kernel": (None, "P"), "bias": ("P",)}, "dense1": {"kernel": ("P", None)}}
    reference = random_params(spec, {None: 3, "P": 5}, rng)
    other = random_params(spec, {None: 3, "P": 5}, rng)

    def score(perm):
        permuted = merging.permute(other, spec, {"P": np.asarray(perm)})
        return sum(np.sum(np.asarray(a) * b) for a, b in
                   zip(jax.tree_util.tree_leaves(permuted), jax.tree_util.tree_leaves(reference)))

    best = max(itertools.permutations(range(5)), key=score)
    _, perms = merging.align(reference, other, spec)
    np.testing.assert_array_equal(perms["P"], best)


def test_align_rejects_a_bad_spec():
    rng = np.random.default_rng(3)
    reference = random_params(MLP_SPEC, {None: 5, "P0": 4, "P1": 3}, rng)
    with pytest.raises(ValueError, match="align: spec leaf"):
        merging.align(reference, reference, {**MLP_SPEC, "dense2": {"kernel": ("P1",), "bias": (None,)}})
    with pytest.raises(ValueError, match="align: permutation 'P1' acts on axes of sizes"):
        merging.align(reference, reference, {**MLP_SPEC, "dense2": {"kernel": ("P1", "P1"), "bias": (None,)}})

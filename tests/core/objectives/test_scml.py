"""Tests of the SCML objective of the core (fastmetric._core.objectives.scml):
the hinge from the distinct pairs, the weighted embedding, the map of the
weights."""
import numpy as np
from numpy.testing import assert_allclose, assert_array_equal

from fastmetric._core.objectives.scml import distinct_pairs, embedding_map, weighted_projections
from fastmetric._learners.scml import generate_knn_triplets
from fastmetric.kernels.scml import _triplet_hinge, _triplet_hinge_pairs


def test_hinge_from_distinct_pairs_matches_direct(dtype):
    rng = np.random.RandomState(13)
    X = rng.randn(50, 4)
    y = np.repeat(np.arange(5), 10)
    triplets = generate_knn_triplets(X, y, 3, 4)
    pairs, first, second = distinct_pairs(triplets)
    assert pairs.shape[0] <= 50 * 7
    assert_array_equal(pairs[first], triplets[:, [0, 1]])
    assert_array_equal(pairs[second], triplets[:, [0, 2]])
    E = rng.randn(50, 3).astype(dtype)
    out = np.empty(pairs.shape[0])
    for threads in (1, 2):
        total, count = _triplet_hinge_pairs(E, pairs, first, second, out, threads)
        ref_total, ref_count = _triplet_hinge(E, triplets, 1)
        assert count == ref_count
        assert_allclose(total, ref_total, rtol=1e-12)


def test_weighted_projections_give_the_metric():
    rng = np.random.RandomState(14)
    X = rng.randn(20, 3)
    B = rng.randn(40, 3)
    Z = X @ B.T
    for n_active in (2, 40):  # gathered columns, then a factor of M
        w = np.zeros(40)
        w[rng.choice(40, n_active, replace=False)] = rng.rand(n_active) + 0.1
        E = weighted_projections(Z, B, w, X)
        D = ((E[:, None] - E[None]) ** 2).sum(-1)
        M = (B.T * w) @ B
        diff = X[:, None] - X[None]
        assert_allclose(D, np.einsum("ijk,kl,ijl->ij", diff, M, diff), rtol=1e-9, atol=1e-9)


def test_embedding_map_reproduces_metric():
    rng = np.random.RandomState(9)
    B = rng.randn(8, 3)
    for w in (np.r_[1.0, 0, 2, 0, 0, 0, 0, 0], np.abs(rng.randn(8)), np.zeros(8)):
        L = embedding_map(B, w)
        assert_allclose(L.T @ L, (B.T * w) @ B, atol=1e-12)
        assert L.shape[0] == max(1, min(np.count_nonzero(w), 3))

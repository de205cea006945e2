"""Tests of SCML's basis sets (fastmetric._core.scml_basis): the local LDA
against the generalised eigenproblem, the k-means, the triplet-difference
eigenvectors."""
import numpy as np
import scipy.linalg
from numpy.testing import assert_allclose, assert_array_equal

from fastmetric._core.scml_basis import (
    greedy_kmeans,
    lda_basis,
    local_lda_directions,
    triplet_diffs_basis,
)


def test_local_lda_matches_generalised_eigenproblem():
    rng = np.random.RandomState(5)
    sizes = np.array([6, 4, 5])
    Xl = rng.randn(3, 15, 4) + np.repeat(rng.randn(3, 3, 4) * 2, sizes, axis=1)
    V = local_lda_directions(Xl, sizes, 2)
    assert V.shape == (3, 2, 4)
    lab = np.repeat(np.arange(3), sizes)
    for s in range(3):
        X = Xl[s]
        mu = X.mean(0)
        Sw = sum((X[lab == c] - X[lab == c].mean(0)).T @ (X[lab == c] - X[lab == c].mean(0))
                 for c in range(3))
        Sb = sum(sizes[c] * np.outer(X[lab == c].mean(0) - mu, X[lab == c].mean(0) - mu)
                 for c in range(3))
        Sw_r = Sw + 1e-2 * np.trace(Sw) / 4 * np.eye(4)
        _, U = scipy.linalg.eigh(Sb, Sw_r)
        for j in range(2):
            u = U[:, -1 - j] / np.linalg.norm(U[:, -1 - j])
            assert_allclose(abs(V[s, j] @ u), 1.0, atol=1e-8)


def test_local_lda_singular_scatter_is_finite():
    # Constant features and fewer points than dimensions: Sw is singular.
    rng = np.random.RandomState(6)
    Xl = np.zeros((2, 6, 10))
    Xl[:, :, :3] = rng.randn(2, 6, 3)
    V = local_lda_directions(Xl, np.array([3, 3]), 1)
    assert np.isfinite(V).all()
    assert_allclose(np.linalg.norm(V, axis=2), 1.0)
    assert_allclose(V[:, :, 3:], 0.0, atol=1e-12)  # no weight on constant features
    V0 = local_lda_directions(np.ones((1, 4, 3)), np.array([2, 2]), 1)  # all equal
    assert np.isfinite(V0).all()


def test_lda_basis_shape_and_determinism():
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(4), 20)
    X = rng.randn(4, 5)[y] * 3 + rng.randn(80, 5)
    counts = np.bincount(y)
    B = lda_basis(X, y, counts, 17, np.random.RandomState(0))
    assert B.shape == (17, 5)
    assert_allclose(np.linalg.norm(B, axis=1), 1.0)
    assert_array_equal(B, lda_basis(X, y, counts, 17, np.random.RandomState(0)))


def test_kmeans_finds_separated_clusters():
    rng = np.random.RandomState(7)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    X = np.repeat(centres, 30, axis=0) + 0.1 * rng.randn(90, 2)
    C = greedy_kmeans(X, 3, np.random.RandomState(0))
    D = np.linalg.norm(C[:, None, :] - centres[None, :, :], axis=2)
    assert_array_equal(np.sort(np.argmin(D, axis=1)), [0, 1, 2])
    assert D.min(axis=1).max() < 0.1
    # More clusters than distinct points: no failure.
    assert np.isfinite(greedy_kmeans(np.ones((5, 2)), 4, np.random.RandomState(0))).all()


def test_triplet_diffs_basis_are_eigenvectors():
    rng = np.random.RandomState(8)
    X = rng.randn(40, 4)
    triplets = rng.randint(0, 40, size=(30, 3))
    B = triplet_diffs_basis(X, triplets, 10, np.random.RandomState(0))
    assert B.shape == (10, 4)
    assert_allclose(np.linalg.norm(B, axis=1), 1.0)
    # The first round's vectors are orthonormal eigenvectors of its scatter.
    assert_allclose(B[:4] @ B[:4].T, np.eye(4), atol=1e-10)
    sel = np.random.RandomState(0).choice(30, size=4, replace=False)
    dp = X[triplets[sel, 0]] - X[triplets[sel, 1]]
    dn = X[triplets[sel, 0]] - X[triplets[sel, 2]]
    S = dp.T @ dp - dn.T @ dn
    for v in B[:4]:
        Sv = S @ v
        assert_allclose(Sv, (v @ Sv) * v, atol=1e-10)
    # Degenerate triplets (all differences zero) still give a full basis.
    B0 = triplet_diffs_basis(np.ones((5, 3)), triplets[:4] % 5, 7, np.random.RandomState(0))
    assert B0.shape == (7, 3) and np.isfinite(B0).all()

"""LFDA's local Fisher scatters (fastmetric._core.local_scatter) against the
paper's pairwise sums."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastmetric._core import local_scatter
from fastmetric._core.local_scatter import local_scatters


def _reference_scatters(X, y, k):
    """The paper's pairwise sums, evaluated literally (O(n^2 d^2) memory).

    Local scale s_i: distance to the k-th nearest distinct same-class point
    (the farthest one when there are fewer; 0 when there is none).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    A = np.zeros((n, n))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        D = ((X[idx, None, :] - X[None, idx, :]) ** 2).sum(-1)
        s = np.zeros(len(idx))
        for i in range(len(idx)):
            pos = np.sort(D[i][D[i] > 0])
            if pos.size:
                s[i] = np.sqrt(pos[min(k, len(idx) - 1, pos.size) - 1])
        scale = np.outer(s, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            A[np.ix_(idx, idx)] = np.where(scale > 0, np.exp(-D / scale), 0.0)
    n_c = np.bincount(np.unique(y, return_inverse=True)[1])[np.unique(y, return_inverse=True)[1]]
    same = y[:, None] == y[None, :]
    W_w = np.where(same, A / n_c[:, None], 0.0)
    W_b = np.where(same, A * (1.0 / n - 1.0 / n_c[:, None]), 1.0 / n)
    diff = X[:, None, :] - X[None, :, :]
    S_w = 0.5 * np.einsum("ij,ija,ijb->ab", W_w, diff, diff)
    S_b = 0.5 * np.einsum("ij,ija,ijb->ab", W_b, diff, diff)
    return S_b, S_w


def _data(n=60, d=4, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(n_classes), n // n_classes)
    # Two clusters per class (the multimodal case LFDA is for).
    offsets = rng.randn(n_classes, 2, d) * 3
    X = offsets[y, rng.randint(0, 2, n)] + rng.randn(n, d)
    return X, y


@pytest.mark.parametrize("k", [1, 3, 7, 100])
def test_scatters_match_pairwise_definition(k):
    X, y = _data()
    X[5] = X[3] = X[0]  # duplicates inside class 0
    X[10] = X[11]
    codes = np.unique(y, return_inverse=True)[1]
    S_b, S_w, S_t = local_scatters(X, codes, 3, k)
    R_b, R_w = _reference_scatters(X, y, k)
    assert_allclose(S_w, R_w, rtol=1e-10, atol=1e-10 * np.abs(R_w).max())
    assert_allclose(S_b, R_b, rtol=1e-10, atol=1e-10 * np.abs(R_b).max())
    Xc = X - X.mean(0)
    assert_allclose(S_t, Xc.T @ Xc, rtol=1e-12)


@pytest.mark.parametrize("k", [5, 100])
def test_scatters_blocked_equal_unblocked(monkeypatch, k):
    X, y = _data(n=90)
    X[4] = X[2] = X[0]
    codes = np.unique(y, return_inverse=True)[1]
    full = local_scatters(X, codes, 3, k)
    monkeypatch.setattr(local_scatter, "_BLOCK_ELEMENTS", 64)  # blocks of 2 rows
    blocked = local_scatters(X, codes, 3, k)
    for a, b in zip(full, blocked):
        assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    _, R_w = _reference_scatters(X, y, k)
    assert_allclose(blocked[1], R_w, rtol=1e-10, atol=1e-10 * np.abs(R_w).max())

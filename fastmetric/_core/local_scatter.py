"""Local Fisher scatters (Sugiyama, 2007), LFDA's statistics.

With affinities ``A_ij`` by local scaling (``A_ij = exp(-||x_i - x_j||^2 /
(s_i s_j))``, ``s_i`` the distance from ``x_i`` to its k-th nearest
distinct neighbour in its class), the local within- and between-class
scatters are

    S_w = 1/2 sum_ij W^w_ij (x_i - x_j)(x_i - x_j)^T,
          W^w_ij = A_ij / n_c        (i, j both in class c), 0 otherwise;
    S_b = 1/2 sum_ij W^b_ij (x_i - x_j)(x_i - x_j)^T,
          W^b_ij = A_ij (1/n - 1/n_c) (same class c),  1/n otherwise.

Nothing of size n x n x d is built: per class, ``1/2 sum_ij A_ij (x_i -
x_j)(x_i - x_j)^T = X_c^T (diag(A 1) - A) X_c`` (a Laplacian), computed over
blocks of rows with BLAS, and ``S_b = S_t - S_w + sum_c (G_c / n - (n_c / n)
S_c)`` from the total scatter ``S_t``, each class's scatter ``S_c`` and its
affinity term ``G_c`` (:func:`local_scatters`).  The learner
:class:`fastmetric.LFDA` solves its eigenproblem from them.
"""
import numpy as np

__all__ = ["local_scatters"]

# Entries of a block of the affinity matrix computed at once (32 MB in
# float64): bounds the memory of a class of any size to O(block * n_c).
_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(n_rows, n_cols):
    step = max(1, _BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def _block_sq_distances(Xb, X, sq_b, sq):
    """Squared distances of a block of rows to all rows, by the GEMM expansion.

    Values within the rounding of the expansion (relative to the squared
    norms) are set to 0 exactly, so duplicated points are at distance 0.
    """
    S = sq_b[:, None] + sq[None, :]
    D = Xb @ X.T
    D *= -2.0
    D += S
    S *= 64.0 * np.finfo(np.float64).eps
    D[D <= S] = 0.0
    return D


def _kth_positive(D, k):
    """Per row: the k-th smallest positive entry (the largest positive one if
    there are fewer than k; 0 if none).  D is overwritten."""
    n_pos = np.count_nonzero(D, axis=1)
    D[D == 0] = np.inf
    kk = min(k, D.shape[1] - 1)
    if kk < 1:
        return np.zeros(D.shape[0])
    part = np.partition(D, kk - 1, axis=1)
    out = part[:, kk - 1]
    short = n_pos < kk
    if short.any():
        # Fewer than k distinct mates: the farthest one.  (They are all
        # among the first kk entries of the partition, the rest being inf.)
        head = part[short, :kk]
        far = np.max(np.where(np.isfinite(head), head, 0.0), axis=1)
        out = out.copy()
        out[short] = far
    return out


def _affinity_laplacian(D, s_b, s, Xb, Xc):
    """Contribution of a block of rows to ``X_c^T (diag(A 1) - A) X_c``."""
    scale = np.multiply.outer(s_b, s)
    if np.all(s_b > 0) and np.all(s > 0):
        np.divide(D, scale, out=D)
        np.negative(D, out=D)
        A = np.exp(D, out=D)
    else:
        pos = scale > 0
        A = np.zeros_like(D)
        np.divide(D, scale, out=A, where=pos)
        np.negative(A, out=A)
        np.exp(A, out=A, where=pos)
    r = A.sum(axis=1)
    return (Xb * r[:, None]).T @ Xb - Xb.T @ (A @ Xc)


def _local_scales(Xc, sq, k):
    """``s_i``: distance from x_i to its k-th nearest *distinct* class mate.

    Points at distance 0 (x_i itself and its duplicates) are not
    neighbours: otherwise a point with k duplicates would get ``s_i = 0``
    and no affinity at all.  With fewer than k distinct mates, the farthest
    one is used; with none (all class points equal), ``s_i = 0``.
    """
    n_c = Xc.shape[0]
    s2 = np.zeros(n_c)
    for start, stop in _row_blocks(n_c, n_c):
        D = _block_sq_distances(Xc[start:stop], Xc, sq[start:stop], sq)
        s2[start:stop] = _kth_positive(D, k)
    return np.sqrt(s2)


def _class_laplacian_scatter(Xc, k):
    """``G = 1/2 sum_ij A_ij (x_i - x_j)(x_i - x_j)^T`` for one class."""
    n_c, d = Xc.shape
    if n_c < 2:
        return np.zeros((d, d))
    Xc = Xc - Xc.mean(axis=0)  # translation-invariant; better rounding
    sq = np.einsum("ij,ij->i", Xc, Xc)
    blocks = list(_row_blocks(n_c, n_c))
    if len(blocks) == 1:
        # The whole class fits in one block: distances computed once.
        D = _block_sq_distances(Xc, Xc, sq, sq)
        s = np.sqrt(_kth_positive(D.copy(), k))
        G = _affinity_laplacian(D, s, s, Xc, Xc)
    else:
        s = _local_scales(Xc, sq, k)
        G = np.zeros((d, d))
        for start, stop in blocks:
            D = _block_sq_distances(Xc[start:stop], Xc, sq[start:stop], sq)
            G += _affinity_laplacian(D, s[start:stop], s, Xc[start:stop], Xc)
    return (G + G.T) * 0.5


def local_scatters(X, codes, n_classes, k):
    """Local between- and within-class scatters ``(S_b, S_w)`` and ``S_t``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float64
    codes : ndarray of shape (n,), int
        Class index in [0, n_classes).
    n_classes : int
    k : int
        The neighbour whose distance is each point's local scale.

    Returns
    -------
    S_b, S_w, S_t : ndarray of shape (d, d)
        Symmetric; ``S_t`` the total scatter of the centred points.
    """
    n, d = X.shape
    Xc_all = X - X.mean(axis=0)
    S_t = Xc_all.T @ Xc_all
    S_w = np.zeros((d, d))
    extra = np.zeros((d, d))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_classes + 1))
    for c in range(n_classes):
        rows = order[bounds[c]:bounds[c + 1]]
        n_c = rows.shape[0]
        if n_c == 0:
            continue
        Xc = X[rows]
        G = _class_laplacian_scatter(Xc, k)
        centred = Xc - Xc.mean(axis=0)
        S_w += G / n_c
        extra += G / n - (n_c / n) * (centred.T @ centred)
    S_b = S_t - S_w + extra
    return (S_b + S_b.T) * 0.5, S_w, S_t

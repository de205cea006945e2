"""SCML's basis sets: the vectors ``b_k`` of ``M = sum_k w_k b_k b_k^T``.

Two constructions (Shi, Bellet & Sha, 2014):

* ``'lda'`` (:func:`lda_basis`, SCML_Supervised's default): LDA directions
  of local neighbourhoods around the centres of a k-means of the points
  (:func:`greedy_kmeans`), at two scales, each solved by
  :func:`local_lda_directions` for a whole stack of neighbourhoods at once;
* ``'triplet_diffs'`` (:func:`triplet_diffs_basis`, SCML's default):
  eigenvectors of the scatters of the differences of random groups of
  triplets.

The learners :class:`fastmetric.SCML` and :class:`fastmetric.SCML_Supervised`
build their basis here, then learn the weights with
:mod:`fastmetric._core.objectives.scml`.
"""
import numpy as np
import scipy.linalg.lapack
import scipy.sparse

from fastmetric._core.memory import check_memory

__all__ = ["default_n_basis_lda", "greedy_kmeans", "lda_basis", "local_lda_directions",
           "triplet_diffs_basis"]

# Relative ridge of the local LDA (see local_lda_directions).
_LDA_RIDGE = 1e-2
# Largest block of gathered neighbourhood points of the 'lda' basis (floats).
_LDA_BLOCK = 1 << 22


def greedy_kmeans(X, n_clusters, rng, max_iter=100):
    """Lloyd's k-means from a greedy k-means++ start; returns the centres.

    Deterministic for a given generator (no threads involved beyond a
    single-threaded BLAS).  An empty cluster keeps its previous centre.

    The seeding draws ``2 + log(n_clusters)`` candidates per centre from
    ``rng`` (a RandomState) and keeps the one that lowers the potential
    most; the iterations stop when no label changes (at most ``max_iter``).
    This is not :func:`fastmetric._core.cluster_rows.lloyd`, ClusterLDML's
    k-means: that one seeds with scikit-learn's ``kmeans_plusplus`` from an
    integer seed on a row sample, stops on a tolerance on the centre
    shifts and sums over row blocks (numpy or dask) in float64 by
    ``np.add.at``; each gives different centres from the same data, and
    the SCML basis (pinned bitwise) is built from this one.
    """
    n, d = X.shape
    x_sq = np.einsum("ij,ij->i", X, X)
    n_trials = 2 + int(np.log(max(n_clusters, 1)))
    centres = np.empty((n_clusters, d))
    first = rng.randint(n)
    centres[0] = X[first]
    closest = np.maximum(x_sq - 2 * X @ X[first] + x_sq[first], 0.0)
    for c in range(1, n_clusters):
        total = closest.sum()
        if total > 0:
            cand = np.searchsorted(np.cumsum(closest), rng.uniform(size=n_trials) * total)
            cand = np.minimum(cand, n - 1)
        else:  # every point sits on a centre already
            cand = rng.randint(n, size=n_trials)
        dist = np.maximum(x_sq[cand, None] - 2 * X[cand] @ X.T + x_sq[None, :], 0.0)
        pot = np.minimum(closest[None, :], dist)
        best = int(np.argmin(pot.sum(axis=1)))
        closest = pot[best]
        centres[c] = X[cand[best]]
    labels = None
    for _ in range(max_iter):
        dist = (x_sq[:, None] - 2 * X @ centres.T) + np.einsum("ij,ij->i", centres, centres)
        new = np.argmin(dist, axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        member = scipy.sparse.csr_matrix((np.ones(n), (labels, np.arange(n))),
                                         shape=(n_clusters, n))
        sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
        sums = np.asarray(member @ X)
        full = sizes > 0
        centres[full] = sums[full] / sizes[full, None]
    return centres


def local_lda_directions(Xl, sizes, n_dirs, ridge=_LDA_RIDGE, overwrite=False):
    """Leading LDA directions of each of a stack of small labelled sets.

    ``Xl`` has shape (m, N, d): m sets of N points whose classes are the
    consecutive blocks of ``sizes`` rows (the same layout in every set).
    For each set, with within-class scatter ``Sw`` and between-class
    scatter ``Sb``, the directions are the generalised eigenvectors of
    ``Sb v = lambda (Sw + eps I) v`` of the ``n_dirs`` largest eigenvalues,
    scaled to unit norm.

    Rule for singular within-class scatter (constant features, fewer
    points than dimensions, duplicated points): the ridge ``eps = ridge *
    trace(Sw) / d`` (``ridge = 1e-2``) keeps ``Sw + eps I`` well
    conditioned (condition number at most about ``d / ridge``); if
    ``Sw = 0`` it is ``ridge * trace(Sb) / d``, and 1 when both vanish.  A
    direction along which no point varies gets eigenvalue 0, so it is never
    preferred to an informative one.

    Computation: ``Sw + eps I = C C^T`` (Cholesky), ``Sb = H^T H`` with the
    rows ``sqrt(n_c) (mu_c - mu)`` of H; the eigenvectors are ``C^-T u``
    for the right singular vectors u of ``H C^-T`` (a c x d matrix), all
    batched over the m sets.

    ``overwrite=True`` lets the function centre ``Xl`` (float64) in place.

    Returns an array (m, n_dirs, d).
    """
    m, N, d = Xl.shape
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    sizes_f = np.asarray(sizes, dtype=np.float64)
    means = np.empty((m, len(sizes), d))
    # Centred class by class (in place when allowed).
    centred = np.array(Xl, dtype=np.float64, copy=not overwrite)
    for c in range(len(sizes)):
        block = centred[:, bounds[c] : bounds[c + 1]]
        means[:, c] = block.mean(axis=1)
        block -= means[:, c, None, :]
    Sw = centred.transpose(0, 2, 1) @ centred
    mu = (sizes_f[None, :, None] * means).sum(axis=1, keepdims=True) / N
    H = np.sqrt(sizes_f)[None, :, None] * (means - mu)  # (m, c, d)
    tr_w = np.trace(Sw, axis1=1, axis2=2)
    tr_b = np.einsum("mcd,mcd->m", H, H)
    eps = np.where(tr_w > 0, ridge * tr_w / d, np.where(tr_b > 0, ridge * tr_b / d, 1.0))
    Sw[:, np.arange(d), np.arange(d)] += eps[:, None]
    C = np.linalg.cholesky(Sw)  # Sw + eps I = C C^T, C lower
    C_inv = np.empty_like(C)
    for j in range(m):  # triangular inverses: a third of a general inverse's work
        C_inv[j], info = scipy.linalg.lapack.dtrtri(C[j], lower=1)
        if info != 0:  # cannot happen for a Cholesky factor; be safe
            C_inv[j] = np.linalg.inv(C[j])
    K = H @ C_inv.transpose(0, 2, 1)  # H C^-T, (m, c, d)
    _, _, Vt = np.linalg.svd(K, full_matrices=False)  # (m, r, d)
    V = Vt[:, :n_dirs, :] @ C_inv  # rows (C^-T u)^T = u^T C^-1
    norms = np.linalg.norm(V, axis=2, keepdims=True)
    norms[norms == 0] = 1.0
    out = V / norms
    if out.shape[1] < n_dirs:  # d < n_dirs cannot happen (n_dirs <= d) but be safe
        out = np.concatenate([out, np.zeros((m, n_dirs - out.shape[1], d))], axis=1)
    return out


def default_n_basis_lda(n, d, n_classes):
    num_eig = min(n_classes - 1, d)
    return min(20 * d, 2 * n * num_eig - 1)


def lda_basis(X, y_enc, counts, n_basis, rng):
    """The 'lda' basis: LDA directions of local neighbourhoods at two scales.

    The neighbourhoods are centred on the ``n_clusters = ceil(n_basis /
    (2 * num_eig))`` centres of a k-means of X (``num_eig = min(n_classes -
    1, n_features)``); the neighbourhood of a centre at scale s takes, from
    every class c, its ``min(|c|, s)`` points nearest to the centre.  The
    scales are 10 and 20 points per class (20 and 50 when ``n_features >
    50``).  Each neighbourhood gives its ``num_eig`` leading local LDA
    directions (see :func:`local_lda_directions`); the basis lists the
    directions of the first scale (centre by centre), then of the second,
    and keeps the first ``n_basis``.
    """
    d = X.shape[1]
    n_classes = counts.shape[0]
    num_eig = min(n_classes - 1, d)
    n_clusters = int(np.ceil(n_basis / (2 * num_eig)))
    X64 = np.asarray(X, dtype=np.float64)
    centres = greedy_kmeans(X64, n_clusters, rng)
    scales = (20, 50) if d > 50 else (10, 20)
    k_big = np.minimum(counts, scales[1])
    # For every class, its k_big nearest points to each centre (nearest first).
    c_sq = np.einsum("ij,ij->i", centres, centres)
    x_sq = np.einsum("ij,ij->i", X64, X64)
    near = []
    for c in range(n_classes):
        rows = np.flatnonzero(y_enc == c)
        D = c_sq[:, None] - 2 * centres @ X64[rows].T + x_sq[rows][None, :]
        order = np.argsort(D, axis=1, kind="stable")[:, : k_big[c]]
        near.append(rows[order])
    blocks = []
    for s in scales:
        k_s = np.minimum(counts, s)
        idx = np.concatenate([near[c][:, : k_s[c]] for c in range(n_classes)], axis=1)
        # A set holds its N x d points and makes d x d scatters (within,
        # total, the inverse: three): both count toward the block, or at
        # d = 2000 a block of 52 sets took 5 GB for 150 points.
        per = max(1, _LDA_BLOCK // max(idx.shape[1] * d + 3 * d * d, 1))
        for start in range(0, n_clusters, per):
            sub = idx[start : start + per]
            blocks.append(local_lda_directions(X64[sub], k_s, num_eig, overwrite=True)
                          .reshape(-1, d))
    basis = np.concatenate(blocks)[:n_basis]
    return np.ascontiguousarray(basis)


def triplet_diffs_basis(X, triplets, n_basis, rng):
    """The 'triplet_diffs' basis: eigenvectors of local difference scatters.

    Round after round, ``min(n_features, n_triplets)`` triplets drawn
    without replacement give ``S = sum (x_a - x_p)(x_a - x_p)^T - sum (x_a -
    x_q)(x_a - x_q)^T``; the eigenvectors of S with a non-negligible
    eigenvalue (``|lambda| > 1e-10 max |lambda|``), in decreasing
    ``|lambda|``, join the basis until it has ``n_basis`` vectors.  (These
    are the eigenvectors with a positive eigenvalue of ``S^T S``, the
    paper's construction.)  If rounds keep adding nothing (the triplets'
    differences all vanish), the canonical basis vectors complete the set.
    """
    n_t = triplets.shape[0]
    d = X.shape[1]
    # The basis (n_basis x d) and the projections on it (n x n_basis) must
    # fit: refuse an impossible n_basis before drawing ~n_basis / d rounds.
    check_memory(8 * n_basis * max(X.shape), f"n_basis={n_basis} (a basis of n_basis x "
                 f"{d} and projections of {X.shape[0]} x n_basis float64)")
    m = min(d, n_t)
    X64 = np.asarray(X, dtype=np.float64)
    dp = X64[triplets[:, 0]] - X64[triplets[:, 1]]
    dn = X64[triplets[:, 0]] - X64[triplets[:, 2]]
    found = []
    total = 0
    empty_rounds = 0
    while total < n_basis and empty_rounds < 10:
        n_rounds = max(1, -(-(n_basis - total) // max(m, 1)))
        sel = np.stack([rng.choice(n_t, size=m, replace=False) for _ in range(n_rounds)])
        P, Q = dp[sel], dn[sel]  # (R, m, d)
        S = P.transpose(0, 2, 1) @ P - Q.transpose(0, 2, 1) @ Q
        lam, vec = np.linalg.eigh(S)
        added = 0
        for r in range(n_rounds):
            a = np.abs(lam[r])
            keep = np.flatnonzero(a > 1e-10 * a.max()) if a.max() > 0 else np.zeros(0, int)
            keep = keep[np.argsort(-a[keep], kind="stable")]
            if keep.size:
                found.append(vec[r][:, keep].T)
                total += keep.size
                added += keep.size
            if total >= n_basis:
                break
        empty_rounds = 0 if added else empty_rounds + 1
    if total < n_basis:
        reps = -(-(n_basis - total) // d)
        found.append(np.tile(np.eye(d), (reps, 1)))
    return np.ascontiguousarray(np.concatenate(found)[:n_basis])

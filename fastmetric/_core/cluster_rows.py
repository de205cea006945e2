"""The data side of ClusterLDML, for rows in memory or in a dask array.

ClusterLDML needs, of its points, only: the mean squared learned distance
between two points (``2 tr(L C L^T)``, C the covariance), a sample of rows
for the initial map, k-means in the embedded space ``Z = X L^T``, the
means of the clusters, and the nearest centre of every point.  Each is a
sum over row blocks, so one code serves numpy arrays (blocks of a fixed
number of rows) and dask arrays (their row chunks, one task per block on
the workers, summed on the client in block order).

:func:`lloyd` is the k-means behind ``kmeans='lloyd'`` (and behind
``'auto'`` on dask arrays): k-means++ seeding on at most
``SAMPLE_ROWS`` evenly spaced rows, then Lloyd iterations over all rows.
"""
import numpy as np
from sklearn.cluster import kmeans_plusplus

from fastmetric._core.dask_support import gather_rows, is_dask_array
from fastmetric._core.rows import evenly_spaced

__all__ = ["BLOCK_ROWS", "SAMPLE_ROWS", "lloyd", "cluster_means", "nearest_centers",
           "discriminant_coordinates", "map_row_blocks", "sum_in_order"]

# Rows per block of a numpy array (the unit of the block sums).
BLOCK_ROWS = 65_536
# Rows used to seed k-means++ (and for the tolerance's scale).
SAMPLE_ROWS = 100_000


def nearest_center(Z, centers):
    """Index of the nearest centre (squared Euclidean) of each row of ``Z``.

    Computed as an explicit sum of squared differences (no expansion
    ``|z|^2 - 2 z.c + |c|^2``), so it is exact up to rounding of each term
    and gives identical answers in fit and predict; ties go to the lowest
    index.
    """
    n = Z.shape[0]
    best = np.full(n, np.inf)
    labels = np.zeros(n, dtype=np.intp)
    for c in range(centers.shape[0]):
        diff = Z - centers[c]
        dist = np.einsum("ij,ij->i", diff, diff)
        closer = dist < best
        best[closer] = dist[closer]
        labels[closer] = c
    return labels


def _block_stats(Z, labels, k):
    """Per-cluster sums (float64) and counts of one block of rows."""
    sums = np.zeros((k, Z.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, Z.astype(np.float64, copy=False))
    return sums, np.bincount(labels, minlength=k)


def _block_moments(Z):
    """Column sums and ``Z^T Z`` of one block of rows, in float64.

    By ``einsum``'s own loops, not BLAS: OpenBLAS's result changes in the
    last bits with how it was started (a dask worker starts it with one
    thread), and the covariance must be the same on any worker.
    """
    Z = Z.astype(np.float64, copy=False)
    return Z.sum(axis=0), np.einsum("ij,ik->jk", Z, Z, optimize=False)


def _assign_block(Z, centers):
    """One Lloyd step on a block: (sums, counts, inertia) of its nearest centres."""
    labels = nearest_center(Z, centers)
    sums, counts = _block_stats(Z, labels, centers.shape[0])
    diff = Z - centers[labels]
    return sums, counts, float(np.einsum("ij,ij->", diff, diff))


def _blocks(Z):
    """(start, stop) of the row blocks of a numpy array."""
    n = Z.shape[0]
    return [(s, min(n, s + BLOCK_ROWS)) for s in range(0, n, BLOCK_ROWS)]


def map_row_blocks(func, Z, *args):
    """``[func(block, *args)]`` over the row blocks of Z, in order."""
    if is_dask_array(Z):
        import dask

        from fastmetric._core.dask_support import _compute

        tasks = [dask.delayed(func, pure=True)(block, *args)
                 for block in Z.to_delayed().ravel()]
        return list(_compute(*tasks))
    return [func(Z[s:e], *args) for s, e in _blocks(Z)]


def sum_in_order(parts):
    """Element-wise sums of the per-block tuples ``parts``, added in block
    order (the same result on any cluster, whatever order blocks finish in)."""
    total = [np.array(p, copy=True) if isinstance(p, np.ndarray) else p for p in parts[0]]
    for part in parts[1:]:
        for i, value in enumerate(part):
            total[i] = total[i] + value
    return total


def cluster_means(Z, labels, fallback):
    """Mean of the rows of ``Z`` in each cluster; ``fallback`` rows for empty ones.

    Accumulated in float64 by blocks, merged in block order; cast to Z's
    dtype.  ``labels`` is a numpy array (one label per row).
    """
    k = fallback.shape[0]
    if is_dask_array(Z):
        bounds = np.concatenate([[0], np.cumsum(Z.chunks[0])])
        import dask

        from fastmetric._core.dask_support import _compute

        tasks = [dask.delayed(_block_stats, pure=True)(block, labels[s:e], k)
                 for block, s, e in zip(Z.to_delayed().ravel(), bounds[:-1], bounds[1:])]
        parts = list(_compute(*tasks))
    else:
        parts = [_block_stats(Z[s:e], labels[s:e], k) for s, e in _blocks(Z)]
    sums, counts = sum_in_order(parts)
    centers = np.array(fallback, dtype=np.float64, copy=True)
    nonempty = counts > 0
    centers[nonempty] = sums[nonempty] / counts[nonempty, None]
    return centers.astype(Z.dtype, copy=False)


def nearest_centers(Z, centers):
    """Nearest centre of every row, as a numpy array (computed by blocks)."""
    if is_dask_array(Z):
        from fastmetric._core.dask_support import _compute

        (labels,) = _compute(Z.map_blocks(nearest_center, centers, drop_axis=1,
                                          dtype=np.intp))
        return np.asarray(labels, dtype=np.intp)
    return nearest_center(Z, centers)


def _sample(Z):
    rows = evenly_spaced(Z.shape[0], SAMPLE_ROWS)
    if is_dask_array(Z):
        return gather_rows(Z, rows)
    return Z[rows]


def lloyd(Z, n_clusters, random_state, init=None, max_iter=300, tol=1e-4):
    """k-means by Lloyd's iterations over the row blocks of ``Z``.

    Parameters
    ----------
    Z : ndarray or dask array of shape (n_samples, n_features)
    n_clusters : int
    random_state : int
        Seeds k-means++ (on at most ``SAMPLE_ROWS`` evenly spaced rows).
    init : ndarray of shape (n_clusters, n_features), optional
        Starting centres instead of k-means++.
    max_iter : int
    tol : float
        Stop when the centres move (sum of squared shifts) by at most
        ``tol`` times the mean variance of the features (as scikit-learn's
        KMeans).

    Returns
    -------
    labels : ndarray of shape (n_samples,), intp
    centers : ndarray of shape (n_clusters, n_features), float64
    inertia : float
        Sum of squared distances to the nearest centre, before the last
        update.
    """
    sample = np.asarray(_sample(Z), dtype=np.float64)
    scale = float(np.mean(np.var(sample, axis=0)))
    if init is None:
        centers, _ = kmeans_plusplus(sample, n_clusters, random_state=random_state)
    else:
        centers = np.array(init, dtype=np.float64, copy=True)
    inertia = np.nan
    for _ in range(int(max_iter)):
        sums, counts, inertia = sum_in_order(
            map_row_blocks(_assign_block, Z, centers.astype(Z.dtype)))
        new = centers.copy()
        nonempty = counts > 0
        new[nonempty] = sums[nonempty] / counts[nonempty, None]
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= tol * scale:
            break
    return nearest_centers(Z, centers.astype(Z.dtype)), centers, float(inertia)


def _shrunk_covariance(residuals):
    """Ledoit-Wolf covariance of centred rows, shrunk on the standardised scale.

    The rows are divided by their root mean square per feature before the
    shrinkage and the estimate is scaled back (scikit-learn's LDA with
    ``shrinkage='auto'`` does the same): the shrinkage target is then the
    diagonal of the covariance, not a multiple of the identity, which in raw
    units (features in the thousands next to features below 1) would be the
    variance of the largest feature.
    """
    from sklearn.covariance import ledoit_wolf

    scale = np.sqrt(np.mean(residuals ** 2, axis=0))
    scale[~(scale > 0)] = 1.0  # a feature constant in these rows
    W = ledoit_wolf(residuals / scale, assume_centered=True)[0]
    return scale[:, None] * W * scale[None, :]


def _within_covariance(rows, labels, n_clusters):
    """Within-cluster covariance ``W`` (float64).

    ``W = sum_c (n_c / n) W_c`` with ``W_c`` the covariance of cluster
    ``c``'s residuals ``x - mean_c``, each shrunk by
    :func:`_shrunk_covariance` (as LDA with shrinkage estimates its class
    covariances), on at most ``SAMPLE_ROWS`` evenly spaced rows.  The
    shrinkage keeps ``W`` invertible when features are constant inside the
    clusters or outnumber the points.
    """
    X = rows.X
    d = X.shape[1]
    means = cluster_means(X, labels, np.zeros((n_clusters, d))).astype(np.float64)
    picked = evenly_spaced(X.shape[0], SAMPLE_ROWS)
    sample = gather_rows(X, picked) if is_dask_array(X) else X[picked]
    sample_labels = labels[picked]
    residuals = np.asarray(sample, dtype=np.float64) - means[sample_labels]
    W = np.zeros((d, d))
    for c in range(n_clusters):
        members = residuals[sample_labels == c]
        if members.shape[0] >= 2:  # one point has no spread to estimate
            W += (members.shape[0] / residuals.shape[0]) * _shrunk_covariance(members)
    if not np.trace(W) > 0:
        # Every cluster one (repeated) point: no spread inside the clusters
        # to whiten by; leave the units as they are.
        W = np.eye(d)
    return (W + W.T) / 2


def _inverse_root(W):
    """``W^{-1/2}`` of a symmetric positive semi-definite matrix."""
    import scipy.linalg

    w, V = scipy.linalg.eigh(W)
    # The shrunk W is positive definite; the floor guards against rounding.
    floor = max(float(w.max()), 1e-300) * 1e-12
    return (V / np.sqrt(np.maximum(w, floor))) @ V.T


def discriminant_coordinates(rows, labels, n_clusters, n_directions):
    """Whitened coordinates along the leading discriminant directions of a clustering.

    The coordinates LDA (eigen solver, shrinkage) gives to the clusters
    taken as classes: whiten by the within-cluster covariance ``W``
    (:func:`_within_covariance`), then keep the ``q = n_directions``
    leading eigenvectors ``U`` of the between-cluster scatter there,
    ``W^{-1/2} (T - W) W^{-1/2}`` with ``T`` the covariance of all the
    points.  A point ``x`` has coordinates ``P^T x`` with ``P = W^{-1/2} U``
    (``d x q``): unit within-cluster spread along every kept direction.

    Parameters
    ----------
    rows : MemoryRows or DaskRows
    labels : ndarray of shape (n_samples,)
    n_clusters : int
    n_directions : int
        ``q``, at most ``n_features``.  The between-cluster scatter has
        rank at most ``n_clusters - 1``; LDA keeps that many.

    Returns
    -------
    P : ndarray of shape (n_features, q), float64
    """
    import scipy.linalg

    W = _within_covariance(rows, labels, n_clusters)
    inv_root = _inverse_root(W)
    between = inv_root @ (rows.covariance() - W) @ inv_root
    w, U = scipy.linalg.eigh((between + between.T) / 2)
    # Eigenvalues in decreasing order, ties broken by index (stable), and
    # signs fixed so that the coordinates do not depend on LAPACK's choice.
    order = np.argsort(-w, kind="stable")[:n_directions]
    U = U[:, order]
    U = U * np.where(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])] < 0, -1.0, 1.0)
    return inv_root @ U


class MemoryRows:
    """ClusterLDML's view of points held in memory (numpy)."""

    def __init__(self, X):
        self.X = X
        X64 = np.asarray(X, dtype=np.float64)
        self.Xc = X64 - X64.mean(axis=0)
        self.n = X.shape[0]
        self.euclid_spread = 2.0 * float(np.einsum("ij,ij->", self.Xc, self.Xc)) / self.n

    def spread(self, L):
        """Mean squared distance ``||L(x_i - x_j)||^2`` over all pairs (i, j)."""
        Z = self.Xc @ L.T
        return 2.0 * float(np.einsum("ij,ij->", Z, Z)) / self.n

    def init_rows(self):
        return self.X

    def covariance(self):
        """Covariance ``C`` of the points (float64, ``d x d``)."""
        return self.Xc.T @ self.Xc / self.n

    def mapped(self, P):
        """The points in the coordinates ``x -> P^T x`` (rows ``X P``)."""
        return np.ascontiguousarray(self.X @ P.astype(self.X.dtype, copy=False))

    def embed(self, L):
        # Same expression as MahalanobisMixin.transform, so that fit and
        # predict see bit-identical embeddings.
        return self.X @ L.T.astype(self.X.dtype, copy=False)


class DaskRows:
    """ClusterLDML's view of points in a row-chunked dask array.

    The covariance ``C`` (float64, ``d x d``) is computed once on the
    workers; the spread of a map is then ``2 tr(L C L^T)``.  Embeddings are
    lazy and persisted for the k-means of one round.
    """

    def __init__(self, X):
        self.X = X
        self.n = X.shape[0]
        # Per-block sums merged here in block order (not dask's own reduction
        # tree, whose grouping differs between schedulers): the covariance,
        # hence the model, is the same with any cluster or none.
        total, second = sum_in_order(map_row_blocks(_block_moments, X))
        mean = total / self.n
        self.C = second / self.n - np.outer(mean, mean)
        self.C = (self.C + self.C.T) / 2
        self.euclid_spread = 2.0 * float(np.trace(self.C))

    def spread(self, L):
        return 2.0 * float(np.einsum("ij,jk,ik->", L, self.C, L))

    def covariance(self):
        """Covariance ``C`` of the points (float64, ``d x d``), computed once."""
        return self.C

    def init_rows(self):
        from fastmetric._core.dask_support import sample_rows

        return sample_rows(self.X)[0]

    def mapped(self, P):
        """The points in the coordinates ``x -> P^T x``, lazily, persisted."""
        from fastmetric._core.dask_support import _persist, map_rows

        P = P.astype(self.X.dtype, copy=False)
        (XP,) = _persist(map_rows(self.X, lambda block: block @ P, P.shape[1], self.X.dtype))
        return XP

    def embed(self, L):
        from fastmetric._core.dask_support import _persist, map_rows

        L = L.astype(self.X.dtype, copy=False)
        (Z,) = _persist(map_rows(self.X, lambda block: block @ L.T, L.shape[0], self.X.dtype))
        return Z

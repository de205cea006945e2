"""SCML: Sparse Compositional Metric Learning (Shi, Bellet & Sha, 2014).

SCML learns a Mahalanobis matrix as a sparse non-negative combination of
rank-one matrices built from a fixed set of K basis vectors ``b_k``,

    M = sum_k w_k b_k b_k^T,      w >= 0,

from triplets ``(a, p, q)`` stating ``d(a, p) < d(a, q)``.  With
``dd_t = (d_k(a, p) - d_k(a, q))_k`` the vector of the distance differences
along each basis (``d_k(u, v) = (b_k . (x_u - x_v))^2``), the objective is

    F(w) = (1 / T) sum_t [1 + w . dd_t]_+  +  beta ||w||_1,    w >= 0,

minimised by a stochastic proximal method: regularised dual averaging with
AdaGrad step sizes (Xiao 2010; Duchi, Hazan & Singer 2011) on minibatches of
``batch_size`` triplets.  Every ``output_iter`` iterations the full objective
is evaluated and the best weights seen are kept.

:class:`SCML` learns from triplets; :class:`SCML_Supervised` from class
labels, making triplets from each point's ``k_genuine`` nearest same-class
points and ``k_impostor`` nearest other-class points.  The hot loops (the
k-NN search, the stochastic updates, the hinge loss over all triplets) are
the nogil kernels of :mod:`fastmetric.kernels.scml`.
"""
import warnings

import numpy as np
import scipy.linalg.lapack
import scipy.sparse
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from fastmetric._core.base import MahalanobisMixin, points_from_indices
from fastmetric.kernels.scml import _knn_triplet_neighbors, _sgd_run, _triplet_hinge_pairs
from fastmetric._core.memory import check_memory
from fastmetric._core.solvers import warn_interrupted
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.tuples import TripletsClassifierMixin, check_tuples
from fastmetric._core.validation import (
    check_int_param as _check_int,
    check_points,
    check_real_param as _check_real,
)

__all__ = ["SCML", "SCML_Supervised", "generate_knn_triplets"]

# AdaGrad's guard against a division by zero (the delta of the paper).
_ADAGRAD_DELTA = 1e-3
# Relative ridge of the local LDA (see _local_lda_directions).
_LDA_RIDGE = 1e-2
# Multiply-adds per thread below which a kernel call uses fewer threads
# (waking a thread costs more than it saves on small calls; results do not
# depend on the thread count).
_PARALLEL_WORK = 1 << 22
# Largest block of gathered neighbourhood points of the 'lda' basis (floats).
_LDA_BLOCK = 1 << 22


# --------------------------------------------------------------------------
# Triplets from labels
# --------------------------------------------------------------------------
def _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=True):
    """Per-class numbers of genuine and impostor neighbours, clipped to what exists."""
    kg = np.minimum(k_genuine, counts - 1)
    ki = np.minimum(k_impostor, n - counts)
    if warn:
        # One warning per kind, naming the first classes: one per class would
        # be a storm on data with many small classes.
        def shown(cs):
            names = ", ".join(f"{classes[c]!r} ({counts[c]} samples)" for c in cs[:5])
            return names + (" ..." if len(cs) > 5 else "")

        few = np.flatnonzero(kg < k_genuine)
        if few.size:
            warnings.warn(
                f"SCML: {few.size} class(es) have too few samples for k_genuine={k_genuine} "
                f"genuine neighbours (k_genuine + 1 samples needed): {shown(few)}; their "
                "points get (class size - 1) instead.",
                UserWarning,
                stacklevel=3,
            )
        few = np.flatnonzero(ki < k_impostor)
        if few.size:
            warnings.warn(
                f"SCML: {few.size} class(es) have too few samples outside them for "
                f"k_impostor={k_impostor} impostors: {shown(few)}; their points get "
                "(n_samples - class size) instead.",
                UserWarning,
                stacklevel=3,
            )
    return kg, ki


def generate_knn_triplets(X, y, k_genuine=3, k_impostor=10, n_jobs=None, warn=True):
    """Triplets from class labels: genuine neighbours against impostors.

    For each point ``a`` (anchor), its ``k_genuine`` nearest points of the
    same class ``p`` and its ``k_impostor`` nearest points of the other
    classes ``q`` give the ``k_genuine * k_impostor`` triplets ``(a, p, q)``
    (Euclidean distances).  A class with ``m <= k_genuine`` points gives its
    points ``m - 1`` genuine neighbours, and ``k_impostor`` is clipped to
    the number of points outside the class, each with a warning (as in
    metric-learn).  The triplets are listed class by class (classes in
    sorted order), anchor by anchor (in index order), then genuine
    neighbour (nearest first), then impostor (nearest first).  Distance
    ties are broken by the smaller index.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    k_genuine, k_impostor : int
    n_jobs : int, optional
        OpenMP threads of the neighbour search; the result does not depend
        on it.
    warn : bool, default=True
        Warn when a class has too few points.

    Returns
    -------
    triplets : ndarray of shape (n_triplets, 3), intp
        Row indices into X.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._learners.scml import generate_knn_triplets
    >>> X = np.array([[0.0], [1.0], [3.0], [10.0], [12.0]])
    >>> generate_knn_triplets(X, [0, 0, 0, 1, 1], k_genuine=1, k_impostor=1).tolist()
    [[0, 1, 3], [1, 0, 3], [2, 1, 3], [3, 4, 2], [4, 3, 2]]
    """
    X = check_points(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have shape (n_samples,) = ({X.shape[0]},); got shape {y.shape}."
        )
    k_genuine = _check_int(k_genuine, "k_genuine", 1)
    k_impostor = _check_int(k_impostor, "k_impostor", 1)
    classes, y_enc, counts = np.unique(y, return_inverse=True, return_counts=True)
    y_enc = y_enc.reshape(-1)
    n = X.shape[0]
    if classes.shape[0] < 2:
        raise ValueError(
            f"SCML needs at least 2 classes in y to make triplets (impostors are points "
            f"of another class); y has {classes.shape[0]} class(es)."
        )
    if n >= np.iinfo(np.intc).max:
        raise ValueError(f"X has {n} rows; at most {np.iinfo(np.intc).max - 1} supported.")
    kg, ki = _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=warn)
    if not np.any(kg * ki > 0):
        raise ValueError(
            "SCML: no triplet can be made: every class has a single sample, so no point "
            "has a genuine neighbour."
        )
    n_threads = threads_for_work(effective_n_threads(n_jobs), n * n * X.shape[1],
                                 _PARALLEL_WORK)
    # Distances do not change under translation; centred points keep the
    # GEMM filter of the kernel tight.
    Xc = np.ascontiguousarray(X - X.mean(axis=0, dtype=np.float64), dtype=X.dtype)
    with single_threaded_blas():
        gen, imp = _knn_triplet_neighbors(
            Xc, np.ascontiguousarray(y_enc, dtype=np.intc),
            np.ascontiguousarray(kg[y_enc], dtype=np.intc),
            np.ascontiguousarray(ki[y_enc], dtype=np.intc),
            int(kg.max()), int(ki.max()), n_threads,
        )
    parts = []
    for c in range(classes.shape[0]):
        if kg[c] == 0 or ki[c] == 0:
            continue
        rows = np.flatnonzero(y_enc == c)
        G = gen[rows, : kg[c]].astype(np.intp)
        Q = imp[rows, : ki[c]].astype(np.intp)
        m = rows.shape[0]
        a = np.repeat(rows, kg[c] * ki[c])
        p = np.repeat(G.ravel(), ki[c])
        q = np.broadcast_to(Q[:, None, :], (m, kg[c], ki[c])).ravel()
        parts.append(np.column_stack((a, p, q)))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.intp)


# --------------------------------------------------------------------------
# Basis sets
# --------------------------------------------------------------------------
def _check_magnitude(X, name):
    """ValueError when the squared distances of the points (and of their
    projections on unit basis vectors) would overflow X's float type: SCML
    works on squared distances throughout, with no rescaling."""
    top = float(np.abs(X).max()) if X.size else 0.0
    limit = np.sqrt(np.finfo(X.dtype).max) / (4.0 * X.shape[1])
    if top >= limit:
        raise ValueError(
            f"{name}: the data reach {top:.3g}, so their squared distances overflow "
            f"{X.dtype} (the limit is about {limit:.3g}); rescale the data (e.g. "
            "StandardScaler)."
        )


def _kmeans(X, n_clusters, rng, max_iter=100):
    """Lloyd's k-means from a greedy k-means++ start; returns the centres.

    Deterministic for a given generator (no threads involved beyond a
    single-threaded BLAS).  An empty cluster keeps its previous centre.
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


def _local_lda_directions(Xl, sizes, n_dirs, ridge=_LDA_RIDGE, overwrite=False):
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


def _default_n_basis_lda(n, d, n_classes):
    num_eig = min(n_classes - 1, d)
    return min(20 * d, 2 * n * num_eig - 1)


def _lda_basis(X, y_enc, counts, n_basis, rng):
    """The 'lda' basis: LDA directions of local neighbourhoods at two scales.

    The neighbourhoods are centred on the ``n_clusters = ceil(n_basis /
    (2 * num_eig))`` centres of a k-means of X (``num_eig = min(n_classes -
    1, n_features)``); the neighbourhood of a centre at scale s takes, from
    every class c, its ``min(|c|, s)`` points nearest to the centre.  The
    scales are 10 and 20 points per class (20 and 50 when ``n_features >
    50``).  Each neighbourhood gives its ``num_eig`` leading local LDA
    directions (see :func:`_local_lda_directions`); the basis lists the
    directions of the first scale (centre by centre), then of the second,
    and keeps the first ``n_basis``.
    """
    n, d = X.shape
    n_classes = counts.shape[0]
    num_eig = min(n_classes - 1, d)
    n_clusters = int(np.ceil(n_basis / (2 * num_eig)))
    X64 = np.asarray(X, dtype=np.float64)
    centres = _kmeans(X64, n_clusters, rng)
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
        per = max(1, _LDA_BLOCK // max(idx.shape[1] * d, 1))
        for start in range(0, n_clusters, per):
            sub = idx[start : start + per]
            blocks.append(_local_lda_directions(X64[sub], k_s, num_eig, overwrite=True)
                          .reshape(-1, d))
    basis = np.concatenate(blocks)[:n_basis]
    return np.ascontiguousarray(basis)


def _triplet_diffs_basis(X, triplets, n_basis, rng):
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


# --------------------------------------------------------------------------
# The learner
# --------------------------------------------------------------------------
def _embedding_map(basis, w):
    """A map L with ``L^T L = sum_k w_k b_k b_k^T`` (rows: min(#active, d))."""
    active = np.flatnonzero(w > 0)
    d = basis.shape[1]
    if active.size == 0:
        return np.zeros((1, d))
    B = basis[active]
    if active.size < d:
        return np.sqrt(w[active])[:, None] * B
    M = (B.T * w[active]) @ B
    M = 0.5 * (M + M.T)
    try:
        return np.linalg.cholesky(M).T  # M = C C^T, L = C^T
    except np.linalg.LinAlgError:  # singular M: its PSD square-root factor
        lam, V = np.linalg.eigh(M)
        return np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T


def _distinct_pairs(triplets):
    """The distinct pairs (a, p) and (a, q) of the triplets, and where each is.

    Returns ``pairs`` (P, 2) and, per triplet, the rows of its first and
    second pair.
    """
    n = int(triplets.max()) + 1
    keys = np.concatenate([triplets[:, 0] * n + triplets[:, 1],
                           triplets[:, 0] * n + triplets[:, 2]])
    uniq, inverse = np.unique(keys, return_inverse=True)
    pairs = np.ascontiguousarray(np.column_stack((uniq // n, uniq % n)), dtype=np.intp)
    inverse = inverse.reshape(-1).astype(np.intp)
    n_t = triplets.shape[0]
    return pairs, np.ascontiguousarray(inverse[:n_t]), np.ascontiguousarray(inverse[n_t:])


def _weighted_projections(Z, basis, w, X):
    """An embedding E with ``||e_u - e_v||^2 = sum_k w_k (b_k . (x_u - x_v))^2``.

    With few bases of positive weight (at most 2 n_features) E is the
    columns ``sqrt(w_k) z_k`` of the projections Z = X B^T (no new
    product); otherwise ``X L^T`` with a factor L of M (n_features
    columns, fewer than the bases).
    """
    active = np.flatnonzero(w > 0)
    d = basis.shape[1]
    if active.size == 0:
        return np.zeros((Z.shape[0], 1), dtype=Z.dtype)
    if active.size <= 2 * d:
        return np.ascontiguousarray(Z[:, active] * np.sqrt(w[active]).astype(Z.dtype))
    L = _embedding_map(basis, w)
    return np.ascontiguousarray(X @ L.T.astype(X.dtype))


def _check_n_basis(n_basis):
    if n_basis is None:
        return None
    return _check_int(n_basis, "n_basis", 1)


class _BaseSCML(MahalanobisMixin):
    """Shared parameters and the optimisation of SCML."""

    _authorized_basis = ("triplet_diffs",)

    def _validate_params(self):
        self._beta = _check_real(self.beta, "beta", 0.0)
        self._gamma = _check_real(self.gamma, "gamma", 0.0, low_inclusive=False)
        self._max_iter = _check_int(self.max_iter, "max_iter", 1)
        self._output_iter = _check_int(self.output_iter, "output_iter", 1)
        self._batch_size = _check_int(self.batch_size, "batch_size", 1)
        if self._output_iter > self._max_iter:
            raise ValueError(
                f"output_iter={self._output_iter} must be at most max_iter="
                f"{self._max_iter} (the objective is checked every output_iter "
                "iterations)."
            )
        self._n_basis = _check_n_basis(self.n_basis)
        if isinstance(self.basis, str):
            if self.basis not in self._authorized_basis:
                raise ValueError(
                    f"basis={self.basis!r} is not one of {self._authorized_basis} nor an "
                    "array of shape (n_basis, n_features)."
                )
        elif self.basis is None:
            raise ValueError(
                f"basis must be one of {self._authorized_basis} or an array of shape "
                "(n_basis, n_features); got None."
            )
        if not isinstance(self.verbose, (bool, np.bool_)):
            _check_int(self.verbose, "verbose", 0)
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be None or callable; got {self.callback!r}.")

    def _array_basis(self, n_features):
        basis = check_points(self.basis, name="basis", dtype=np.float64)
        if basis.shape[1] != n_features:
            raise ValueError(
                f"basis has {basis.shape[1]} features per vector but the data has "
                f"{n_features}: it must have shape (n_basis, {n_features})."
            )
        if self._n_basis is not None and self._n_basis != basis.shape[0]:
            raise ValueError(
                f"n_basis={self._n_basis} does not match the {basis.shape[0]} rows of the "
                "given basis array; leave n_basis=None."
            )
        return basis.copy()

    def _optimize(self, X, triplets, basis):
        """Stochastic optimisation of the weights; sets the fitted attributes."""
        # A generator of its own (seeded afresh from an integer random_state,
        # as metric-learn does), so that the minibatches do not depend on
        # what the basis construction drew.
        rng = check_random_state(self.random_state)
        n_t = triplets.shape[0]
        K = basis.shape[0]
        n_threads = effective_n_threads(self.n_jobs)
        dtype = X.dtype
        Z = np.ascontiguousarray(X @ basis.T.astype(dtype))
        w = np.zeros(K)
        grad_sum = np.zeros(K)
        grad_sq = np.zeros(K)
        best_w, best_obj = w.copy(), np.inf
        # The objective is evaluated from the distinct pairs of the triplets.
        pairs, first, second = _distinct_pairs(triplets)
        pair_dist = np.empty(pairs.shape[0])
        self.loss_curve_ = []
        name = type(self).__name__
        stopped = False
        t = 0
        # Ctrl-C keeps the best weights evaluated so far (the model that a
        # finished fit would also keep).
        try:
            while t < self._max_iter and not stopped:
                # Evaluate at every multiple of output_iter and at the last iteration.
                seg = min(self._output_iter - t % self._output_iter, self._max_iter - t)
                batches = rng.randint(0, n_t, size=(seg, self._batch_size)).astype(np.intp)
                _sgd_run(Z, triplets, batches, w, grad_sum, grad_sq, t, self._beta,
                         self._gamma, _ADAGRAD_DELTA)
                t += seg
                E = _weighted_projections(Z, basis, w, X)
                hinge, n_active = _triplet_hinge_pairs(
                    E, pairs, first, second, pair_dist,
                    threads_for_work(n_threads, pairs.shape[0] * E.shape[1], _PARALLEL_WORK))
                obj = self._beta * float(w.sum()) + hinge / n_t
                self.loss_curve_.append(obj)
                if self.verbose:
                    if len(self.loss_curve_) == 1:
                        print(f"[{name}]")
                        print(f"{'iter':>8} {'objective':>14} {'active triplets':>16} "
                              f"{'active bases':>13}")
                    print(f"{t:8d} {obj:14.7g} {n_active:16d} {int(np.count_nonzero(w)):13d}")
                if obj < best_obj:
                    best_obj, best_w = obj, w.copy()
                if self.callback is not None:
                    self.components_ = _embedding_map(basis, w)
                    if self.callback(self, t, obj):
                        stopped = True
        except KeyboardInterrupt:
            warn_interrupted(f"after {t} iteration(s)")
        if self.verbose:
            print(f"[{name}] done after {t} iterations; best objective {best_obj:.7g}")
        self.n_iter_ = t
        self.loss_ = float(best_obj)
        self.basis_ = basis
        self.weights_ = best_w
        if not np.any(best_w > 0):
            warnings.warn(
                f"{name}: no basis got a positive weight (beta={self._beta} may be too "
                "large for these triplets): the learned metric is zero.",
                UserWarning,
                stacklevel=3,
            )
        self.components_ = np.ascontiguousarray(_embedding_map(basis, best_w))
        return self


class SCML(TripletsClassifierMixin, _BaseSCML):
    """Sparse Compositional Metric Learning from triplets.

    Learns ``M = sum_k w_k b_k b_k^T`` with sparse weights ``w >= 0`` over a
    set of basis vectors, so that for each triplet ``(a, p, q)`` the point
    ``a`` is closer to ``p`` than to ``q`` by a unit margin in squared
    distance, as in Shi, Bellet & Sha (2014).  The objective

    ``(1 / T) sum_t [1 + d_M(a, p)^2 - d_M(a, q)^2]_+ + beta ||w||_1``

    is minimised by regularised dual averaging with AdaGrad steps on random
    minibatches.

    Parameters
    ----------
    beta : float, default=1e-5
        Weight of the l1 penalty (sparsity of w).
    basis : 'triplet_diffs' or array-like of shape (n_basis, n_features), \
            default='triplet_diffs'
        The basis vectors.  ``'triplet_diffs'``: eigenvectors of the
        scatters of the differences of the similar minus dissimilar pairs
        of random groups of ``n_features`` triplets (see Notes).  An array:
        used as given.
    n_basis : int, optional
        Number of basis vectors; default ``80 * n_features`` for
        ``'triplet_diffs'``.  With an array basis it must be None or equal
        to the number of its rows.
    gamma : float, default=5e-3
        Step-size parameter of the dual averaging (larger: smaller steps).
    max_iter : int, default=10000
        Stochastic iterations.
    output_iter : int, default=500
        The full objective is evaluated every ``output_iter`` iterations (and
        at the last one); the weights of the best evaluation are kept.
    batch_size : int, default=10
        Triplets per iteration, drawn uniformly with replacement.
    verbose : bool or int, default=False
        Print the objective at each evaluation.
    preprocessor : array-like of shape (n_samples, n_features) or callable, optional
        When set, triplets may be given as index triplets ``(n_triplets,
        3)`` into it.
    random_state : int, RandomState instance or None
        Seeds the basis construction and the minibatches.
    n_jobs : int, optional
        OpenMP threads of the objective evaluations (None: what OpenMP
        allows, -1: all CPUs).  The result does not depend on it.
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each evaluation, with
        ``components_`` set to the current weights' map; returning True
        stops.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The map L, ``L^T L = M``.  When fewer bases than features have a
        positive weight, L is ``sqrt(w_k) b_k`` over those bases (a low-rank
        map, ``n_components`` = their number), as in metric-learn; else the
        transposed Cholesky factor of M (an eigenvalue factor when M is
        singular).
    basis_ : ndarray of shape (n_basis, n_features)
        The basis vectors used.
    weights_ : ndarray of shape (n_basis,)
        Their learned weights w (the best evaluated ones).
    n_iter_ : int
        Iterations done.
    loss_ : float
        Objective of the returned weights.
    loss_curve_ : list of float
        Objective at each evaluation.
    n_features_in_ : int

    Notes
    -----
    Each iteration, with ``g`` the mean hinge subgradient of the batch (the
    vector ``dd_t`` of distance differences along the bases, for the
    triplets whose hinge is positive), ``G`` the sum of the g so far and
    ``A`` the sum of their squares, sets

    ``w = max(-(G + beta t), 0) / (gamma (1e-3 + sqrt(A)))``

    (t the iteration count): the closed form of regularised dual averaging
    with the l1 term, ``w >= 0`` and AdaGrad's diagonal scaling.  The
    projections ``X B^T`` are computed once; an update reads three of
    their rows per triplet, and only the bases of positive weight for the
    margins, so it costs O(batch_size * n_basis) and nothing of size
    ``n_triplets x n_basis`` is stored (metric-learn 0.7 stores that array
    of distance differences: 0.39 GB on the digits benchmark); the memory
    is O(n_points * n_basis) in the data's dtype.  The full objective,
    every ``output_iter`` iterations, is computed from the distinct pairs
    of the triplets in an embedding of the positive-weight bases.  The
    minibatches are drawn as metric-learn 0.7 draws them (``randint`` of a
    generator seeded afresh from an integer ``random_state``): given the
    same basis and triplets, the weights agree with metric-learn's to
    rounding (1e-12 on the digits benchmark).

    ``'triplet_diffs'`` basis: round after round, ``min(n_features,
    n_triplets)`` random triplets give ``S = sum (x_a - x_p)(x_a - x_p)^T -
    sum (x_a - x_q)(x_a - x_q)^T``, whose eigenvectors of non-negligible
    eigenvalue (relative 1e-10) join the basis (metric-learn 0.7 takes rows
    rather than columns of the eigenvector matrix there; we take the
    eigenvectors).  Fewer triplets than features is allowed.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import SCML
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(60, 3)
    >>> idx = rng.randint(0, 60, size=(400, 3))
    >>> # a is closer to p than to q along the first feature only
    >>> gap = np.abs(X[idx[:, 0], 0] - X[idx[:, 1], 0]) - np.abs(X[idx[:, 0], 0] - X[idx[:, 2], 0])
    >>> idx[gap > 0] = idx[gap > 0][:, [0, 2, 1]]
    >>> scml = SCML(n_basis=30, max_iter=2000, preprocessor=X, random_state=0).fit(idx)
    >>> bool(scml.score(idx) > 0.9)
    True
    """

    def __init__(self, beta=1e-5, basis="triplet_diffs", n_basis=None, gamma=5e-3,
                 max_iter=10000, output_iter=500, batch_size=10, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None):
        self.beta = beta
        self.basis = basis
        self.n_basis = n_basis
        self.gamma = gamma
        self.max_iter = max_iter
        self.output_iter = output_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    def fit(self, triplets, y=None):
        """Learn the metric from triplets.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets of points, or index triplets into ``preprocessor``;
            each ``(a, p, q)`` states ``d(a, p) < d(a, q)``.
        y : None
            Ignored (for scikit-learn pipelines).

        Returns
        -------
        self
        """
        self._validate_params()
        X, idx = check_tuples(triplets, 3, self.preprocessor, dedupe=True)
        _check_magnitude(X, type(self).__name__)
        used, inverse = np.unique(idx, return_inverse=True)
        if used.shape[0] < X.shape[0]:
            # Only the rows that some triplet uses are projected on the basis.
            X = np.ascontiguousarray(X[used])
            idx = np.ascontiguousarray(inverse.reshape(idx.shape), dtype=np.intp)
        d = X.shape[1]
        rng = check_random_state(self.random_state)
        with single_threaded_blas():
            if isinstance(self.basis, str):
                n_basis = 80 * d if self._n_basis is None else self._n_basis
                basis = _triplet_diffs_basis(X, idx, n_basis, rng)
            else:
                basis = self._array_basis(d)
            self.n_features_in_ = d
            return self._optimize(X, idx, basis)


class SCML_Supervised(_BaseSCML):
    """Sparse Compositional Metric Learning from class labels.

    Makes triplets ``(a, p, q)`` from each point ``a``'s ``k_genuine``
    nearest same-class points ``p`` and ``k_impostor`` nearest other-class
    points ``q`` (all ``k_genuine * k_impostor`` combinations, see
    :func:`generate_knn_triplets`), then learns ``M = sum_k w_k b_k b_k^T``
    as :class:`SCML` does, by default over a basis of local LDA directions.

    Parameters
    ----------
    k_genuine : int, default=3
        Same-class neighbours per point.  A class with ``m <= k_genuine``
        points gives its points ``m - 1``, with a warning.
    k_impostor : int, default=10
        Other-class neighbours per point.
    beta : float, default=1e-5
        Weight of the l1 penalty.
    basis : {'lda', 'triplet_diffs'} or array-like of shape (n_basis, \
            n_features), default='lda'
        ``'lda'``: LDA directions of local neighbourhoods around k-means
        centres, at two scales (see Notes).  ``'triplet_diffs'``: as in
        :class:`SCML`, from the generated triplets.  An array: used as given.
    n_basis : int, optional
        Number of basis vectors; for ``'lda'`` default ``min(20 *
        n_features, 2 * n_samples * num_eig - 1)`` with ``num_eig =
        min(n_classes - 1, n_features)``, and it must stay below ``2 *
        n_samples * num_eig``; for ``'triplet_diffs'`` default ``80 *
        n_features``.
    gamma : float, default=5e-3
    max_iter : int, default=10000
    output_iter : int, default=500
    batch_size : int, default=10
    verbose : bool or int, default=False
    preprocessor : array-like or callable, optional
        When set, ``X`` in ``fit`` and ``transform`` may be a 1-D array of
        row indices into it.
    random_state : int, RandomState instance or None
        Seeds the k-means of the basis and the minibatches.
    n_jobs : int, optional
        OpenMP threads of the neighbour search and of the objective
        evaluations.  The result does not depend on it.
    callback : callable, optional
        As in :class:`SCML`.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        As in :class:`SCML`.
    basis_ : ndarray of shape (n_basis, n_features)
    weights_ : ndarray of shape (n_basis,)
    triplets_ : ndarray of shape (n_triplets, 3)
        The generated triplets (row indices into the training X).
    n_iter_ : int
    loss_ : float
    loss_curve_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has feature names.

    Notes
    -----
    ``'lda'`` basis: ``n_clusters = ceil(n_basis / (2 num_eig))`` centres of
    a k-means of X (greedy k-means++ start, one run); around each centre and
    at each of two scales (10 and 20 points per class, or 20 and 50 when
    ``n_features > 50``), the ``min(|c|, scale)`` points of each class c
    nearest to the centre form a neighbourhood whose ``num_eig`` leading
    LDA directions, scaled to unit norm, join the basis.  The local LDA
    solves ``Sb v = lambda (Sw + eps I) v`` with the ridge ``eps = 1e-2
    trace(Sw) / n_features``, which keeps singular within-class scatters
    (constant features, neighbourhoods smaller than the dimension,
    duplicated points) well conditioned: a direction in which no point
    varies gets eigenvalue 0.  metric-learn runs scikit-learn's KMeans with
    10 restarts and its LinearDiscriminantAnalysis instead; the bases
    therefore differ, not their construction.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import SCML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> scml = SCML_Supervised(random_state=0).fit(X, y)
    >>> scml.transform(X).shape[0]
    150
    """

    _authorized_basis = ("lda", "triplet_diffs")

    def __init__(self, k_genuine=3, k_impostor=10, beta=1e-5, basis="lda", n_basis=None,
                 gamma=5e-3, max_iter=10000, output_iter=500, batch_size=10, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None):
        self.k_genuine = k_genuine
        self.k_impostor = k_impostor
        self.beta = beta
        self.basis = basis
        self.n_basis = n_basis
        self.gamma = gamma
        self.max_iter = max_iter
        self.output_iter = output_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    def fit(self, X, y):
        """Make triplets from the labels and learn the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels: at least 2 classes and a class with 2 samples.

        Returns
        -------
        self
        """
        self._validate_params()
        k_genuine = _check_int(self.k_genuine, "k_genuine", 1)
        k_impostor = _check_int(self.k_impostor, "k_impostor", 1)
        X = points_from_indices(self.preprocessor, X)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C",
                             ensure_min_samples=2)
        _check_magnitude(X, type(self).__name__)
        check_classification_targets(y)
        classes, y_enc, counts = np.unique(y, return_inverse=True, return_counts=True)
        y_enc = y_enc.reshape(-1)
        n, d = X.shape
        if classes.shape[0] < 2:
            raise ValueError(
                f"SCML_Supervised needs at least 2 classes in y (impostors are points of "
                f"another class); y has 1 class ({classes[0]!r})."
            )
        with single_threaded_blas():
            return self._fit_labels(X, y_enc, classes, counts, k_genuine, k_impostor)

    def _fit_labels(self, X, y_enc, classes, counts, k_genuine, k_impostor):
        n, d = X.shape
        triplets = generate_knn_triplets(X, y_enc, k_genuine, k_impostor, self.n_jobs)
        rng = check_random_state(self.random_state)
        if isinstance(self.basis, str) and self.basis == "lda":
            num_eig = min(classes.shape[0] - 1, d)
            limit = 2 * n * num_eig
            n_basis = (_default_n_basis_lda(n, d, classes.shape[0]) if self._n_basis is None
                       else self._n_basis)
            if n_basis >= limit:
                raise ValueError(
                    f"n_basis={n_basis} is too large for the 'lda' basis of {n} samples: "
                    f"it must be below 2 * n_samples * min(n_classes - 1, n_features) = "
                    f"{limit}."
                )
            if n_basis < classes.shape[0]:
                warnings.warn(
                    f"SCML_Supervised: n_basis={n_basis} is below the number of classes "
                    f"({classes.shape[0]}); the metric may discriminate poorly.",
                    UserWarning,
                    stacklevel=2,
                )
            basis = _lda_basis(X, y_enc, counts, n_basis, rng)
        elif isinstance(self.basis, str):
            n_basis = 80 * d if self._n_basis is None else self._n_basis
            basis = _triplet_diffs_basis(X, triplets, n_basis, rng)
        else:
            basis = self._array_basis(d)
        self.triplets_ = triplets
        return self._optimize(X, triplets, basis)

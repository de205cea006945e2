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
is evaluated and the best weights seen are kept.  The bases are built by
:mod:`fastmetric._core.scml_basis`, the weights learned by
:func:`fastmetric._core.objectives.scml.minimize_scml`; this module checks
the parameters and the input and keeps the fitted state.

:class:`SCML` learns from triplets; :class:`SCML_Supervised` from class
labels, making triplets from each point's ``k_genuine`` nearest same-class
points and ``k_impostor`` nearest other-class points.  The hot loops (the
k-NN search, the stochastic updates, the hinge loss over all triplets) are
the nogil kernels of :mod:`fastmetric.kernels.scml`.
"""
import warnings

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from fastmetric._core.base import MahalanobisMixin, points_from_indices
from fastmetric._core.objectives.scml import embedding_map, minimize_scml
from fastmetric._core.scml_basis import default_n_basis_lda, lda_basis, triplet_diffs_basis
from fastmetric.kernels.scml import _knn_triplet_neighbors
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.tuples import TripletsClassifierMixin, check_tuples
from fastmetric._core.validation import (
    check_int_param as _check_int,
    check_points,
    check_real_param as _check_real,
)

__all__ = ["SCML", "SCML_Supervised", "generate_knn_triplets"]

# Multiply-adds per thread below which a kernel call uses fewer threads
# (waking a thread costs more than it saves on small calls; results do not
# depend on the thread count).
_PARALLEL_WORK = 1 << 22


# --------------------------------------------------------------------------
# Triplets from labels
# --------------------------------------------------------------------------
def _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=True):
    """Per-class numbers of genuine and impostor neighbours, clipped to what exists."""
    kg = np.minimum(k_genuine, counts - 1)
    ki = np.minimum(k_impostor, n - counts)
    if warn:
        for c in np.flatnonzero(kg < k_genuine):
            warnings.warn(
                f"SCML: class {classes[c]!r} has {counts[c]} sample(s), too few for "
                f"k_genuine={k_genuine} genuine neighbours (k_genuine + 1 samples needed); "
                f"its points get {kg[c]} instead.",
                UserWarning,
                stacklevel=3,
            )
        for c in np.flatnonzero(ki < k_impostor):
            warnings.warn(
                f"SCML: only {n - counts[c]} sample(s) are outside class {classes[c]!r}, "
                f"too few for k_impostor={k_impostor} impostors; its points get {ki[c]} "
                "instead.",
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
# The learner
# --------------------------------------------------------------------------
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
        n_threads = effective_n_threads(self.n_jobs)
        self.loss_curve_ = []
        name = type(self).__name__

        def on_evaluation(t, obj, w, n_active):
            self.loss_curve_.append(obj)
            if self.verbose:
                if len(self.loss_curve_) == 1:
                    print(f"[{name}]")
                    print(f"{'iter':>8} {'objective':>14} {'active triplets':>16} "
                          f"{'active bases':>13}")
                print(f"{t:8d} {obj:14.7g} {n_active:16d} {int(np.count_nonzero(w)):13d}")
            if self.callback is not None:
                self.components_ = embedding_map(basis, w)
                return bool(self.callback(self, t, obj))
            return False

        result = minimize_scml(X, triplets, basis, beta=self._beta, gamma=self._gamma,
                               max_iter=self._max_iter, output_iter=self._output_iter,
                               batch_size=self._batch_size, rng=rng, n_threads=n_threads,
                               on_evaluation=on_evaluation)
        best_w = result.weights
        if self.verbose:
            print(f"[{name}] done after {result.n_iter} iterations; best objective "
                  f"{result.loss:.7g}")
        self.n_iter_ = result.n_iter
        self.loss_ = result.loss
        self.loss_curve_ = list(result.loss_curve)
        self.basis_ = basis
        self.weights_ = best_w
        if not np.any(best_w > 0):
            warnings.warn(
                f"{name}: no basis got a positive weight (beta={self._beta} may be too "
                "large for these triplets): the learned metric is zero.",
                UserWarning,
                stacklevel=3,
            )
        self.components_ = np.ascontiguousarray(embedding_map(basis, best_w))
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
                basis = triplet_diffs_basis(X, idx, n_basis, rng)
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
            n_basis = (default_n_basis_lda(n, d, classes.shape[0]) if self._n_basis is None
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
            basis = lda_basis(X, y_enc, counts, n_basis, rng)
        elif isinstance(self.basis, str):
            n_basis = 80 * d if self._n_basis is None else self._n_basis
            basis = triplet_diffs_basis(X, triplets, n_basis, rng)
        else:
            basis = self._array_basis(d)
        self.triplets_ = triplets
        return self._optimize(X, triplets, basis)

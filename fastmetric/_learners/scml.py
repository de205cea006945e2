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
from typing import ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import generate_knn_triplets
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales
from fastmetric._core.inputs import check_tuples, encode_classes, validate_points
from fastmetric._core.objectives.scml import embedding_map, minimize_scml
from fastmetric._core.params import fit_context, integers, reals, shared, store_params
from fastmetric._core.scml_basis import default_n_basis_lda, lda_basis, triplet_diffs_basis
from fastmetric._core.threads import effective_n_threads
from fastmetric._core.tuples import TripletsClassifierMixin
from fastmetric._core.validation import caller_stacklevel, check_points, check_squared_scale

__all__ = ["SCML", "SCML_Supervised"]

# Multiply-adds per thread below which a kernel call uses fewer threads
# (waking a thread costs more than it saves on small calls; results do not
# depend on the thread count).
_PARALLEL_WORK = 1 << 22


# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# The learner
# --------------------------------------------------------------------------


class _BaseSCML(MahalanobisMixin):
    """Shared parameters and the optimisation of SCML."""

    _authorized_basis = ("triplet_diffs",)

    _parameter_constraints: ClassVar[dict] = {
        **shared("max_iter", "verbose", "preprocessor", "random_state", "n_jobs", "callback"),
        "beta": [reals(0)],
        "basis": [StrOptions(set(_authorized_basis)), "array-like"],
        "n_basis": [None, integers(1)],
        "gamma": [reals(0, closed="neither")],
        "output_iter": [integers(1)],
        "batch_size": [integers(1)],
    }

    def _check_output_iter(self):
        """output_iter <= max_iter: a tie between two parameters, checked in fit."""
        if self.output_iter > self.max_iter:
            raise ValueError(
                f"output_iter={self.output_iter} must be at most max_iter="
                f"{self.max_iter} (the objective is checked every output_iter "
                "iterations)."
            )

    #: Start of the warning text when ``n_basis`` is chosen by default
    #: (metric-learn's words, so that filters written for it keep working).
    N_BASIS_WARNING = "As no value for `n_basis` was selected"

    def _n_basis(self, default):
        """``n_basis``, or ``default`` with a warning when it is None.

        metric-learn warns when it chooses the number of bases itself; the
        text is its own, so that filters written for it keep working.
        """
        if self.n_basis is not None:
            return self.n_basis
        warnings.warn(
            f"{self.N_BASIS_WARNING}, the number of basis will be set to n_basis= {default}",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
        return default

    def _triplet_basis(self, X, triplets, rng):
        """The basis from the triplets' differences (``basis`` a name), or the
        user's array (checked against X)."""
        d = X.shape[1]
        if isinstance(self.basis, str):
            return triplet_diffs_basis(X, triplets, self._n_basis(80 * d), rng)
        return self._array_basis(d)

    def _array_basis(self, n_features):
        basis = check_points(self.basis, name="basis", dtype=np.float64)
        if basis.shape[1] != n_features:
            raise ValueError(
                f"basis has {basis.shape[1]} features per vector but the data has "
                f"{n_features}: it must have shape (n_basis, {n_features})."
            )
        if self.n_basis is not None and self.n_basis != basis.shape[0]:
            raise ValueError(
                f"n_basis={self.n_basis} does not match the {basis.shape[0]} rows of the "
                "given basis array; leave n_basis=None."
            )
        return basis.copy()

    def _optimize(self, X, triplets, basis, scales=None):
        """Stochastic optimisation of the weights; sets the fitted attributes.

        With per-feature ``scales`` X and ``basis`` are in the coordinates
        ``X / scales``; the fitted basis and map are those of the raw
        features (each basis vector's columns divided by the scales:
        ``(b . x / scales)^2 = ((b / scales) . x)^2``).
        """
        raw_basis = basis if scales is None else basis / scales

        def raw_map(w):
            # factor M in the scaled coordinates, then divide L's columns:
            # the raw M of data at 1e-300 overflows where L does not
            L = embedding_map(basis, w)
            return L if scales is None else L / scales
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
                self.components_ = raw_map(w)
                return bool(self.callback(self, t, obj))
            return False

        result = minimize_scml(X, triplets, basis, beta=float(self.beta), gamma=float(self.gamma),
                               max_iter=int(self.max_iter), output_iter=int(self.output_iter),
                               batch_size=int(self.batch_size), rng=rng, n_threads=n_threads,
                               on_evaluation=on_evaluation)
        best_w = result.weights
        if self.verbose:
            print(f"[{name}] done after {result.n_iter} iterations; best objective "
                  f"{result.loss:.7g}")
        self.n_iter_ = result.n_iter
        self.loss_ = result.loss
        self.loss_curve_ = list(result.loss_curve)
        self.basis_ = raw_basis
        self.weights_ = best_w
        if not np.any(best_w > 0):
            warnings.warn(
                f"{name}: no basis got a positive weight (beta={self.beta} may be too "
                "large for these triplets): the learned metric is zero.",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        n_active = int(np.count_nonzero(best_w > 0))
        if 0 < n_active < basis.shape[1]:
            # L has one row per active basis vector: a low-rank embedding
            # (metric-learn's warning text, word for word).
            warnings.warn(
                "The number of bases with nonzero weight is less than the number of "
                "features of the input, in consequence the learned transformation "
                f"reduces the dimension to {n_active}.",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        self.components_ = np.ascontiguousarray(raw_map(best_w))
        return self


@shared_docs
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
        ``'triplet_diffs'`` (with a UserWarning naming it, as metric-learn
        does).  With an array basis it must be None or equal to the number
        of its rows.  When fewer basis vectors than features end with a
        positive weight, ``components_`` has that many rows and a
        UserWarning says so.
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
    {n_features_in}

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
        store_params(self, locals())

    @fit_context
    def fit(self, triplets, y=None):
        """Learn the metric from triplets.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            Triplets of points, or index triplets into ``preprocessor``;
            each ``(a, p, q)`` states ``d(a, p) < d(a, q)``.
        y : None
            Ignored (for scikit-learn pipelines).

        {returns_self}
        """
        self._check_output_iter()
        X, idx = check_tuples(triplets, 3, self.preprocessor, dedupe=True)
        check_squared_scale(X, type(self).__name__)
        used, inverse = np.unique(idx, return_inverse=True)
        if used.shape[0] < X.shape[0]:
            # Only the rows that some triplet uses are projected on the basis.
            X = np.ascontiguousarray(X[used])
            idx = np.ascontiguousarray(inverse.reshape(idx.shape), dtype=np.intp)
        d = X.shape[1]
        rng = check_random_state(self.random_state)
        basis = self._triplet_basis(X, idx, rng)
        self.n_features_in_ = d
        return self._optimize(X, idx, basis)


@shared_docs
class SCML_Supervised(_BaseSCML):
    """Sparse Compositional Metric Learning from class labels.

    Makes triplets ``(a, p, q)`` from each point ``a``'s ``k_genuine``
    nearest same-class points ``p`` and ``k_impostor`` nearest other-class
    points ``q`` (all ``k_genuine * k_impostor`` combinations, see
    :func:`~fastmetric._core.constraints.generate_knn_triplets`), then learns ``M = sum_k w_k b_k b_k^T``
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
        n_features``.  A default is announced by a UserWarning (as in
        metric-learn).
    gamma : float, default=5e-3
    max_iter : int, default=10000
    output_iter : int, default=500
    batch_size : int, default=10
    verbose : bool or int, default=False
    {preprocessor_points}
    random_state : int, RandomState instance or None
        Seeds the k-means of the basis and the minibatches.
    n_jobs : int, optional
        OpenMP threads of the neighbour search and of the objective
        evaluations.  The result does not depend on it.
    callback : callable, optional
        As in :class:`SCML`.
    {feature_scaling}
        SCML_Supervised: with a named ``basis``, the triplets' neighbours,
        the basis and the weights are found on the scaled features;
        ``basis_`` and ``components_`` are those of the raw features.

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
    {n_features_in}
    {feature_names_in}

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
    {load_iris}
    >>> from fastmetric import SCML_Supervised
    >>> scml = SCML_Supervised(random_state=0).fit(X, y)
    >>> scml.transform(X).shape[0]
    150
    """

    _authorized_basis = ("lda", "triplet_diffs")
    _parameter_constraints: ClassVar[dict] = {
        **_BaseSCML._parameter_constraints,
        "k_genuine": [integers(1)],
        "k_impostor": [integers(1)],
        "basis": [StrOptions(set(_authorized_basis)), "array-like"],
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def __init__(self, k_genuine=3, k_impostor=10, beta=1e-5, basis="lda", n_basis=None,
                 gamma=5e-3, max_iter=10000, output_iter=500, batch_size=10, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None,
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y):
        """Make triplets from the labels and learn the metric.

        {fit_labelled_points}
            At least 2 classes and a class with 2 samples.

        {returns_self}
        """
        self._check_output_iter()
        k_genuine, k_impostor = int(self.k_genuine), int(self.k_impostor)
        X, y = validate_points(self, X, y, ensure_min_samples=2)
        check_squared_scale(X, type(self).__name__)
        check_classification_targets(y)
        classes, y_enc, counts = encode_classes(
            y, "SCML_Supervised", "(impostors are points of another class)")
        return self._fit_labels(X, y_enc, classes, counts, k_genuine, k_impostor)

    def _fit_labels(self, X, y_enc, classes, counts, k_genuine, k_impostor):
        n, d = X.shape
        # Features in different units: the triplets (nearest neighbours), a
        # named basis and the weights are found on X / scales (powers of
        # two, exact); _optimize maps the basis back to the raw features.
        scales = (feature_scales(X, self.feature_scaling) if isinstance(self.basis, str)
                  else None)
        self.feature_scales_ = scales
        if scales is not None:
            X = X / scales
        triplets = generate_knn_triplets(X, y_enc, k_genuine, k_impostor, self.n_jobs)
        rng = check_random_state(self.random_state)
        if isinstance(self.basis, str) and self.basis == "lda":
            num_eig = min(classes.shape[0] - 1, d)
            limit = 2 * n * num_eig
            n_basis = self._n_basis(default_n_basis_lda(n, d, classes.shape[0]))
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
                    stacklevel=caller_stacklevel(),
                )
            basis = lda_basis(X, y_enc, counts, n_basis, rng)
        else:
            basis = self._triplet_basis(X, triplets, rng)
        self.triplets_ = triplets
        return self._optimize(X, triplets, basis, scales)

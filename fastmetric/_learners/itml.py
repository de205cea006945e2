"""ITML: Information-Theoretic Metric Learning (Davis, Kulis, Jain, Sra & Dhillon, 2007).

ITML looks for the Mahalanobis matrix ``A`` closest to a prior ``A0`` in
LogDet divergence (the relative entropy of the two Gaussians they define)

    min_A  tr(A A0^{-1}) - log det(A A0^{-1}) - d
    s.t.   d_A(x, x') <= u   for similar pairs,
           d_A(x, x') >= l   for dissimilar pairs,

with ``d_A(x, x') = (x - x')^T A (x - x')`` and slack on the bounds whose
weight is set by ``gamma``.  It is solved by cyclic Bregman projections on
one constraint at a time, each a rank-one update of ``A`` that keeps it
positive definite; the projections run in the nogil kernel
:mod:`fastmetric.kernels.itml` (one O(d^2) pass over ``A`` per constraint,
whole sweeps and the convergence test in one call).

:class:`ITML` learns from labelled pairs and classifies pairs;
:class:`ITML_Supervised` draws the pairs from class labels with
:func:`fastmetric.kernels.sampling.sample_pairs`.  Parameters, attributes and
defaults follow metric-learn 0.7.0 (plus ``n_jobs``).
"""
import warnings
from typing import ClassVar

import numpy as np
import scipy.linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.constraints import estimator_pairs
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, prior_matrix
from fastmetric._core.inputs import validate_points
from fastmetric._core.objectives.itml import itml_projections
from fastmetric._core.pairs import PairsClassifierMixin
from fastmetric._core.params import (
    fit_context,
    options_or_array,
    reals,
    renamed_value,
    shared,
    store_params,
)
from fastmetric._core.solvers import warn_interrupted

__all__ = ["ITML", "ITML_Supervised"]

_PRIORS = ("identity", "covariance", "random")
# Percentiles of the pairwise distances giving the default bounds.
_BOUND_PERCENTILES = (5.0, 95.0)
# The default bounds are exact percentiles over at most this many distinct
# points (a 2000 x 2000 distance matrix, 32 MB); above, over a random subset
# of this size.
_BOUNDS_MAX_POINTS = 2000
# Zero bounds (e.g. many duplicated points) are replaced by this value.
_ZERO_BOUND = 1e-9
# Eigenvalues of the covariance below this fraction of their mean are
# raised to it before inversion (prior='covariance').
_COVARIANCE_FLOOR = 1e-3
# Sweeps per kernel call without verbose or callback: Ctrl-C is seen between calls.
_SWEEPS_PER_CALL = 10
# Relative change of the duals per constraint asked by the default tolerance
# (see _BaseITML._tolerance).
_DEFAULT_TOL = 1e-3
_ORDERS = ("alternate", "similar_first")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def _distinct_rows(X):
    """The distinct rows of a C-contiguous 2-D array (first occurrences, sorted by bytes)."""
    if X.shape[0] <= 1:
        return X
    keys = np.ascontiguousarray(X).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1])))
    _, first = np.unique(keys.ravel(), return_index=True)
    return X[np.sort(first)]


def _default_bounds(points, random_state, n_jobs):
    """5th and 95th percentiles of the Euclidean distances among ``points``.

    As metric-learn: the distances of the full matrix over the distinct
    points (diagonal zeros and both orders of each pair included).  Over
    more than ``_BOUNDS_MAX_POINTS`` distinct points the percentiles are
    those of a random subset of that size (drawn with ``random_state``).
    """
    from fastmetric._core.distances import mahalanobis_distances

    P = np.asarray(points, dtype=np.float64)
    if P.shape[0] > _BOUNDS_MAX_POINTS:
        rng = check_random_state(random_state)
        keep = np.sort(rng.choice(P.shape[0], _BOUNDS_MAX_POINTS, replace=False))
        P = P[keep]
    D = mahalanobis_distances(np.ascontiguousarray(P), n_jobs=n_jobs)
    return np.percentile(D, _BOUND_PERCENTILES)


def alternating_order(delta):
    """Indices visiting similar and dissimilar constraints in turn.

    ``delta`` holds +1 (similar) / -1 (dissimilar) per constraint.  The
    order is s1, d1, s2, d2, ... (each kind in its given order); the
    constraints of the more numerous kind left over come last.  Why: a
    projection on a similar pair shrinks the metric along its difference
    and one on a dissimilar pair stretches it; visiting all similar pairs
    and then all dissimilar ones (metric-learn's order) makes every sweep
    shrink the metric as a whole and stretch it back (the trace of ``M``
    swings by a factor of 30 on vowel), and the cyclic projections then
    need thousands of sweeps to settle.  Alternating the kinds keeps each
    stretch of the sweep balanced.

    Examples
    --------
    >>> from fastmetric._learners.itml import alternating_order
    >>> alternating_order(np.array([1.0, 1.0, 1.0, -1.0, -1.0])).tolist()
    [0, 3, 1, 4, 2]
    """
    delta = np.asarray(delta)
    similar = np.flatnonzero(delta > 0)
    dissimilar = np.flatnonzero(delta <= 0)
    k = min(similar.size, dissimilar.size)
    both = np.empty(2 * k, dtype=np.intp)
    both[0::2], both[1::2] = similar[:k], dissimilar[:k]
    return np.concatenate([both, similar[k:], dissimilar[k:]]).astype(np.intp)


def _check_bounds(bounds):
    arr = np.asarray(bounds)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"bounds must hold two real numbers; got {bounds!r}.")
    arr = arr.astype(np.float64).ravel()
    if arr.size != 2:
        raise ValueError(
            f"bounds must be an array-like of two numbers (upper bound for similar "
            f"pairs, lower bound for dissimilar pairs); got {arr.size} value(s)."
        )
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"bounds must be finite and non-negative; got {arr.tolist()}.")
    return arr


def _covariance_prior(points):
    """Inverse covariance of the points, with small eigenvalues floored.

    ``C = V diag(w) V^T``; eigenvalues below ``r = 1e-3 * mean(w)`` (zero
    for constant or linearly dependent features, or when there are fewer
    points than features) are raised to ``r``, and the prior is
    ``V diag(1 / max(w, r)) V^T``: the exact inverse whenever ``C`` is well
    conditioned, and a positive definite matrix in every case.
    """
    n, d = points.shape
    if n < 2:
        return np.eye(d)
    C = np.atleast_2d(np.cov(np.asarray(points, dtype=np.float64), rowvar=False))
    w, V = scipy.linalg.eigh(C)
    mean = float(np.mean(np.maximum(w, 0.0)))
    if not mean > 0:  # every feature constant: nothing to whiten
        return np.eye(d)
    w = np.maximum(w, _COVARIANCE_FLOOR * mean)
    A0 = (V / w) @ V.T
    return 0.5 * (A0 + A0.T)


def _raw_components(A, scales):
    """The factor of the metric A, for the raw features when A was learned
    on ``X / scales``."""
    L = components_from_psd(A)
    return L if scales is None else np.ascontiguousarray(L / scales)


def _prior_matrix(prior, points, d, random_state):
    """The prior ``A0`` (d x d, symmetric positive definite, float64).

    ITML's data-driven priors are computed here; 'identity', arrays and
    fitted learners are checked by the core's :func:`prior_matrix`, as for
    every learner with a prior.
    """
    if isinstance(prior, str) and prior == "covariance":
        return _covariance_prior(points)
    if isinstance(prior, str) and prior == "random":
        from sklearn.datasets import make_spd_matrix

        return np.ascontiguousarray(
            make_spd_matrix(d, random_state=check_random_state(random_state)),
            dtype=np.float64)
    return prior_matrix(prior, d, "ITML", _PRIORS)


def components_from_psd(A):
    """A map ``L`` with ``L^T L = A`` for a symmetric PSD matrix ``A``.

    From the eigendecomposition ``A = V diag(w) V^T``: ``L = diag(sqrt(w))
    V^T``, rows in decreasing order of eigenvalue.  Eigenvalues at rounding
    level, ``w <= n_features * eps * max|w|`` (including slightly negative
    ones), are set to zero.  Each row's sign is fixed so that its entry of
    largest magnitude is positive.
    """
    A = 0.5 * (A + A.T)
    d = A.shape[0]
    w, V = scipy.linalg.eigh(A)
    w, V = w[::-1], V[:, ::-1]
    tol = d * np.finfo(np.float64).eps * max(float(np.max(np.abs(w))), 1e-300)
    w = np.where(w > tol, w, 0.0)
    L = np.sqrt(w)[:, None] * V.T
    pivot = np.abs(V.T).argmax(axis=1)
    signs = np.sign(V.T[np.arange(d), pivot])
    signs[signs == 0] = 1.0
    return np.ascontiguousarray(L * signs[:, None])


# --------------------------------------------------------------------------
# The shared learner
# --------------------------------------------------------------------------
class _BaseITML(MahalanobisMixin):
    """Parameter checks and the Bregman-projection fit shared by both learners."""

    _parameter_constraints: ClassVar[dict] = {
        **shared("max_iter", "verbose", "random_state", "n_jobs", "callback"),
        "tol": [None, reals(0)],
        "order": [StrOptions(set(_ORDERS))],
        # inf: the constraints are enforced exactly (no slack).
        "gamma": [reals(0, closed="right", high=None)],
        "prior": options_or_array(*_PRIORS, learner=True),
        **shared("convergence_threshold"),
        "feature_scaling": [StrOptions({"auto", "range"}), None],
    }

    def _tolerance(self, n_constraints):
        """``tol``, or the value of its deprecated alias ``convergence_threshold``.

        ``tol=None``: ``1e-3 sqrt(n_constraints)``.  The convergence measure
        (metric-learn's) divides the L1 norm of the change of the m duals
        by their Euclidean norms; when the m duals change by a relative
        ``r`` each, it is about ``r sqrt(m)``.  A fixed tolerance thus asks
        for a per-constraint change that shrinks as the constraints
        multiply (1e-3 over the 4840 constraints of an 11-class set is
        1.4e-5 per constraint, which ITML does not reach in 1000 sweeps);
        ``1e-3 sqrt(m)`` asks for a relative change of about 1e-3 per
        constraint whatever m (it is met whenever ``sum|lambda -
        lambda_old| <= 1e-3 (sum lambda + sum lambda_old)``, by
        Cauchy-Schwarz).
        """
        tol = renamed_value(self, "convergence_threshold", "tol")
        if tol is None:
            return _DEFAULT_TOL * float(np.sqrt(max(n_constraints, 1)))
        return float(tol)

    def _fit_constraints(self, X, a, b, delta, bounds):
        """Fit on the index pairs (a, b) into the points X; delta +1/-1 per pair."""
        gamma, tol = float(self.gamma), self._tolerance(a.shape[0])
        d = X.shape[1]
        if self.order == "similar_first":
            # metric-learn's order: every similar pair, then every dissimilar one.
            order = np.argsort(-delta, kind="stable")
        else:
            order = alternating_order(delta)
        a = np.ascontiguousarray(a[order], dtype=np.intp)
        b = np.ascontiguousarray(b[order], dtype=np.intp)
        delta = np.ascontiguousarray(delta[order], dtype=np.float64)
        m = a.shape[0]

        used = np.unique(np.concatenate([a, b]))
        # Features in different units, with a named prior and the default
        # bounds: the metric is learned on X / scales (powers of two,
        # exact), where the prior and the bounds (percentiles of the
        # distances) weigh every feature alike, and mapped back.  Given
        # bounds are distances of the raw data: no scaling then.
        scales = None
        if bounds is None and isinstance(self.prior, str):
            scales = feature_scales(np.asarray(X[used]), self.feature_scaling)
        self.feature_scales_ = scales
        if scales is not None:
            X = np.asarray(X)
            X = X / scales.astype(X.dtype)
        points = _distinct_rows(X[used])
        if bounds is None:
            with np.errstate(over="ignore", invalid="ignore"):
                self.bounds_ = _default_bounds(points, self.random_state, self.n_jobs)
            if not np.isfinite(self.bounds_).all():
                raise ValueError(
                    "the distances between the points overflow float64 (default bounds "
                    f"{self.bounds_.tolist()}); rescale the data (e.g. StandardScaler) or "
                    "give finite bounds."
                )
        else:
            self.bounds_ = _check_bounds(bounds).copy()
        self.bounds_[self.bounds_ == 0] = _ZERO_BOUND

        A = _prior_matrix(self.prior, points, d, self.random_state)
        A = np.ascontiguousarray(A, dtype=np.float64)
        xi = np.where(delta > 0, self.bounds_[0], self.bounds_[1]).astype(np.float64)
        lam = np.zeros(m)
        lam_old = np.zeros(m)

        X = np.ascontiguousarray(X)
        stopped = False
        # The state (A, duals, slacks) carries over exactly from one call to
        # the next, so the result is the same as in a single call: one sweep
        # per call to report each sweep, else chunks of sweeps, between which
        # Ctrl-C stops the fit at the last completed sweep.
        per_call = 1 if (self.verbose or self.callback is not None) else _SWEEPS_PER_CALL
        if self.verbose:
            print(f"[{type(self).__name__}] {m} constraints, {d} features, bounds "
                  f"{self.bounds_[0]:.6g} / {self.bounds_[1]:.6g}")
            print(f"{'sweep':>6} {'conv':>12}")
        n_iter, converged = 0, False
        try:
            while n_iter < self.max_iter and not converged:
                k, converged, conv = itml_projections(
                    X, a, b, delta, xi, lam, lam_old, A, gamma=gamma, tol=tol,
                    max_sweeps=min(per_call, self.max_iter - n_iter))
                n_iter += k
                if self.verbose:
                    print(f"{n_iter:6d} {conv[-1]:12.6g}")
                if self.callback is not None:
                    self.components_ = _raw_components(A, scales)
                    self.n_iter_ = n_iter
                    self.n_features_in_ = d
                    if self.callback(self, n_iter, float(conv[-1])):
                        stopped = True
                        break
        except KeyboardInterrupt:
            warn_interrupted(f"after {n_iter} sweep(s)")
            stopped = True
        if not (converged or stopped):
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"sweeps (tol={tol:.6g}); increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=4,  # _fit_constraints < fit < _fit_context < the user's call
            )
        if not np.isfinite(A).all():  # only on overflow, for data near the float64 limit
            raise FloatingPointError(
                "ITML's metric overflowed float64; rescale the data (e.g. StandardScaler).")
        self.components_ = _raw_components(A, scales)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = d
        return self


_PARAMS_DOC = """\
gamma : float > 0 or inf, default=1.0
    Weight of the slack: the bound of each constraint may move, at a
    cost (LogDet divergence of the moved bounds) weighted by ``gamma``.
    Small values let the bounds give way and keep the metric near the
    prior; ``inf`` makes the constraints hard.
max_iter : int, default=1000
    Maximum number of sweeps over the constraints.
tol : float, default=None
    Stop when the change of the dual variables over a sweep,
    ``sum|lambda_old - lambda| / (||lambda|| + ||lambda_old||)``
    (metric-learn's measure), falls below ``tol``.  None:
    ``1e-3 * sqrt(n_constraints)``, a relative change of about 1e-3 per
    constraint (the measure grows like the square root of the number of
    constraints); ``tol=1e-3`` is metric-learn's default.
order : {'alternate', 'similar_first'}, default='alternate'
    The order of the projections in a sweep.  ``'alternate'``: similar
    and dissimilar pairs in turn (each kind in its given order), which
    converges in far fewer sweeps; ``'similar_first'``: every similar pair,
    then every dissimilar one (metric-learn's order).
prior : {'identity', 'covariance', 'random'}, array of shape \
(n_features, n_features) or fitted learner, default='identity'
    The matrix ``A0`` the metric stays close to.  ``'covariance'``: the
    inverse covariance of the distinct points of the pairs; its
    eigenvalues below ``1e-3`` times their mean are raised to that
    value first, so constant or dependent features (a singular
    covariance) still give a positive definite prior (metric-learn
    raises instead).  ``'random'``: scikit-learn's
    ``make_spd_matrix(n_features, random_state)``.  An array must be
    symmetric and strictly positive definite; a fitted learner gives its
    Mahalanobis matrix (checked as every learner's prior, see
    :func:`fastmetric._core.init.prior_matrix`).
verbose : bool or int, default=False
    Print the convergence measure after each sweep.
callback : callable, optional
    ``callback(estimator, sweep, conv)`` after each sweep, with
    ``components_`` and ``n_iter_`` of the current metric set and
    ``conv`` the convergence measure; returning True stops the fit
    (without a ConvergenceWarning).
feature_scaling : {'auto', 'range'} or None, default='auto'
    Features in different units (ranges of the varying columns more than
    100 times apart): with a named ``prior`` and the default ``bounds``,
    the metric is learned on the features divided by their ranges (powers
    of two), where the prior and the bounds weigh each feature alike, and
    ``components_`` maps the raw features (``bounds_`` are then distances
    of the scaled points); data in one unit whose largest range is below
    1/8 or above 2^20 are likewise divided by one common power of two.
    ``'range'``: for any data; ``None``: never
    (metric-learn's behaviour).  See
    :func:`fastmetric._core.init.feature_scales`; the fitted attribute
    ``feature_scales_`` holds the scales used (None when the features were
    used as given)."""


@shared_docs(params=_PARAMS_DOC)
class ITML(PairsClassifierMixin, _BaseITML):
    """Information-Theoretic Metric Learning from labelled pairs.

    Finds the Mahalanobis matrix ``M`` closest to ``prior`` in LogDet
    divergence such that similar pairs have ``d_M(x, x') <= bounds_[0]``
    and dissimilar pairs ``d_M(x, x') >= bounds_[1]`` (up to slack), where
    ``d_M(x, x') = (x - x')^T M (x - x')`` is the *squared* learned
    distance, as in the paper and in metric-learn.  Solved by cyclic
    Bregman projections (similar and dissimilar pairs in turn, see
    ``order``).

    Parameters
    ----------
    {params}
    {preprocessor_pairs}
    random_state : int, RandomState instance or None
        For ``prior='random'`` and the subset of points of the default
        bounds when there are more than 2000 distinct points.
    n_jobs : int, optional
        OpenMP threads (None: what OpenMP allows, -1: all CPUs) of the
        pairwise distances behind the default bounds.  The projections
        themselves are sequential (see :mod:`fastmetric.kernels.itml`).
        The result does not depend on it.
    {convergence_threshold}

    Attributes
    ----------
    bounds_ : ndarray of shape (2,)
        The upper bound for similar pairs and the lower bound for
        dissimilar pairs, on the squared learned distance.  Unless given to
        ``fit``, the 5th and 95th percentiles of the Euclidean distances
        among the distinct points of the pairs (metric-learn's default);
        zeros are replaced by 1e-9.
    components_ : ndarray of shape (n_features, n_features)
        ``L`` with ``L^T L = M``, from the eigendecomposition of ``M``
        (rows in decreasing order of eigenvalue; eigenvalues at rounding
        level set to zero).
    n_iter_ : int
        Number of sweeps run (metric-learn stores one less: the index of
        the last sweep).
    {pair_decision}
    {n_features_in}

    References
    ----------
    J. V. Davis, B. Kulis, P. Jain, S. Sra and I. S. Dhillon.
    Information-theoretic metric learning.  ICML 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import ITML
    >>> pairs = np.array([[[1.2, 7.5], [1.3, 1.5]],
    ...                   [[6.4, 2.6], [6.2, 9.7]],
    ...                   [[1.3, 4.5], [3.2, 4.6]],
    ...                   [[6.2, 5.5], [5.4, 5.4]]])
    >>> y = np.array([1, 1, -1, -1])  # similar when the first feature is close
    >>> itml = ITML(random_state=0).fit(pairs, y)
    >>> itml.predict(pairs).tolist()
    [1, 1, -1, -1]
    >>> M = itml.get_mahalanobis_matrix()
    >>> bool(M[0, 0] > M[1, 1])
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseITML._parameter_constraints, **shared("preprocessor")}

    def __init__(self, gamma=1.0, max_iter=1000, tol=None, prior="identity", verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None,
                 convergence_threshold="deprecated", order="alternate",
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, pairs, y, bounds=None, calibration_params=None):
        """Learn the metric from labelled pairs, then calibrate ``threshold_``.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or index pairs into ``preprocessor``.
        y : array-like of shape (n_pairs,)
            +1 (similar) / -1 (dissimilar), or 1 / 0; both kinds present.
            ``classes_`` (and so :meth:`predict`) follows the encoding:
            ``[-1, 1]`` or ``[0, 1]``.
        bounds : array-like of two numbers, optional
            Upper bound (similar pairs) and lower bound (dissimilar pairs) on
            the squared learned distance; default: see ``bounds_``.
        calibration_params : dict, optional
            Keyword arguments of :meth:`calibrate_threshold` (``strategy``,
            ``min_rate``, ``beta``) for the threshold chosen on the training
            pairs.

        {returns_self}
        """
        calibration_params = self._fit_calibration_params(calibration_params)
        X, a, b, similar, classes = self._hard_labelled_pairs(pairs, y)
        self._fit_constraints(X, a, b, np.where(similar, 1.0, -1.0), bounds)
        self.classes_ = classes  # y's label encoding: predict answers in it
        self.calibrate_threshold(pairs, y, **calibration_params)
        return self


@shared_docs(params=_PARAMS_DOC)
class ITML_Supervised(_BaseITML):
    """ITML from class labels: pairs drawn from the classes, then ITML.

    ``n_constraints`` similar pairs (two samples of one class) and as many
    dissimilar pairs (two samples of different classes) are drawn without
    repetition by :func:`fastmetric.kernels.sampling.sample_pairs` (each uniform
    among the distinct pairs of its kind); when fewer distinct pairs exist,
    all of them are used, with a warning.  Like metric-learn's supervised
    learners, a transformer.

    Parameters
    ----------
    {params}
    {n_constraints_grow}
    {preprocessor_points}
    random_state : int, RandomState instance or None
        Seeds the pair sampling, ``prior='random'`` and the subset of the
        default bounds.
    n_jobs : int, optional
        OpenMP threads of the pair sampler and of the distances behind the
        default bounds (the projections are sequential); the result does not
        depend on it.
    {num_constraints}
    {convergence_threshold}

    Attributes
    ----------
    bounds_, components_, n_iter_, n_features_in_
        As in :class:`ITML`; the default bounds come from the distinct
        points of the drawn pairs.
    {feature_names_in}

    Examples
    --------
    {load_iris}
    >>> from fastmetric import ITML_Supervised
    >>> itml = ITML_Supervised(n_constraints=200, max_iter=2000, random_state=0)
    >>> itml.fit(X, y).transform(X).shape
    (150, 4)
    >>> itml.n_iter_ < 2000  # converged
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseITML._parameter_constraints,
        **shared("n_constraints", "preprocessor"),
        **shared("num_constraints"),
    }

    def __init__(self, gamma=1.0, max_iter=1000, tol=None, n_constraints=None,
                 prior="identity", verbose=False, preprocessor=None, random_state=None,
                 n_jobs=None, callback=None, num_constraints="deprecated",
                 convergence_threshold="deprecated", order="alternate",
                 feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y, bounds=None):
        """Draw pairs from the classes of ``y`` and learn the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The training points; with a ``preprocessor``, a 1-D array of
            their identifiers (row indices, or what a callable takes).
        y : array-like of shape (n_samples,)
            Class labels: at least 2 classes, one with 2 or more samples.
        bounds : array-like of two numbers, optional
            As in :meth:`ITML.fit`.

        {returns_self}
        """
        X, y = validate_points(self, X, y, ensure_min_samples=2)
        check_classification_targets(y)
        n_constraints = renamed_value(self, "num_constraints", "n_constraints")
        a, b, similar = estimator_pairs(self, y, n_constraints, distinct=True, grow=True)
        return self._fit_constraints(X, a, b, np.where(similar, 1.0, -1.0), bounds)



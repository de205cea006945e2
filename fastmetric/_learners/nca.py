"""NCA: Neighbourhood Components Analysis (Goldberger, Roweis, Hinton & Salakhutdinov, 2004).

Each point ``x_i`` picks a stochastic neighbour ``j != i`` with probability

    p_ij = exp(-||L x_i - L x_j||^2) / sum_{l != i} exp(-||L x_i - L x_l||^2),

and is classified correctly when the neighbour has its class.  NCA finds the
map ``L`` maximising the expected number of correct classifications,
``sum_i p_i`` with ``p_i = sum_{j: y_j = y_i} p_ij`` (leave-one-out
stochastic nearest neighbour).  As in scikit-learn and metric-learn we
minimise ``-sum_i p_i`` with scipy's L-BFGS-B, starting from an initial
map (``init``).

The objective and its gradient come from the OpenMP kernel
:class:`fastmetric.kernels.softmax_neighbors.SoftmaxNeighborsProblem`: rows are
processed in chunks (never an n x n matrix), the pairs that carry weight are
found by a float32 GEMM and evaluated exactly, and the gradient
``-2 L sum_ij p_ij (p_i - [y_i = y_j]) d_ij d_ij^T`` is formed through a
weighted graph Laplacian in O(n (k + d) + P d + n d^2) after the distances,
P being the number of pairs whose weight is not negligible.

This module also holds the base shared with :class:`fastmetric._learners.mlkr.MLKR`.
"""

from typing import ClassVar

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.init import initialize_components
from fastmetric._core.inputs import _rows_from_preprocessor
from fastmetric._core.params import reals, shared
from fastmetric.kernels.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.solvers import IterationPrinter, minimize_lbfgs
from fastmetric._core.threads import effective_n_threads, single_threaded_blas
from fastmetric._core.validation import check_points

__all__ = ["NCA"]

# tol=None (metric-learn's default) stands for this value, scikit-learn's
# default for its NeighborhoodComponentsAnalysis.
_DEFAULT_TOL = 1e-5



class _SoftmaxNeighborsLearner(MahalanobisMixin):
    """Fit logic shared by NCA and MLKR: validation, init, L-BFGS, callbacks."""

    _regression = False

    _parameter_constraints: ClassVar[dict] = {
        **shared("init", "n_components", "max_iter", "verbose", "preprocessor",
                 "random_state", "n_jobs", "callback"),
        "tol": [None, reals(0)],  # None: _DEFAULT_TOL
    }

    def _points(self, X, y):
        """Validated points and targets; X may be row indices into ``preprocessor``."""
        preprocessor = self.preprocessor
        if preprocessor is not None and not hasattr(X, "iloc"):
            arr = np.asarray(X)
            if arr.ndim == 1 and arr.dtype.kind in "iu":
                if callable(preprocessor) and not hasattr(preprocessor, "shape"):
                    X = _rows_from_preprocessor(preprocessor, arr)
                else:
                    P = check_points(preprocessor, name="preprocessor")
                    if arr.size and (arr.min() < 0 or arr.max() >= P.shape[0]):
                        bad = arr.min() if arr.min() < 0 else arr.max()
                        raise ValueError(
                            f"X holds the index {bad}, outside the rows [0, {P.shape[0]}) "
                            "of the preprocessor."
                        )
                    X = P[arr]
        return validate_data(
            self, X, y, dtype=[np.float64, np.float32], order="C",
            y_numeric=self._regression,
        )

    def _fit_problem(self, X, problem, L0, n_threads):
        k, d = L0.shape
        printer = IterationPrinter(type(self).__name__)

        def fun(theta):
            loss, grad = problem.loss_grad(theta.reshape(k, d), n_threads)
            return loss, grad.ravel()

        def on_iteration(iteration, theta, loss):
            if self.verbose:
                printer(iteration, loss)
            if self.callback is not None:
                self.components_ = theta.reshape(k, d).copy()
                self.n_iter_ = iteration
                return bool(self.callback(self, iteration, loss))
            return False

        with single_threaded_blas():  # identical results for any BLAS thread count
            result = minimize_lbfgs(fun, L0.ravel(), max_iter=self.max_iter,
                                    tol=_DEFAULT_TOL if self.tol is None else self.tol,
                                    on_iteration=on_iteration)
        self.components_ = np.ascontiguousarray(result.x.reshape(k, d))
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        return self

    def _initial_components(self, X, class_labels):
        rng = check_random_state(self.random_state)
        with single_threaded_blas():
            return initialize_components(self.init, X, y=class_labels,
                                         n_components=self.n_components, random_state=rng)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags


class NCA(_SoftmaxNeighborsLearner):
    """Neighbourhood Components Analysis.

    Learns the linear map ``L`` (``components_``) maximising the expected
    leave-one-out accuracy of a stochastic nearest-neighbour classifier in
    the embedded space: ``sum_i p_i``, where ``p_i`` is the probability
    that the softmax neighbour of ``x_i`` (``p_ij`` proportional to
    ``exp(-||L x_i - L x_j||^2)``, ``p_ii = 0``) has the class of ``x_i``.
    The objective and the parameters are those of metric-learn's ``NCA``
    (and scikit-learn's ``NeighborhoodComponentsAnalysis``); ``n_jobs`` and
    ``callback`` are added.

    Parameters
    ----------
    init : {'auto', 'identity', 'pca', 'lda', 'covariance', 'random'}, array \
            or fitted learner, default='auto'
        Initial ``L``.  ``'auto'`` picks ``'lda'`` when ``n_components <=
        n_classes - 1``, else ``'pca'`` when ``n_components <
        n_features``, else ``'identity'`` (see
        :func:`fastmetric._core.init.initialize_components`).  An array of shape
        ``(n_components, n_features)`` or a fitted learner (its
        ``components_``) starts from that map.
    n_components : int, optional
        Dimension of the embedding (rows of ``L``); default ``n_features``
        (or the rows of an array ``init``).
    max_iter : int, default=100
        Maximum number of L-BFGS iterations.
    tol : float, optional
        Convergence tolerance of L-BFGS: it stops when the relative
        decrease of the objective in an iteration, or the largest entry of
        the gradient, is at most ``tol``.  ``None`` means 1e-5
        (scikit-learn's default).
    verbose : bool or int, default=False
        Print the objective at each iteration.
    preprocessor : array-like of shape (n_samples, n_features) or callable, optional
        When set, ``X`` in ``fit`` and ``transform`` may be a 1-D integer
        array of row indices into it (or passed to it, if callable).
    random_state : int, RandomState instance or None
        Seeds the ``'random'`` initialisation and randomised PCA.
    n_jobs : int, optional
        OpenMP threads of the kernel (None: what OpenMP allows, -1: all
        CPUs).  The result does not depend on it.
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each L-BFGS
        iteration, with ``components_`` set to the current iterate and
        ``loss`` the objective ``-sum_i p_i``; returning True stops the fit.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned map ``L``.
    n_iter_ : int
        L-BFGS iterations done.
    loss_ : float
        Final objective ``-sum_i p_i`` (minus the expected number of points
        classified correctly).
    loss_curve_ : list of float
        Objective after each iteration.
    classes_ : ndarray of shape (n_classes,)
        The class labels seen in ``fit``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has feature names.

    Notes
    -----
    Memory is O(n (d + k)) plus, per thread, a ``chunk x n`` block (about
    24 MB); no n x n matrix is formed.  An evaluation costs one float32
    GEMM of ``n^2 (k + 2)`` multiply-adds (half of it once the softmax is
    concentrated and nearest-neighbour hints from the previous evaluation
    are available), plus work proportional to the number of pairs whose
    softmax weight is within ``e^-50`` of their row's largest.  Their
    distances and weights are computed exactly in float64, so the objective
    is that of a dense float64 implementation to rounding.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from fastmetric import NCA
    >>> X, y = load_iris(return_X_y=True)
    >>> nca = NCA(n_components=2, random_state=0).fit(X, y)
    >>> nca.transform(X).shape
    (150, 2)
    """

    def __init__(self, init="auto", n_components=None, max_iter=100, tol=None, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None):
        self.init = init
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.callback = callback

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Learn ``L`` from points and their class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points (at least 2); or, with a preprocessor, 1-D row indices.
        y : array-like of shape (n_samples,)
            Class labels, at least 2 distinct classes.

        Returns
        -------
        self
        """
        n_threads = effective_n_threads(self.n_jobs)
        X, y = self._points(X, y)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        labels = labels.reshape(-1)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"NCA needs at least 2 samples (each point is compared with the others); "
                f"got 1 sample (n_samples={n})."
            )
        if len(classes) < 2:
            raise ValueError(
                f"NCA needs at least 2 classes in y; y has 1 class ({classes[0]!r}), so "
                "every point is always classified correctly and there is nothing to learn."
            )
        L0 = self._initial_components(X, labels)
        problem = SoftmaxNeighborsProblem(X, labels=labels)
        self.classes_ = classes
        return self._fit_problem(X, problem, L0, n_threads)

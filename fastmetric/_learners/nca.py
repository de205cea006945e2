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

The fit logic shared with :class:`fastmetric.MLKR` (validation, init,
L-BFGS, callbacks) is :class:`fastmetric._core.softmax_learner.SoftmaxNeighborsLearner`.
"""


import numpy as np
from sklearn.base import _fit_context
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.docs import shared_docs
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.params import store_params
from fastmetric._core.softmax_learner import SoftmaxNeighborsLearner
from fastmetric._core.threads import effective_n_threads

__all__ = ["NCA"]


@shared_docs
class NCA(SoftmaxNeighborsLearner):
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
        min(n_features, n_samples)``, else ``'identity'`` (see
        :func:`fastmetric._core.init.initialize_components`).  A named
        start is divided by a scalar where the median squared distance of
        a point to its nearest neighbour would exceed 1 (a saturated
        softmax, e.g. raw pixel values: see
        :func:`fastmetric._core.init.unsaturated_start`), so that NCA
        learns on unscaled features; metric-learn and scikit-learn start
        unscaled (``init=np.eye(n_features)`` does the same here).  An array of shape
        ``(n_components, n_features)`` or a fitted learner (its
        ``components_``) starts from that map, as is.
    {n_components}
    max_iter : int, default=100
        Maximum number of L-BFGS iterations.
    tol : float, optional
        Convergence tolerance of L-BFGS: it stops when the relative
        decrease of the objective in an iteration, or the largest entry of
        the gradient, is at most ``tol``.  ``None`` means 1e-5
        (scikit-learn's default).
    {verbose_objective}
    {preprocessor_points}
    random_state : int, RandomState instance or None
        Seeds the ``'random'`` initialisation and randomised PCA.
    {n_jobs_kernels}
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
    {n_features_in}
    {feature_names_in}

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
    {load_iris}
    >>> from fastmetric import NCA
    >>> nca = NCA(n_components=2, random_state=0).fit(X, y)
    >>> nca.transform(X).shape
    (150, 2)
    """

    _unsaturated_start = True

    def __init__(self, init="auto", n_components=None, max_iter=100, tol=None, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None):
        store_params(self, locals())

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Learn ``L`` from points and their class labels.

        {fit_labelled_points}
            With a single class there is nothing to learn: the initial map
            is kept (``n_iter_ = 0``), as in metric-learn.

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
        # One class: every neighbour shares each point's class, so p_i = 1 for
        # any L, the objective is the constant -n and its gradient is zero.
        # The initial map is already optimal and kept as named (metric-learn
        # returns it too, after no iteration; no softmax to keep unsaturated).
        L0 = self._initial_components(X, labels, shrink=len(classes) >= 2)
        if len(classes) < 2:
            self.classes_ = classes
            self.components_ = np.ascontiguousarray(L0)
            self.n_iter_ = 0
            self.loss_ = -float(n)
            self.loss_curve_ = []
            return self
        problem = SoftmaxNeighborsProblem(X, labels=labels)
        self.classes_ = classes
        return self._fit_problem(X, problem, L0, n_threads)

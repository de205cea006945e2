"""MLKR: Metric Learning for Kernel Regression (Weinberger & Tesauro, 2007).

Kernel regression predicts the target of ``x_i`` from the other points,
weighted by a Gaussian kernel in the learned metric::

    yhat_i = sum_{j != i} k_ij y_j / sum_{j != i} k_ij,   k_ij = exp(-||L x_i - L x_j||^2),

and MLKR finds the map ``L`` minimising the leave-one-out squared error
``sum_i (yhat_i - y_i)^2`` (the objective of metric-learn's ``MLKR``),
with scipy's L-BFGS-B from an initial map.  Its derivative in the squared
distance ``D_ij`` is ``W_ij = 2 (yhat_i - y_i) p_ij (yhat_i - y_j)`` with
``p_ij = k_ij / sum_l k_il``, so the gradient is ``2 L sum_ij W_ij d_ij
d_ij^T`` (``d_ij = x_i - x_j``); the same OpenMP kernel as NCA's evaluates
both (:class:`fastmetric.kernels.softmax_neighbors.SoftmaxNeighborsProblem`),
chunk by chunk, without an n x n matrix.
"""
from typing import ClassVar

import numpy as np
from sklearn.base import _fit_context

from fastmetric._core.docs import shared_docs
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.params import options_or_array, store_params
from fastmetric._core.softmax_learner import SoftmaxNeighborsLearner
from fastmetric._core.threads import effective_n_threads

__all__ = ["MLKR"]


@shared_docs
class MLKR(SoftmaxNeighborsLearner):
    """Metric Learning for Kernel Regression.

    Learns the linear map ``L`` (``components_``) under which Gaussian
    kernel regression (Nadaraya-Watson with kernel ``exp(-||L x - L
    x'||^2)``) predicts each training target best from the other points:
    it minimises ``sum_i (yhat_i - y_i)^2`` with ``yhat_i`` the
    leave-one-out kernel-weighted mean of the targets.  Parameters as in
    metric-learn's ``MLKR``, plus ``n_jobs`` and ``callback``.

    Parameters
    ----------
    {n_components}
    init : {'auto', 'identity', 'pca', 'covariance', 'random'}, array or \
            fitted learner, default='auto'
        Initial ``L``.  ``'auto'`` picks ``'pca'`` when ``n_components <
        min(n_features, n_samples)``, else ``'identity'`` (see
        :func:`fastmetric._core.init.initialize_components`).  (``'lda'`` needs
        class labels and is not available.)  Since the kernel's width is
        set by the scale of ``L``, standardise the features first (or pass
        a scaled initial map).
    tol : float, optional
        Convergence tolerance of L-BFGS (relative decrease of the objective
        in an iteration, or largest gradient entry).  ``None`` means 1e-5.
    max_iter : int, default=1000
        Maximum number of L-BFGS iterations.
    {verbose_objective}
    {preprocessor_points}
    random_state : int, RandomState instance or None
        Seeds the ``'random'`` initialisation and randomised PCA.
    {n_jobs_kernels}
    {callback_iterate}

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned map ``L``.
    n_iter_ : int
        L-BFGS iterations done.
    loss_ : float
        Final leave-one-out sum of squared errors.
    loss_curve_ : list of float
        Objective after each iteration.
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    Memory and cost per evaluation are those of :class:`fastmetric.NCA`:
    O(n (d + k)) memory plus a ``chunk x n`` block per thread, no n x n
    matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import MLKR
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(100, 4)
    >>> y = X[:, 0] + 0.1 * rng.randn(100)
    >>> mlkr = MLKR(n_components=2, max_iter=50, random_state=0).fit(X, y)
    >>> mlkr.transform(X).shape
    (100, 2)
    """

    _regression = True
    _parameter_constraints: ClassVar[dict] = {
        **SoftmaxNeighborsLearner._parameter_constraints,
        # No 'lda': it needs class labels, and MLKR's targets are real values.
        "init": options_or_array("auto", "identity", "pca", "covariance", "random",
                                 learner=True),
    }

    def __init__(self, n_components=None, init="auto", tol=None, max_iter=1000,
                 verbose=False, preprocessor=None, random_state=None, n_jobs=None,
                 callback=None):
        store_params(self, locals())

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Learn ``L`` from points and their real-valued targets.

        Parameters
        ----------
        {fit_points}
        y : array-like of shape (n_samples,)
            Real targets (finite), one per point; at least 2 points.

        {returns_self}
        """
        n_threads = effective_n_threads(self.n_jobs)
        X, y = self._points(X, y)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"MLKR needs at least 2 samples (each target is predicted from the "
                f"others); got 1 sample (n_samples={n})."
            )
        targets = np.ascontiguousarray(y, dtype=np.float64)
        L0 = self._initial_components(X, None)
        problem = SoftmaxNeighborsProblem(X, targets=targets)
        return self._fit_problem(X, problem, L0, n_threads)

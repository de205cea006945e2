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

For data too large for the O(n^2) objective, ``solver='adam'`` or ``'sgd'``
(and ``'auto'`` above 50,000 rows) minimise a minibatch version: each batch
point is predicted from the batch plus ``n_candidates`` rows drawn per
minibatch (:class:`fastmetric._core.objectives.neighbor_batches.MLKRBatchObjective`),
so that an epoch costs time linear in n and memory bounded by the batch;
the epochs, ``partial_fit`` and Ctrl-C handling are those of
:class:`fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`, as for NCA.
"""
from typing import ClassVar

import numpy as np

from fastmetric._core.docs import shared_docs
from fastmetric._core.minibatch_learner import batch_objective, check_dask_solver, init_subset
from fastmetric._core.objectives.neighbor_batches import MLKRBatchObjective
from fastmetric._core.params import fit_context, options_or_array, store_params
from fastmetric._core.softmax_learner import SoftmaxNeighborsLearner

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
        class labels and is not available.)  The kernel's width is set by
        the scale of ``L``: a named start is divided by a scalar where the
        median squared distance of a point to its nearest neighbour would
        exceed 1 (each prediction would be its nearest neighbour's target
        and the gradient vanish, as on raw ring data: see
        :func:`fastmetric._core.init.unsaturated_start`), as
        :class:`fastmetric.NCA` does; metric-learn starts unscaled
        (``init=np.eye(n_features)`` does the same here).  An array or a
        fitted learner starts from that map, as is.
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
    solver : {'lbfgs', 'adam', 'sgd', 'auto'}, default='lbfgs'
        ``'lbfgs'``: scipy's L-BFGS-B on the full objective (time O(n^2)
        per iteration).  ``'adam'`` / ``'sgd'`` (with momentum): minibatch
        epochs for large data, each batch point predicted from the batch
        and ``n_candidates`` rows drawn per minibatch (time linear in n per
        epoch, memory bounded by the batch; see Notes; ``max_iter`` then
        counts epochs and ``tol`` is the minimal relative improvement of
        an epoch's mean loss).  ``'auto'``: ``'lbfgs'`` up to 50,000 rows,
        ``'adam'`` above.
    batch_size : int, default=1000
        Rows per minibatch (stochastic solvers).
    n_candidates : int, default=1000
        Rows drawn uniformly per minibatch, besides the batch itself, from
        which the batch points are predicted (stochastic solvers).
    learning_rate : float, default=0.005
        Step size of the stochastic solvers (NCA's default; not tuned on
        large data for MLKR).
    {n_iter_no_change}
    {feature_scaling}

    Attributes
    ----------
    {learned_map}
    n_iter_ : int
        L-BFGS iterations done, or epochs with a stochastic solver.
    loss_ : float
        Final leave-one-out sum of squared errors (stochastic solvers: the
        last epoch's mean over the minibatches of the mean squared error
        of a batch point predicted from its candidates).
    loss_curve_ : list of float
        Objective after each iteration.
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    Memory and cost per evaluation are those of :class:`fastmetric.NCA`:
    O(n (d + k)) memory plus a ``chunk x n`` block per thread, no n x n
    matrix.

    The stochastic solvers minimise ``(1/b) sum_{i in B} (yhat_i -
    y_i)^2`` per minibatch B of ``b = batch_size`` rows, ``yhat_i`` the
    kernel regression over the ``b - 1 + n_candidates`` candidates of the
    minibatch (drawn by ``(random_state, epoch, minibatch)``).  An epoch
    costs about ``n (b + n_candidates) (n_components + n_features)``
    multiply-adds in X's dtype (float32 stays float32) and holds one
    minibatch of rows: X may be a ``numpy.memmap``, or a row-chunked dask
    array (the minibatches gathered and stepped on the workers, as for
    :class:`fastmetric.NCA`; ``solver='auto'`` is then Adam).  The initial
    map is computed on at most 100,000 evenly spaced rows.  Results are the
    same, bit for bit, for any ``n_jobs`` (and on a dask array, with any
    cluster or none).

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
    # A saturated kernel has no gradient: shrink a named start as NCA does.
    _unsaturated_start = True
    _parameter_constraints: ClassVar[dict] = {
        **SoftmaxNeighborsLearner._parameter_constraints,
        # No 'lda': it needs class labels, and MLKR's targets are real values.
        "init": options_or_array("auto", "identity", "pca", "covariance", "random",
                                 learner=True),
    }

    def __init__(self, n_components=None, init="auto", tol=None, max_iter=1000,
                 verbose=False, preprocessor=None, random_state=None, n_jobs=None,
                 callback=None, solver="lbfgs", batch_size=1000, n_candidates=1000,
                 learning_rate=0.005, n_iter_no_change=5, feature_scaling="auto"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y):
        """Learn ``L`` from points and their real-valued targets.

        Parameters
        ----------
        {fit_points}
        y : array-like of shape (n_samples,)
            Real targets (finite), one per point; at least 2 points.

        {returns_self}
        """
        X, y = self._points(X, y)
        n = X.shape[0]
        if n < 2:
            raise ValueError(
                f"MLKR needs at least 2 samples (each target is predicted from the "
                f"others); got 1 sample (n_samples={n})."
            )
        targets = np.ascontiguousarray(y, dtype=np.float64)
        solver = check_dask_solver(self, X)
        return self._fit_solver(
            X, solver, targets=targets,
            stochastic_start=lambda: self._initial_components(init_subset(X, targets)[0], None,
                                                              return_shrink=True),
            make_objective=lambda: batch_objective(MLKRBatchObjective, X, targets, self.n_jobs))

    def _partial_fit_batch(self, X, y, first, solver):
        """partial_fit's epoch on the batch's real targets."""
        targets = np.ascontiguousarray(y, dtype=np.float64)
        self._partial_fit_minibatch(
            lambda: batch_objective(MLKRBatchObjective, X, targets, self.n_jobs),
            lambda: self._initial_components(init_subset(X, targets)[0], None,
                                             return_shrink=True), solver)

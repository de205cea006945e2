"""NCA: Neighbourhood Components Analysis (Goldberger, Roweis, Hinton & Salakhutdinov, 2004).

Each point ``x_i`` picks a stochastic neighbour ``j != i`` with probability

    p_ij = exp(-||L x_i - L x_j||^2) / sum_{l != i} exp(-||L x_i - L x_l||^2),

and is classified correctly when the neighbour has its class.  NCA finds the
map ``L`` maximising the expected number of correct classifications,
``sum_i p_i`` with ``p_i = sum_{j: y_j = y_i} p_ij`` (leave-one-out
stochastic nearest neighbour).  As in scikit-learn and metric-learn we
minimise ``-sum_i p_i`` with scipy's L-BFGS-B, starting from an initial
map (``init``); ``alpha > 0`` adds a pull toward that map (not the
default: their objective).

The objective and its gradient come from the OpenMP kernel
:class:`fastmetric.kernels.softmax_neighbors.SoftmaxNeighborsProblem`: rows are
processed in chunks (never an n x n matrix), the pairs that carry weight are
found by a float32 GEMM and evaluated exactly, and the gradient
``-2 L sum_ij p_ij (p_i - [y_i = y_j]) d_ij d_ij^T`` is formed through a
weighted graph Laplacian in O(n (k + d) + P d + n d^2) after the distances,
P being the number of pairs whose weight is not negligible.

The fit logic shared with :class:`fastmetric.MLKR` (validation, init,
L-BFGS, callbacks) is :class:`fastmetric._core.softmax_learner.SoftmaxNeighborsLearner`.

For data too large for the O(n^2) objective, ``solver='adam'`` or ``'sgd'``
(and ``'auto'`` above 50,000 rows) minimise a minibatch version: each batch
point's softmax is taken over the batch plus ``n_candidates`` rows drawn
per minibatch (:class:`fastmetric._core.objectives.neighbor_batches.NCABatchObjective`),
so that an epoch costs time linear in n and memory bounded by the batch;
the epochs, ``partial_fit`` and Ctrl-C handling are those of
:class:`fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`.
"""



from typing import ClassVar

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.docs import shared_docs
from fastmetric._core.minibatch_learner import (
    STOCHASTIC_SOLVERS,
    batch_objective,
    check_dask_solver,
    init_subset,
    labelled_points,
)
from fastmetric._core.objectives.neighbor_batches import NCABatchObjective
from fastmetric._core.params import fit_context, reals, store_params
from fastmetric._core.softmax_learner import SoftmaxNeighborsLearner

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
    (and scikit-learn's ``NeighborhoodComponentsAnalysis``); ``n_jobs``,
    ``callback`` and others are added, among them ``alpha``, a pull toward
    the initial map (off by default).

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
        Maximum number of L-BFGS iterations (epochs of the stochastic
        solvers).
    tol : float, optional
        Convergence tolerance of L-BFGS: it stops when the relative
        decrease of the objective in an iteration, or the largest entry of
        the gradient, is at most ``tol``.  ``None`` means 1e-5
        (scikit-learn's default).  Stochastic solvers: the minimal
        relative improvement of an epoch's mean loss.
    {verbose_objective}
    {preprocessor_points}
    random_state : int, RandomState instance or None
        Seeds the ``'random'`` initialisation and randomised PCA.
    {n_jobs_kernels}
    callback : callable, optional
        ``callback(estimator, iteration, loss)`` after each L-BFGS
        iteration (epoch), with ``components_`` set to the current iterate and
        ``loss`` the objective ``-sum_i p_i`` (plus the pull, ``alpha``;
        stochastic solvers: the
        epoch's mean of ``-p_i`` over the minibatches); returning True stops
        the fit.
    solver : {'lbfgs', 'adam', 'sgd', 'auto'}, default='lbfgs'
        ``'lbfgs'``: scipy's L-BFGS-B on the full objective (time O(n^2)
        per iteration).  ``'adam'`` / ``'sgd'`` (with momentum): minibatch
        epochs for large data, each batch point's softmax taken over the
        batch and ``n_candidates`` rows drawn per minibatch (time linear in
        n per epoch, memory bounded by the batch; see Notes).  ``'auto'``:
        ``'lbfgs'`` up to 50,000 rows, ``'adam'`` above.  X may be a
        row-chunked dask array with the stochastic solvers (``'auto'`` is
        then ``'adam'``): the minibatches are gathered and evaluated on the
        workers (see ``fastmetric._core.dask_minibatch``).
    batch_size : int, default=1000
        Rows per minibatch (stochastic solvers).
    n_candidates : int, default=1000
        Rows drawn uniformly per minibatch, besides the batch itself, as
        the softmax neighbours of the batch points (stochastic solvers).
    learning_rate : float, default=0.005
        Step size of the stochastic solvers (0.005 reached a lower loss and
        a better 3-NN accuracy than 0.01 on 180,000 rows of
        ``benchmarks/large_neighbors.py``).
    {n_iter_no_change}
    {feature_scaling}
    alpha : float, default=0.0
        Strength of a pull toward the initial map ``L0``: L-BFGS minimises
        ``-sum_i p_i + alpha * ||L - L0||_F^2 / ||L0||_F^2`` (with
        ``feature_scaling``, in the scaled coordinates of the features):
        moving ``L`` by the size of its start costs as much as ``alpha``
        points classified correctly in expectation, whatever the units.
        ``0``: NCA's objective, as metric-learn and scikit-learn fit it.
        ``alpha=5`` raised the accuracy on small real data sets, at a cost
        in time on larger ones (see Notes).  A positive value with a
        stochastic solver (whose minibatches and early stop keep the map
        near its start anyway) raises NotImplementedError.

    Attributes
    ----------
    {learned_map}
    n_iter_ : int
        Iterations done (epochs with a stochastic solver).
    loss_ : float
        Final objective ``-sum_i p_i`` (minus the expected number of points
        classified correctly), plus the pull toward the start with
        ``alpha > 0``; with a stochastic solver the last epoch's
        mean of ``-p_i`` (minus the expected accuracy on the candidates).
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

    The stochastic solvers minimise ``-(1/b) sum_{i in B} p_i`` per
    minibatch B of ``b = batch_size`` rows, each ``p_i`` a softmax over the
    ``b - 1 + n_candidates`` candidates of the minibatch (the candidates
    drawn by ``(random_state, epoch, minibatch)``).  An epoch costs about
    ``n (b + n_candidates) (n_components + n_features)`` multiply-adds, in
    X's dtype (float32 stays float32), and holds one minibatch of rows: X
    may be a ``numpy.memmap``.  The initial map is computed on at most
    100,000 evenly spaced rows.  Results are the same, bit for bit, for
    any ``n_jobs``.

    On small data L-BFGS fits NCA's objective closely, and the softmax
    keeps sharpening on the training points after the map stops gaining on
    new ones.  A pull toward the start holds it back: ``NCA(alpha=5)``
    raised the mean 3-NN accuracy over the 21 data sets of
    ``benchmarks/quality_uci.py`` from 0.887 to 0.895 (MAP@R 0.536 ->
    0.542; five draws, no fit warned; digits unchanged).  It is not the
    default because the softmax it keeps broad costs time as the data
    grow: on 5,000 x 64 points 100 iterations without converging (15.7 s)
    against 64 (4.2 s), each evaluation twice as long.  Small minibatches
    stop early too: ``NCA(solver='adam', batch_size=32,
    n_candidates=500, learning_rate=0.02, tol=1e-3, max_iter=200)`` scored
    0.895 and a MAP@R of 0.551, with fits 1.6-1.8 times slower than L-BFGS
    (breast cancer 35 -> 64 ms, digits 179 -> 288 ms).  Where a named start
    is shrunk (saturated features, e.g. raw pixels), the stochastic solvers scale
    the learning rate with it, so that scaling the features does not change
    the fit: on the raw digits pixels (0-16) the same setting scored 0.982
    (L-BFGS 0.986, the Euclidean distance 0.988).  An array or fitted
    learner as ``init`` is used as given, with the learning rate as given.
    L-BFGS stays the default, as in metric-learn and scikit-learn.

    Examples
    --------
    {load_iris}
    >>> from fastmetric import NCA
    >>> nca = NCA(n_components=2, random_state=0).fit(X, y)
    >>> nca.transform(X).shape
    (150, 2)
    """

    _unsaturated_start = True
    _parameter_constraints: ClassVar[dict] = {
        **SoftmaxNeighborsLearner._parameter_constraints,
        "alpha": [reals(0)],
    }

    def __init__(self, init="auto", n_components=None, max_iter=100, tol=None, verbose=False,
                 preprocessor=None, random_state=None, n_jobs=None, callback=None,
                 solver="lbfgs", batch_size=1000, n_candidates=1000, learning_rate=0.005,
                 n_iter_no_change=5, feature_scaling="auto", alpha=0.0):
        store_params(self, locals())

    def _resolve_alpha(self, solver):
        """The pull toward the start for ``solver`` (see ``alpha``)."""
        alpha = float(self.alpha)
        if alpha > 0 and solver in STOCHASTIC_SOLVERS:
            raise NotImplementedError(
                f"NCA's pull toward the initial map (alpha={self.alpha!r}) is implemented "
                f"for solver='lbfgs' only, not for solver={solver!r}; use alpha=0 with "
                "the stochastic solvers.")
        return alpha

    @fit_context
    def fit(self, X, y):
        """Learn ``L`` from points and their class labels.

        {fit_labelled_points}
            With a single class there is nothing to learn: the initial map
            is kept (``n_iter_ = 0``), as in metric-learn.

        {returns_self}
        """
        X, y = labelled_points(self, X, y, reset=True)
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
            # One class: every neighbour shares each point's class, so p_i = 1
            # for any L, the objective is the constant -n and its gradient is
            # zero.  The initial map is already optimal and kept as named
            # (metric-learn returns it too, after no iteration; no softmax to
            # keep unsaturated).
            L0 = self._initial_components(*init_subset(X, labels), shrink=False)
            self.classes_ = classes
            self.components_ = np.ascontiguousarray(L0)
            self.n_iter_ = 0
            self.loss_ = -float(n)
            self.loss_curve_ = []
            return self
        self.classes_ = classes
        solver = check_dask_solver(self, X)
        alpha = self._resolve_alpha(solver)
        return self._fit_solver(
            X, solver, labels=labels, pull=alpha,
            stochastic_start=lambda: self._initial_components(*init_subset(X, labels),
                                                              return_shrink=True),
            make_objective=lambda: batch_objective(NCABatchObjective, X, labels, self.n_jobs))

    def _partial_fit_batch(self, X, y, first, solver):
        """partial_fit's epoch on the batch's class labels; ``classes_``
        gathers the classes seen so far."""
        self._resolve_alpha(solver)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        labels = labels.reshape(-1)
        self._partial_fit_minibatch(
            lambda: batch_objective(NCABatchObjective, X, labels, self.n_jobs),
            lambda: self._initial_components(*init_subset(X, labels), return_shrink=True),
            solver)
        seen = getattr(self, "classes_", None) if not first else None
        self.classes_ = classes if seen is None else np.union1d(seen, classes)

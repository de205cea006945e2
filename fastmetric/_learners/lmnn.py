"""LMNN: Large Margin Nearest Neighbor (Weinberger & Saul, 2009).

Each point ``x_i`` gets ``k`` *target neighbours* ``T(i)``: its nearest
points of the same class in the initial metric, found once.  LMNN learns
``L`` so that the targets come close and points of other classes stay at
least one unit (squared) farther than every target, minimising, with
``D_ab = ||L (x_a - x_b)||^2`` and ``mu = regularization``,

    f(L) = (1 - mu) sum_i sum_{j in T(i)} D_ij
           + mu sum_i sum_{j in T(i)} sum_{l: y_l != y_i} [1 + D_ij - D_il]_+ .

A point l of another class is an *impostor* of i when ``D_il < r_i =
1 + max_{j in T(i)} D_ij``: only impostors can make a hinge term positive.
The objective is :class:`fastmetric._core.objectives.lmnn.LMNNProblem`
(OpenMP kernels over a set of *candidate pairs* guaranteed to contain every
impostor pair; its docstring gives the rule that keeps the set valid
between searches); this module checks the parameters, builds the problem
and hands it to scipy's L-BFGS (default) or to metric-learn's adaptive
gradient descent.

For data too large for the O(n^2) impostor searches, ``solver='adam'`` or
``'sgd'`` (and ``'auto'`` above 50,000 rows) start from the full-batch fit on
a subsample (``init_subsample`` rows), find the target neighbours once
(:func:`fastmetric._core.objectives.neighbor_batches.block_target_neighbors`)
and minimise an unbiased minibatch estimate of the objective, the impostors
of each batch point searched among the batch and ``n_candidates`` rows
drawn per minibatch
(:class:`fastmetric._core.objectives.neighbor_batches.LMNNBatchObjective`);
the epochs, ``partial_fit`` and Ctrl-C handling are those of
:class:`fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`.
"""
import warnings
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, initialize_components, rescaled_start
from fastmetric._core.inputs import encode_classes
from fastmetric._core.minibatch_learner import (
    STOCHASTIC_SOLVERS,
    MinibatchNeighborsMixin,
    batch_objective,
    check_dask_solver,
    data_mean,
    init_subset,
    labelled_points,
    resolve_solver,
    starts_partial_fit,
    stochastic_solver_only,
)
from fastmetric._core.objectives.lmnn import lmnn_problem, preconditioner
from fastmetric._core.objectives.neighbor_batches import (
    LMNNBatchObjective,
    block_target_neighbors,
)
from fastmetric._core.params import (
    fit_context,
    integers,
    reals,
    renamed,
    renamed_value,
    shared,
    store_params,
)
from fastmetric._core.solvers import IterationPrinter, minimize_halving_descent, minimize_lbfgs
from fastmetric._core.threads import (
    effective_n_threads,
    multiply_adds,
    team_threads,
)
from fastmetric._core.validation import check_squared_scale

__all__ = ["LMNN"]

_SOLVERS = ("lbfgs", "gd", *STOCHASTIC_SOLVERS, "auto")


@shared_docs
class LMNN(MinibatchNeighborsMixin, MahalanobisMixin):
    """Large Margin Nearest Neighbor metric learning.

    Learns a linear map ``L`` (``components_``) under which each point's
    ``n_neighbors`` target neighbours (its nearest same-class points in the
    initial metric) are close, and points of other classes are kept outside
    a unit margin, as in Weinberger & Saul (2009).  The objective, with
    ``D_ab = ||L (x_a - x_b)||^2`` and ``mu = regularization``, is

    ``(1 - mu) sum_{i, j in T(i)} D_ij + mu sum_{i, j in T(i), l: y_l != y_i}
    [1 + D_ij - D_il]_+``.

    The impostor search and the gradient run in OpenMP kernels over a
    candidate set of pairs that is re-searched only when the points may
    have moved enough to let a new impostor in (see Notes); nothing of
    size n x n is ever stored.

    Parameters
    ----------
    init : {'auto', 'identity', 'pca', 'lda', 'covariance', 'random'}, array \
            or fitted learner, default='auto'
        Initial ``L``; see :func:`fastmetric._core.init.initialize_components`
        (``'auto'`` gives ``'lda'`` when ``n_components < n_classes``, else
        ``'pca'`` when ``n_components < min(n_features, n_samples)``, else the
        identity).
    n_neighbors : int, default=3
        Target neighbours per point (not counting the point).  A class with
        ``m <= n_neighbors`` points gives its points ``m - 1`` targets, with
        a warning.
    min_iter : int, default=50
        Iterations before the tolerance may stop the solver.
    max_iter : int, default=1000
        Maximum number of iterations (L-BFGS iterations, or accepted
        gradient steps for ``solver='gd'``).
    learn_rate : float, default=1e-7
        Initial step size of ``solver='gd'`` (unused by L-BFGS).
    regularization : float in [0, 1], default=0.5
        ``mu``: the weight of the push (hinge) term; the pull term has
        ``1 - mu``.  (metric-learn 0.7's code puts its ``regularization``
        on the pull term instead: its ``r`` is our ``1 - r``; both default
        to 0.5, where they agree.)
    convergence_tol : float, default=0.001
        Stop (after ``min_iter`` iterations) when an iteration decreases the
        objective by less than ``convergence_tol * max(|f|, 1)``.
    n_components : int, optional
        Rows of ``L`` (the embedding dimension); default ``n_features``.
    solver : {'lbfgs', 'gd', 'adam', 'sgd', 'auto'}, default='lbfgs'
        scipy's L-BFGS-B, or metric-learn's gradient descent (the step is
        halved until the objective decreases, then grown by 1% per step),
        on the full objective; or, for large data, minibatch Adam / SGD with
        momentum (see Notes; ``max_iter`` then counts epochs and
        ``convergence_tol`` is the minimal relative improvement of an
        epoch's mean loss; ``min_iter`` is not used).  ``'auto'``:
        ``'lbfgs'`` up to 50,000 rows, ``'adam'`` above.  X may be a
        row-chunked dask array with the stochastic solvers (``'auto'`` is
        then ``'adam'``): the minibatches are gathered and evaluated on the
        workers (see ``fastmetric._core.dask_minibatch``).
    {verbose_objective}
    {preprocessor_points}
    random_state : int, RandomState instance or None
        For ``init='random'`` and randomised PCA.
    {n_jobs_kernels}
    {callback_iterate}
    batch_size : int, default=1000
        Rows per minibatch (stochastic solvers).
    n_candidates : int, default=1000
        Rows drawn uniformly per minibatch, besides the batch itself, among
        which the impostors of the batch points are searched (stochastic
        solvers).
    learning_rate : float, default=0.001
        Step size of the stochastic solvers (``learn_rate`` is that of
        ``'gd'``).  On 180,000 rows of ``benchmarks/large_neighbors.py``,
        from the identity (before ``init_subsample`` existed), smaller
        steps gave lower losses and better 3-NN accuracies (0.001 better
        than 0.002 and 0.005).
    n_iter_no_change : int, default=5
        The stochastic solvers stop after this many epochs without an
        improvement of the mean loss by ``convergence_tol``.
    target_block_size : int, optional
        Stochastic solvers: search the target neighbours (exactly) within
        blocks of this many rows, drawn once from ``random_state``, instead
        of among all the rows of each class: the one-time search then costs
        time linear in n (``n * target_block_size * n_features /
        n_classes`` multiply-adds instead of ``n^2 n_features /
        n_classes``).  None: all rows.
    init_subsample : int or None, default=5000
        Stochastic solvers: start from the full-batch fit (L-BFGS, with the
        default ``min_iter``, ``max_iter`` and ``convergence_tol``, from
        ``init``) on this many evenly spaced rows, then refine it with the
        minibatch epochs on all rows.  Its cost does not grow with n, and
        it puts the stochastic fit near the optimum, which Adam's bounded
        steps reach slowly from a named start (see Notes).  None: start from ``init`` itself (computed on
        at most 100,000 evenly spaced rows).
    {feature_scaling}
        For LMNN the target neighbours are then the nearest in the metric
        of that start, and its unit margin is taken where every feature
        spans about one unit.  The stochastic solvers step per feature
        (``learning_rate`` in the units of ``L * ranges``), from the
        subsample fit (with the same scaling) or from ``init``.
    k : int, default='deprecated'
        metric-learn's old name of ``n_neighbors``: a value given here is
        used as ``n_neighbors``, with a FutureWarning (as in metric-learn
        0.7).

    Attributes
    ----------
    {learned_map}
    {loss_history}
    n_active_ : int
        Active triplets (positive hinge terms) at the end (stochastic
        solvers: among the candidates of the last minibatch).
    n_searches_ : int
        Full impostor searches done (0 with the stochastic solvers, which
        search per minibatch).
    n_evaluations_ : int
        Objective evaluations done (stochastic solvers: minibatches).
    {n_features_in}
    {feature_names_in}

    Notes
    -----
    *Targets* are found once, per class, by a chunked k-NN in the initial
    metric (for the default init at full rank the Euclidean one, as in the
    original and metric-learn), ties broken by the smaller index.

    *Impostor search*: every pair of different classes closer than an
    enlarged margin radius, by float32 GEMM-expanded distances over blocks
    of rows of the centred embedding (O(n^2 k) time, O(block) memory), with
    a tolerance that covers the rounding.  The search is not repeated at
    every evaluation: the candidate set stays valid while no point can have
    moved enough, relative to the others, to let a pair it excludes inside
    a margin -- e.g. while ``rho_a - m_a - max_{u not in class(a)} m_u >=
    sqrt(r_a)`` for every point a, with ``rho_a`` a's enlarged radius at
    the search, ``r_a`` its current squared margin radius and ``m_u =
    ||(L - L_s) x_u||`` how far u has moved since the search (x centred).
    A second, relative bound handles large common moves (see
    ``fastmetric._core.objectives.lmnn.LMNNProblem``).  The objective is therefore always exact.  Each
    evaluation costs O(n k d + P k) for P candidate pairs; when the
    impostor pairs are too many to store (over 2^25) a dense kernel
    evaluates without storing them (O(n^2 k)).

    *Solver*: scipy's L-BFGS-B on ``W = L Q^{-1}`` with ``Q = (A + lambda
    I)^{-1/2}``, A the scatter of the target differences: a change of
    variables that makes the pull term isotropic and cuts the iterations
    2 to 3 times on digits.  The hinge makes the objective non-smooth;
    L-BFGS still reaches lower objectives than metric-learn's gradient
    descent in far fewer evaluations (digits: about 55 evaluations against
    about 760 gradient steps, and a test accuracy at least as good), so it
    is the default; ``solver='gd'`` runs metric-learn's scheme.
    ``min_iter`` applies to both solvers: the tolerance cannot stop them
    before it.

    *Stochastic solvers* (``'adam'``, ``'sgd'``): the start is the
    full-batch fit on ``init_subsample`` evenly spaced rows (unless None);
    the targets are found once, in the metric of that start (within blocks
    of ``target_block_size`` rows if set); then each minibatch B of ``b =
    batch_size`` rows is compared with its ``c = b + n_candidates``
    candidates (B and rows drawn uniformly per minibatch).  The minibatch loss ``(1/b) sum_{i in B} [(1 - mu)
    sum_j D_ij + mu s sum_{j, l in C} [1 + D_ij - D_il]_+]`` with ``s = (n
    - 1) / (c - 1)`` is an unbiased estimate of the objective divided by n
    (``loss_`` and ``loss_curve_`` are in these units).  An epoch costs
    about ``n c (n_components + n_features + 3 n_neighbors)`` operations in
    X's dtype and holds one minibatch of rows: X may be a
    ``numpy.memmap``.  Why the subsample start: on issue 19's data
    (``benchmarks/large_neighbors.py``, 80,000 training rows) ten Adam
    epochs from the identity ended at 0.814 3-NN accuracy, below the 0.834
    of the L-BFGS fit on 20,000 rows, while the same minibatch objective
    minimised on those 20,000 rows from a start of the optimum's scale
    matched L-BFGS (0.833): the gap was the distance to travel, not the
    sampled impostors.  From the subsample's fit, five epochs on the 80,000
    rows reached 0.847 (from the fit on 20,000 rows) and 0.858 (from the
    fit on 10,000 rows, itself at 0.834).  On 980,000 rows, two epochs
    from the fit on 5,000 rows reached 0.907 (0.908 from 10,000 rows),
    above the 0.903 of L-BFGS on 20,000 rows; the default is 5,000 because
    the full-batch fit's memory grows with its rows squared (the 10,000-row
    start took the fit's peak RSS from 0.50 to 0.65 GB).

    Results are the same, bit for bit, for any ``n_jobs``.

    Examples
    --------
    {load_iris}
    >>> from fastmetric import LMNN
    >>> lmnn = LMNN(n_neighbors=3, random_state=0).fit(X, y)
    >>> lmnn.transform(X).shape
    (150, 4)
    """

    _parameter_constraints: ClassVar[dict] = {
        **shared("init", "max_iter", "n_components", "verbose", "preprocessor",
                 "random_state", "n_jobs", "callback"),
        "n_neighbors": [integers(1)],
        "min_iter": [integers(0)],
        "learn_rate": [reals(0, closed="neither")],
        "regularization": [reals(0, 1, closed="both")],
        "convergence_tol": [reals(0)],
        "solver": [StrOptions(set(_SOLVERS))],
        "batch_size": [integers(1)],
        "n_candidates": [integers(0)],
        "learning_rate": [reals(0, closed="neither")],
        "n_iter_no_change": [integers(1)],
        "target_block_size": [None, integers(2)],
        "init_subsample": [None, integers(2)],
        "feature_scaling": [StrOptions({"auto", "range"}), None],
        "k": renamed([integers(1)]),
    }

    def __init__(self, init="auto", n_neighbors=3, min_iter=50, max_iter=1000,
                 learn_rate=1e-7, regularization=0.5, convergence_tol=0.001,
                 n_components=None, solver="lbfgs", verbose=False, preprocessor=None,
                 random_state=None, n_jobs=None, callback=None, batch_size=1000,
                 n_candidates=1000, learning_rate=0.001, n_iter_no_change=5,
                 target_block_size=None, init_subsample=5_000, feature_scaling="auto",
                 k="deprecated"):
        store_params(self, locals())

    @fit_context
    def fit(self, X, y):
        """Learn the metric from points and their class labels.

        {fit_labelled_points}
            At least 2 classes, and some class with 2 points.

        {returns_self}
        """
        X, y_enc, classes, per_class = self._labelled_points(X, y, reset=True)
        solver = check_dask_solver(self, X)
        if solver in STOCHASTIC_SOLVERS:
            return self._fit_stochastic(X, y_enc, classes.shape[0], solver)
        rng = check_random_state(self.random_state)
        # The work that sets the default thread count under load: one
        # evaluation maps the points and forms the gradient, n d^2 each.
        n_threads = effective_n_threads(self.n_jobs, work=multiply_adds((X.shape[0], X.shape[1], X.shape[1])))

        scales = feature_scales(X, self.feature_scaling)
        self.feature_scales_ = scales
        L0 = self._start(X, y_enc, rng, scales)
        k, d = L0.shape
        problem = lmnn_problem(X, y_enc, classes.shape[0], per_class,
                               self._n_neighbors, L0, float(self.regularization),
                               n_threads)
        # Under load the impostor search runs on the team (the same result).
        problem.team_threads = team_threads(self.n_jobs)
        result = self._solve(problem, L0, scales)
        # Active triplets at the returned map (the solver's last
        # evaluation may have been a rejected trial point).
        _, _, n_active = problem.loss_grad(result.x.reshape(k, d), compute_gradient=False)

        self.components_ = np.ascontiguousarray(result.x.reshape(k, d))
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        self.n_active_ = int(n_active)
        self.n_searches_ = int(problem.n_searches)
        self.n_evaluations_ = int(problem.n_evaluations)
        # Read by a stochastic fit that starts from this (subsample) fit.
        self._interrupted = result.message == "interrupted"
        return self

    def _labelled_points(self, X, y, reset):
        """Validated X, labels encoded 0..C-1, the classes and targets per class."""
        X, y = labelled_points(self, X, y, reset)
        if not is_dask_array(X):
            # The pull, push and preconditioner sum squared differences of
            # rows: beyond this scale they overflow (eigh then failed deep
            # inside the preconditioner).
            check_squared_scale(X, "LMNN")
        check_classification_targets(y)
        classes, y_enc, counts = encode_classes(
            y, "LMNN", "(impostors are points of another class)")
        if X.shape[0] >= np.iinfo(np.intc).max:
            raise ValueError(
                f"LMNN indexes points with 32-bit integers; X has {X.shape[0]} rows, more "
                f"than {np.iinfo(np.intc).max - 1}."
            )
        # the target count of this fit (also read by the solvers' paths)
        K = self._n_neighbors = int(renamed_value(self, "k", "n_neighbors"))
        per_class = np.minimum(K, counts - 1)
        if per_class.max() < 1:
            raise ValueError(
                "LMNN needs a class with at least 2 samples: every class of y has a single "
                "sample, so no point has a target neighbour."
            )
        if per_class.min() < K:
            small = classes[per_class < K]
            shown = ", ".join(repr(c.item() if hasattr(c, "item") else c)  # (not np.int64(1))
                              for c in small[:5]) + (" ..." if small.shape[0] > 5 else "")
            warnings.warn(
                f"LMNN: {small.shape[0]} class(es) ({shown}) have at most n_neighbors={K} "
                "samples; their points get (class size - 1) target neighbours instead.",
                UserWarning,
                stacklevel=4,
            )
        return X, y_enc, classes, per_class

    def _start(self, X, y_enc, rng, scales):
        """The initial map of X (LMNN's targets are nearest in its metric).

        A named ``init`` is computed on ``X / scales`` where the features
        are in different units (``scales`` from
        :func:`~fastmetric._core.init.feature_scales`, powers of two: both
        divisions are exact) and divided by them, so that the targets and
        the unit margin are those of features spanning about one unit
        each; then, on features of extreme scale, brought to the scale of
        the margin (:func:`~fastmetric._core.init.rescaled_start`).  An
        array or a fitted learner is the user's map, used as given.
        """
        if not isinstance(self.init, str):
            return initialize_components(self.init, X, y=y_enc,
                                         n_components=self.n_components, random_state=rng)
        if scales is None:
            L0 = initialize_components(self.init, X, y=y_enc,
                                       n_components=self.n_components, random_state=rng)
        else:
            L0 = initialize_components(self.init, X / scales.astype(X.dtype), y=y_enc,
                                       n_components=self.n_components,
                                       random_state=rng) / scales
        return rescaled_start(L0, X)

    # -- stochastic solvers ------------------------------------------------
    def _stochastic_objective(self, X, y_enc, n_classes, L0, seed, n_threads):
        """Targets found once in the metric of L0, and the minibatch objective."""
        mean = data_mean(X)
        # On a dask array the rows of one class of one block at a time
        # are gathered here (memory bounded by that block).
        targets, _ = block_target_neighbors(
            X, y_enc, n_classes, self._n_neighbors, L0, mean,
            block_size=self.target_block_size, seed=seed, n_threads=n_threads)
        return batch_objective(LMNNBatchObjective, X, y_enc, self.n_jobs, mean=mean,
                               targets=targets, mu=float(self.regularization))

    def _stochastic_init(self, X, y_enc, rng):
        """The map a stochastic fit starts from, and whether Ctrl-C stopped its making.

        With ``init_subsample`` set: the full-batch (L-BFGS, default
        settings) fit from ``init`` on that many evenly spaced rows.  Why:
        LMNN's optimum is far from the named starts in scale (issue 19's
        data: target distances about 30 times smaller than in the
        Euclidean metric), and Adam's steps, bounded by the learning rate
        per coordinate, take many epochs to get there (10 epochs on 80,000
        rows from the identity ended at twice the subsample fit's loss per
        point); from the subsample's optimum the minibatch epochs only
        have to refine.  Without it: the named ``init`` on at most
        INIT_MAX_ROWS rows.

        Returns ``(L0, interrupted, step_scale)``: on features of extreme
        scale the map is of the inverse scale, and the steps
        (``learning_rate``, in L's units) scale with it: the power of two
        that brings the rows' spread near 1 (1 at ordinary scales), measured
        on the rows gathered here.  On features in different units
        (``feature_scaling``; the scales measured on the same rows, as the
        subsample fit measures them) the spread is that of the scaled rows
        and the steps are per feature, ``step_scale / scales`` (an array):
        Adam and SGD then step in ``A = L * scales`` as L-BFGS searches.
        """
        size = None if self.init_subsample is None else int(self.init_subsample)
        sub, y_sub = init_subset(X, y_enc) if size is None else init_subset(X, y_enc, size)
        scales = feature_scales(sub, self.feature_scaling)
        self.feature_scales_ = scales
        if scales is None:
            _, step_scale = rescaled_start(np.eye(sub.shape[1]), sub, return_factor=True)
        else:
            # the identity of the scaled coordinates (exact: powers of two)
            _, factor = rescaled_start(np.diag(1.0 / scales), sub, return_factor=True)
            step_scale = factor / scales
        if size is None:
            # (as in fit: scaled features, extreme scales)
            L0 = self._start(sub, y_sub, rng, scales)
            return L0, False, step_scale
        # The full-batch learner with its own defaults (max_iter, min_iter,
        # convergence_tol are epochs and an epoch tolerance here); it finds
        # the same scales on the same rows.
        full = type(self)(init=self.init, n_neighbors=self._n_neighbors,
                          regularization=self.regularization, n_components=self.n_components,
                          verbose=self.verbose, random_state=rng, n_jobs=self.n_jobs,
                          feature_scaling=self.feature_scaling)
        full.fit(sub, y_sub)
        return full.components_, full._interrupted, step_scale

    def _fit_stochastic(self, X, y_enc, n_classes, solver):
        rng = check_random_state(self.random_state)
        L0, interrupted, step_scale = self._stochastic_init(X, y_enc, rng)
        if interrupted:
            # Ctrl-C in the subsample fit: its last iterate is the model.
            self.components_ = np.ascontiguousarray(L0)
            self.n_iter_, self.loss_, self.loss_curve_ = 0, float("nan"), []
            self.n_active_, self.n_searches_, self.n_evaluations_ = 0, 0, 0
            self._optimizer = None
            return self
        seed = int(rng.randint(0, np.iinfo(np.int32).max))
        objective = self._stochastic_objective(X, y_enc, n_classes, L0, seed,
                                               effective_n_threads(self.n_jobs))
        self._fit_minibatch(objective, L0, solver, float(self.convergence_tol),
                            shrink=step_scale)
        self._stochastic_attributes(objective)
        return self

    def _stochastic_attributes(self, objective):
        self.n_active_ = int(objective.n_active)
        self.n_searches_ = 0
        self.n_evaluations_ = int(self.n_iter_) * -(-objective.n_samples
                                                    // int(self.batch_size))

    @available_if(stochastic_solver_only)
    @fit_context
    def partial_fit(self, X, y):
        """One epoch of the stochastic solver over a batch of labelled rows.

        The target neighbours are searched within the batch (exactly, in
        the metric of the current map), then the rows are visited once in
        minibatches of ``batch_size``, impostors searched among
        ``n_candidates`` rows drawn from the batch; the solver's state
        (Adam's moments) carries over from the previous call or from
        ``fit``.  The first call initialises ``L`` from this batch.  Stream
        data that does not fit in memory block by block, e.g. shuffled row
        blocks of a ``numpy.memmap``.  Only with ``solver='adam'``,
        ``'sgd'`` or ``'auto'`` (which streams with Adam).

        Parameters
        ----------
        X : array-like of shape (n_batch, n_features)
        y : array-like of shape (n_batch,)
            Class labels of the batch (some class with 2 rows).

        {returns_self}
        """
        first = starts_partial_fit(self, warn=True)
        X, y_enc, classes, _ = self._labelled_points(X, y, reset=first)
        rng = check_random_state(self.random_state)
        n_threads = effective_n_threads(self.n_jobs)
        state = {}

        def initial():
            state["L0"], _, state["step_scale"] = self._stochastic_init(X, y_enc, rng)
            return state["L0"]

        def objective():
            L = self.components_ if not first else initial()
            return self._stochastic_objective(X, y_enc, classes.shape[0], L,
                                              int(rng.randint(0, np.iinfo(np.int32).max)),
                                              n_threads)

        objective = self._partial_fit_minibatch(objective, lambda: (state["L0"], state["step_scale"]),
                                                resolve_solver(self.solver, np.inf))
        self._stochastic_attributes(objective)
        self.n_evaluations_ = -(-X.shape[0] // int(self.batch_size))
        return self

    # -- solvers -----------------------------------------------------------
    def _solve(self, problem, L0, scales=None):
        """L-BFGS or the halving descent on ``problem`` from ``L0``; with
        per-feature ``scales`` (:func:`~fastmetric._core.init.feature_scales`)
        over ``A = L * scales``, column by column, in which every feature
        spans about one unit (powers of two: the change of variables is
        exact), L-BFGS's preconditioner computed in those coordinates too."""
        k, d = L0.shape
        printer = IterationPrinter(type(self).__name__)
        tol, min_iter = float(self.convergence_tol), int(self.min_iter)
        state = {"prev": None, "converged": False}
        # L-BFGS works on W with A = W Q (see preconditioner); plain
        # gradient descent on A itself, as metric-learn's on L; A = L
        # without scales.  'auto' on data of this size is 'lbfgs'.
        solver = resolve_solver(self.solver, problem.n)
        Q, Q_inv = (preconditioner(_scaled_problem(problem, scales)) if solver == "lbfgs"
                    else (None, None))

        def to_L(theta):
            W = theta.reshape(k, d)
            A = W if Q is None else W @ Q
            return A if scales is None else A / scales

        def on_iteration(iteration, x, loss):
            if self.verbose:
                printer(iteration, loss)
            prev = state["prev"]
            state["prev"] = loss
            if self.callback is not None:
                self.components_ = np.ascontiguousarray(to_L(x))
                if self.callback(self, iteration, loss):
                    return True
            if (iteration >= max(min_iter, 1) and prev is not None
                    and prev - loss <= tol * max(abs(loss), 1.0)):
                state["converged"] = True
                return True
            return False

        def fun(theta):
            loss, grad, _ = problem.loss_grad(to_L(theta))
            if scales is not None:
                grad = grad / scales  # d f / d A = (d f / d L) / scales, column by column
            if Q is not None:
                grad = grad @ Q  # d f / d W = (d f / d A) Q^T, Q symmetric
            return loss, grad.ravel()

        A0 = L0 if scales is None else L0 * scales
        if solver == "lbfgs":
            theta0 = (A0 if Q is None else A0 @ Q_inv).ravel()
            with warnings.catch_warnings():
                # minimize_lbfgs warns at max_iter; we warn ourselves below.
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = minimize_lbfgs(fun, theta0, max_iter=self.max_iter, tol=0.0,
                                        on_iteration=on_iteration)
            result.x = to_L(result.x).ravel()
            if not np.all(np.isfinite(result.x)):
                raise ValueError("LMNN: the solver produced a non-finite map.")
        else:
            result = minimize_halving_descent(fun, A0.ravel(), learning_rate=float(self.learn_rate),
                                              max_iter=self.max_iter,
                                              on_iteration=on_iteration)
            result.x = to_L(result.x).ravel()
        if state["converged"]:
            result.converged = True
            result.message = "relative decrease below convergence_tol"
        elif result.n_iter >= self.max_iter and "callback" not in result.message:
            warnings.warn(
                f"LMNN did not converge in max_iter={self.max_iter} iterations; increase "
                "max_iter or convergence_tol.",
                ConvergenceWarning,
                stacklevel=4,
            )
        return result


def _scaled_problem(problem, scales):
    """``problem``, or, with per-feature ``scales``, what :func:`preconditioner`
    reads of it (points, targets) with the points divided by the scales: the
    scatter of the target differences in the coordinates of ``A = L *
    scales`` (a copy of the points while it is computed)."""
    if scales is None:
        return problem
    return SimpleNamespace(X=problem.X / scales.astype(problem.X.dtype),
                           targets=problem.targets, n_targets=problem.n_targets)

"""The shared base of the softmax-neighbour learners, NCA and MLKR.

Both minimise, with scipy's L-BFGS-B from an initial map, an objective of
the softmax weights ``p_ij`` proportional to ``exp(-||L x_i - L x_j||^2)``
(``p_ii = 0``) evaluated by the OpenMP kernel
:class:`fastmetric.kernels.softmax_neighbors.SoftmaxNeighborsProblem`: NCA's
expected leave-one-out accuracy (class labels), MLKR's leave-one-out
kernel-regression error (real targets).  :class:`SoftmaxNeighborsLearner`
holds what the two learners share: the parameter constraints, the points (or
row indices into a preprocessor), the initial map and the L-BFGS fit with
its verbose table and callback.
"""
from typing import ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import feature_scales, initialize_components, unsaturated_start
from fastmetric._core.minibatch_learner import (
    SOFTMAX_STOCHASTIC_CONSTRAINTS,
    MinibatchNeighborsMixin,
    labelled_points,
    resolve_solver,
    starts_partial_fit,
    stochastic_solver_only,
)
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.params import fit_context, reals, shared
from fastmetric._core.solvers import IterationPrinter, minimize_lbfgs, quadratic_pull
from fastmetric._core.threads import effective_n_threads, multiply_adds, team_threads

__all__ = ["DEFAULT_TOL", "SoftmaxNeighborsLearner", "start_pull"]

# tol=None (metric-learn's default) stands for this value, scikit-learn's
# default for its NeighborhoodComponentsAnalysis.
DEFAULT_TOL = 1e-5


def start_pull(theta0, strength):
    """The pull toward a start ``theta0``: ``f(theta) -> (loss, grad)`` of
    ``strength * ||theta - theta0||^2 / ||theta0||^2``, or None when there
    is no pull (``strength`` 0, or a zero start, which has no size to
    compare with).

    Relative to the start's size, it does not change when ``theta`` and
    ``theta0`` are multiplied by the same constant (features in other
    units, with the start scaled to them).  It does not grow with the
    number of points, whereas the objectives it is added to are sums over
    them; even so it still holds the map's scale on thousands of points
    (NCA on 5,000 x 64 with strength 5: norm 7.7 against 16.9 without),
    because the objective gains little from sharpening its softmax.
    """
    theta0 = np.array(theta0, dtype=np.float64).ravel()
    start_norm2 = float(np.dot(theta0, theta0))
    if not strength > 0 or not start_norm2 > 0:
        return None
    return quadratic_pull(theta0, float(strength) / start_norm2)


@shared_docs
class SoftmaxNeighborsLearner(MinibatchNeighborsMixin, MahalanobisMixin):
    """Fit logic shared by NCA and MLKR: validation, init, L-BFGS, the
    minibatch solvers, callbacks.

    A subclass states its parameters (``init``, ``n_components``,
    ``max_iter``, ``tol``, ``verbose``, ``preprocessor``, ``random_state``,
    ``n_jobs``, ``callback`` and the stochastic solvers') and
    ``_regression`` (real targets), and ends its fit with
    :meth:`_fit_solver`.
    """

    _regression = False
    # Shrink a named initial map whose softmax would be saturated
    # (:func:`~fastmetric._core.init.unsaturated_start`).
    _unsaturated_start = False

    _parameter_constraints: ClassVar[dict] = {
        **shared("init", "n_components", "max_iter", "verbose", "preprocessor",
                 "random_state", "n_jobs", "callback"),
        "tol": [None, reals(0)],  # None: DEFAULT_TOL
        "feature_scaling": [StrOptions({"auto", "range"}), None],
        **SOFTMAX_STOCHASTIC_CONSTRAINTS,
    }

    def _points(self, X, y, reset=True):
        """Validated points and targets; X may be row indices into
        ``preprocessor``, or a dask array (kept lazy: the minibatch solvers
        gather its rows on the workers).

        ``reset=False`` (a later ``partial_fit``) checks the number of
        features against the first call's.
        """
        return labelled_points(self, X, y, reset, y_numeric=self._regression)

    @available_if(stochastic_solver_only)
    @fit_context
    def partial_fit(self, X, y):
        """One epoch of the stochastic solver over a batch of rows.

        The rows are visited once, in minibatches of ``batch_size``, each
        with ``n_candidates`` candidates drawn from the same rows;
        the solver's state (Adam's moments) carries over from the previous
        call or from ``fit``.  The first call initialises ``L`` from this
        batch.  Stream data that does not fit in memory block by block,
        e.g. shuffled row blocks of a ``numpy.memmap``.  Only with
        ``solver='adam'``, ``'sgd'`` or ``'auto'`` (which streams with Adam).

        Parameters
        ----------
        X : array-like of shape (n_batch, n_features)
            At least 2 rows.
        y : array-like of shape (n_batch,)
            The batch's class labels (NCA) or real targets (MLKR).

        {returns_self}
        """
        first = starts_partial_fit(self, warn=True)
        X, y = self._points(X, y, reset=first)
        if X.shape[0] < 2:
            raise ValueError(f"partial_fit needs at least 2 rows in a batch; got "
                             f"{X.shape[0]}.")
        self._partial_fit_batch(X, y, first, resolve_solver(self.solver, np.inf))
        return self

    def _fit_solver(self, X, solver, *, labels=None, targets=None,
                    stochastic_start, make_objective, pull=0.0):
        """The end of a fit: with a minibatch ``solver``, its epochs on
        ``make_objective()`` from ``stochastic_start()``; with L-BFGS, the
        full softmax problem of the class ``labels`` (NCA) or real
        ``targets`` (MLKR) from the initial map of X, plus ``pull`` times
        the relative distance to it (:meth:`_fit_problem`)."""
        if solver != "lbfgs":
            L0, shrink = stochastic_start()
            self._fit_minibatch(make_objective(), L0, solver,
                                DEFAULT_TOL if self.tol is None else self.tol, shrink=shrink)
            return self
        L0 = self._initial_components(X, labels)
        scales = self.feature_scales_
        # The problem is posed on X / scales, over A = L * scales: with
        # powers of two every product a_ij * (x_j / s_j) is (a_ij / s_j) * x_j
        # bit for bit, but neither the map nor the data leave float32's range
        # on float32 data spanning 1e-30 or 1e30.
        points = X if scales is None else X / scales.astype(X.dtype)
        problem = SoftmaxNeighborsProblem(points, labels=labels, targets=targets)
        # Under load the main pass runs on the team (the same result), at
        # most one thread per group of rows.
        problem.team_threads = min(team_threads(self.n_jobs), problem.n_groups)
        # A full-batch gradient is one region of n^2 d multiply-adds: the
        # work that sets the default thread count under load.
        n = X.shape[0]
        n_threads = effective_n_threads(self.n_jobs, work=multiply_adds((n, n, X.shape[1])))
        return self._fit_problem(problem, L0, n_threads, scales, pull=pull)

    def _fit_problem(self, problem, L0, n_threads, scales=None, pull=0.0):
        """L-BFGS on ``problem`` from ``L0``; with per-feature ``scales``
        (:func:`~fastmetric._core.init.feature_scales`) ``problem`` holds
        ``X / scales`` and the search runs over ``A = L * scales``, in which
        every feature spans about one unit (powers of two: the change of
        variables is exact).

        ``pull > 0`` adds ``pull * ||A - A0||_F^2 / ||A0||_F^2`` (``A0``
        the start; :func:`start_pull`).
        """
        k, d = L0.shape
        printer = IterationPrinter(type(self).__name__)
        theta0 = (L0 if scales is None else L0 * scales).ravel()
        pull_term = start_pull(theta0, pull)

        def components(theta):
            A = theta.reshape(k, d)
            return A if scales is None else A / scales

        def fun(theta):
            loss, grad = problem.loss_grad(theta.reshape(k, d), n_threads)
            grad = grad.ravel()
            if pull_term is not None:
                pull_loss, pull_grad = pull_term(theta)
                loss, grad = loss + pull_loss, grad + pull_grad
            return loss, grad

        def on_iteration(iteration, theta, loss):
            if self.verbose:
                printer(iteration, loss)
            if self.callback is not None:
                self.components_ = np.array(components(theta))
                self.n_iter_ = iteration
                return bool(self.callback(self, iteration, loss))
            return False

        result = minimize_lbfgs(fun, theta0, max_iter=self.max_iter,
                                tol=DEFAULT_TOL if self.tol is None else self.tol,
                                on_iteration=on_iteration)
        self.components_ = np.ascontiguousarray(components(result.x))
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        return self

    def _initial_components(self, X, class_labels, shrink=True, return_shrink=False):
        """The initial map of X (and, with ``return_shrink``, the step scale
        of the stochastic solvers: the factor a saturated named start was
        shrunk by, 1 when it was not, divided by the per-feature scales of
        features in different units, an array then).

        A named start is computed on the features brought to a common
        range where they are in different units (``feature_scaling``); an
        array or a fitted learner is the user's map, used as is.
        """
        rng = check_random_state(self.random_state)
        named = isinstance(self.init, str)
        scales = feature_scales(X, self.feature_scaling)
        self.feature_scales_ = scales
        if named and scales is not None:
            # scales are powers of two: X / scales and L / scales are exact
            L0 = initialize_components(self.init, X / scales.astype(X.dtype),
                                       y=class_labels, n_components=self.n_components,
                                       random_state=rng) / scales
        else:
            L0 = initialize_components(self.init, X, y=class_labels,
                                       n_components=self.n_components, random_state=rng)
        factor = 1.0
        if shrink and self._unsaturated_start and named:
            # A named start is shrunk where its softmax would be saturated.
            L0, factor = unsaturated_start(L0, X, return_shrink=True)
        if not return_shrink:
            return L0
        return L0, (factor if scales is None else factor / scales)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

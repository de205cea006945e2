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
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.docs import shared_docs
from fastmetric._core.init import initialize_components, unsaturated_start
from fastmetric._core.minibatch_learner import (
    SOFTMAX_STOCHASTIC_CONSTRAINTS,
    MinibatchNeighborsMixin,
    labelled_points,
    resolve_solver,
    starts_partial_fit,
    stochastic_solver_only,
)
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.params import reals, shared
from fastmetric._core.solvers import IterationPrinter, minimize_lbfgs
from fastmetric._core.threads import single_threaded_blas, team_threads

__all__ = ["DEFAULT_TOL", "SoftmaxNeighborsLearner"]

# tol=None (metric-learn's default) stands for this value, scikit-learn's
# default for its NeighborhoodComponentsAnalysis.
DEFAULT_TOL = 1e-5


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
    @_fit_context(prefer_skip_nested_validation=True)
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

    def _fit_solver(self, X, solver, n_threads, *, labels=None, targets=None,
                    stochastic_start, make_objective):
        """The end of a fit: with a minibatch ``solver``, its epochs on
        ``make_objective()`` from ``stochastic_start()``; with L-BFGS, the
        full softmax problem of the class ``labels`` (NCA) or real
        ``targets`` (MLKR) from the initial map of X."""
        if solver != "lbfgs":
            L0, shrink = stochastic_start()
            self._fit_minibatch(make_objective(), L0, solver,
                                DEFAULT_TOL if self.tol is None else self.tol, shrink=shrink)
            return self
        L0 = self._initial_components(X, labels)
        problem = SoftmaxNeighborsProblem(X, labels=labels, targets=targets)
        # Under load the main pass runs on the team (the same result), at
        # most one thread per group of rows.
        problem.team_threads = min(team_threads(self.n_jobs), problem.n_groups)
        return self._fit_problem(X, problem, L0, n_threads)

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
                                    tol=DEFAULT_TOL if self.tol is None else self.tol,
                                    on_iteration=on_iteration)
        self.components_ = np.ascontiguousarray(result.x.reshape(k, d))
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        return self

    def _initial_components(self, X, class_labels, shrink=True, return_shrink=False):
        """The initial map of X (and, with ``return_shrink``, the factor a
        saturated named start was shrunk by: 1 when it was not)."""
        rng = check_random_state(self.random_state)
        with single_threaded_blas():
            L0 = initialize_components(self.init, X, y=class_labels,
                                       n_components=self.n_components, random_state=rng)
        factor = 1.0
        if shrink and self._unsaturated_start and isinstance(self.init, str):
            # A named start is shrunk where its softmax would be saturated;
            # an array or a fitted learner is the user's map, used as is.
            L0, factor = unsaturated_start(L0, X, return_shrink=True)
        return (L0, factor) if return_shrink else L0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

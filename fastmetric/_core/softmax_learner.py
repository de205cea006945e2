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

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.init import initialize_components, unsaturated_start
from fastmetric._core.inputs import validate_points
from fastmetric._core.params import reals, shared
from fastmetric._core.solvers import IterationPrinter, minimize_lbfgs
from fastmetric._core.threads import single_threaded_blas

__all__ = ["DEFAULT_TOL", "SoftmaxNeighborsLearner"]

# tol=None (metric-learn's default) stands for this value, scikit-learn's
# default for its NeighborhoodComponentsAnalysis.
DEFAULT_TOL = 1e-5


class SoftmaxNeighborsLearner(MahalanobisMixin):
    """Fit logic shared by NCA and MLKR: validation, init, L-BFGS, callbacks.

    A subclass states its parameters (``init``, ``n_components``,
    ``max_iter``, ``tol``, ``verbose``, ``preprocessor``, ``random_state``,
    ``n_jobs``, ``callback``) and ``_regression`` (real targets), builds a
    :class:`~fastmetric.kernels.softmax_neighbors.SoftmaxNeighborsProblem`
    and hands it to :meth:`_fit_problem`.
    """

    _regression = False
    # Shrink a named initial map whose softmax would be saturated
    # (:func:`~fastmetric._core.init.unsaturated_start`).
    _unsaturated_start = False

    _parameter_constraints: ClassVar[dict] = {
        **shared("init", "n_components", "max_iter", "verbose", "preprocessor",
                 "random_state", "n_jobs", "callback"),
        "tol": [None, reals(0)],  # None: DEFAULT_TOL
    }

    def _points(self, X, y, reset=True):
        """Validated points and targets; X may be row indices into ``preprocessor``.

        ``reset=False`` (a later ``partial_fit``) checks the number of
        features against the first call's.
        """
        return validate_points(self, X, y, y_numeric=self._regression, reset=reset)

    def _partial_fit_points(self, X, y, validate):
        """Rows and targets of a partial_fit batch validated by
        ``validate(X, y, reset)`` (at least 2 rows), and whether this call
        starts the fit (features checked against the first call's
        otherwise).  For the learners that also take
        :class:`~fastmetric._core.minibatch_learner.MinibatchNeighborsMixin`
        (NCA, MLKR), whose ``_starts_partial_fit`` it asks."""
        first = self._starts_partial_fit()
        X, y = validate(X, y, reset=first)
        if X.shape[0] < 2:
            raise ValueError(f"partial_fit needs at least 2 rows in a batch; got "
                             f"{X.shape[0]}.")
        return X, y, first

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

    def _initial_components(self, X, class_labels, shrink=True):
        rng = check_random_state(self.random_state)
        with single_threaded_blas():
            L0 = initialize_components(self.init, X, y=class_labels,
                                       n_components=self.n_components, random_state=rng)
        if shrink and self._unsaturated_start and isinstance(self.init, str):
            # A named start is shrunk where its softmax would be saturated;
            # an array or a fitted learner is the user's map, used as is.
            L0 = unsaturated_start(L0, X)
        return L0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.allow_nan = False
        return tags

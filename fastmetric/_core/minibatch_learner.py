"""The stochastic (minibatch) fit shared by NCA, LMNN and MLKR.

:class:`MinibatchNeighborsMixin` runs the minibatch objectives of
:mod:`fastmetric._core.objectives.neighbor_batches` through the solvers the
LDML family uses (:func:`fastmetric._core.solvers.minimize_stochastic`,
:class:`~fastmetric._core.solvers.StochasticOptimizer`,
:func:`~fastmetric._core.solvers.minibatch_epochs`,
:func:`~fastmetric._core.solvers.run_epoch`): Adam or SGD with momentum,
epochs over a per-epoch permutation of the rows, a per-epoch table with
``verbose``, progress bars over the minibatches with ``verbose >= 2``,
``callback`` after each epoch, and Ctrl-C keeping the parameters after the
last completed minibatch.  ``partial_fit`` runs one epoch over the rows it
is given and keeps the solver's state (Adam's moments) for the next call.

``solver='auto'`` picks L-BFGS on the full objective up to
:data:`AUTO_STOCHASTIC_ROWS` rows and Adam above (:func:`resolve_solver`).

A learner using the mixin has the parameters ``solver``, ``batch_size``,
``n_candidates``, ``learning_rate``, ``n_iter_no_change``, ``max_iter``
(epochs), ``verbose``, ``callback`` and ``random_state``.
"""
import warnings
from functools import partial

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions

from fastmetric._core.dask_support import check_dask_labelled_points, is_dask_array
from fastmetric._core.inputs import validate_points
from fastmetric._core.objectives.neighbor_batches import draw_candidates, row_mean
from fastmetric._core.params import integers, reals
from fastmetric._core.rows import evenly_spaced
from fastmetric._core.solvers import (
    ADAM_EPSILON,
    IterationPrinter,
    StochasticOptimizer,
    epoch_order,
    minibatch_epochs,
    minimize_stochastic,
    record_partial_epoch,
    run_epoch,
)
from fastmetric._core.threads import effective_n_threads

__all__ = ["AUTO_STOCHASTIC_ROWS", "INIT_MAX_ROWS", "MinibatchNeighborsMixin",
           "SOFTMAX_STOCHASTIC_CONSTRAINTS", "STOCHASTIC_SOLVERS", "batch_objective",
           "check_dask_solver", "data_mean", "labelled_points", "init_subset", "resolve_solver",
           "starts_partial_fit"]

# solver='auto': the full objectives (O(n^2) per evaluation) up to this many
# rows, Adam on minibatches above.  At 50,000 rows an L-BFGS iteration of NCA
# or LMNN already takes seconds to tens of seconds on two cores, and dozens
# to hundreds of them are needed; a minibatch epoch takes about a second.
AUTO_STOCHASTIC_ROWS = 50_000

# The stochastic fits compute the initial map ('pca', 'lda', ...) on at most
# this many evenly spaced rows (a deterministic subset): the start of a
# stochastic fit must not cost more than an epoch, nor copy the data.
INIT_MAX_ROWS = 100_000

STOCHASTIC_SOLVERS = ("adam", "sgd")

# The parameter rules of the softmax learners (NCA, MLKR) with these solvers.
SOFTMAX_STOCHASTIC_CONSTRAINTS = {
    "solver": [StrOptions({"lbfgs", *STOCHASTIC_SOLVERS, "auto"})],
    "batch_size": [integers(1)],
    "n_candidates": [integers(0)],
    "learning_rate": [reals(0, closed="neither")],
    "n_iter_no_change": [integers(1)],
}


def resolve_solver(solver, n_samples):
    """The solver ``'auto'`` stands for: 'lbfgs' up to AUTO_STOCHASTIC_ROWS rows, else 'adam'."""
    if solver != "auto":
        return solver
    return "lbfgs" if n_samples <= AUTO_STOCHASTIC_ROWS else "adam"


def check_dask_solver(estimator, X):
    """The solver of a fit on X: on a dask array a stochastic one ('auto' is
    'adam' whatever the size), with a ValueError for the full-batch solvers,
    whose O(n^2) objective is not distributed."""
    if not is_dask_array(X):
        return resolve_solver(estimator.solver, X.shape[0])
    solver = resolve_solver(estimator.solver, np.inf)
    if solver not in STOCHASTIC_SOLVERS:
        raise ValueError(
            f"{type(estimator).__name__} fits dask arrays with the stochastic solvers only "
            f"(solver='adam', 'sgd' or 'auto'); got solver={estimator.solver!r}, whose "
            "full objective compares every pair of rows."
        )
    return solver


def init_subset(X, labels, max_rows=INIT_MAX_ROWS):
    """The rows (and their labels) the initial map of a stochastic fit is
    computed on: at most ``max_rows`` evenly spaced rows (default
    INIT_MAX_ROWS), X itself (not a copy) when it is no larger; from a dask
    array, those rows gathered."""
    if is_dask_array(X):
        from fastmetric._core.dask_support import sample_rows

        return sample_rows(X, labels, int(max_rows))
    rows = evenly_spaced(X.shape[0], int(max_rows))
    if rows.shape[0] == X.shape[0]:
        return X, labels
    return X[rows], labels[rows]


def labelled_points(learner, X, y, reset, y_numeric=False):
    """A learner's validated points and labels (real targets with
    ``y_numeric``); a dask array stays lazy (the minibatch solvers gather
    its rows on the workers)."""
    if is_dask_array(X):
        return check_dask_labelled_points(learner, X, y, reset, y_numeric=y_numeric)
    return validate_points(learner, X, y, reset=reset, y_numeric=y_numeric)


def data_mean(X):
    """The mean row of X (numpy, memmap or dask array), in float64, read in blocks."""
    if is_dask_array(X):
        from fastmetric._core.dask_minibatch import dask_row_mean

        return dask_row_mean(X)
    return row_mean(X)


def batch_objective(objective_class, X, labels, n_jobs, mean=None, targets=None, mu=None):
    """The minibatch objective ``objective_class`` (NCA's or LMNN's) over X.

    On a numpy array or memmap the class itself; on a dask array a
    :class:`~fastmetric._core.dask_minibatch.DaskNeighborObjective` that
    gathers and evaluates each minibatch on the workers.  ``targets`` and
    ``mu``: LMNN's target neighbours and push weight.
    """
    if is_dask_array(X):
        from fastmetric._core.dask_minibatch import DaskNeighborObjective

        return DaskNeighborObjective(X, labels, objective_class,
                                     data_mean(X) if mean is None else mean,
                                     targets=targets, mu=mu, n_jobs=n_jobs)
    extra = () if targets is None else (targets, mu)
    return objective_class(X, labels, *extra, mean=mean, n_threads=effective_n_threads(n_jobs))


def stochastic_solver_only(estimator):
    """partial_fit exists only for the minibatch solvers (as in LDML and sklearn's MLP).

    ``'auto'`` counts as stochastic: streaming is for data too large for the
    full objective.
    """
    if estimator.solver not in STOCHASTIC_SOLVERS + ("auto",):
        raise AttributeError(
            f"partial_fit is only available with a stochastic solver (solver='adam', "
            f"'sgd' or 'auto'); solver={estimator.solver!r} needs the whole data at each "
            "iteration: use fit."
        )
    return True


def neighbor_batch_fun(objective, data, shape):
    """``fun(theta) -> (loss, grad)`` of one minibatch ``data`` of a neighbour
    objective, over the flattened ``L`` of ``shape`` (module level: a Dask
    worker runs it on the minibatches whose rows it holds)."""
    def fun(theta):
        loss, grad = objective.loss_grad(theta.reshape(shape), data)
        return loss, grad.ravel()

    return fun


def starts_partial_fit(estimator, warn=False):
    """Whether the next ``partial_fit`` starts afresh from its batch.

    It does when no stochastic fit or partial_fit ran yet, and also when
    ``components_`` come from a full-batch fit (L-BFGS) or from
    :func:`fastmetric.load`: neither keeps the stochastic solver's state
    (its step count and moments, the draws' seed), and a fit continued
    without them would not be the one that was saved.  That case replaces a
    fitted model, so it warns (with ``warn``: the public ``partial_fit``
    methods, whose caller the warning then names).
    """
    fresh = getattr(estimator, "_optimizer", None) is None or not hasattr(estimator,
                                                                           "components_")
    if fresh and warn and hasattr(estimator, "components_"):
        warnings.warn(
            f"{type(estimator).__name__}.partial_fit starts a new fit from this batch and "
            "replaces components_: they come from a full-batch fit or from fastmetric.load, "
            "which keep no stochastic solver state to continue from. To stream, start with "
            "partial_fit (or fit with solver='adam' or 'sgd') and keep the object in "
            "memory (pickle keeps the state; fastmetric.save does not).",
            UserWarning, stacklevel=4)
    return fresh


class MinibatchNeighborsMixin:
    """Minibatch fit and partial_fit of a neighbour objective (NCA, LMNN, MLKR)."""

    def _epoch_batches(self, objective, n_rows, seed, verbose, read_next=True):
        """``epoch_batches(epoch)`` of :func:`minimize_stochastic` for ``objective``.

        Minibatch i of epoch e: rows ``order[i b:(i + 1) b]`` of the epoch's
        permutation and ``n_candidates`` rows drawn from ``(seed, e, i)``.
        """
        batch_size = int(self.batch_size)
        n_drawn = int(self.n_candidates)

        make_fun = partial(neighbor_batch_fun, shape=self._shape)

        def specs_of(epoch, order):
            # rows sorted: reads forward in a memmap
            return ((np.sort(order[start:start + batch_size]),
                     draw_candidates(n_rows, n_drawn, seed, epoch, i))
                    for i, start in enumerate(range(0, n_rows, batch_size)))

        def batches_of_order(order, epoch):
            # Each minibatch's data are built when it is reached (in memory),
            # or gathered ahead, the next epoch's too, and stepped on the
            # workers (Dask).
            following = None
            if read_next and epoch + 1 < int(self.max_iter):  # not after the last epoch
                def following():
                    return specs_of(epoch + 1, epoch_order(n_rows, seed, epoch + 1))
            yield from objective.minibatches(specs_of(epoch, order), make_fun,
                                             following=following)

        return minibatch_epochs(n_rows, batch_size, seed, batches_of_order, verbose,
                                with_epoch=True)

    def _set_stochastic_state(self, L):
        self.components_ = np.ascontiguousarray(np.reshape(L, self._shape))

    def _optimizer_for(self, solver, shrink):
        """A fresh Adam/SGD optimiser with ``learning_rate`` scaled to a start
        shrunk by ``shrink`` (:func:`~fastmetric._core.init.unsaturated_start`).

        The loss depends on ``L X``: with X scaled by s and the start by 1/s,
        the gradient in L grows by s.  Adam's steps do not depend on the
        gradient's scale, so a rate scaled by the shrink keeps each step the
        same fraction of L (and Adam's guard ``epsilon``, in the gradient's
        units, is divided by it); SGD's step grows with the gradient, so its
        rate is scaled by the square.  Either way the fit on scaled features
        is that on the unscaled ones.
        """
        if np.ndim(shrink):
            # per-feature scales (features in different units): one rate per
            # column of L, and theta is L's rows one after the other
            shrink = np.tile(np.asarray(shrink, dtype=np.float64), self._shape[0])
        else:
            shrink = float(shrink)
        if solver == "adam":
            return StochasticOptimizer(solver, float(self.learning_rate) * shrink,
                                       epsilon=ADAM_EPSILON / shrink)
        return StochasticOptimizer(solver, float(self.learning_rate) * shrink ** 2)

    def _fit_minibatch(self, objective, L0, solver, tol, shrink=1.0):
        """Fit ``components_`` with Adam/SGD epochs over ``objective`` from ``L0``
        (a start shrunk by ``shrink``: the step size scales with it).

        Sets ``components_``, ``n_iter_`` (epochs), ``loss_`` (mean
        minibatch loss of the last epoch), ``loss_curve_`` and the state
        ``partial_fit`` continues from.
        """
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, np.iinfo(np.int32).max))
        self._shape = L0.shape
        printer = IterationPrinter(type(self).__name__, "epoch")

        def on_iteration(epoch, theta, loss):
            if self.verbose:
                printer(epoch, loss)
            if self.callback is not None:
                self._set_stochastic_state(theta)
                self.n_iter_ = epoch
                return bool(self.callback(self, epoch, loss))
            return False

        optimizer = self._optimizer_for(solver, shrink)
        result = minimize_stochastic(
            self._epoch_batches(objective, objective.n_samples, seed, self.verbose),
            np.ravel(L0).astype(np.float64), max_epochs=int(self.max_iter), tol=float(tol),
            n_iter_no_change=int(self.n_iter_no_change), on_iteration=on_iteration,
            optimizer=optimizer)
        self._set_stochastic_state(result.x)
        self._optimizer = optimizer
        self._batch_seed = seed
        self.n_iter_ = int(result.n_iter)
        self.loss_ = float(result.fun)
        self.loss_curve_ = list(result.loss_curve)
        return result

    def _partial_fit_minibatch(self, make_objective, initial_components, solver):
        """One epoch over the rows of ``make_objective()``, continuing the fit.

        The first call (or the first after a fit with a full-batch solver)
        starts from ``L0, shrink = initial_components()`` and a fresh
        optimiser (its step size scaled by ``shrink``, as in a fit).
        """
        first = starts_partial_fit(self)
        objective = make_objective()
        if first:
            L0, shrink = initial_components()
            self._shape = L0.shape
            self._batch_seed = int(check_random_state(self.random_state).randint(
                0, np.iinfo(np.int32).max))
            self._optimizer = self._optimizer_for(solver, shrink)
            self.n_iter_ = 0
            self.loss_curve_ = []
            theta = np.ravel(L0).astype(np.float64)
        else:
            theta = np.ravel(self.components_).astype(np.float64)
        # (one epoch per call, over new rows: nothing to read ahead)
        batches = self._epoch_batches(objective, objective.n_samples, self._batch_seed,
                                      self.verbose, read_next=False)(self.n_iter_)
        theta, loss, finite, interrupted = run_epoch(batches, theta, self._optimizer)
        self._set_stochastic_state(theta)
        record_partial_epoch(self, loss, finite, interrupted)
        return objective

"""Solvers shared by the learners: full-batch L-BFGS and minibatch Adam/SGD.

Both minimise a function of one flat float64 parameter vector and report
each iteration (an L-BFGS iteration, or an epoch of the stochastic solvers)
through ``on_iteration(iteration, x, loss)``; a true return value stops the
solver.  Both guard against a non-finite loss: the solver stops and returns
the last state whose loss was finite, with a :class:`ConvergenceWarning`, so
a learner never ends with a NaN model.  Both also stop cleanly on Ctrl-C
(KeyboardInterrupt): they warn and return the last consistent state (the
last accepted L-BFGS iterate, or the parameters after the last completed
minibatch), so an interrupted ``fit`` still leaves a usable model.
"""
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from fastmetric._core.memory import heap_kept_for_reuse

__all__ = [
    "ADAM_EPSILON",
    "IterationPrinter",
    "SolverResult",
    "StochasticOptimizer",
    "epoch_order",
    "minibatch_epochs",
    "minimize_halving_descent",
    "minimize_lbfgs",
    "minimize_stochastic",
    "progress",
    "quadratic_pull",
    "record_partial_epoch",
    "run_epoch",
    "step_minibatches",
    "stream_epochs",
    "warn_interrupted",
]


@dataclass
class SolverResult:
    """What a solver returns.

    Attributes
    ----------
    x : ndarray
        Final parameters (float64).
    fun : float
        Objective at ``x`` (for the stochastic solvers: the mean minibatch
        loss of the last epoch).
    n_iter : int
        Iterations (L-BFGS) or epochs (stochastic) done.
    loss_curve : list of float
        Objective after each iteration / epoch.
    converged : bool
        The tolerance was met.
    message : str
    """

    x: np.ndarray
    fun: float
    n_iter: int
    loss_curve: list = field(default_factory=list)
    converged: bool = False
    message: str = ""


def quadratic_pull(center, weight, column_scales=None):
    """A pull of the parameters toward ``center``, added to an objective.

    Returns ``pull(x) -> (loss, grad)`` of ``weight * ||(x - center) *
    column_scales||^2`` (``column_scales`` broadcast over the last axis of
    ``center``'s shape; all ones when None), or None when ``weight`` is not
    positive (no pull).  ``grad`` has ``center``'s shape.  Each learner
    sets ``weight`` by its own rule (NCA and MLKR relative to the start's
    size, :func:`~fastmetric._core.softmax_learner.start_pull`; LDML's
    ``alpha / 2``, :func:`~fastmetric._core.objectives.ldml.ldml_objective`,
    whose ``column_scales`` are the per-feature scales of data in different
    units); the term and its gradient are this one function.  The scales
    multiply the step before it is squared, not squared themselves: data at
    1e200 have scales whose squares overflow, while the scaled steps are of
    order one.

    >>> import numpy as np
    >>> pull = quadratic_pull(np.zeros(2), 0.5)
    >>> pull(np.array([1.0, 2.0]))
    (2.5, array([1., 2.]))
    >>> quadratic_pull(np.zeros(2), 0.0) is None
    True
    """
    if not weight > 0:
        return None
    center = np.asarray(center, dtype=np.float64)
    weight = float(weight)

    def pull(x):
        step = np.asarray(x, dtype=np.float64).reshape(center.shape) - center
        if column_scales is None:
            return weight * float(np.dot(step.ravel(), step.ravel())), (2.0 * weight) * step
        scaled = step * column_scales
        return (weight * float(np.dot(scaled.ravel(), scaled.ravel())),
                (2.0 * weight) * (scaled * column_scales))

    return pull


class _NonFiniteLoss(Exception):
    pass


def warn_interrupted(where):
    """Warn that Ctrl-C (KeyboardInterrupt) stopped a fit ``where`` (e.g.
    ``"after 3 sweep(s)"``) and that the model keeps its last consistent
    state; the solvers here and the learners whose loops are their own share it."""
    warnings.warn(
        f"the fit was interrupted (KeyboardInterrupt) {where}; the model keeps the last "
        "consistent parameters.",
        UserWarning,
        stacklevel=4,
    )


class IterationPrinter:
    """Prints the per-iteration table of ``verbose`` learners."""

    def __init__(self, name, unit="iter"):
        self.name = name
        self.unit = unit
        self.start = time.perf_counter()
        self.previous = None

    def __call__(self, iteration, loss):
        if iteration == 1:
            print(f"[{self.name}]")
            print(f"{self.unit:>6} {'loss':>14} {'rel. change':>12} {'time (s)':>9}")
            print("-" * 44)
        change = (
            ""
            if self.previous is None
            else f"{(self.previous - loss) / max(abs(self.previous), 1e-300):12.3e}"
        )
        print(f"{iteration:6d} {loss:14.7g} {change:>12} {time.perf_counter() - self.start:9.2f}")
        self.previous = loss


def minimize_lbfgs(fun, x0, *, max_iter=100, tol=1e-5, on_iteration=None):
    """Minimise ``fun`` with scipy's L-BFGS-B (no bounds).

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (loss, grad)`` with ``x`` and ``grad`` float64 vectors.
    x0 : ndarray
        Starting point.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Stops when the relative decrease of the objective in an iteration is
        at most ``tol`` (scipy's ``ftol``) or the largest gradient entry is
        at most ``tol`` (``gtol``).
    on_iteration : callable, optional
        ``on_iteration(iteration, x, loss) -> bool``; True stops.

    Returns
    -------
    SolverResult
    """
    x0 = np.ascontiguousarray(x0, dtype=np.float64)
    state = {"x": x0.copy(), "fun": None, "n_iter": 0, "curve": [], "stopped": False}

    def guarded(x):
        loss, grad = fun(x)
        if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
            raise _NonFiniteLoss
        if state["fun"] is None:  # the starting point
            state["fun"] = float(loss)
        return float(loss), np.asarray(grad, dtype=np.float64)

    def callback(intermediate_result):
        state["n_iter"] += 1
        state["x"] = np.array(intermediate_result.x, dtype=np.float64)
        state["fun"] = float(intermediate_result.fun)
        state["curve"].append(state["fun"])
        if on_iteration is not None and on_iteration(state["n_iter"], state["x"], state["fun"]):
            state["stopped"] = True
            raise StopIteration

    try:
        # The objectives allocate the same temporaries at every evaluation:
        # let glibc reuse them where it was told not to (a Dask worker).
        with heap_kept_for_reuse():
            res = scipy.optimize.minimize(
                guarded,
                x0,
                jac=True,
                method="L-BFGS-B",
                callback=callback,
                options={"maxiter": int(max_iter), "ftol": float(tol), "gtol": float(tol)},
            )
    except KeyboardInterrupt:
        warn_interrupted(f"after {state['n_iter']} L-BFGS iteration(s)")
        loss = state["fun"] if state["fun"] is not None else float("nan")
        return SolverResult(state["x"], loss, state["n_iter"], state["curve"], False,
                            "interrupted")
    except _NonFiniteLoss:
        warnings.warn(
            "the objective became non-finite (NaN or infinity) during L-BFGS; stopping at "
            f"the last finite iterate (iteration {state['n_iter']}). Scaling the data "
            "(e.g. StandardScaler) usually avoids this.",
            ConvergenceWarning,
            stacklevel=3,
        )
        loss = state["fun"]
        if loss is None:
            raise ValueError(
                "the objective is not finite at the initial point; check the data scale "
                "and the initialisation."
            ) from None
        return SolverResult(state["x"], loss, state["n_iter"], state["curve"], False,
                            "non-finite objective")
    if state["stopped"]:
        return SolverResult(state["x"], state["fun"], state["n_iter"], state["curve"], False,
                            "stopped by the callback")
    converged = bool(res.success)
    if not converged and res.nit >= max_iter:
        warnings.warn(
            f"L-BFGS did not converge in max_iter={max_iter} iterations; increase max_iter "
            "or tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return SolverResult(
        np.asarray(res.x, dtype=np.float64), float(res.fun), int(res.nit), state["curve"],
        converged, str(res.message),
    )


def minimize_halving_descent(fun, x0, *, learning_rate, max_iter, on_iteration):
    """Gradient descent whose step is halved until the objective does not increase.

    metric-learn's scheme for LMNN: from ``x`` a step ``x - lr g`` is
    tried, ``lr`` halved until the objective is finite and no larger than
    at ``x``, the step accepted, and the next one started 1% longer.

    Parameters
    ----------
    fun, x0 :
        The objective ``fun(x) -> (loss, grad)`` and the starting point, as
        in :func:`minimize_lbfgs`.
    learning_rate : float
        The first step size tried.
    max_iter : int
        Accepted steps at most.
    on_iteration : callable
        ``on_iteration(iteration, x, loss) -> bool`` after each accepted
        step; True stops.

    Returns
    -------
    SolverResult
        ``converged`` when no step decreases the objective any more (the
        step underflows relative to ``x``: a numerically stationary point).
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    lr = learning_rate
    curve = []
    it = 0
    # Ctrl-C keeps the last accepted step.
    try:
        with heap_kept_for_reuse():  # as in minimize_lbfgs
            for it in range(1, max_iter + 1):
                while True:
                    x_new = x - lr * g
                    f_new, g_new = fun(x_new)
                    if np.isfinite(f_new) and f_new <= f:
                        break
                    lr /= 2.0
                    if lr * np.abs(g).max() <= 1e-15 * max(np.abs(x).max(), 1.0):
                        # No step decreases f: a (numerically) stationary point.
                        return SolverResult(x, f, it - 1, curve, True, "step size underflow")
                x, f, g = x_new, f_new, g_new
                lr *= 1.01
                curve.append(float(f))
                if on_iteration(it, x, float(f)):
                    return SolverResult(x, f, it, curve, False, "stopped by the callback")
    except KeyboardInterrupt:
        warn_interrupted(f"after {len(curve)} iteration(s)")
        return SolverResult(x, f, len(curve), curve, False, "interrupted")
    return SolverResult(x, f, it, curve, False, "max_iter reached")


# Adam's guard against a zero second moment (Kingma & Ba's value).
ADAM_EPSILON = 1e-8


def _scalar_or_array(value):
    """A float, or a float64 array for per-coordinate values."""
    return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.float64)


class StochasticOptimizer:
    """The update rule of the minibatch solvers, with its state.

    Holding the moments and the step count in an object lets ``partial_fit``
    continue an optimisation across calls exactly where it stopped.

    Parameters
    ----------
    method : {'adam', 'sgd'}
        Adam (Kingma & Ba, 2015) with bias-corrected moments, or SGD with
        heavy-ball momentum.
    learning_rate : float or ndarray
        Step size (Adam: per coordinate, about the largest step a
        coordinate takes); an array gives each coordinate its own (a
        diagonal preconditioner: NCA's and MLKR's features in different
        units).
    beta1, beta2 : float
        Adam's moment decays.
    epsilon : float or ndarray
        Adam's denominator guard, in the gradient's units (per coordinate
        with an array).
    momentum : float
        SGD's momentum.
    """

    def __init__(self, method="adam", learning_rate=0.01, beta1=0.9, beta2=0.999,
                 epsilon=ADAM_EPSILON, momentum=0.9):
        if method not in ("adam", "sgd"):
            raise ValueError(f"method must be 'adam' or 'sgd'; got {method!r}.")
        self.method = method
        self.learning_rate = _scalar_or_array(learning_rate)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.epsilon = _scalar_or_array(epsilon)
        self.momentum = float(momentum)
        self.n_steps = 0
        self._m = None
        self._v = None

    def step(self, x, grad):
        """Return the parameters after one update from ``x`` along ``grad``."""
        if self._m is None:
            self._m = np.zeros_like(x)
            self._v = np.zeros_like(x)
        self.n_steps += 1
        if self.method == "adam":
            self._m = self.beta1 * self._m + (1 - self.beta1) * grad
            self._v = self.beta2 * self._v + (1 - self.beta2) * grad * grad
            m_hat = self._m / (1 - self.beta1**self.n_steps)
            v_hat = self._v / (1 - self.beta2**self.n_steps)
            return x - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.epsilon)
        self._m = self.momentum * self._m - self.learning_rate * grad
        return x + self._m

    def load_state(self, other):
        """Take the state (step count and moments) of ``other``, a copy of this
        optimiser that took steps elsewhere (on a Dask worker)."""
        self.n_steps, self._m, self._v = other.n_steps, other._m, other._v


def step_minibatches(batches, x, optimizer, losses):
    """Steps of ``optimizer`` over ``batches`` of ``(batch_fun, weight)``.

    Appends ``(weight, loss)`` of each completed minibatch to ``losses`` and
    returns ``(x, finite)``: the parameters after the last completed
    minibatch, and whether every loss and gradient was finite (the pass
    stops at the first that is not, before updating ``x``).  This is the
    whole loop when the minibatches are evaluated here, and the part of it
    that a Dask worker runs for the minibatches whose rows it holds.
    """
    for batch_fun, weight in batches:
        loss, grad = batch_fun(x)
        if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
            return x, False
        x_new = optimizer.step(x, grad)
        if not np.all(np.isfinite(x_new)):
            return x, False
        x = x_new
        losses.append((weight, float(loss)))
    return x, True


def run_epoch(batches, x, optimizer):
    """One pass of ``optimizer`` over ``batches``.

    Each item of ``batches`` is either a minibatch ``(batch_fun, weight)``
    (stepped here by :func:`step_minibatches`) or an object with
    ``run_steps(x, optimizer, losses) -> (x, finite)`` that takes the steps
    of several consecutive minibatches elsewhere (on the Dask worker that
    holds their rows; :mod:`fastmetric._core.dask_minibatch`) and leaves
    ``optimizer`` in the state after them.

    Returns ``(x, mean_loss, finite, interrupted)``: the parameters after the
    last completed minibatch, the weighted mean of the minibatch losses (NaN
    when no minibatch ran; summed in minibatch order wherever the steps ran),
    whether every loss and gradient was finite, and whether Ctrl-C stopped it.
    """
    losses = []

    def mean_loss():
        total, total_w = 0.0, 0.0
        for weight, loss in losses:
            total += weight * loss
            total_w += weight
        return total / total_w if total_w > 0 else np.nan

    # The minibatch objectives allocate the same large temporaries at every
    # step; where glibc was told not to keep freed memory (a Dask worker, a
    # process started with MALLOC_TRIM_THRESHOLD_), let it reuse them.
    try:
        with heap_kept_for_reuse():
            for item in batches:
                if hasattr(item, "run_steps"):
                    x, finite = item.run_steps(x, optimizer, losses)
                else:
                    x, finite = step_minibatches((item,), x, optimizer, losses)
                if not finite:
                    return x, mean_loss(), False, False
    except KeyboardInterrupt:
        return x, mean_loss(), True, True
    return x, mean_loss(), True, False


def record_partial_epoch(estimator, loss, finite, interrupted):
    """The bookkeeping of a ``partial_fit`` epoch (:func:`run_epoch`'s outcome).

    Warns when the epoch was interrupted (Ctrl-C) or met a non-finite loss
    (the parameters kept are then those after the last good minibatch),
    counts the epoch in ``estimator.n_iter_`` and, when the mean loss is
    finite, records it in ``loss_`` and ``loss_curve_`` (printed with
    ``verbose``).
    """
    if interrupted:
        warnings.warn("partial_fit was interrupted (KeyboardInterrupt); the model keeps "
                      "the parameters after the last completed minibatch.", UserWarning,
                      stacklevel=4)
    if not finite:
        warnings.warn("the objective became non-finite in partial_fit; the model keeps "
                      "the last finite parameters. Lower learning_rate or scale the data.",
                      ConvergenceWarning, stacklevel=4)
    estimator.n_iter_ += 1
    if np.isfinite(loss):
        estimator.loss_ = float(loss)
        estimator.loss_curve_.append(float(loss))
        if estimator.verbose:
            print(f"[{type(estimator).__name__}] partial_fit {estimator.n_iter_}: mean loss "
                  f"{loss:.7g}")


def progress(batches, total, verbose, desc):
    """``batches`` with a tqdm bar over ``total`` minibatches when ``verbose >=
    2`` and tqdm is there (an item that steps several minibatches elsewhere
    advances the bar by its ``n_batches``)."""
    if verbose is True or verbose < 2:
        return batches
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return batches

    def counted():
        with tqdm(total=total, desc=desc, unit="batch", leave=False) as bar:
            for item in batches:
                yield item
                bar.update(getattr(item, "n_batches", 1))

    return counted()


def epoch_order(n_items, seed, epoch):
    """The order in which epoch ``epoch`` visits ``n_items`` items: a
    permutation drawn from ``numpy.random.default_rng([seed, epoch])``
    (reproducible, different every epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_items)


def minibatch_epochs(n_items, batch_size, seed, batches_of_order, verbose=0, with_epoch=False):
    """``epoch_batches`` for :func:`minimize_stochastic` over a fixed set of items.

    Epoch ``e`` visits the items in the order :func:`epoch_order` draws;
    ``batches_of_order(order)`` (``batches_of_order(order, e)`` with
    ``with_epoch=True``, to draw per-minibatch data such as NCA's and
    LMNN's candidates from ``(seed, e, i)``) turns that order into the
    minibatches (consecutive slices of ``batch_size`` items), shown with a
    progress bar when ``verbose >= 2``.
    """
    n_batches = -(-n_items // batch_size)

    def batches(epoch):
        # Drawn lazily, inside run_epoch's loop: a Ctrl-C while the
        # permutation is drawn stops the fit cleanly too.
        order = epoch_order(n_items, seed, epoch)
        yield from (batches_of_order(order, epoch) if with_epoch else batches_of_order(order))

    def epoch_batches(epoch):
        return progress(batches(epoch), n_batches, verbose, f"epoch {epoch + 1}")

    return epoch_batches


def stream_epochs(n_batches, batches_of_epoch, verbose=0):
    """``epoch_batches`` for :func:`minimize_stochastic` over drawn minibatches.

    ``batches_of_epoch(epoch)`` yields the epoch's ``n_batches`` minibatches,
    drawing each one's data when it is needed (bounded memory), or a few
    minibatches ahead to gather their rows on Dask workers.
    """
    def epoch_batches(epoch):
        return progress(batches_of_epoch(epoch), n_batches, verbose, f"epoch {epoch + 1}")

    return epoch_batches


def minimize_stochastic(
    epoch_batches,
    x0,
    *,
    method="adam",
    max_epochs=100,
    learning_rate=0.01,
    tol=1e-5,
    n_iter_no_change=5,
    on_iteration=None,
    optimizer=None,
):
    """Minibatch Adam (or SGD with momentum) over epochs.

    Parameters
    ----------
    epoch_batches : callable
        ``epoch_batches(epoch)`` (epoch = 0, 1, ...) returns an iterable of
        ``(batch_fun, weight)``: ``batch_fun(x) -> (loss, grad)`` is the
        objective on one minibatch, ``weight`` its share in the epoch's
        mean loss (e.g. its number of pairs).  The caller fixes the order of
        the minibatches (from its random_state), so runs are reproducible.
    x0 : ndarray
        Starting point.
    method : {'adam', 'sgd'}
        See :class:`StochasticOptimizer`.
    max_epochs : int
    learning_rate : float
    tol : float
        An epoch improves when its mean loss is below the best so far by
        more than ``tol * max(1, |best|)``.
    n_iter_no_change : int
        Stop (converged) after this many epochs without improvement.
    on_iteration : callable, optional
        ``on_iteration(epoch, x, epoch_loss) -> bool`` (epochs counted from
        1); True stops.
    optimizer : StochasticOptimizer, optional
        Continue from this optimiser's state (``method`` and
        ``learning_rate`` are then ignored).

    Returns
    -------
    SolverResult
        ``fun`` is the mean minibatch loss of the last epoch.
    """
    if optimizer is None:
        optimizer = StochasticOptimizer(method, learning_rate)
    x = np.array(x0, dtype=np.float64)
    curve = []
    best = np.inf
    no_improvement = 0
    last_loss = None
    for epoch in range(int(max_epochs)):
        x, epoch_loss, finite, interrupted = run_epoch(epoch_batches(epoch), x, optimizer)
        if interrupted:
            warn_interrupted(f"in epoch {epoch + 1}")
            loss = epoch_loss if np.isfinite(epoch_loss) else (
                last_loss if last_loss is not None else np.nan)
            return SolverResult(x, loss, epoch, curve, False, "interrupted")
        if not finite:
            warnings.warn(
                f"the objective became non-finite in epoch {epoch + 1}; stopping at the "
                "last finite state. Lower learning_rate or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )
            if last_loss is None and not np.isfinite(epoch_loss):
                raise ValueError(
                    "the objective became non-finite in the first minibatch; lower "
                    "learning_rate or scale the data."
                )
            loss = epoch_loss if np.isfinite(epoch_loss) else last_loss
            return SolverResult(x, loss, epoch, curve, False, "non-finite objective")
        if not np.isfinite(epoch_loss):
            raise ValueError("an epoch had no minibatch with positive weight.")
        curve.append(epoch_loss)
        last_loss = epoch_loss
        try:
            stop = on_iteration is not None and on_iteration(epoch + 1, x, epoch_loss)
        except KeyboardInterrupt:
            warn_interrupted(f"after epoch {epoch + 1}")
            return SolverResult(x, epoch_loss, epoch + 1, curve, False, "interrupted")
        if stop:
            return SolverResult(x, epoch_loss, epoch + 1, curve, False,
                                "stopped by the callback")
        if epoch_loss < best - tol * max(1.0, abs(best) if np.isfinite(best) else 1.0):
            best = epoch_loss
            no_improvement = 0
        else:
            best = min(best, epoch_loss)
            no_improvement += 1
            if no_improvement >= n_iter_no_change:
                return SolverResult(x, epoch_loss, epoch + 1, curve, True,
                                    f"no improvement in {n_iter_no_change} epochs")
    warnings.warn(
        f"the stochastic solver did not converge in max_iter={max_epochs} epochs; "
        "increase max_iter or tol.",
        ConvergenceWarning,
        stacklevel=3,
    )
    return SolverResult(x, curve[-1] if curve else np.nan, int(max_epochs), curve, False,
                        "max epochs reached")

"""Solvers shared by the learners: full-batch L-BFGS and minibatch Adam/SGD.

Both minimise a function of one flat float64 parameter vector and report
each iteration (an L-BFGS iteration, or an epoch of the stochastic solvers)
through ``on_iteration(iteration, x, loss)``; a true return value stops the
solver.  Both guard against a non-finite loss: the solver stops and returns
the last state whose loss was finite, with a :class:`ConvergenceWarning`, so
a learner never ends with a NaN model.
"""
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

__all__ = ["SolverResult", "minimize_lbfgs", "minimize_stochastic", "IterationPrinter"]


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


class _NonFiniteLoss(Exception):
    pass


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
        res = scipy.optimize.minimize(
            guarded,
            x0,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": int(max_iter), "ftol": float(tol), "gtol": float(tol)},
        )
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
    beta1=0.9,
    beta2=0.999,
    epsilon=1e-8,
    momentum=0.9,
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
        Adam (Kingma & Ba, 2015) with bias-corrected moments, or SGD with
        heavy-ball momentum.
    max_epochs : int
    learning_rate : float
        Step size (Adam: per coordinate, about the largest step a
        coordinate takes).
    tol : float
        An epoch improves when its mean loss is below the best so far by
        more than ``tol * max(1, |best|)``.
    n_iter_no_change : int
        Stop (converged) after this many epochs without improvement.
    on_iteration : callable, optional
        ``on_iteration(epoch, x, epoch_loss) -> bool`` (epochs counted from
        1); True stops.

    Returns
    -------
    SolverResult
        ``fun`` is the mean minibatch loss of the last epoch.
    """
    if method not in ("adam", "sgd"):
        raise ValueError(f"method must be 'adam' or 'sgd'; got {method!r}.")
    x = np.array(x0, dtype=np.float64)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    step = 0
    curve = []
    best = np.inf
    no_improvement = 0
    last_good = x.copy()
    last_loss = None
    for epoch in range(int(max_epochs)):
        total, total_w = 0.0, 0.0
        finite = True
        for batch_fun, weight in epoch_batches(epoch):
            loss, grad = batch_fun(x)
            if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
                finite = False
                break
            step += 1
            if method == "adam":
                m = beta1 * m + (1 - beta1) * grad
                v = beta2 * v + (1 - beta2) * grad * grad
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                x = x - learning_rate * m_hat / (np.sqrt(v_hat) + epsilon)
            else:
                m = momentum * m - learning_rate * grad
                x = x + m
            total += weight * float(loss)
            total_w += weight
        if not finite or not np.all(np.isfinite(x)):
            warnings.warn(
                f"the objective became non-finite in epoch {epoch + 1}; stopping at the "
                "end of the last finite epoch. Lower learning_rate or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )
            if last_loss is None:
                raise ValueError(
                    "the objective became non-finite in the first epoch; lower "
                    "learning_rate or scale the data."
                )
            return SolverResult(last_good, last_loss, epoch, curve, False,
                                "non-finite objective")
        if total_w <= 0:
            raise ValueError("an epoch had no minibatch with positive weight.")
        epoch_loss = total / total_w
        curve.append(epoch_loss)
        last_good, last_loss = x.copy(), epoch_loss
        if on_iteration is not None and on_iteration(epoch + 1, x, epoch_loss):
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

"""Parameter constraints shared by the learners (scikit-learn's mechanism).

Every learner declares its constructor parameters' valid types and values
in a class attribute ``_parameter_constraints`` (a dict ``name -> list of
constraints`` in the language of :mod:`sklearn.utils._param_validation`),
and its ``fit`` / ``partial_fit`` are wrapped in
``sklearn.base._fit_context``, so that scikit-learn's own
``BaseEstimator._validate_params`` checks them once per fit, before any
data is read.  A bad value raises
:class:`~sklearn.utils._param_validation.InvalidParameterError` (a
ValueError and a TypeError) naming the parameter, the learner and the
value.

This module holds the pieces the learners share, so that a parameter that
several learners have (``max_iter``, ``n_jobs``, ``init``...) obeys the
same rule everywhere and each learner's dict stays short: the
:func:`shared` fragments, :func:`integers` and :func:`reals` intervals and
:func:`options_or_array` for string-or-matrix parameters (``init``,
``prior``).

:func:`store_params` is every learner's ``__init__`` body: scikit-learn
wants the constructor to store each argument, unchanged, under its own
name and to do nothing else (``get_params``, ``clone`` and
``check_no_attributes_set_in_init`` rely on it).

Checks that need the data (``n_components <= n_features``, ClusterLDML's
``n_clusters <= n_samples``) or tie two parameters together stay in ``fit``.

:func:`fit_context` is the decorator of every learner's ``fit`` and
``partial_fit``: scikit-learn's ``_fit_context`` (the parameters checked
once per fit) with BLAS held to one thread for the whole fit.
"""
import functools
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Hidden, Interval, StrOptions

from fastmetric._core.threads import MAX_N_JOBS, single_threaded_blas
from fastmetric._core.validation import caller_stacklevel

__all__ = ["fit_context", "integers", "options_or_array", "reals", "renamed", "renamed_argument",
           "renamed_value", "shared", "store_params"]


def fit_context(fit_method):
    """Decorate a learner's ``fit`` or ``partial_fit``.

    The parameters are validated as scikit-learn's ``_fit_context`` does
    (``prefer_skip_nested_validation=True``), and BLAS is held to one thread
    until the method returns.  The fits' BLAS calls are small (products and
    factorisations of d x d matrices, a few products of the data with
    them), and their parallelism is our kernels' threads.  A multithreaded
    BLAS underneath gains nothing on such calls, and on a machine whose
    cores other processes hold its threads wait for each other at every
    call: beside two busy processes on 2 cores, the one 64 x 64 ``eigh``
    at the end of an SDML_Supervised fit on digits took 13.8 ms instead of
    0.4 ms, and the fit 2x its time with BLAS held to one thread.  With one
    BLAS thread the linear algebra also gives the same bits whatever BLAS's
    own thread count.  This is the one place the learners hold BLAS (a
    user's ``callback`` runs under the hold too).  The wrapped method carries
    ``__fastmetric_fit_context__ = True`` (the tests check that every
    learner's ``fit`` has it).

    It is also the one place that keeps a map with NaN or infinity from
    being fitted: with finite data such a map can only come from data
    whose metric float64 cannot hold (``L`` scales as the inverse of the
    data, so features spanning 1e-310 need entries near 1e310), and
    ``components_`` is then removed and a ValueError raised.
    """
    validated = _fit_context(prefer_skip_nested_validation=True)(fit_method)

    @functools.wraps(fit_method)
    def wrapper(estimator, *args, **kwargs):
        with single_threaded_blas():
            fitted = validated(estimator, *args, **kwargs)
        _check_finite_map(estimator, args[0] if args else kwargs.get("X"))
        return fitted

    wrapper.__fastmetric_fit_context__ = True
    return wrapper


def _check_finite_map(estimator, data):
    """ValueError (and no ``components_``) when a fit left a non-finite map."""
    L = getattr(estimator, "components_", None)
    if L is None or np.isfinite(L).all():
        return
    del estimator.components_
    reach = ""
    if isinstance(data, np.ndarray) and data.dtype.kind == "f" and data.size:
        with np.errstate(invalid="ignore"):
            # the smallest non-zero magnitude: tiny data make a huge map
            magnitudes = np.abs(data[data != 0])
        if magnitudes.size:
            reach = (f" (the data's non-zero magnitudes run from {magnitudes.min():.3g} "
                     f"to {magnitudes.max():.3g})")
    raise ValueError(
        f"{type(estimator).__name__}: the learned map holds NaN or infinity: the metric "
        f"of these data is beyond float64's range{reach}; rescale the data "
        "(e.g. StandardScaler or a common factor) and fit again."
    )


class _Number(Interval):
    """An :class:`Interval` that rejects booleans.

    ``True`` is an ``int`` to Python, but ``max_iter=True`` or ``tol=False``
    is a mistake, not a count or a tolerance.
    """

    def is_satisfied_by(self, val):
        if isinstance(val, (bool, np.bool_)):
            return False
        return super().is_satisfied_by(val)


def integers(low, high=None):
    """An integer (Python or numpy, not a bool) in ``[low, high]``.

    ``high=None`` leaves it unbounded above.
    """
    return _Number(Integral, low, high, closed="left" if high is None else "both")


def reals(low, high=np.inf, closed="left"):
    """A real number (int or float, not a bool) in the interval from low to high.

    ``closed`` is scikit-learn's: ``'left'`` is ``[low, high)``,
    ``'right'`` ``(low, high]``, ``'both'`` and ``'neither'``.  With the
    default ``high=inf`` and an open right end the number must be finite.
    """
    return _Number(Real, low, high, closed=closed)


def options_or_array(*names, learner=False):
    """One of the strings ``names``, an array, or (``learner=True``) a fitted learner.

    The shape of the array and that the learner is fitted depend on the
    data; ``fit`` checks them.
    """
    constraints = [StrOptions(set(names)), "array-like"]
    if learner:
        constraints.append(HasMethods("fit"))
    return constraints


# metric-learn 0.7 renamed some parameters (num_constraints -> n_constraints,
# convergence_threshold -> tol, num_chunks -> n_chunks, k -> n_neighbors) and
# keeps the old names, default 'deprecated', with a FutureWarning: code
# written for metric-learn 0.6 runs on 0.7, and on fastmetric too.
RENAMED_DEFAULT = "deprecated"


def renamed(constraints):
    """The constraints of an old parameter name: ``'deprecated'`` (its
    default, hidden from the error messages) or a value of the new one."""
    return [Hidden(StrOptions({RENAMED_DEFAULT})), *constraints]


_SHARED = {
    # None: every thread OpenMP allows; k > 0: k threads; k < 0: all CPUs
    # but |k| - 1 (joblib's convention); 0 means nothing.  |k| fits a C int
    # (the kernels' thread count).
    "n_jobs": [None, integers(1, MAX_N_JOBS), _Number(Integral, -MAX_N_JOBS, -1, closed="both")],
    # A bool, or an int >= 0 (higher is more talkative).
    "verbose": ["verbose"],
    "callback": [None, callable],
    # The points that index tuples point into, or a function from indices to rows.
    "preprocessor": [None, "array-like", callable],
    "random_state": ["random_state"],
    "max_iter": [integers(1)],
    "tol": [reals(0)],
    "n_components": [None, integers(1)],
    "n_constraints": [None, integers(1)],
    # metric-learn 0.7's old names of n_constraints and tol (renamed_value)
    "num_constraints": renamed([None, integers(1)]),
    "convergence_threshold": renamed([reals(0)]),
    "normalize": ["boolean"],
    # A fixed intensity, or the rule that estimates it from the data.
    "shrinkage": [StrOptions({"ledoit_wolf", "oas"}), reals(0, 1, closed="both")],
    # Every initial map of fastmetric._core.base.initialize_components.
    "init": options_or_array("auto", "identity", "pca", "lda", "covariance", "random",
                             learner=True),
}


def shared(*names):
    """The shared constraints of the parameters ``names``, as a dict to extend."""
    return {name: list(_SHARED[name]) for name in names}


def store_params(estimator, values):
    """Store each constructor argument as the estimator's attribute of that name.

    Called first thing in ``__init__`` as ``store_params(self, locals())``,
    when ``locals()`` holds exactly ``self`` and the arguments; the values
    are stored as given (scikit-learn's rule: no check, no copy, no
    conversion in ``__init__``; ``fit`` validates them).

    Parameters
    ----------
    estimator : object
        The estimator being constructed.
    values : dict
        ``locals()`` of its ``__init__``: the arguments by name, plus
        ``self`` (and ``__class__`` where ``__init__`` uses ``super()``),
        which are skipped.
    """
    for name, value in values.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def renamed_argument(old, old_value, new, new_value):
    """``new_value``, or ``old_value`` when the user gave the old name
    ``old`` (with metric-learn's FutureWarning at the user's call).

    >>> renamed_argument("num_chunks", "deprecated", "n_chunks", 30)
    30
    """
    if isinstance(old_value, str) and old_value == RENAMED_DEFAULT:
        return new_value
    warnings.warn(
        f"{old} was renamed {new} (as in metric-learn) and will be removed; its value is "
        f"used as {new}.", FutureWarning, stacklevel=caller_stacklevel())
    return old_value


def renamed_value(estimator, old, new):
    """The value of the estimator's parameter ``new``, or of its old name
    ``old`` when the user set that one (:func:`renamed_argument`).

    >>> from types import SimpleNamespace
    >>> renamed_value(SimpleNamespace(k="deprecated", n_neighbors=3), "k", "n_neighbors")
    3
    """
    return renamed_argument(old, getattr(estimator, old), new, getattr(estimator, new))

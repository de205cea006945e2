"""Helpers shared by the asv suites: the parameters every suite uses, the
synthetic and digits data, quiet fitting, the guard around fastmetric's
imports, and the base class of the ``fit`` benchmarks.

asv only collects public, non-abstract classes, so the bases here (abstract)
add no benchmarks of their own; their ``time_``/``peakmem_`` methods are
collected on each concrete suite, under the suite's name.
"""
import abc
import warnings

import numpy as np

SEED = 20240613
DTYPES = ["float32", "float64"]
N_JOBS = [1, 2]


class OptionalImports:
    """A ``with`` block around a suite's fastmetric imports.

    An extension that is not built makes an import in the block fail; the
    block then ends quietly (the names after the failing import stay
    unbound, and only the benchmarks use them) and :meth:`require`, called
    first in each ``setup``, raises ``NotImplementedError``, which asv
    reports as a skipped benchmark.

    Parameters
    ----------
    what : str
        What the block imports, for the skip message (e.g. ``"ITML"``).
    """

    def __init__(self, what):
        self.what = what
        self.error = None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if kind is not None and issubclass(kind, ImportError):
            self.error = str(exc)
            return True  # swallowed: the suites skip instead
        return False

    def require(self):
        """Raise ``NotImplementedError`` when an import of the block failed."""
        if self.error is not None:
            raise NotImplementedError(
                f"fastmetric {self.what} is not available in this build: {self.error}"
            )


def named_sizes(fields, *sizes):
    """A table of problem sizes keyed by readable names, for asv's parameters.

    ``named_sizes(("n", "d"), (2_000, 64))`` is ``{"n=2000,d=64": (2000, 64)}``:
    asv prints and stores results by the name, the suites unpack the tuple.
    """
    return {",".join(f"{field}={value}" for field, value in zip(fields, size)): size
            for size in sizes}


def classification(n, d, dtype, *, n_classes=10, n_informative=None, clusters_per_class=1,
                   standardize=False):
    """``make_classification`` points (a quarter of the features informative,
    a quarter redundant) and labels, C-contiguous in ``dtype``."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=n_informative or d // 4,
        n_redundant=d // 4, n_classes=n_classes, n_clusters_per_class=clusters_per_class,
        random_state=SEED,
    )
    if standardize:
        from sklearn.preprocessing import StandardScaler

        X = StandardScaler().fit_transform(X)
    return np.ascontiguousarray(X, dtype=dtype), y


def digits_train(dtype="float64"):
    """The training 70 % of scikit-learn's digits (stratified), standardised."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    Xtr, _, ytr, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    return np.ascontiguousarray(StandardScaler().fit_transform(Xtr), dtype=dtype), ytr


def fit_quietly(estimator, *args):
    """``estimator.fit(*args)`` without warnings: the suites fix the iteration
    count (tol=0), and reaching max_iter warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(*args)


class Suite:
    """The asv timing settings most suites share; a suite overrides those it
    needs otherwise.

    One call per sample (``number = 1``): each call takes milliseconds to
    seconds, too long to repeat within a sample.  ``repeat`` is asv's
    (min samples, max samples, max seconds); ``timeout`` is per benchmark.
    """

    number = 1
    repeat = (3, 10, 20.0)
    timeout = 120


class FitBenchmark(Suite, abc.ABC):
    """``time_fit`` and ``peakmem_fit``: one ``fit`` of a new estimator.

    A suite sets ``params``/``param_names`` (and ``repeat``/``timeout`` where
    its fits need other budgets), stores the arguments of ``fit`` in
    ``self.fit_args`` in its ``setup``, and builds the estimator in
    :meth:`estimator`.  The estimator is built inside the timed call, as the
    suites always did: a scikit-learn constructor only stores its parameters.
    Every fit runs under :func:`fit_quietly`.
    """

    repeat = (2, 5, 30.0)

    @abc.abstractmethod
    def estimator(self, *params):
        """A new, unfitted estimator for these parameter values."""

    def time_fit(self, *params):
        fit_quietly(self.estimator(*params), *self.fit_args)

    def peakmem_fit(self, *params):
        fit_quietly(self.estimator(*params), *self.fit_args)

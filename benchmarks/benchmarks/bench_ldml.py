"""asv benchmarks of fastmetric's LDML learners (full-batch L-BFGS fits).

Two suites, ``LDMLSupervisedFit`` (class labels in, pairs drawn by the
learner) and ``LDMLFit`` (index pairs into ``preprocessor=X``, drawn once in
``setup``), each with a ``time_`` and a ``peakmem_`` benchmark of ``fit``,
parametrised over a problem size, the floating dtype and ``n_jobs``.

Every fit does the same amount of work on every commit: ``tol=0`` and a
fixed ``max_iter`` make L-BFGS run exactly ``MAX_ITER`` iterations (unless
its line search fails), so a change of timing is a change of the cost per
iteration, not of when the solver happens to stop.  Data come from
``make_classification`` with a fixed seed (10 classes).  The sizes are kept
modest so that ``asv run --quick`` over this file takes about a minute on a
quiet 2-core machine; the full-size comparison against a numpy/scipy LDML is
``benchmarks/compare_ldml.py``.

``peakmem_`` reports the peak resident memory of the benchmark process,
including the data built in ``setup``: compare it across commits.

When the learners or their kernels cannot be imported (not built yet),
``setup`` raises ``NotImplementedError`` and asv shows the benchmarks as
skipped.
"""
import warnings

import numpy as np

SEED = 20240613
DTYPES = ["float32", "float64"]
N_JOBS = [1, 2]
MAX_ITER = 30

# n points, d features (= rows of L), P pairs (half similar).
SIZES = {
    "n=5000,d=32,P=50000": (5_000, 32, 50_000),
    "n=20000,d=64,P=200000": (20_000, 64, 200_000),
}

try:
    from fastmetric._ldml import LDML, LDML_Supervised
    from fastmetric._sampling import sample_pairs
except ImportError as exc:  # an extension is not built
    LDML = LDML_Supervised = sample_pairs = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


def _require():
    if _IMPORT_ERROR is not None:
        raise NotImplementedError(f"fastmetric LDML is not available in this build: {_IMPORT_ERROR}")


def _data(size, dtype):
    """Points and class labels: 10 classes, a quarter of the features informative."""
    from sklearn.datasets import make_classification

    n, d, _ = SIZES[size]
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=d // 4, n_redundant=d // 4, n_classes=10,
        n_clusters_per_class=1, random_state=SEED,
    )
    return np.ascontiguousarray(X, dtype=dtype), y


def _fit_quietly(estimator, *args):
    # tol=0 always ends at max_iter, which warns; the warning is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(*args)


class LDMLSupervisedFit:
    """``LDML_Supervised(solver='lbfgs').fit(X, y)``: pair sampling, init, L-BFGS."""

    params = [list(SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 180

    def setup(self, size, dtype, n_jobs):
        _require()
        self.X, self.y = _data(size, dtype)
        self.n_pairs = SIZES[size][2]
        self.n_jobs = n_jobs

    def _estimator(self):
        return LDML_Supervised(n_pairs=self.n_pairs, solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                               random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.X, self.y)

    def peakmem_fit(self, size, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.X, self.y)


class LDMLFit:
    """``LDML(preprocessor=X, solver='lbfgs').fit(index_pairs, targets)``.

    The pairs are drawn once in ``setup`` (half similar, half dissimilar),
    so the time is the learner's checks, initialisation and L-BFGS only.
    """

    params = [list(SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 180

    def setup(self, size, dtype, n_jobs):
        _require()
        self.X, labels = _data(size, dtype)
        n_pairs = SIZES[size][2]
        pairs, t = sample_pairs(labels, n_pairs // 2, n_pairs - n_pairs // 2, random_state=SEED)
        self.pairs = np.ascontiguousarray(pairs)
        self.targets = t.astype(np.float64)
        self.n_jobs = n_jobs

    def _estimator(self):
        return LDML(preprocessor=self.X, solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                    random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.pairs, self.targets)

    def peakmem_fit(self, size, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.pairs, self.targets)

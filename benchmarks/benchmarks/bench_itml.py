"""asv benchmarks of fastmetric's ITML (cyclic Bregman projections).

* ``ITMLSupervisedFit``: ``ITML_Supervised.fit(X, y)`` on standardised
  digit-like data (pair sampling, default bounds, prior, projections,
  factorisation);
* ``ITMLFit``: ``ITML(preprocessor=X).fit(index_pairs, y)`` with the pairs
  drawn once in ``setup`` (the learner and the threshold calibration only);
* ``ITMLProjections``: the nogil kernel alone (sequential by design), for
  a small and a large ``n_features``.

Each fit runs a fixed number of sweeps (``tol=0``, ``max_iter=SWEEPS``), so
a change of timing is a change of cost per projection, not of when the
loop happens to stop.  Sizes keep every benchmark under a few seconds on a
quiet 2-core machine.  ``peakmem_`` includes the data built in ``setup``.

When fastmetric's ITML cannot be imported (not built yet), ``setup`` raises
``NotImplementedError`` and asv shows the benchmarks as skipped.
"""
import warnings

import numpy as np

SEED = 20240613
DTYPES = ["float32", "float64"]
N_JOBS = [1, 2]
SWEEPS = 100

try:
    from fastmetric._itml import ITML, ITML_Supervised
    from fastmetric._itml_kernels import itml_projections
    from fastmetric._sampling import sample_pairs
except ImportError as exc:  # an extension is not built
    ITML = ITML_Supervised = itml_projections = sample_pairs = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


def _require():
    if _IMPORT_ERROR is not None:
        raise NotImplementedError(f"fastmetric ITML is not available in this build: {_IMPORT_ERROR}")


def _data(n, d, dtype, n_classes=10):
    """Standardised points with ``n_classes`` classes, a quarter of the features informative."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=max(2, d // 4), n_redundant=d // 4,
        n_classes=n_classes, n_clusters_per_class=1, random_state=SEED,
    )
    X = (X - X.mean(0)) / X.std(0)
    return np.ascontiguousarray(X, dtype=dtype), y


def _fit_quietly(estimator, *args):
    # tol=0 always ends at max_iter, which warns; the warning is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(*args)


class ITMLSupervisedFit:
    """``ITML_Supervised().fit(X, y)``: 1257 x 64 points, 10 classes, 2000 + 2000 pairs."""

    params = [DTYPES, N_JOBS]
    param_names = ["dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 120

    def setup(self, dtype, n_jobs):
        _require()
        self.X, self.y = _data(1257, 64, dtype)
        self.n_jobs = n_jobs

    def _estimator(self):
        return ITML_Supervised(max_iter=SWEEPS, tol=0.0, random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.X, self.y)

    def peakmem_fit(self, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.X, self.y)


class ITMLFit:
    """``ITML(preprocessor=X).fit(index_pairs, y)``: 4000 labelled pairs."""

    params = [DTYPES, N_JOBS]
    param_names = ["dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 120

    def setup(self, dtype, n_jobs):
        _require()
        self.X, labels = _data(1257, 64, dtype)
        pairs, t = sample_pairs(labels, 2000, 2000, unique=True, random_state=SEED)
        self.pairs = np.ascontiguousarray(pairs)
        self.y = 2 * t.astype(np.int64) - 1
        self.n_jobs = n_jobs

    def _estimator(self):
        return ITML(preprocessor=self.X, max_iter=SWEEPS, tol=0.0, n_jobs=self.n_jobs)

    def time_fit(self, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.pairs, self.y)

    def peakmem_fit(self, dtype, n_jobs):
        _fit_quietly(self._estimator(), self.pairs, self.y)


class ITMLProjections:
    """The projection kernel: fixed sweeps over 2000 constraints."""

    params = [[64, 384]]
    param_names = ["n_features"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 120

    def setup(self, n_features):
        _require()
        self.X, labels = _data(2000, n_features, "float64")
        pairs, t = sample_pairs(labels, 1000, 1000, unique=True, random_state=SEED)
        self.a = np.ascontiguousarray(pairs[:, 0])
        self.b = np.ascontiguousarray(pairs[:, 1])
        self.delta = np.where(t == 1, 1.0, -1.0)
        d2 = ((self.X[self.a] - self.X[self.b]) ** 2).sum(1)
        lo, hi = np.percentile(d2, [5, 95])
        self.xi = np.where(self.delta > 0, lo, hi)
        self.sweeps = 20 if n_features <= 64 else 2

    def _run(self):
        m, d = self.a.shape[0], self.X.shape[1]
        itml_projections(self.X, self.a, self.b, self.delta, self.xi.copy(), np.zeros(m),
                         np.zeros(m), np.eye(d), tol=0.0, max_sweeps=self.sweeps)

    def time_projections(self, n_features):
        self._run()

    def peakmem_projections(self, n_features):
        self._run()

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
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, FitBenchmark, OptionalImports, Suite, classification

SWEEPS = 100

IMPORTS = OptionalImports("ITML")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._learners.itml import ITML, ITML_Supervised
    from fastmetric._core.objectives.itml import itml_projections
    from fastmetric._core.sampling import sample_pairs


class _ITMLFitSuite(FitBenchmark):
    """Both fits: 1257 x 64 standardised points, 10 classes, over dtype and n_jobs."""

    params = (DTYPES, N_JOBS)
    param_names = ("dtype", "n_jobs")

    def setup(self, dtype, n_jobs):
        IMPORTS.require()
        self.X, self.y = classification(1257, 64, dtype, standardize=True)
        self.fit_args = self.X, self.y


class ITMLSupervisedFit(_ITMLFitSuite):
    """``ITML_Supervised().fit(X, y)``: 1257 x 64 points, 10 classes, 2000 + 2000 pairs."""

    def estimator(self, dtype, n_jobs):
        return ITML_Supervised(max_iter=SWEEPS, tol=0.0, random_state=0, n_jobs=n_jobs)


class ITMLFit(_ITMLFitSuite):
    """``ITML(preprocessor=X).fit(index_pairs, y)``: 4000 labelled pairs."""

    def setup(self, dtype, n_jobs):
        super().setup(dtype, n_jobs)
        pairs, t = sample_pairs(self.y, 2000, 2000, unique=True, random_state=SEED)
        self.fit_args = np.ascontiguousarray(pairs), 2 * t.astype(np.int64) - 1

    def estimator(self, dtype, n_jobs):
        return ITML(preprocessor=self.X, max_iter=SWEEPS, tol=0.0, n_jobs=n_jobs)


class ITMLProjections(Suite):
    """The projection kernel: fixed sweeps over 2000 constraints."""

    params = ([64, 384],)
    param_names = ("n_features",)
    repeat = (2, 5, 30.0)

    def setup(self, n_features):
        IMPORTS.require()
        self.X, labels = classification(2000, n_features, "float64",
                                        n_informative=max(2, n_features // 4), standardize=True)
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

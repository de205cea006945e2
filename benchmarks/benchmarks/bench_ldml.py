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
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, classification, fit_quietly, require

MAX_ITER = 30

# n points, d features (= rows of L), P pairs (half similar).
SIZES = {
    "n=5000,d=32,P=50000": (5_000, 32, 50_000),
    "n=20000,d=64,P=200000": (20_000, 64, 200_000),
}

try:
    from fastmetric._learners.ldml import LDML, LDML_Supervised
    from fastmetric._core.sampling import sample_pairs
except ImportError as exc:  # an extension is not built
    LDML = LDML_Supervised = sample_pairs = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


class LDMLSupervisedFit:
    """``LDML_Supervised(solver='lbfgs').fit(X, y)``: pair sampling, init, L-BFGS."""

    params = [list(SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 180

    def setup(self, size, dtype, n_jobs):
        require(_IMPORT_ERROR, "LDML")
        self.X, self.y = classification(*SIZES[size][:2], dtype)
        self.n_pairs = SIZES[size][2]
        self.n_jobs = n_jobs

    def _estimator(self):
        return LDML_Supervised(n_pairs=self.n_pairs, solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                               random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.X, self.y)

    def peakmem_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.X, self.y)


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
        require(_IMPORT_ERROR, "LDML")
        self.X, labels = classification(*SIZES[size][:2], dtype)
        n_pairs = SIZES[size][2]
        pairs, t = sample_pairs(labels, n_pairs // 2, n_pairs - n_pairs // 2, random_state=SEED)
        self.pairs = np.ascontiguousarray(pairs)
        self.targets = t.astype(np.float64)
        self.n_jobs = n_jobs

    def _estimator(self):
        return LDML(preprocessor=self.X, solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                    random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.pairs, self.targets)

    def peakmem_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.pairs, self.targets)

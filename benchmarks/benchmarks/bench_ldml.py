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

from ._shared import DTYPES, N_JOBS, SEED, FitBenchmark, OptionalImports, classification, named_sizes

MAX_ITER = 30

# n points, d features (= rows of L), P pairs (half similar).
SIZES = named_sizes(("n", "d", "P"), (5_000, 32, 50_000), (20_000, 64, 200_000))

IMPORTS = OptionalImports("LDML")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._learners.ldml import LDML, LDML_Supervised
    from fastmetric._core.sampling import sample_pairs


class _LDMLFitSuite(FitBenchmark):
    """Both fits: the synthetic data of ``size``, over dtype and n_jobs."""

    params = (list(SIZES), DTYPES, N_JOBS)
    param_names = ("size", "dtype", "n_jobs")
    timeout = 180

    def setup(self, size, dtype, n_jobs):
        IMPORTS.require()
        self.X, self.y = classification(*SIZES[size][:2], dtype)
        self.fit_args = self.X, self.y


class LDMLSupervisedFit(_LDMLFitSuite):
    """``LDML_Supervised(solver='lbfgs').fit(X, y)``: pair sampling, init, L-BFGS."""

    def estimator(self, size, dtype, n_jobs):
        return LDML_Supervised(n_pairs=SIZES[size][2], solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                               random_state=0, n_jobs=n_jobs)


class LDMLFit(_LDMLFitSuite):
    """``LDML(preprocessor=X, solver='lbfgs').fit(index_pairs, targets)``.

    The pairs are drawn once in ``setup`` (half similar, half dissimilar),
    so the time is the learner's checks, initialisation and L-BFGS only.
    """

    def setup(self, size, dtype, n_jobs):
        super().setup(size, dtype, n_jobs)
        n_pairs = SIZES[size][2]
        pairs, t = sample_pairs(self.y, n_pairs // 2, n_pairs - n_pairs // 2, random_state=SEED)
        self.fit_args = np.ascontiguousarray(pairs), t.astype(np.float64)

    def estimator(self, size, dtype, n_jobs):
        return LDML(preprocessor=self.X, solver="lbfgs", max_iter=MAX_ITER, tol=0.0,
                    random_state=0, n_jobs=n_jobs)

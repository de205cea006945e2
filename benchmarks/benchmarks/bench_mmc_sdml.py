"""asv benchmarks of the pair-scatter kernel and the MMC / SDML learners.

* ``PairScatter``: ``weighted_pair_scatter`` (``sum_p w_p d_p d_p^T``) for
  many pairs per point (the Laplacian form) and few (the direct form).
* ``MMCSupervisedFit``: ``MMC_Supervised.fit`` with the L-BFGS solver and
  the diagonal Newton solver; ``tol=0`` and a fixed ``max_iter`` make every
  commit do the same number of iterations.
* ``SDMLSupervisedFit``: ``SDML_Supervised.fit`` (scatter, spectrum shift,
  scikit-learn's graphical lasso).

Each has a ``time_`` and a ``peakmem_`` benchmark, parametrised over the
floating dtype and ``n_jobs``; every benchmark takes well under 5 s.  Data
come from ``make_classification`` with a fixed seed.  When fastmetric is
not built, ``setup`` raises ``NotImplementedError`` (skipped by asv).
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, FitBenchmark, OptionalImports, Suite, classification

IMPORTS = OptionalImports("MMC/SDML")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._learners.mmc import MMC_Supervised
    from fastmetric._learners.sdml import SDML_Supervised
    from fastmetric._core.scatter import weighted_pair_scatter


class PairScatter(Suite):
    """``weighted_pair_scatter(X, a, b, w)`` on n=20000 points, d=64."""

    params = (["many pairs (P=400000)", "few pairs (P=2000)"], DTYPES, N_JOBS)
    param_names = ("pairs", "dtype", "n_jobs")
    timeout = None  # asv.conf.json's default_benchmark_timeout (60 s)

    def setup(self, pairs, dtype, n_jobs):
        IMPORTS.require()
        rng = np.random.RandomState(SEED)
        self.X, _ = classification(20_000, 64, dtype)
        P = 400_000 if pairs.startswith("many") else 2_000
        self.a = rng.randint(0, 20_000, P)
        self.b = rng.randint(0, 20_000, P)
        self.w = rng.randn(P)

    def time_scatter(self, pairs, dtype, n_jobs):
        weighted_pair_scatter(self.X, self.a, self.b, self.w, n_jobs=n_jobs)

    def peakmem_scatter(self, pairs, dtype, n_jobs):
        weighted_pair_scatter(self.X, self.a, self.b, self.w, n_jobs=n_jobs)


class _LearnerFitSuite(FitBenchmark):
    """Both fits: n=2000, d=64, 10 classes."""

    repeat = (2, 5, 20.0)

    def setup(self, *params):
        IMPORTS.require()
        dtype = dict(zip(self.param_names, params))["dtype"]
        self.fit_args = classification(2_000, 64, dtype)


class MMCSupervisedFit(_LearnerFitSuite):
    """``MMC_Supervised.fit`` on n=2000, d=64, 10 classes (2000 + 2000 pairs)."""

    params = (["lbfgs", "diagonal"], DTYPES, N_JOBS)
    param_names = ("solver", "dtype", "n_jobs")

    def estimator(self, solver, dtype, n_jobs):
        return MMC_Supervised(max_iter=30, tol=0.0, diagonal=(solver == "diagonal"),
                              random_state=0, n_jobs=n_jobs)


class SDMLSupervisedFit(_LearnerFitSuite):
    """``SDML_Supervised.fit`` on n=2000, d=64, 10 classes."""

    params = (DTYPES, N_JOBS)
    param_names = ("dtype", "n_jobs")

    def estimator(self, dtype, n_jobs):
        return SDML_Supervised(random_state=0, n_jobs=n_jobs)

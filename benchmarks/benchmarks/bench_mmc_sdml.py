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
import warnings

import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, classification, require


try:
    from fastmetric._learners.mmc import MMC_Supervised
    from fastmetric._core.scatter import weighted_pair_scatter
    from fastmetric._learners.sdml import SDML_Supervised
except ImportError as exc:  # an extension is not built
    MMC_Supervised = SDML_Supervised = weighted_pair_scatter = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


class PairScatter:
    """``weighted_pair_scatter(X, a, b, w)`` on n=20000 points, d=64."""

    params = [["many pairs (P=400000)", "few pairs (P=2000)"], DTYPES, N_JOBS]
    param_names = ["pairs", "dtype", "n_jobs"]
    number = 1
    repeat = (3, 10, 20.0)

    def setup(self, pairs, dtype, n_jobs):
        require(_IMPORT_ERROR, "MMC/SDML")
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


class MMCSupervisedFit:
    """``MMC_Supervised.fit`` on n=2000, d=64, 10 classes (2000 + 2000 pairs)."""

    params = [["lbfgs", "diagonal"], DTYPES, N_JOBS]
    param_names = ["solver", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 20.0)
    timeout = 120

    def setup(self, solver, dtype, n_jobs):
        require(_IMPORT_ERROR, "MMC/SDML")
        self.X, self.y = classification(2_000, 64, dtype)

    def _fit(self, solver, n_jobs):
        est = MMC_Supervised(max_iter=30, tol=0.0, diagonal=(solver == "diagonal"),
                             random_state=0, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(self.X, self.y)

    def time_fit(self, solver, dtype, n_jobs):
        self._fit(solver, n_jobs)

    def peakmem_fit(self, solver, dtype, n_jobs):
        self._fit(solver, n_jobs)


class SDMLSupervisedFit:
    """``SDML_Supervised.fit`` on n=2000, d=64, 10 classes."""

    params = [DTYPES, N_JOBS]
    param_names = ["dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 20.0)
    timeout = 120

    def setup(self, dtype, n_jobs):
        require(_IMPORT_ERROR, "MMC/SDML")
        self.X, self.y = classification(2_000, 64, dtype)

    def _fit(self, n_jobs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SDML_Supervised(random_state=0, n_jobs=n_jobs).fit(self.X, self.y)

    def time_fit(self, dtype, n_jobs):
        self._fit(n_jobs)

    def peakmem_fit(self, dtype, n_jobs):
        self._fit(n_jobs)

"""asv benchmarks of the closed-form learners: Covariance, RCA_Supervised, LFDA,
and the chunk sampler behind RCA_Supervised.

Each suite has a ``time_`` and a ``peakmem_`` benchmark of ``fit``,
parametrised over a problem size and the floating dtype (and ``n_jobs`` for
the sampler, the only multithreaded piece; the learners' linear algebra is
BLAS).  Data come from ``make_classification`` with a fixed seed (10
classes).  Sizes are kept so that each benchmark runs well under 5 s.

When the learners cannot be imported (not built yet), ``setup`` raises
``NotImplementedError`` and asv shows the benchmarks as skipped.
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, classification, require


# n points, d features.
SIZES = {
    "n=2000,d=64": (2_000, 64),
    "n=10000,d=128": (10_000, 128),
}

try:
    from fastmetric._core.sampling import sample_chunks
    from fastmetric._learners.covariance import Covariance
    from fastmetric._learners.lfda import LFDA
    from fastmetric._learners.rca import RCA_Supervised
except ImportError as exc:  # an extension is not built
    Covariance = LFDA = RCA_Supervised = sample_chunks = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


class _FitSuite:
    params = [list(SIZES), DTYPES]
    param_names = ["size", "dtype"]
    number = 1
    repeat = (3, 10, 20.0)
    timeout = 120

    def make(self):
        raise NotImplementedError

    def setup(self, size, dtype):
        require(_IMPORT_ERROR, "closed-form learners")
        self.X, self.y = classification(*SIZES[size], dtype, clusters_per_class=2)

    def time_fit(self, size, dtype):
        self.make().fit(self.X, self.y)

    def peakmem_fit(self, size, dtype):
        self.make().fit(self.X, self.y)


class CovarianceFit(_FitSuite):
    """``Covariance().fit(X)``: shrunk correlation, eigen-decomposition."""

    def make(self):
        return Covariance()


class RCASupervisedFit(_FitSuite):
    """``RCA_Supervised(n_chunks=400, chunk_size=4).fit(X, y)``."""

    def make(self):
        return RCA_Supervised(n_chunks=400, chunk_size=4, random_state=0)


class LFDAFit(_FitSuite):
    """``LFDA().fit(X, y)``: per-class affinities (blocked), scatters, eigh."""

    def make(self):
        return LFDA()


class SampleChunks:
    """``sample_chunks(labels, n_chunks, 5)`` on 10 classes: disjoint chunks."""

    params = [["n=100000", "n=1000000"], N_JOBS]
    param_names = ["size", "n_jobs"]
    number = 1
    repeat = (3, 10, 20.0)
    timeout = 120

    def setup(self, size, n_jobs):
        require(_IMPORT_ERROR, "closed-form learners")
        n = int(size.split("=")[1])
        self.labels = np.random.RandomState(SEED).randint(0, 10, n)
        self.n_chunks = n // 10

    def time_sample(self, size, n_jobs):
        sample_chunks(self.labels, self.n_chunks, 5, random_state=0, n_jobs=n_jobs)

    def peakmem_sample(self, size, n_jobs):
        sample_chunks(self.labels, self.n_chunks, 5, random_state=0, n_jobs=n_jobs)

"""asv benchmarks of the closed-form learners: Covariance, RCA_Supervised, LFDA,
and the chunk sampler behind RCA_Supervised.

Each suite has a ``time_`` and a ``peakmem_`` benchmark of ``fit``,
parametrised over a problem size and the floating dtype (and ``n_jobs`` for
the sampler, the only multithreaded piece; the learners' linear algebra is
BLAS).  Data come from ``make_classification`` with a fixed seed (10
classes).  Sizes are kept so that each benchmark runs well under 5 s.

When the learners cannot be imported (not built yet), ``setup`` raises
``NotImplementedError`` and asv shows the benchmarks as skipped.  Every fit
runs with warnings silenced (``_shared.fit_quietly``).
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, FitBenchmark, OptionalImports, Suite, classification, named_sizes

# n points, d features.
SIZES = named_sizes(("n", "d"), (2_000, 64), (10_000, 128))

IMPORTS = OptionalImports("closed-form learners")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._learners.covariance import Covariance
    from fastmetric._learners.lfda import LFDA
    from fastmetric._learners.rca import RCA_Supervised
    from fastmetric._core.sampling import sample_chunks


class _FitSuite(FitBenchmark):
    params = (list(SIZES), DTYPES)
    param_names = ("size", "dtype")
    repeat = (3, 10, 20.0)

    def setup(self, size, dtype):
        IMPORTS.require()
        self.fit_args = classification(*SIZES[size], dtype, clusters_per_class=2)


class CovarianceFit(_FitSuite):
    """``Covariance().fit(X)``: shrunk correlation, eigen-decomposition."""

    def estimator(self, size, dtype):
        return Covariance()


class RCASupervisedFit(_FitSuite):
    """``RCA_Supervised(n_chunks=400, chunk_size=4).fit(X, y)``."""

    def estimator(self, size, dtype):
        return RCA_Supervised(n_chunks=400, chunk_size=4, random_state=0)


class LFDAFit(_FitSuite):
    """``LFDA().fit(X, y)``: per-class affinities (blocked), scatters, eigh."""

    def estimator(self, size, dtype):
        return LFDA()


class SampleChunks(Suite):
    """``sample_chunks(labels, n_chunks, 5)`` on 10 classes: disjoint chunks."""

    params = (["n=100000", "n=1000000"], N_JOBS)
    param_names = ("size", "n_jobs")

    def setup(self, size, n_jobs):
        IMPORTS.require()
        n = int(size.split("=")[1])
        self.labels = np.random.RandomState(SEED).randint(0, 10, n)
        self.n_chunks = n // 10

    def time_sample(self, size, n_jobs):
        sample_chunks(self.labels, self.n_chunks, 5, random_state=0, n_jobs=n_jobs)

    def peakmem_sample(self, size, n_jobs):
        sample_chunks(self.labels, self.n_chunks, 5, random_state=0, n_jobs=n_jobs)

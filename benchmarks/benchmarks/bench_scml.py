"""asv benchmarks of fastmetric's SCML.

* ``SCMLDigits``: ``SCML_Supervised(random_state=0).fit`` on standardised
  digits (the training part of the 70/30 stratified split, 1257 rows) with
  the default parameters (37,710 triplets, 1280 LDA bases, 10,000
  iterations), over ``n_jobs``: the speed reference of the SCML issue
  (metric-learn 0.7 takes about 4 s on it).
* ``SCMLSupervisedFit``: the same on synthetic data (``make_classification``,
  10 classes, standardised), over the dtype and ``n_jobs``, with fewer
  iterations; ``time_`` and ``peakmem_``.
* ``SCMLKernels``: the k-NN triplet generation, one run of 1000 stochastic
  updates and one hinge-loss evaluation over all triplets, on the prepared
  digits problem.

Each fit does a fixed amount of work (``max_iter`` iterations; SCML has no
early stopping).  When fastmetric's SCML cannot be imported (extension not
built), ``setup`` raises ``NotImplementedError`` and asv shows the
benchmarks as skipped.
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, FitBenchmark, OptionalImports, Suite, classification, digits_train

IMPORTS = OptionalImports("SCML")
with IMPORTS:  # the suites are skipped when the extension is not built
    from fastmetric._core.constraints import generate_knn_triplets
    from fastmetric._core.scml_basis import lda_basis
    from fastmetric._learners.scml import SCML_Supervised
    from fastmetric.kernels.scml import _sgd_run, _triplet_hinge


class SCMLDigits(FitBenchmark):
    """Default ``SCML_Supervised`` on standardised digits."""

    params = (N_JOBS,)
    param_names = ("n_jobs",)
    repeat = (3, 7, 20.0)

    def setup(self, n_jobs):
        IMPORTS.require()
        self.fit_args = digits_train()

    def estimator(self, n_jobs):
        return SCML_Supervised(random_state=0, n_jobs=n_jobs)


class SCMLSupervisedFit(FitBenchmark):
    """``SCML_Supervised(max_iter=3000)`` on 3000 x 32 synthetic points."""

    params = (DTYPES, N_JOBS)
    param_names = ("dtype", "n_jobs")
    repeat = (2, 5, 20.0)

    def setup(self, dtype, n_jobs):
        IMPORTS.require()
        self.fit_args = classification(3000, 32, dtype, standardize=True)

    def estimator(self, dtype, n_jobs):
        return SCML_Supervised(max_iter=3000, random_state=0, n_jobs=n_jobs)


class SCMLKernels(Suite):
    """The kernels on the digits problem, without the learner around them."""

    params = (DTYPES, N_JOBS)
    param_names = ("dtype", "n_jobs")
    repeat = (3, 10, 10.0)
    timeout = None  # asv.conf.json's default_benchmark_timeout (60 s)

    def setup(self, dtype, n_jobs):
        IMPORTS.require()
        self.X, self.y = digits_train(dtype)
        self.triplets = generate_knn_triplets(self.X, self.y, 3, 10)
        basis = lda_basis(self.X, self.y, np.bincount(self.y), 1280,
                          np.random.RandomState(SEED))
        self.Z = np.ascontiguousarray(self.X @ basis.T.astype(self.X.dtype))
        self.batches = np.random.RandomState(SEED).randint(
            0, self.triplets.shape[0], size=(1000, 10)).astype(np.intp)
        self.E = np.ascontiguousarray(self.X[:, :32])

    def time_knn_triplets(self, dtype, n_jobs):
        generate_knn_triplets(self.X, self.y, 3, 10, n_jobs=n_jobs)

    def time_sgd_1000_iterations(self, dtype, n_jobs):
        K = self.Z.shape[1]
        _sgd_run(self.Z, self.triplets, self.batches, np.zeros(K), np.zeros(K), np.zeros(K),
                 0, 1e-5, 5e-3, 1e-3)

    def time_hinge_all_triplets(self, dtype, n_jobs):
        _triplet_hinge(self.E, self.triplets, n_jobs)

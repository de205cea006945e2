"""asv benchmarks of LSML (quadruplets), its kernels and the tuple mixins.

Suites:

* ``LSMLSupervisedFit``: ``LSML_Supervised.fit(X, y)`` (quadruplet sampling,
  prior, solver), ``time_`` and ``peakmem_``;
* ``LSMLFit``: ``LSML(preprocessor=X).fit(index_quadruplets)`` with the
  quadruplets drawn once in ``setup``;
* ``QuadraticForms``: the kernel :func:`fastmetric._core.objectives.lsml.pair_quadratic_forms`;
* ``QuadrupletsPredict``: ``decision_function`` of a fitted LSML on index
  quadruplets (the :class:`~fastmetric._core.tuples.QuadrupletsClassifierMixin`).

Every fit does the same work on every commit: ``tol=0`` and a fixed
``max_iter`` make the solver run ``MAX_ITER`` iterations (unless it reaches
the optimum at machine precision first), so a change of timing is a change
of the cost per iteration.  Data come from ``make_classification`` with a
fixed seed (10 classes).  Each benchmark takes well under 5 s.

When the learners or their kernels cannot be imported (not built yet),
``setup`` raises ``NotImplementedError`` and asv shows them as skipped.
"""
import numpy as np

from ._shared import (
    DTYPES,
    N_JOBS,
    SEED,
    FitBenchmark,
    OptionalImports,
    classification,
    fit_quietly,
    named_sizes,
)

MAX_ITER = 30

# n points, d features, number of quadruplets.
SIZES = named_sizes(("n", "d", "Q"), (2_000, 64, 2_000), (10_000, 32, 50_000))

IMPORTS = OptionalImports("LSML")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._core.threads import single_threaded_blas
    from fastmetric._learners.lsml import LSML, LSML_Supervised
    from fastmetric._core.objectives.lsml import pair_quadratic_forms
    from fastmetric._core.sampling import sample_pairs


def _quadruplets(labels, n_q):
    pairs, _ = sample_pairs(labels, n_q, n_q, random_state=SEED)
    return np.ascontiguousarray(np.hstack((pairs[:n_q], pairs[n_q:])))


class LSMLSupervisedFit(FitBenchmark):
    """``LSML_Supervised(n_constraints=Q, tol=0, max_iter=30).fit(X, y)``."""

    params = (list(SIZES), DTYPES, N_JOBS)
    param_names = ("size", "dtype", "n_jobs")
    repeat = (2, 5, 20.0)

    def setup(self, size, dtype, n_jobs):
        IMPORTS.require()
        self.fit_args = classification(*SIZES[size][:2], dtype)

    def estimator(self, size, dtype, n_jobs):
        return LSML_Supervised(n_constraints=SIZES[size][2], max_iter=MAX_ITER, tol=0.0,
                               random_state=0, n_jobs=n_jobs)


class LSMLFit(FitBenchmark):
    """``LSML(preprocessor=X, tol=0, max_iter=30).fit(index_quadruplets)``."""

    params = (list(SIZES), ["identity", "covariance"], N_JOBS)
    param_names = ("size", "prior", "n_jobs")
    repeat = (2, 5, 20.0)

    def setup(self, size, prior, n_jobs):
        IMPORTS.require()
        self.X, labels = classification(*SIZES[size][:2], "float64")
        self.fit_args = (_quadruplets(labels, SIZES[size][2]),)

    def estimator(self, size, prior, n_jobs):
        return LSML(prior=prior, preprocessor=self.X, max_iter=MAX_ITER, tol=0.0, n_jobs=n_jobs)


class QuadraticForms:
    """``(x_a - x_b)^T S (x_a - x_b)`` for 2 Q pairs, S symmetric (one LSML step)."""

    params = (list(SIZES), DTYPES, N_JOBS)
    param_names = ("size", "dtype", "n_jobs")
    repeat = (3, 10, 10.0)

    def setup(self, size, dtype, n_jobs):
        IMPORTS.require()
        self.X, labels = classification(*SIZES[size][:2], dtype)
        quads = _quadruplets(labels, SIZES[size][2])
        self.a = np.ascontiguousarray(np.r_[quads[:, 0], quads[:, 2]])
        self.b = np.ascontiguousarray(np.r_[quads[:, 1], quads[:, 3]])
        d = self.X.shape[1]
        S = np.random.RandomState(SEED).randn(d, d)
        self.S = S + S.T
        self.out = np.empty(self.a.shape[0])
        self.n_jobs = n_jobs

    def time_pair_quadratic_forms(self, size, dtype, n_jobs):
        with single_threaded_blas():
            pair_quadratic_forms(self.X, self.S, self.a, self.b, self.out, self.n_jobs)


class QuadrupletsPredict:
    """``LSML.decision_function`` on 200,000 index quadruplets."""

    params = (N_JOBS,)
    param_names = ("n_jobs",)
    repeat = (3, 10, 10.0)

    def setup(self, n_jobs):
        IMPORTS.require()
        X, labels = classification(*SIZES["n=10000,d=32,Q=50000"][:2], "float64")
        fit_quads = _quadruplets(labels, 2_000)
        est = LSML(preprocessor=X, max_iter=5, n_jobs=n_jobs)
        fit_quietly(est, fit_quads)
        self.est = est
        self.quads = _quadruplets(labels, 200_000)

    def time_decision_function(self, n_jobs):
        self.est.decision_function(self.quads)

    def peakmem_decision_function(self, n_jobs):
        self.est.decision_function(self.quads)

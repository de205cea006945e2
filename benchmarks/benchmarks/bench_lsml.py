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

from ._shared import DTYPES, N_JOBS, SEED, classification, fit_quietly, require

MAX_ITER = 30

# n points, d features, number of quadruplets.
SIZES = {
    "n=2000,d=64,Q=2000": (2_000, 64, 2_000),
    "n=10000,d=32,Q=50000": (10_000, 32, 50_000),
}

try:
    from fastmetric._learners.lsml import LSML, LSML_Supervised
    from fastmetric._core.objectives.lsml import pair_quadratic_forms
    from fastmetric._core.sampling import sample_pairs
    from fastmetric._core.threads import single_threaded_blas
except ImportError as exc:  # an extension is not built
    LSML = LSML_Supervised = pair_quadratic_forms = sample_pairs = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


def _quadruplets(labels, n_q):
    pairs, _ = sample_pairs(labels, n_q, n_q, random_state=SEED)
    return np.ascontiguousarray(np.hstack((pairs[:n_q], pairs[n_q:])))


class LSMLSupervisedFit:
    """``LSML_Supervised(n_constraints=Q, tol=0, max_iter=30).fit(X, y)``."""

    params = [list(SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 20.0)
    timeout = 120

    def setup(self, size, dtype, n_jobs):
        require(_IMPORT_ERROR, "LSML")
        self.X, self.y = classification(*SIZES[size][:2], dtype)
        self.n_q = SIZES[size][2]
        self.n_jobs = n_jobs

    def _estimator(self):
        return LSML_Supervised(n_constraints=self.n_q, max_iter=MAX_ITER, tol=0.0,
                               random_state=0, n_jobs=self.n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.X, self.y)

    def peakmem_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(), self.X, self.y)


class LSMLFit:
    """``LSML(preprocessor=X, tol=0, max_iter=30).fit(index_quadruplets)``."""

    params = [list(SIZES), ["identity", "covariance"], N_JOBS]
    param_names = ["size", "prior", "n_jobs"]
    number = 1
    repeat = (2, 5, 20.0)
    timeout = 120

    def setup(self, size, prior, n_jobs):
        require(_IMPORT_ERROR, "LSML")
        self.X, labels = classification(*SIZES[size][:2], "float64")
        self.quads = _quadruplets(labels, SIZES[size][2])
        self.prior = prior
        self.n_jobs = n_jobs

    def _estimator(self):
        return LSML(prior=self.prior, preprocessor=self.X, max_iter=MAX_ITER, tol=0.0,
                    n_jobs=self.n_jobs)

    def time_fit(self, size, prior, n_jobs):
        fit_quietly(self._estimator(), self.quads)

    def peakmem_fit(self, size, prior, n_jobs):
        fit_quietly(self._estimator(), self.quads)


class QuadraticForms:
    """``(x_a - x_b)^T S (x_a - x_b)`` for 2 Q pairs, S symmetric (one LSML step)."""

    params = [list(SIZES), DTYPES, N_JOBS]
    param_names = ["size", "dtype", "n_jobs"]
    repeat = (3, 10, 10.0)

    def setup(self, size, dtype, n_jobs):
        require(_IMPORT_ERROR, "LSML")
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

    params = [N_JOBS]
    param_names = ["n_jobs"]
    repeat = (3, 10, 10.0)

    def setup(self, n_jobs):
        require(_IMPORT_ERROR, "LSML")
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

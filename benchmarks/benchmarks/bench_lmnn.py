"""asv benchmarks of fastmetric's LMNN.

* ``LMNNDigits``: ``LMNN(n_neighbors=3).fit`` on standardised digits (the
  training part of the 70/30 split of ``benchmarks/compare_lmnn.py``), with
  the default parameters, over ``n_jobs`` -- the quality/speed reference
  problem of issue 4.  The fit stops by its tolerance, so a change of
  timing may also be a change of the number of iterations:
  ``track_n_evaluations`` and ``track_n_searches`` record those.
* ``LMNNFit``: a fixed amount of work on synthetic data (``make_classification``
  with 10 classes, standardised): ``max_iter=MAX_ITER`` with
  ``convergence_tol=0`` and ``min_iter=MAX_ITER`` makes L-BFGS run exactly
  ``MAX_ITER`` iterations (unless its line search fails), parametrised over
  the size, the dtype and ``n_jobs``; ``time_`` and ``peakmem_``.
* ``LMNNKernels``: one objective + gradient evaluation and one impostor
  search of the prepared problem at the identity map, without the solver.

The full-size comparison against metric-learn is
``benchmarks/compare_lmnn.py``.  When fastmetric's LMNN cannot be imported
(extension not built), ``setup`` raises ``NotImplementedError`` and asv
shows the benchmarks as skipped.
"""
import numpy as np

from ._shared import (
    FitBenchmark,
    OptionalImports,
    Suite,
    classification,
    digits_train,
    fit_quietly,
    named_sizes,
)

MAX_ITER = 20
SIZES = named_sizes(("n", "d"), (2_000, 32), (10_000, 64))

IMPORTS = OptionalImports("LMNN")
with IMPORTS:  # the suites are skipped when the extension is not built
    from fastmetric._core.objectives.lmnn import LMNNProblem, find_target_neighbors, sort_by_class
    from fastmetric._learners.lmnn import LMNN


class LMNNDigits(Suite):
    """Default ``LMNN(n_neighbors=3)`` on standardised digits."""

    params = ([1, 2],)
    param_names = ("n_jobs",)

    def setup(self, n_jobs):
        IMPORTS.require()
        self.X, self.y = digits_train()

    def _fit(self, n_jobs):
        return fit_quietly(LMNN(n_neighbors=3, n_jobs=n_jobs), self.X, self.y)

    def time_fit(self, n_jobs):
        self._fit(n_jobs)

    def track_n_evaluations(self, n_jobs):
        return self._fit(n_jobs).n_evaluations_

    def track_n_searches(self, n_jobs):
        return self._fit(n_jobs).n_searches_


class LMNNFit(FitBenchmark):
    """``LMNN().fit`` for exactly MAX_ITER L-BFGS iterations."""

    params = (list(SIZES), ["float32", "float64"], [1, 2])
    param_names = ("size", "dtype", "n_jobs")
    timeout = 300

    def setup(self, size, dtype, n_jobs):
        IMPORTS.require()
        self.fit_args = classification(*SIZES[size], dtype, standardize=True)

    def estimator(self, size, dtype, n_jobs):
        return LMNN(max_iter=MAX_ITER, min_iter=MAX_ITER, convergence_tol=0.0, n_jobs=n_jobs)


class LMNNKernels(Suite):
    """One evaluation (loss + gradient) and one impostor search at L = I."""

    params = (list(SIZES), [1, 2])
    param_names = ("size", "n_threads")

    def setup(self, size, n_threads):
        IMPORTS.require()
        X, y = classification(*SIZES[size], "float64", standardize=True)
        order, class_ptr = sort_by_class(y, 10)
        Xs = np.ascontiguousarray(X[order])
        targets, n_t = find_target_neighbors(Xs, y[order], 3)
        self.problem = LMNNProblem(Xs, class_ptr, targets.astype(np.intc),
                                   n_t.astype(np.intc), 0.5, n_threads, slack=0.0)
        self.L = np.eye(X.shape[1])
        self.problem.loss_grad(self.L)  # builds the candidate set
        self.Z = self.problem.embed(self.L)

    def time_loss_grad(self, size, n_threads):
        self.problem.loss_grad(self.L)

    def time_search(self, size, n_threads):
        self.problem.search(self.L, self.Z)

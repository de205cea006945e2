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

from ._shared import classification, digits_train, fit_quietly, require

MAX_ITER = 20
SIZES = {"n=2000,d=32": (2_000, 32), "n=10000,d=64": (10_000, 64)}

try:
    from fastmetric._core.objectives.lmnn import LMNNProblem, find_target_neighbors, sort_by_class
    from fastmetric._learners.lmnn import LMNN
except ImportError as exc:  # the extension is not built
    LMNN = LMNNProblem = sort_by_class = find_target_neighbors = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = None


class LMNNDigits:
    """Default ``LMNN(n_neighbors=3)`` on standardised digits."""

    params = [[1, 2]]
    param_names = ["n_jobs"]
    number = 1
    repeat = (3, 10, 20.0)
    timeout = 120

    def setup(self, n_jobs):
        require(_IMPORT_ERROR, "LMNN")
        self.X, self.y = digits_train()

    def time_fit(self, n_jobs):
        fit_quietly(LMNN(n_neighbors=3, n_jobs=n_jobs), self.X, self.y)

    def track_n_evaluations(self, n_jobs):
        return fit_quietly(LMNN(n_neighbors=3, n_jobs=n_jobs), self.X, self.y).n_evaluations_

    def track_n_searches(self, n_jobs):
        return fit_quietly(LMNN(n_neighbors=3, n_jobs=n_jobs), self.X, self.y).n_searches_


class LMNNFit:
    """``LMNN().fit`` for exactly MAX_ITER L-BFGS iterations."""

    params = [list(SIZES), ["float32", "float64"], [1, 2]]
    param_names = ["size", "dtype", "n_jobs"]
    number = 1
    repeat = (2, 5, 30.0)
    timeout = 300

    def setup(self, size, dtype, n_jobs):
        require(_IMPORT_ERROR, "LMNN")
        self.X, self.y = classification(*SIZES[size], dtype, standardize=True)

    def _estimator(self, n_jobs):
        return LMNN(max_iter=MAX_ITER, min_iter=MAX_ITER, convergence_tol=0.0, n_jobs=n_jobs)

    def time_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(n_jobs), self.X, self.y)

    def peakmem_fit(self, size, dtype, n_jobs):
        fit_quietly(self._estimator(n_jobs), self.X, self.y)


class LMNNKernels:
    """One evaluation (loss + gradient) and one impostor search at L = I."""

    params = [list(SIZES), [1, 2]]
    param_names = ["size", "n_threads"]
    number = 1
    repeat = (3, 10, 20.0)
    timeout = 120

    def setup(self, size, n_threads):
        require(_IMPORT_ERROR, "LMNN")
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

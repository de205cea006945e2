"""asv benchmarks of fastmetric's NCA and MLKR (L-BFGS fits) and of their kernel.

Three suites, each with ``time_`` and ``peakmem_`` benchmarks:

* ``NCAFit``: ``NCA().fit(X, y)`` on standardised digits (1,797 x 64) and on
  synthetic data (``make_classification``, 4,000 x 32, 10 classes);
* ``MLKRFit``: ``MLKR().fit(X, y)`` on the same data, the class index used
  as a real target;
* ``SoftmaxNeighborsEval``: one evaluation of the objective and gradient
  (``SoftmaxNeighborsProblem.loss_grad``) on the synthetic data, at a map
  where most pairs are outside the softmax window (the regime of most
  L-BFGS iterations) and at one where many are inside (the first ones).

Each is parametrised over the floating dtype and ``n_jobs``.  The fits do
the same amount of work on every commit: ``tol=0`` and a fixed ``max_iter``
make L-BFGS run exactly ``MAX_ITER`` iterations (unless its line search
fails), so a change of timing is a change of the cost per iteration.  The
full comparison with scikit-learn and metric-learn is
``benchmarks/compare_nca_mlkr.py``.

When the learners or their kernel cannot be imported (not built yet),
``setup`` raises ``NotImplementedError`` and asv shows the benchmarks as
skipped.
"""
import numpy as np

from ._shared import DTYPES, N_JOBS, FitBenchmark, OptionalImports, Suite, classification

MAX_ITER = 10
DATASETS = ["digits", "synthetic 4000x32"]

IMPORTS = OptionalImports("NCA/MLKR")
with IMPORTS:  # the suites are skipped when an extension is not built
    from fastmetric._learners.mlkr import MLKR
    from fastmetric._learners.nca import NCA
    from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem


def _data(name, dtype):
    """Standardised points and class labels: all of digits, or synthetic."""
    if name != "digits":
        return classification(4000, 32, dtype, standardize=True)
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return np.ascontiguousarray(StandardScaler().fit_transform(X), dtype=dtype), y


class _SoftmaxFitSuite(FitBenchmark):
    """Both fits: digits or the synthetic data, over dtype and n_jobs."""

    params = (DATASETS, DTYPES, N_JOBS)
    param_names = ("data", "dtype", "n_jobs")
    repeat = (3, 10, 30.0)
    timeout = 180

    def setup(self, data, dtype, n_jobs):
        IMPORTS.require()
        self.fit_args = _data(data, dtype)


class NCAFit(_SoftmaxFitSuite):
    """``NCA(max_iter=MAX_ITER, tol=0).fit(X, y)``: validation, init, L-BFGS."""

    def estimator(self, data, dtype, n_jobs):
        return NCA(max_iter=MAX_ITER, tol=0.0, random_state=0, n_jobs=n_jobs)


class MLKRFit(_SoftmaxFitSuite):
    """``MLKR(max_iter=MAX_ITER, tol=0).fit(X, y)`` with the class index as target."""

    def setup(self, data, dtype, n_jobs):
        super().setup(data, dtype, n_jobs)
        X, y = self.fit_args
        self.fit_args = X, y.astype(np.float64)

    def estimator(self, data, dtype, n_jobs):
        return MLKR(max_iter=MAX_ITER, tol=0.0, random_state=0, n_jobs=n_jobs)


class SoftmaxNeighborsEval(Suite):
    """One objective + gradient evaluation of NCA's kernel (4,000 x 32).

    ``window='narrow'``: ``L = 2 I`` (a few pairs per row inside the
    softmax window; the second and later evaluations find them by tiles);
    ``window='wide'``: ``L = 0.3 I`` (a large share of the pairs inside).
    """

    params = (["narrow", "wide"], DTYPES, N_JOBS)
    param_names = ("window", "dtype", "n_jobs")

    def setup(self, window, dtype, n_jobs):
        IMPORTS.require()
        X, y = _data("synthetic 4000x32", dtype)
        self.problem = SoftmaxNeighborsProblem(X, labels=y)
        self.L = np.eye(X.shape[1]) * (2.0 if window == "narrow" else 0.3)
        self.n_jobs = n_jobs
        self.problem.loss_grad(self.L, n_jobs)  # hints for the tile strategy

    def time_loss_grad(self, window, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.n_jobs)

    def peakmem_loss_grad(self, window, dtype, n_jobs):
        self.problem.loss_grad(self.L, self.n_jobs)

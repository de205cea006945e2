"""asv benchmarks of the exact neighbour search (fastmetric.neighbors).

Parametrised over the problem size (queries x database rows, d), the
floating dtype and ``n_jobs``.  ``time_kneighbors`` times the query against
a database indexed in ``setup`` (mapped through L and packed once);
``time_fit_kneighbors`` includes the mapping and packing; the radius and
leave-one-out searches and the retrieval evaluation have one benchmark each.
Inputs come from a fixed seed.  The full-size comparison against
scikit-learn, faiss-cpu and the GEMM floor is ``benchmarks/compare_search.py``.

A build without the search kernel makes ``setup`` raise
``NotImplementedError``, which asv reports as a skipped benchmark.
"""
from typing import ClassVar

import numpy as np

from ._shared import DTYPES, N_JOBS, SEED, require

try:
    from fastmetric.neighbors import MahalanobisNeighbors
    _IMPORT_ERROR = None
except ImportError as exc:  # not built
    MahalanobisNeighbors = None
    _IMPORT_ERROR = exc

SIZES = {
    "1000x20000,d=32": (1_000, 20_000, 32),
    "2000x100000,d=64": (2_000, 100_000, 64),
}


def _problem(size, dtype):
    n_q, n, d = SIZES[size]
    rng = np.random.default_rng(SEED)
    X_db = rng.standard_normal((n, d)).astype(dtype)
    X_q = rng.standard_normal((n_q, d)).astype(dtype)
    L = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(dtype)
    return X_q, X_db, L


class KNeighbors:
    """The 10 nearest database rows of each query under a d x d map."""

    params: ClassVar = [list(SIZES), DTYPES, N_JOBS]
    param_names: ClassVar = ["size", "dtype", "n_jobs"]
    timeout = 180

    def setup(self, size, dtype, n_jobs):
        require(_IMPORT_ERROR, "neighbour search")
        self.X_q, self.X_db, self.L = _problem(size, dtype)
        self.nn = MahalanobisNeighbors(n_neighbors=10, metric=self.L, n_jobs=n_jobs).fit(self.X_db)

    def time_kneighbors(self, size, dtype, n_jobs):
        self.nn.kneighbors(self.X_q)

    def time_fit_kneighbors(self, size, dtype, n_jobs):
        MahalanobisNeighbors(n_neighbors=10, metric=self.L, n_jobs=n_jobs).fit(
            self.X_db).kneighbors(self.X_q)

    def peakmem_kneighbors(self, size, dtype, n_jobs):
        self.nn.kneighbors(self.X_q)


class RadiusAndLeaveOneOut:
    """Radius search (about 20 hits per query) and leave-one-out k nearest."""

    params: ClassVar = [DTYPES, N_JOBS]
    param_names: ClassVar = ["dtype", "n_jobs"]
    timeout = 180

    def setup(self, dtype, n_jobs):
        require(_IMPORT_ERROR, "neighbour search")
        self.X_q, self.X_db, self.L = _problem("1000x20000,d=32", dtype)
        self.nn = MahalanobisNeighbors(n_neighbors=10, metric=self.L, n_jobs=n_jobs).fit(self.X_db)
        # The radius of the 20th neighbour, on average.
        dist, _ = self.nn.kneighbors(self.X_q, n_neighbors=20)
        self.radius = float(np.median(dist[:, -1]))

    def time_radius_neighbors(self, dtype, n_jobs):
        self.nn.radius_neighbors(self.X_q, radius=self.radius)

    def time_kneighbors_leave_one_out(self, dtype, n_jobs):
        self.nn.kneighbors(None)


class Evaluate:
    """fastmetric.metrics.evaluate on digits (leave-one-out, no k-means)."""

    timeout = 120

    def setup(self):
        require(_IMPORT_ERROR, "neighbour search")
        from sklearn.datasets import load_digits

        self.X, self.y = load_digits(return_X_y=True)

    def time_evaluate(self):
        from fastmetric.metrics import evaluate

        evaluate(None, self.X, self.y, clustering=False)

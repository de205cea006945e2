"""A real 2-worker, multi-process dask cluster for the tests that need one."""
import contextlib
import warnings

import numpy as np
import pytest

# The marks of the Dask test modules: a fit of a few iterations may stop
# before converging, and a cluster that does not start must not hang the run.
DASK_MARKS = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.timeout(300),
]


@contextlib.contextmanager
def two_worker_client():
    """A ``distributed.Client`` on a LocalCluster of 2 single-threaded worker
    processes (closed on exit); the caller has checked that distributed is
    installed."""
    import distributed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()



def labelled_rows(n, d, n_classes, seed=0, dtype=np.float64):
    """Small labelled data for the Dask tests: the class shifts the first
    (narrow) feature, the others are wide noise."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, n_classes, n)
    X = rng.randn(n, d) * np.r_[0.5, np.full(d - 1, 2.0)]
    X[:, 0] += y
    return X.astype(dtype), y

"""A real 2-worker, multi-process dask cluster for the tests that need one."""
import contextlib
import warnings

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


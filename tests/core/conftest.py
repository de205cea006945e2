"""Fixtures of the tests in tests/core."""
import pytest

from .._dask_cluster import two_worker_client


@pytest.fixture(scope="module")
def client():
    """A 2-worker LocalCluster's client, one per test module that asks for it
    (the Dask tests; the caller has checked that distributed is installed)."""
    with two_worker_client() as c:
        yield c

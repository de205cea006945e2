"""Fitting on dask arrays (optional extra ``fastmetric[dask]``): the same
model as in memory, on a real multi-process LocalCluster; lazy transform and
prediction; a worker lost during a fit; clear errors."""
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from fastmetric import LDML, LMNN, ClusterLDML, LDML_Supervised  # noqa: E402
from fastmetric._core.sampling import sample_pairs  # noqa: E402

from .._dask_cluster import DASK_MARKS, labelled_rows  # noqa: E402  (the client fixture: conftest.py)

pytestmark = DASK_MARKS


def data(n=3000, d=6, seed=0, dtype=np.float64):
    return labelled_rows(n, d, 4, seed, dtype)


def tol(dtype):
    return dict(rtol=1e-7, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-4)


def test_supervised_same_model_as_in_memory(client, dtype):
    X, y = data(dtype=dtype)
    Xd = da.from_array(X, chunks=(700, 3))  # uneven row blocks, split columns
    params = dict(n_pairs=4000, max_iter=15, random_state=0)
    dist = LDML_Supervised(**params).fit(Xd, y)
    mem = LDML_Supervised(**params).fit(X, y)
    assert dist.n_features_in_ == 6
    assert_allclose(dist.components_, mem.components_, **tol(dtype))
    assert_allclose(dist.bias_, mem.bias_, **tol(dtype))
    # labels as a dask array too
    again = LDML_Supervised(**params).fit(Xd, da.from_array(y, chunks=1000))
    assert_array_equal(again.components_, dist.components_)


@pytest.mark.parametrize("balanced", [False, True])
def test_pairs_are_drawn_on_the_workers(client, balanced):
    """LDML_Supervised's pairs come from slices of the counter-based streams
    drawn by tasks on the workers, and equal the in-memory sample."""
    from fastmetric._core.dask_support import sample_label_pairs

    labels = np.random.RandomState(2).randint(0, 5, 5000)
    with distributed.get_task_stream(client) as stream:
        a, b, t = sample_label_pairs(labels, 3001, 2999, balanced, 17)
    ran = {task["key"] if isinstance(task["key"], str) else task["key"][0]
           for task in stream.data}
    assert sum("_draw_slice" in str(key) for key in ran) == 2  # one per worker
    ref, y = sample_pairs(labels, 3001, 2999, balanced=balanced, random_state=17)
    assert_array_equal(np.column_stack((a, b)), ref)
    assert_array_equal(t, y)
    # around one label (ClusterLDML's per-cluster pairs)
    a, b, t = sample_label_pairs(labels, 500, 400, balanced, 5, anchor_label=2)
    ref, y = sample_pairs(labels, 500, 400, balanced=balanced, random_state=5, anchor_label=2)
    assert_array_equal(np.column_stack((a, b)), ref)


def test_supervised_without_client_matches(dtype, monkeypatch):
    """With no distributed client, Dask's synchronous scheduler runs the blocks."""
    import fastmetric._core.dask_support as fm_dask

    monkeypatch.setattr(fm_dask, "_distributed_client", lambda: None)
    X, y = data(n=800, dtype=dtype)
    params = dict(n_pairs=2000, max_iter=10, random_state=1, n_jobs=1)
    dist = LDML_Supervised(**params).fit(da.from_array(X, chunks=300), y)
    mem = LDML_Supervised(**params).fit(X, y)
    assert_allclose(dist.components_, mem.components_, **tol(dtype))


@pytest.mark.parametrize("min_part_rows", [1, 500, 10**9])
def test_model_does_not_depend_on_the_cluster(client, monkeypatch, min_part_rows):
    """The pairs are split by X's chunks, never by the workers: a 2-worker
    cluster and no cluster at all (the synchronous scheduler) give the same
    model bitwise, for one part, a few and one per block."""
    import fastmetric._core.dask_support as fm_dask

    monkeypatch.setattr(fm_dask, "MIN_PART_ROWS", min_part_rows)
    X, y = data(n=1500, seed=7)
    Xd = da.from_array(X, chunks=400)
    params = dict(n_pairs=3000, max_iter=12, random_state=2)
    on_cluster = LDML_Supervised(**params).fit(Xd, y)
    clustered = ClusterLDML(n_clusters=3, max_rounds=2, ldml_max_iter=6,
                            n_pairs_per_cluster=200, random_state=0).fit(Xd)
    monkeypatch.setattr(fm_dask, "_distributed_client", lambda: None)
    alone = LDML_Supervised(**params).fit(Xd, y)
    assert_array_equal(on_cluster.components_, alone.components_)
    assert on_cluster.bias_ == alone.bias_
    clustered_alone = ClusterLDML(n_clusters=3, max_rounds=2, ldml_max_iter=6,
                                  n_pairs_per_cluster=200, random_state=0).fit(Xd)
    assert_array_equal(clustered.components_, clustered_alone.components_)


def test_parts_follow_the_chunks_only():
    from fastmetric._core.dask_support import MIN_PART_ROWS, row_parts

    rows = np.array([0, 10, 99, 100, 250, 299])
    n_parts, part = row_parts((100, 100, 100), rows)
    assert n_parts == 1 and not part.any()
    big = MIN_PART_ROWS
    n_parts, part = row_parts((big, 5, big // 2, big // 2, 3), np.array([0, big, big + 5,
                                                                           2 * big + 7]))
    assert n_parts == 3
    assert_array_equal(part, [0, 1, 1, 2])


def test_pairs_into_a_dask_preprocessor(client):
    X, y = data()
    idx, t = sample_pairs(y, 500, 500, random_state=0)
    Xd = da.from_array(X, chunks=1000)
    dist = LDML(preprocessor=Xd, max_iter=15, random_state=0).fit(idx, 2 * t - 1)
    mem = LDML(preprocessor=X, max_iter=15, random_state=0).fit(idx, 2 * t - 1)
    assert_allclose(dist.components_, mem.components_, rtol=1e-7, atol=1e-9)
    assert_allclose(dist.threshold_, mem.threshold_, rtol=1e-7)
    # prediction on index pairs into the dask preprocessor: lazy
    pred = dist.predict(idx)
    assert isinstance(pred, da.Array)
    assert_array_equal(pred.compute(), mem.predict(idx))


def test_transform_and_prediction_stay_lazy(client):
    X, y = data()
    Xd = da.from_array(X, chunks=800)
    est = LDML_Supervised(n_pairs=3000, max_iter=10, random_state=0).fit(X, y)
    Z = est.transform(Xd)
    assert isinstance(Z, da.Array) and Z.chunks[0] == Xd.chunks[0]
    assert_allclose(Z.compute(), est.transform(X), rtol=1e-12)

    idx, t = sample_pairs(y, 200, 200, random_state=1)
    pairs = X[idx]
    pairs_d = da.from_array(pairs, chunks=(150, 2, 6))
    pl = LDML(max_iter=10, random_state=0).fit(pairs, 2 * t - 1)
    for method in ("pair_distance", "decision_function", "predict", "predict_proba"):
        lazy = getattr(pl, method)(pairs_d)
        assert isinstance(lazy, da.Array), method
        assert_allclose(lazy.compute(), getattr(pl, method)(pairs), rtol=1e-10, atol=1e-12)

    cl = ClusterLDML(n_clusters=4, max_rounds=2, ldml_max_iter=5, n_pairs_per_cluster=200,
                     random_state=0, n_jobs=1).fit(X)
    lazy = cl.predict(Xd)
    assert isinstance(lazy, da.Array)
    assert_array_equal(lazy.compute(), cl.predict(X))


def test_cluster_ldml_same_model_as_in_memory(client):
    """ClusterLDML on a dask array: distributed Lloyd k-means and per-cluster
    LDML fits on the workers; the same model as in memory with kmeans='lloyd'
    (the k-means that 'auto' uses on dask arrays)."""
    X, y = data(n=2000, seed=4)
    params = dict(n_clusters=4, max_rounds=2, ldml_max_iter=8, n_pairs_per_cluster=300,
                  random_state=0)
    mem = ClusterLDML(kmeans="lloyd", **params).fit(X)
    Xd = da.from_array(X, chunks=600)
    dist = ClusterLDML(**params).fit(Xd)
    assert dist.n_rounds_ == mem.n_rounds_
    # Not a completion-order effect: fits on the cluster are bitwise the same
    # run to run and the same as without a cluster (test above).  The
    # in-memory fit sums in another order (the covariance by BLAS, the pairs
    # in one problem), so the two L-BFGS paths differ by rounding, amplified
    # over the rounds: judge entries against the scale of the whole map (an
    # entry near 0 differed by 2.3e-8, where an absolute 1e-8 was too tight).
    scale = np.abs(mem.components_).max()
    assert_allclose(dist.components_, mem.components_, rtol=1e-6, atol=1e-6 * scale)
    assert_allclose(dist.cluster_centers_, mem.cluster_centers_, rtol=1e-6,
                    atol=1e-6 * np.abs(mem.cluster_centers_).max())
    assert_array_equal(dist.labels_, mem.labels_)
    assert_array_equal(dist.predict(Xd).compute(), mem.predict(X))
    normalized = ClusterLDML(normalize=True, kmeans="lloyd", **params)
    expected = ClusterLDML(normalize=True, kmeans="lloyd", **params).fit(X).components_
    assert_allclose(normalized.fit(Xd).components_, expected, rtol=1e-6,
                    atol=1e-6 * np.abs(expected).max())


def test_cluster_ldml_semi_supervised_same_model_as_in_memory(client):
    """The semi-supervised fit (seeded k-means from the labelled classes'
    means, labelled pairs) on a dask array matches the in-memory 'lloyd' fit."""
    X, y = data(n=2000, seed=4)
    partial = np.where(np.arange(y.size) % 10 == 0, y, -1)
    params = dict(n_clusters=4, max_rounds=2, ldml_max_iter=8, n_pairs_per_cluster=300,
                  random_state=0)
    mem = ClusterLDML(kmeans="lloyd", **params).fit(X, partial)
    dist = ClusterLDML(**params).fit(da.from_array(X, chunks=600), partial)
    assert dist.n_rounds_ == mem.n_rounds_
    scale = np.abs(mem.components_).max()
    assert_allclose(dist.components_, mem.components_, rtol=1e-6, atol=1e-6 * scale)
    assert_array_equal(dist.labels_, mem.labels_)
    assert_array_equal(dist.cluster_classes_, mem.cluster_classes_)


def test_a_lost_worker_does_not_corrupt_the_fit(client):
    """A worker killed in the middle of the fit: Dask recomputes its blocks from
    the graph, and the model is the same as without the failure."""
    X, y = data(n=4000, seed=3)
    Xd = da.from_array(X, chunks=500)
    params = dict(n_pairs=6000, max_iter=12, random_state=0)
    reference = LDML_Supervised(**params).fit(X, y)
    killed = []

    def kill_one_worker(estimator, iteration, loss):
        if iteration == 3 and not killed:
            worker = sorted(client.scheduler_info()["workers"])[0]
            killed.append(worker)
            try:
                client.run(os._exit, 1, workers=[worker])
            except Exception:  # the worker dies before it can answer
                pass
        return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LDML_Supervised(callback=kill_one_worker, **params).fit(Xd, y)
    assert killed
    assert_allclose(est.components_, reference.components_, rtol=1e-7, atol=1e-9)
    client.wait_for_workers(2, timeout=60)


def test_errors(client):
    X, y = data(n=500)
    bad = X.copy()
    bad[123, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        LDML_Supervised(max_iter=2).fit(da.from_array(bad, chunks=100), y)
    with pytest.raises(ValueError, match="one label per row"):
        LDML_Supervised(max_iter=2).fit(da.from_array(X, chunks=100), y[:-1])
    with pytest.raises(ValueError, match="1 class"):
        LDML_Supervised(max_iter=2).fit(da.from_array(X, chunks=100), np.zeros(500))
    # The minibatch solvers fit dask arrays (tests/core/test_dask_minibatch.py);
    # NCA's and LMNN's full-batch solvers do not.
    with pytest.raises(ValueError, match="stochastic solvers only"):
        LMNN(solver="lbfgs").fit(da.from_array(X, chunks=100), y)
    with pytest.raises(ValueError, match="kmeans must be 'auto' or 'lloyd'"):
        ClusterLDML(n_clusters=3, kmeans="kmeans").fit(da.from_array(X, chunks=100))
    with pytest.raises(ValueError, match="NaN or infinity"):
        ClusterLDML(n_clusters=3).fit(da.from_array(bad, chunks=100))
    est = LDML(preprocessor=da.from_array(X, chunks=100))
    with pytest.raises(ValueError, match="out of range|outside|index"):
        est.fit(np.array([[0, 1], [2, 500]]), [1, -1])
    with pytest.raises(ValueError, match="index pairs"):
        est.fit(X[:4].reshape(2, 2, 6), [1, -1])
    fitted = LDML_Supervised(max_iter=2, n_pairs=200).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(da.from_array(X[:, :3], chunks=100))


def test_missing_dask_gives_a_clear_import_error(monkeypatch):
    import builtins

    from fastmetric._core.dask_support import import_dask

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith("dask."):
            raise ImportError("No module named 'dask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r"pip install 'fastmetric\[dask\]'"):
        import_dask()

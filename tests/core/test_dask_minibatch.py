"""The minibatch solvers (Adam/SGD of LDML, NCA and LMNN) on dask arrays: the
same model bitwise on a 2-worker LocalCluster and without a cluster, the
in-memory model up to the order of the sums, shares gathered in share order
whatever order the workers finish in."""
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastmetric._core.dask_minibatch as fm_minibatch  # noqa: E402
import fastmetric._core.dask_support as fm_dask  # noqa: E402
from fastmetric import LDML, LMNN, NCA, LDML_Supervised  # noqa: E402
from fastmetric._core.sampling import sample_pairs  # noqa: E402

from .._dask_cluster import DASK_MARKS, labelled_rows  # noqa: E402  (the client fixture: conftest.py)

pytestmark = DASK_MARKS


@pytest.fixture
def small_groups(monkeypatch):
    """Several groups per epoch and several shares per minibatch, on small data."""
    monkeypatch.setattr(fm_minibatch, "GROUP_ROWS", 700)
    monkeypatch.setattr(fm_minibatch, "SHARE_ROWS", 128)
    monkeypatch.setattr(fm_minibatch, "SHARE_PAIRS", 300)


def data(n=1200, d=5, seed=0, dtype=np.float64):
    return labelled_rows(n, d, 3, seed, dtype)


def fit_both(make, X, y, monkeypatch, **fit_kw):
    """The fit on the 2-worker cluster, then without any cluster (Dask's
    synchronous scheduler in this process)."""
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    on_cluster = make().fit(Xd, y, **fit_kw)
    with monkeypatch.context() as m:
        m.setattr(fm_dask, "_distributed_client", lambda: None)
        m.setattr(fm_minibatch, "_distributed_client", lambda: None)
        alone = make().fit(Xd, y, **fit_kw)
    return on_cluster, alone


def assert_same_fit(a, b):
    assert_array_equal(a.components_, b.components_)
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_


def close(dtype):
    # The sums of a minibatch are split in shares on Dask: the models differ
    # from the in-memory ones by rounding, carried over a few Adam steps.
    return dict(rtol=1e-6, atol=1e-8) if dtype == np.float64 else dict(rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nca_adam_same_model_with_any_cluster(client, monkeypatch, small_groups, dtype):
    X, y = data(dtype=dtype)

    def make():
        return NCA(solver="adam", batch_size=300, n_candidates=150, max_iter=3,
                   random_state=0, n_components=3)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.components_.dtype == np.float64 and on_cluster.n_iter_ == 3
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(dtype))
    assert_allclose(on_cluster.loss_curve_, mem.loss_curve_, **close(dtype))


def test_lmnn_sgd_same_model_with_any_cluster(client, monkeypatch, small_groups):
    X, y = data(seed=1)

    def make():
        return LMNN(solver="sgd", batch_size=250, n_candidates=200, max_iter=2,
                    learning_rate=1e-4, target_block_size=500, random_state=0)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.n_active_ == alone.n_active_ > 0
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(np.float64))
    assert_allclose(on_cluster.loss_curve_, mem.loss_curve_, **close(np.float64))
    assert on_cluster.n_active_ == mem.n_active_


def test_ldml_supervised_adam_same_model_with_any_cluster(client, monkeypatch, small_groups):
    X, y = data(seed=2)

    def make():
        return LDML_Supervised(solver="adam", n_pairs=2000, batch_size=700, max_iter=3,
                               random_state=0)

    on_cluster, alone = fit_both(make, X, y, monkeypatch)
    assert_same_fit(on_cluster, alone)
    assert on_cluster.bias_ == alone.bias_
    mem = make().fit(X, y)
    assert_allclose(on_cluster.components_, mem.components_, **close(np.float64))
    assert_allclose(on_cluster.bias_, mem.bias_, **close(np.float64))
    # partial_fit on a dask block, rows normalised lazily
    Xd = da.from_array(X, chunks=(350, X.shape[1]))
    dist = LDML_Supervised(solver="adam", normalize=True, random_state=0)
    local = LDML_Supervised(solver="adam", normalize=True, random_state=0)
    for rows in (slice(0, 600), slice(600, 1200)):
        dist.partial_fit(Xd[rows], y[rows])
        local.partial_fit(X[rows], y[rows])
    assert dist.n_iter_ == local.n_iter_ == 2
    assert_allclose(dist.components_, local.components_, **close(np.float64))


def test_ldml_pairs_sgd_with_weights_on_a_dask_preprocessor(client, monkeypatch, small_groups):
    """Fixed pairs into a dask preprocessor, with weights (a minibatch whose
    weights are all 0 is skipped, as in memory), then a partial_fit epoch."""
    X, y = data(n=900, seed=3)
    idx, t = sample_pairs(y, 700, 700, random_state=0)
    w = np.random.RandomState(0).rand(idx.shape[0])
    w[:300] = 0.0
    params = dict(solver="sgd", batch_size=400, max_iter=3, random_state=0,
                  learning_rate=0.005)
    Xd = da.from_array(X, chunks=(300, 5))
    dist = LDML(preprocessor=Xd, **params).fit(idx, 2 * t - 1, sample_weight=w)
    mem = LDML(preprocessor=X, **params).fit(idx, 2 * t - 1, sample_weight=w)
    assert_allclose(dist.components_, mem.components_, **close(np.float64))
    assert_allclose(dist.bias_, mem.bias_, **close(np.float64))
    dist.partial_fit(idx[:500], 2 * t[:500] - 1)
    mem.partial_fit(idx[:500], 2 * t[:500] - 1)
    assert dist.n_iter_ == mem.n_iter_ == 4
    assert_allclose(dist.components_, mem.components_, **close(np.float64))


def test_nca_and_lmnn_partial_fit_on_dask_blocks(client):
    X, y = data(n=800, seed=4)
    Xd = da.from_array(X, chunks=(300, 5))
    for make in (lambda: NCA(solver="adam", batch_size=200, n_candidates=100,
                             random_state=0),
                 lambda: LMNN(solver="adam", batch_size=200, n_candidates=100,
                              random_state=0)):
        dist, mem = make(), make()
        for rows in (slice(0, 400), slice(400, 800)):
            dist.partial_fit(Xd[rows], y[rows])
            mem.partial_fit(X[rows], y[rows])
        assert dist.n_iter_ == mem.n_iter_ == 2
        assert_allclose(dist.components_, mem.components_, **close(np.float64))


def test_shares_come_back_in_share_order(client):
    """Share 0 finishes last (it sleeps), yet the results come in share order;
    each worker gathers the rows of its own shares only."""
    runner = fm_minibatch._Minibatches(da.from_array(np.arange(40.0).reshape(20, 2),
                                                     chunks=(7, 2)))
    specs = [("first", [(np.array([1, 15]), "a0"), (np.array([2]), "a1")]),
             ("second", [(np.array([3, 8, 19]), "b0"), (np.array([4, 5]), "b1"),
                         (np.array([18]), "b2")])]

    def build(X_rows, uniq, entries):
        return {key: (X_rows[:, 0].tolist(), payload) for key, payload in entries}

    (group, j, info), (group2, j2, info2) = list(runner.read_ahead(iter(specs), build,
                                                                   lambda uniq: ()))
    assert (j, info, j2, info2) == (0, "first", 1, "second")

    def share(entry, s):
        time.sleep(0.5 if s == 0 else 0.0)
        return (s,) + entry

    results = runner.evaluate(share, group2, j2, 3, ())
    assert [r[0] for r in results] == [0, 1, 2]
    # shares 0 and 2 on one worker (rows 1, 15, 3, 8, 19, 18), share 1 on the other
    assert results[0][1:] == ([2.0, 6.0, 16.0, 30.0, 36.0, 38.0], "b0")
    assert results[1][1:] == ([4.0, 8.0, 10.0], "b1")
    assert results[2][1:] == ([2.0, 6.0, 16.0, 30.0, 36.0, 38.0], "b2")


def test_full_batch_solvers_refuse_dask_arrays(client):
    X, y = data(n=300)
    Xd = da.from_array(X, chunks=100)
    for est in (NCA(solver="lbfgs"), LMNN(solver="gd")):
        with pytest.raises(ValueError, match="stochastic solvers only"):
            est.fit(Xd, y)
    # 'auto' is Adam on a dask array, whatever its size
    est = NCA(solver="auto", max_iter=1, batch_size=100, n_candidates=50,
              random_state=0).fit(Xd, y)
    assert est.n_iter_ == 1
    with pytest.raises(ValueError, match="one label per row"):
        NCA(solver="adam").fit(Xd, y[:-1])

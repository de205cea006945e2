"""fastmetric.neighbors: the search estimators and functions."""
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from fastmetric import NCA
from fastmetric.neighbors import (
    MahalanobisKNeighborsTransformer,
    MahalanobisNeighbors,
    MahalanobisRadiusNeighborsTransformer,
    kneighbors,
    radius_neighbors,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    Q = rng.normal(size=(30, 6))
    L = rng.normal(size=(4, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    return X, Q, L, y


def reference(X_db, Q, L, k):
    """scikit-learn on the mapped rows."""
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X_db @ L.T)
    return nn.kneighbors(Q @ L.T)


def test_matches_sklearn_on_mapped_rows(data, dtype):
    X, Q, L, _ = data
    nn = MahalanobisNeighbors(n_neighbors=7, metric=L).fit(X.astype(dtype))
    dist, ind = nn.kneighbors(Q.astype(dtype))
    ref_dist, ref_ind = reference(X, Q, L, 7)
    assert dist.shape == ind.shape == (30, 7)
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-4 if dtype == np.float32 else 1e-10)
    ind_only = nn.kneighbors(Q.astype(dtype), return_distance=False)
    assert_array_equal(ind_only, ind)
    assert nn.n_samples_fit_ == 120 and nn.n_features_in_ == 6
    assert nn.effective_metric_ == "mahalanobis"


def test_euclidean_and_function_form(data):
    X, Q, _, _ = data
    dist, ind = kneighbors(Q, X, n_neighbors=3)
    ref_dist, ref_ind = NearestNeighbors(n_neighbors=3).fit(X).kneighbors(Q)
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-10)
    # Without a database: leave-one-out, as NearestNeighbors.kneighbors(None).
    ind = kneighbors(X, n_neighbors=4, return_distance=False)
    ref = NearestNeighbors(n_neighbors=4).fit(X).kneighbors(return_distance=False)
    assert_array_equal(ind, ref)


def test_fitted_learner_as_metric(data):
    X, Q, _, y = data
    nca = NCA(max_iter=5, random_state=0).fit(X, y)
    dist, ind = MahalanobisNeighbors(n_neighbors=5, metric=nca).fit(X).kneighbors(Q)
    ref_dist, ref_ind = reference(X, Q, nca.components_, 5)
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-10)


def test_unfitted_learner_is_fitted_on_a_clone(data):
    X, _, _, y = data
    nca = NCA(max_iter=5, random_state=0)
    nn = MahalanobisNeighbors(n_neighbors=3, metric=nca).fit(X, y)
    assert not hasattr(nca, "components_")  # the parameter is left alone
    assert_allclose(nn.metric_.components_, NCA(max_iter=5, random_state=0).fit(X, y).components_)


def test_leave_one_out_when_X_is_None(data):
    X, _, L, _ = data
    nn = MahalanobisNeighbors(n_neighbors=3, metric=L).fit(X)
    ind = nn.kneighbors(return_distance=False)
    assert not (ind == np.arange(120)[:, None]).any()
    ref = NearestNeighbors(n_neighbors=3).fit(X @ L.T).kneighbors(return_distance=False)
    assert_array_equal(ind, ref)


def test_n_jobs_gives_identical_results(data):
    X, Q, L, _ = data
    a = MahalanobisNeighbors(n_neighbors=6, metric=L, n_jobs=1).fit(X).kneighbors(Q)
    b = MahalanobisNeighbors(n_neighbors=6, metric=L, n_jobs=2).fit(X).kneighbors(Q)
    assert_array_equal(a[0], b[0])
    assert_array_equal(a[1], b[1])


def test_radius_neighbors_and_empty_results(data):
    X, Q, L, _ = data
    Q = Q.copy()
    Q[0] += 50  # far from everything
    nn = MahalanobisNeighbors(radius=1.2, metric=L).fit(X)
    dist, ind = nn.radius_neighbors(Q)
    ref = NearestNeighbors(radius=1.2, algorithm="brute").fit(X @ L.T)
    ref_dist, ref_ind = ref.radius_neighbors(Q @ L.T, sort_results=True)
    assert dist.dtype == object and len(ind) == 30
    assert len(ind[0]) == 0 and len(dist[0]) == 0
    for i in range(30):
        assert_array_equal(ind[i], ref_ind[i])
        assert_allclose(dist[i], ref_dist[i], rtol=1e-10)
    G = nn.radius_neighbors_graph(Q, mode="distance")
    assert G.shape == (30, 120) and G[0].nnz == 0
    # The function form, and leave-one-out.
    ind = radius_neighbors(X, radius=1.0, metric=L, return_distance=False)
    assert not any(i in row for i, row in enumerate(ind))
    assert radius_neighbors(Q, X, radius=0.0, return_distance=False)[0].shape == (0,)


def test_kneighbors_graph(data):
    X, Q, L, _ = data
    nn = MahalanobisNeighbors(n_neighbors=4, metric=L).fit(X)
    G = nn.kneighbors_graph(Q, mode="distance")
    dist, ind = nn.kneighbors(Q)
    assert sp.issparse(G) and G.shape == (30, 120)
    assert_allclose(G.toarray()[np.arange(30)[:, None], ind], dist)
    C = nn.kneighbors_graph(Q)
    assert (C.sum(axis=1) == 4).all()
    with pytest.raises(ValueError, match="mode"):
        nn.kneighbors_graph(Q, mode="bogus")


def test_precomputed_graph_with_kneighbors_classifier(data):
    X, Q, L, y = data
    k = 5
    direct = KNeighborsClassifier(n_neighbors=k, metric=lambda a, b: np.linalg.norm(L @ (a - b)),
                                  algorithm="brute").fit(X, y).predict(Q)
    graph = MahalanobisKNeighborsTransformer(n_neighbors=k, metric=L).fit(X)
    clf = KNeighborsClassifier(n_neighbors=k, metric="precomputed")
    clf.fit(graph.transform(X), y)
    assert_array_equal(clf.predict(graph.transform(Q)), direct)
    # In a pipeline.
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(MahalanobisKNeighborsTransformer(n_neighbors=k, metric=L),
                         KNeighborsClassifier(n_neighbors=k, metric="precomputed"))
    assert_array_equal(pipe.fit(X, y).predict(Q), direct)


def test_graphs_for_isomap_and_dbscan(data):
    from sklearn.cluster import DBSCAN
    from sklearn.manifold import Isomap

    X, _, L, _ = data
    G = MahalanobisKNeighborsTransformer(n_neighbors=8, metric=L).fit_transform(X)
    emb = Isomap(n_neighbors=8, metric="precomputed", n_components=2).fit_transform(G)
    assert emb.shape == (120, 2) and np.isfinite(emb).all()
    R = MahalanobisRadiusNeighborsTransformer(radius=1.0, metric=L).fit_transform(X)
    labels = DBSCAN(eps=1.0, metric="precomputed", min_samples=3).fit_predict(R)
    ref = DBSCAN(eps=1.0, min_samples=3).fit_predict(X @ L.T)
    assert_array_equal(labels, ref)


def test_input_errors(data):
    X, Q, L, _ = data
    with pytest.raises(ValueError, match="n_neighbors"):
        MahalanobisNeighbors(n_neighbors=121).fit(X).kneighbors(Q)
    with pytest.raises(ValueError, match="n_neighbors"):
        MahalanobisNeighbors().fit(X).kneighbors(None, n_neighbors=120)
    with pytest.raises(ValueError, match="algorithm"):
        MahalanobisNeighbors(algorithm="kd_tree").fit(X)
    with pytest.raises(ValueError, match="features"):
        MahalanobisNeighbors(metric=L).fit(X).kneighbors(Q[:, :3])
    with pytest.raises(ValueError, match="0 sample"):
        MahalanobisNeighbors().fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="radius"):
        MahalanobisNeighbors(radius=-1.0).fit(X).radius_neighbors(Q)
    with pytest.raises(ValueError, match="shape"):
        MahalanobisNeighbors(metric=np.ones(3)).fit(X)
    with pytest.raises(ValueError, match="not fitted"):
        from fastmetric.metrics import evaluate

        evaluate(NCA(), X, np.zeros(120))


def test_clone_and_params(data):
    from sklearn.base import clone

    X, Q, _, y = data
    nn = MahalanobisNeighbors(n_neighbors=2, metric=NCA(max_iter=3))
    assert clone(nn).get_params()["n_neighbors"] == 2
    clone(nn).fit(X, y).kneighbors(Q)


def test_hnsw_recall(data):
    pytest.importorskip("hnswlib")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 8))
    Q = rng.normal(size=(100, 8))
    exact = MahalanobisNeighbors(n_neighbors=10).fit(X).kneighbors(Q, return_distance=False)
    approx = MahalanobisNeighbors(n_neighbors=10, algorithm="hnsw",
                                  algorithm_params={"ef": 64}).fit(X)
    dist, ind = approx.kneighbors(Q)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ind, exact)])
    assert recall > 0.9
    assert (np.diff(dist, axis=1) >= 0).all()
    loo = approx.kneighbors(None, n_neighbors=3, return_distance=False)
    assert not (loo == np.arange(2000)[:, None]).any()
    # Radius queries stay exact.
    r = approx.radius_neighbors(Q[:3], radius=1.5, return_distance=False)
    ref = MahalanobisNeighbors().fit(X).radius_neighbors(Q[:3], radius=1.5,
                                                          return_distance=False)
    for a, b in zip(r, ref):
        assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown hnsw"):
        MahalanobisNeighbors(algorithm="hnsw", algorithm_params={"bogus": 1}).fit(X)


@pytest.mark.parametrize(("params", "match"), [
    ({"M": -1}, r"algorithm_params\['M'\] must be an integer >= 2.*got -1"),
    ({"M": 1}, r"algorithm_params\['M'\] must be an integer >= 2.*got 1"),
    ({"ef_construction": 0}, r"algorithm_params\['ef_construction'\].*>= 1.*got 0"),
    ({"ef": 2.5}, r"algorithm_params\['ef'\].*got 2.5"),
    ({"random_state": -3}, r"algorithm_params\['random_state'\].*>= 0.*got -3"),
    ({"random_state": None}, r"algorithm_params\['random_state'\].*got None"),
])
def test_hnsw_bad_parameter_values_are_named(data, params, match):
    pytest.importorskip("hnswlib")
    X = data[0]
    with pytest.raises(ValueError, match=match):
        MahalanobisNeighbors(algorithm="hnsw", algorithm_params=params).fit(X).kneighbors(X)
    with pytest.raises(ValueError, match=match):
        MahalanobisKNeighborsTransformer(algorithm="hnsw", algorithm_params=params).fit(X)


def test_function_forms_need_a_fitted_learner(data):
    from sklearn.exceptions import NotFittedError

    X, Q, _, _ = data
    with pytest.raises(NotFittedError, match=r"metric=NCA\(...\) is not fitted: kneighbors\(\)"):
        kneighbors(X, metric=NCA())
    with pytest.raises(NotFittedError, match=r"not fitted: radius_neighbors\(\)"):
        radius_neighbors(Q, X, metric=NCA())


def test_leave_one_out_of_a_single_row(data):
    X = data[0]
    with pytest.raises(ValueError, match="not enough other points"):
        kneighbors(X[:1], n_neighbors=1)
    with pytest.raises(ValueError, match="not enough other points"):
        MahalanobisNeighbors(n_neighbors=1).fit(X[:1]).kneighbors()
    # With queries, one fitted row is enough.
    assert kneighbors(X[1:3], X[:1], n_neighbors=1, return_distance=False).tolist() == [[0], [0]]


def test_hnsw_missing_names_the_extra(monkeypatch, data):
    import sys

    monkeypatch.setitem(sys.modules, "hnswlib", None)
    with pytest.raises(ImportError, match=r"fastmetric\[ann\]"):
        MahalanobisNeighbors(algorithm="hnsw").fit(data[0])


def test_dask_queries_and_partitioned_database(data, dtype):
    da = pytest.importorskip("dask.array")
    X, Q, L, _ = data
    X, Q = X.astype(dtype), Q.astype(dtype)
    ref = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(X)
    ref_dist, ref_ind = ref.kneighbors(Q)
    # Queries in a dask array, database in memory: blockwise.
    dist, ind = ref.kneighbors(da.from_array(Q, chunks=7))
    assert isinstance(ind, da.Array)
    assert_array_equal(ind.compute(scheduler="sync"), ref_ind)
    assert_array_equal(dist.compute(scheduler="sync"), ref_dist)
    # Database partitioned in row blocks: per-block top k merged exactly.
    nn = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(da.from_array(X, chunks=25))
    dist, ind = nn.kneighbors(Q)
    assert_array_equal(ind.compute(scheduler="sync"), ref_ind)
    assert_array_equal(dist.compute(scheduler="sync"), ref_dist)
    # Both, and leave-one-out over a partitioned database (blocks smaller than k).
    nn = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(da.from_array(X, chunks=4))
    ind = nn.kneighbors(None, return_distance=False).compute(scheduler="sync")
    assert_array_equal(ind, ref.kneighbors(None, return_distance=False))
    ind = nn.kneighbors(da.from_array(Q, chunks=11), return_distance=False)
    assert_array_equal(ind.compute(scheduler="sync"), ref_ind)


@pytest.mark.parametrize("scale_exp", [-600, -900])
def test_tiny_rows_are_searched_at_a_scale_where_their_distances_exist(data, scale_exp):
    """float64 rows of about 1e-160 and less: their squared differences,
    summed in float64, fall below the smallest normal double, so distinct
    rows were tied at distance 0 and came out in index order.  Searched at
    a power-of-two scale, every result is that of the same rows at ordinary
    scale, the distances multiplied back exactly (k nearest, leave-one-out,
    radius, dask queries, retrieval scores)."""
    from fastmetric.metrics import evaluate

    X, Q, L, y = data
    Xt, Qt = np.ldexp(X, scale_exp), np.ldexp(Q, scale_exp)
    ref = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(X)
    tiny = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(Xt)
    for a, b in [(ref.kneighbors(Q), tiny.kneighbors(Qt)),
                 (ref.kneighbors(None), tiny.kneighbors(None))]:
        assert_array_equal(b[1], a[1])
        assert_array_equal(b[0], np.ldexp(a[0], scale_exp))
    r = float(np.median(ref.kneighbors(Q)[0][:, 2]))
    ref_dist, ref_ind = ref.radius_neighbors(Q, radius=r)
    dist, ind = tiny.radius_neighbors(Qt, radius=float(np.ldexp(r, scale_exp)))
    assert sum(map(len, ind)) > len(Q)  # the radius holds neighbours
    for a, b, c, d in zip(ref_dist, dist, ref_ind, ind):
        assert_array_equal(d, c)
        assert_array_equal(b, np.ldexp(a, scale_exp))
    assert evaluate(L, Xt, y) == evaluate(L, X, y)
    da = pytest.importorskip("dask.array")
    dist, ind = tiny.kneighbors(da.from_array(Qt, chunks=7))
    assert_array_equal(ind.compute(scheduler="sync"), ref.kneighbors(Q)[1])
    assert_array_equal(dist.compute(scheduler="sync"), np.ldexp(ref.kneighbors(Q)[0], scale_exp))


def test_queries_too_far_from_tiny_rows_are_refused_by_name(data):
    X, Q, L, _ = data
    tiny = MahalanobisNeighbors(n_neighbors=5, metric=L).fit(np.ldexp(X, -900))
    with pytest.raises(ValueError, match=r"mapped queries \(multiplied by 2\*\*"):
        tiny.kneighbors(Q * 1e30)


@pytest.mark.parametrize("estimator", [MahalanobisNeighbors(), MahalanobisKNeighborsTransformer(),
                                       MahalanobisRadiusNeighborsTransformer()],
                         ids=lambda e: type(e).__name__)
def test_sklearn_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert len(results) > 30
    assert failed == []


# --------------------------------------------------------------------------
# get_feature_names_out of the graph transformers, as scikit-learn's
# --------------------------------------------------------------------------
GRAPH_TRANSFORMERS = [
    (MahalanobisKNeighborsTransformer(n_neighbors=3), "KNeighborsTransformer"),
    (MahalanobisRadiusNeighborsTransformer(radius=2.0), "RadiusNeighborsTransformer"),
]


@pytest.mark.parametrize(("ours", "theirs"), GRAPH_TRANSFORMERS,
                         ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_graph_transformers_name_one_output_feature_per_fitted_row(data, ours, theirs):
    """One name per graph column (fitted row), prefixed by the class name,
    as scikit-learn's KNeighborsTransformer / RadiusNeighborsTransformer."""
    import sklearn.neighbors
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    pd = pytest.importorskip("pandas")
    X, Q, L, _ = data
    with pytest.raises(NotFittedError):
        clone(ours).get_feature_names_out()
    # The names depend only on the number of fitted rows.
    sk = getattr(sklearn.neighbors, theirs)().fit(X)
    est = clone(ours).set_params(metric=L).fit(X)
    names = est.get_feature_names_out()
    expected = sk.get_feature_names_out()
    expected = np.array([n.replace(theirs.lower(), type(ours).__name__.lower())
                         for n in expected], dtype=object)
    assert names.dtype == expected.dtype == object
    assert_array_equal(names, expected)
    assert names[0] == f"{type(ours).__name__.lower()}0" and len(names) == 120
    # One name per column of the graph transform gives.
    assert est.transform(Q).shape[1] == len(names)
    # input_features are checked as scikit-learn checks them.
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    est = clone(ours).fit(df)
    assert_array_equal(est.get_feature_names_out(list(df.columns)), names)
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        est.get_feature_names_out(["a"] * 6)
    with pytest.raises(ValueError, match="input_features should have length equal"):
        clone(ours).fit(X).get_feature_names_out(["a"])


def test_graph_transformers_in_a_pipeline_name_their_features(data):
    """A pipeline through a graph transformer names its output features, as
    one through scikit-learn's; set_output exists, as on scikit-learn's."""
    import sklearn
    from sklearn.manifold import Isomap
    from sklearn.neighbors import KNeighborsTransformer
    from sklearn.pipeline import make_pipeline

    X, Q, L, _ = data
    pipe = make_pipeline(MahalanobisKNeighborsTransformer(n_neighbors=8, metric=L),
                         Isomap(n_neighbors=8, metric="precomputed", n_components=2)).fit(X)
    assert_array_equal(pipe.get_feature_names_out(), ["isomap0", "isomap1"])
    alone = make_pipeline(MahalanobisRadiusNeighborsTransformer(radius=1.0, metric=L)).fit(X)
    assert len(alone.get_feature_names_out()) == 120
    # set_output now exists (scikit-learn offers it with get_feature_names_out);
    # the graph is sparse, so 'default' is the setting that keeps it under a
    # global pandas output, as for KNeighborsTransformer.
    for est in (KNeighborsTransformer(n_neighbors=3), MahalanobisKNeighborsTransformer(n_neighbors=3)):
        assert hasattr(est, "set_output")
        with sklearn.config_context(transform_output="pandas"):
            with pytest.raises(ValueError, match="sparse"):
                est.fit_transform(X)
            G = est.set_output(transform="default").fit_transform(X)
        assert sp.issparse(G) and G.shape == (120, 120)


@pytest.mark.parametrize("estimator", [MahalanobisKNeighborsTransformer(),
                                       MahalanobisRadiusNeighborsTransformer()],
                         ids=lambda e: type(e).__name__)
def test_sklearn_feature_names_and_set_output_checks(estimator):
    """scikit-learn's checks of get_feature_names_out and set_output, which
    check_estimator does not run by default."""
    import warnings

    from sklearn.utils import estimator_checks as ec

    name = type(estimator).__name__
    assert hasattr(estimator, "get_feature_names_out")  # the checks skip an estimator without
    for check in (ec.check_transformer_get_feature_names_out,
                  ec.check_transformer_get_feature_names_out_pandas,
                  ec.check_get_feature_names_out_error, ec.check_set_output_transform,
                  ec.check_set_output_transform_pandas, ec.check_global_output_transform_pandas):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check(name, estimator)

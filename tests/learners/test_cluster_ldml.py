"""Tests of ClusterLDML (unsupervised k-means + LDML metric learning)."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from fastmetric._core.cluster_rows import MemoryRows
from fastmetric._learners.cluster_ldml import (
    ClusterLDML,
    _cluster_means,
    _combine,
    _nearest_center,
)

# Small, fast settings for most tests (one thread: the machine running the
# tests may be busy, and the thread-count invariance has its own test).
FAST = {"max_rounds": 3, "ldml_max_iter": 10, "n_pairs_per_cluster": 300, "n_jobs": 1}


def _noisy_blobs(n=150, seed=0):
    """Three blobs spread along x0 (spacing 4, std 0.7) plus two noise features (std 3).

    Euclidean k-means is half fooled by the noise directions (ARI about
    0.45); a good learned metric shrinks them.
    """
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(3), n // 3)
    X = np.column_stack([4.0 * y + 0.7 * rng.randn(y.size),
                         3.0 * rng.randn(y.size), 3.0 * rng.randn(y.size)])
    return X, y


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=5, random_state=3)
    return X, y


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X)


# --------------------------------------------------------------------------
# fit, attributes
# --------------------------------------------------------------------------
def test_attributes_shapes(blobs, fitted):
    X, y = blobs
    m = fitted
    n, d = X.shape
    assert m.components_.shape == (d, d)
    assert m.cluster_components_.shape == (3, d, d)
    assert m.labels_.shape == (n,)
    assert m.labels_.dtype.kind == "i"
    assert set(np.unique(m.labels_)) == {0, 1, 2}
    assert m.cluster_centers_.shape == (3, d)
    assert 1 <= m.n_rounds_ <= FAST["max_rounds"]
    assert len(m.history_) == m.n_rounds_
    for r, h in enumerate(m.history_, start=1):
        assert h["round"] == r
        assert -1 <= h["ari_previous"] <= 1
        assert np.isfinite(h["loss"]) and h["loss"] > 0
        assert h["n_groups"] == 3
        assert h["time"] >= 0
    assert m.n_features_in_ == d
    assert np.isfinite(m.components_).all()
    assert np.isfinite(m.cluster_components_).all()
    # well separated blobs: the clustering finds them
    assert adjusted_rand_score(y, m.labels_) > 0.95


def test_metric_is_psd_and_scaled(blobs, fitted):
    X, _ = blobs
    M = fitted.get_mahalanobis_matrix()
    assert_allclose(M, M.T, atol=1e-12)
    assert np.linalg.eigvalsh(M).min() > -1e-10
    # documented scale: same mean squared pair distance as Euclidean
    rows = MemoryRows(X)
    assert rows.spread(fitted.components_) == pytest.approx(rows.spread(np.eye(X.shape[1])))


def test_n_components_and_init(blobs):
    X, _ = blobs
    m = ClusterLDML(n_clusters=3, n_components=2, random_state=0, **FAST).fit(X)
    assert m.components_.shape == (2, 5)
    assert m.cluster_components_.shape == (3, 2, 5)
    assert m.transform(X).shape == (120, 2)
    assert m.cluster_centers_.shape == (3, 2)
    L0 = np.random.RandomState(1).randn(3, 5)
    m = ClusterLDML(n_clusters=3, init=L0, random_state=0, **FAST).fit(X)
    assert m.components_.shape == (3, 5)
    # a fitted learner as init (pre-trained metric)
    m2 = ClusterLDML(n_clusters=3, init=m, random_state=0, **FAST).fit(X)
    assert m2.components_.shape == (3, 5)


def test_learns_to_ignore_noise_feature():
    """Self-training shrinks a high-variance direction that carries no clusters."""
    # (Self-training needs the first clustering to carry some signal: with
    # other draws of this data the first k-means split follows a noise
    # feature, and the learned metric then keeps that feature.)
    X, y = _noisy_blobs(seed=1)
    base = KMeans(3, n_init=10, random_state=0).fit_predict(X)
    assert adjusted_rand_score(y, base) < 0.6
    # tol=1.0: run every round (the default tol stops as soon as the
    # clustering is stable, which here happens before the metric has moved far)
    m = ClusterLDML(n_clusters=3, max_rounds=8, tol=1.0, random_state=0, n_jobs=1).fit(X)
    assert m.n_rounds_ == 8
    col = np.linalg.norm(m.components_, axis=0)
    assert col[1] < 0.4 * col[0] and col[2] < 0.4 * col[0]  # noise columns shrunk
    learned = KMeans(3, n_init=10, random_state=0).fit_predict(m.transform(X))
    assert adjusted_rand_score(y, learned) > 0.9
    assert adjusted_rand_score(y, m.labels_) > 0.9


def test_digits_quality_one_seed():
    """The quality target on one seed (the 5-seed version is
    fastmetric._cli.demo.cluster_ldml_digits_benchmark): k-means in the metric
    learned from the digits pixels alone agrees better with the true digits
    than Euclidean k-means."""
    from fastmetric._cli.demo import cluster_ldml_digits_benchmark

    res = cluster_ldml_digits_benchmark(seeds=(0,), verbose=False, n_jobs=1)
    assert res["euclidean"][0] == pytest.approx(0.666, abs=0.01)
    assert res["learned"][0] > res["euclidean"][0] + 0.03


def test_normalize_cosine(blobs):
    X, _ = blobs
    m = ClusterLDML(n_clusters=3, normalize=True, random_state=0, **FAST).fit(X)
    # scaling a point does not move it in a cosine geometry
    assert_allclose(m.transform(3.0 * X[:5]), m.transform(X[:5]), rtol=1e-10, atol=1e-12)
    assert_array_equal(m.predict(2.0 * X), m.labels_)


def test_predict_matches_labels(blobs, fitted):
    X, _ = blobs
    assert_array_equal(fitted.predict(X), fitted.labels_)
    assert_array_equal(fitted.fit_predict(X), fitted.labels_)
    # nearest centre in the learned metric, computed independently
    Z = X @ fitted.components_.T
    d2 = ((Z[:, None, :] - fitted.cluster_centers_[None]) ** 2).sum(-1)
    assert_array_equal(np.argmin(d2, axis=1), fitted.labels_)


def test_centres_are_embedded_means(blobs, fitted):
    X, _ = blobs
    # The centres are the means of the final k-means clusters in the embedded
    # space; labels_ is the nearest-centre pass over them, so the two agree
    # on almost every point.
    Z = fitted.transform(X)
    for g in range(3):
        members = Z[fitted.labels_ == g]
        assert_allclose(members.mean(axis=0), fitted.cluster_centers_[g], atol=1e-6 * (
            1 + np.abs(Z).max()))


def test_float32_input(blobs):
    X, _ = blobs
    m32 = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X.astype(np.float32))
    assert m32.transform(X.astype(np.float32)).dtype == np.float32
    assert_array_equal(m32.predict(X.astype(np.float32)), m32.labels_)
    assert adjusted_rand_score(m32.labels_, ClusterLDML(
        n_clusters=3, random_state=0, **FAST).fit(X).labels_) > 0.95


def test_float32_data_beyond_the_maps_range():
    """Float32 data spanning 1e-40 need a map near 1e40, beyond float32:
    k-means used to report an infinity in X, then a ValueError said to pass
    float64.  The rounds now run on the points times a power of two; the
    map of the points as given is float64, and predict agrees with labels_."""
    X = np.random.RandomState(0).randn(60, 3)
    X32 = (X * 1e-40).astype(np.float32)
    fitted = ClusterLDML(n_clusters=2, random_state=0, max_rounds=1).fit(X32)
    assert np.isfinite(fitted.components_).all() and np.abs(fitted.components_).max() > 1e38
    assert_array_equal(fitted.predict(X32), fitted.labels_)
    Z = fitted.transform(X32)
    assert Z.dtype == np.float32 and np.isfinite(Z).all()
    fitted = ClusterLDML(n_clusters=2, random_state=0, max_rounds=1).fit(X * 1e-40)
    assert np.isfinite(fitted.components_).all()


@pytest.mark.parametrize("exponent", [-664, 664])
def test_points_at_extreme_scales_cluster_as_at_scale_one(blobs, exponent):
    """Points times 2^-664 (about 1e-200) gave ARI 0 with a warning that no
    cluster had pairs (their squared spreads underflowed), and near 2^664 an
    overflow error: the rounds now run on the points at a scale of one, the
    same clustering bit for bit, the maps multiplied back."""
    X, _ = blobs
    X = X / (2.0 * np.abs(X).max())  # largest magnitude in [0.5, 1): no rescaling
    ref = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X)
    fitted = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(np.ldexp(X, exponent))
    assert_array_equal(fitted.labels_, ref.labels_)
    assert_array_equal(fitted.components_, np.ldexp(ref.components_, -exponent))
    assert_array_equal(fitted.cluster_centers_, ref.cluster_centers_)
    assert_array_equal(fitted.predict(np.ldexp(X, exponent)), ref.labels_)


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------
def test_deterministic_same_seed(blobs):
    X, _ = blobs
    a = ClusterLDML(n_clusters=3, random_state=7, **FAST).fit(X)
    b = ClusterLDML(n_clusters=3, random_state=7, **FAST).fit(X)
    assert_array_equal(a.components_, b.components_)
    assert_array_equal(a.labels_, b.labels_)
    assert_array_equal(a.cluster_centers_, b.cluster_centers_)


def test_deterministic_across_threads():
    X, _ = make_blobs(n_samples=400, centers=4, n_features=6, random_state=5)
    params = dict(FAST, n_jobs=None)  # threads from threadpoolctl's limit
    results = []
    for n_threads in (1, 2):
        with threadpool_limits(limits=n_threads):
            m = ClusterLDML(n_clusters=4, random_state=3, **params).fit(X)
        results.append(m)
    assert_array_equal(results[0].labels_, results[1].labels_)
    assert_array_equal(results[0].components_, results[1].components_)
    assert_array_equal(results[0].cluster_components_, results[1].cluster_components_)
    assert_allclose(results[0].cluster_centers_, results[1].cluster_centers_,
                    rtol=0, atol=1e-12 * np.abs(results[0].cluster_centers_).max())
    # and with n_jobs
    m1 = ClusterLDML(n_clusters=4, random_state=3, **dict(params, n_jobs=1)).fit(X)
    m2 = ClusterLDML(n_clusters=4, random_state=3, **dict(params, n_jobs=2)).fit(X)
    assert_array_equal(m1.components_, m2.components_)
    assert_array_equal(m1.labels_, m2.labels_)


def test_different_seeds_can_differ(blobs):
    X, _ = blobs
    a = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X)
    b = ClusterLDML(n_clusters=3, random_state=1, **FAST).fit(X)
    assert not np.array_equal(a.components_, b.components_)


# --------------------------------------------------------------------------
# rounds, stopping, callback, verbose
# --------------------------------------------------------------------------
def test_tol_stops_early(blobs):
    X, _ = blobs
    # well separated blobs: the clustering does not move, ARI = 1 > tol
    m = ClusterLDML(n_clusters=3, tol=0.5, max_rounds=5, random_state=0,
                    ldml_max_iter=5, n_pairs_per_cluster=200, n_jobs=1).fit(X)
    assert m.n_rounds_ == 1
    assert m.converged_
    m = ClusterLDML(n_clusters=3, tol=1.0, max_rounds=2, random_state=0,
                    ldml_max_iter=5, n_pairs_per_cluster=200, n_jobs=1).fit(X)
    assert m.n_rounds_ == 2  # ARI > 1 never happens
    assert not m.converged_


def test_max_rounds_zero_is_kmeans_in_initial_metric(blobs):
    X, _ = blobs
    m = ClusterLDML(n_clusters=3, max_rounds=0, init="identity", random_state=0,
                    n_jobs=1).fit(X)
    assert m.n_rounds_ == 0 and m.history_ == []
    # identity init rescaled to the Euclidean spread: the identity itself
    assert_allclose(m.components_, np.eye(5), atol=1e-12)


def test_callback_and_early_stop(blobs):
    X, _ = blobs
    seen = []

    def cb(est, r, loss):
        seen.append((r, loss, est.components_.copy(), est.labels_.copy()))
        return r >= 2

    m = ClusterLDML(n_clusters=3, tol=1.0, max_rounds=5, random_state=0, callback=cb,
                    ldml_max_iter=5, n_pairs_per_cluster=200, n_jobs=1).fit(X)
    assert [s[0] for s in seen] == [1, 2]
    assert m.n_rounds_ == 2
    assert_array_equal(seen[-1][2], m.components_)
    assert np.isfinite(seen[0][1])


def test_verbose_prints_rounds(blobs, capsys):
    X, _ = blobs
    ClusterLDML(n_clusters=3, tol=1.0, max_rounds=2, verbose=1, random_state=0,
                ldml_max_iter=5, n_pairs_per_cluster=200, n_jobs=1).fit(X)
    out = capsys.readouterr().out
    assert "ClusterLDML" in out and "ARI prev" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 2


def test_kmeans_options(blobs):
    X, y = blobs
    for km in ("kmeans", "minibatch", KMeans(n_init=2)):
        m = ClusterLDML(n_clusters=3, kmeans=km, random_state=0, **FAST).fit(X)
        assert adjusted_rand_score(y, m.labels_) > 0.95


def test_update_rate_one_and_alpha(blobs):
    X, y = blobs
    m = ClusterLDML(n_clusters=3, update_rate=1.0, alpha=1.0, random_state=0, **FAST).fit(X)
    assert np.isfinite(m.components_).all()
    assert adjusted_rand_score(y, m.labels_) > 0.95


# --------------------------------------------------------------------------
# the combination step
# --------------------------------------------------------------------------
def test_combine_is_truncated_mixture():
    rng = np.random.RandomState(0)
    d, k = 6, 6
    L = rng.randn(k, d)
    maps = [rng.randn(k, d) for _ in range(3)]
    w = np.array([0.2, 0.3, 0.5])
    r = 0.4
    M = (1 - r) * L.T @ L + r * sum(wi * Li.T @ Li for wi, Li in zip(w, maps))
    L_new = _combine(L, maps, w, r, k)
    assert_allclose(L_new.T @ L_new, M, rtol=1e-10, atol=1e-10)
    # truncation keeps the leading eigen-directions
    L2 = _combine(L, maps, w, r, 2)
    vals, vecs = np.linalg.eigh(M)
    M2 = (vecs[:, -2:] * vals[-2:]) @ vecs[:, -2:].T
    assert_allclose(L2.T @ L2, M2, rtol=1e-9, atol=1e-9)


def test_nearest_center_ties_and_values():
    Z = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    C = np.array([[0.5, 0.0], [0.5, 0.0], [3.0, 0.0]])
    assert_array_equal(_nearest_center(Z, C), [0, 0, 2])


# --------------------------------------------------------------------------
# degenerate data and bad input
# --------------------------------------------------------------------------
def test_duplicates_fewer_distinct_points_than_clusters():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 10, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ClusterLDML(n_clusters=4, random_state=0, **FAST).fit(X)
    assert np.isfinite(m.components_).all()
    assert np.isfinite(m.cluster_centers_).all()
    assert_array_equal(m.predict(X), m.labels_)


def test_constant_data_no_nan():
    X = np.ones((20, 3))
    with pytest.warns(UserWarning, match="no cluster has both"):
        m = ClusterLDML(n_clusters=2, random_state=0, **FAST).fit(X)
    assert np.isfinite(m.components_).all()
    assert m.n_rounds_ == 0


def test_as_many_points_as_clusters():
    X = np.arange(12, dtype=float).reshape(4, 3)
    with pytest.warns(UserWarning, match="no cluster has both"):
        m = ClusterLDML(n_clusters=4, random_state=0).fit(X)
    assert sorted(m.labels_) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "params, err, match",
    [
        ({"n_clusters": 1}, ValueError,
         r"'n_clusters' parameter of ClusterLDML must be an int in the range \[2, inf\)\. Got 1 "),
        ({"n_clusters": 2.5}, TypeError, r"'n_clusters' parameter of ClusterLDML must be an int.*Got 2\.5"),
        ({"n_clusters": True}, TypeError, "n_clusters"),
        ({"update_rate": 0.0}, ValueError, "update_rate"),
        ({"update_rate": 1.5}, ValueError, "update_rate"),
        ({"update_rate": np.nan}, ValueError, "update_rate"),
        ({"tol": -0.1}, ValueError, "tol"),
        ({"tol": "x"}, TypeError, "tol"),
        ({"max_rounds": -1}, ValueError, "max_rounds"),
        ({"ldml_max_iter": 0}, ValueError, "ldml_max_iter"),
        ({"n_directions": 0}, ValueError, "n_directions"),
        ({"n_directions": "all"}, ValueError, "n_directions"),
        ({"alpha": -1.0}, ValueError, "alpha"),
        ({"alpha": np.inf}, ValueError, "alpha"),
        ({"n_pairs_per_cluster": 1}, ValueError, "n_pairs_per_cluster"),
        ({"kmeans": "dbscan"}, ValueError, r"'kmeans' parameter of ClusterLDML .*Got 'dbscan'"),
        ({"kmeans": 3}, TypeError, r"'kmeans' parameter of ClusterLDML must be .*Got 3 "),
        # 'lda' is not among the options (it needs class labels).
        ({"init": "lda"}, ValueError,
         r"'init' parameter of ClusterLDML must be a str among \{(?:(?!'lda')[^}])*\}.*Got 'lda'"),
        ({"init": "nope"}, ValueError, r"'init' parameter of ClusterLDML .*Got 'nope'"),
        ({"n_components": 0}, ValueError, "n_components"),
        ({"n_components": 9}, ValueError, "n_components"),
        ({"normalize": "yes"}, TypeError, "normalize"),
        ({"callback": 3}, TypeError, "callback"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"verbose": -1}, ValueError, "verbose"),
    ],
)
def test_bad_params(blobs, params, err, match):
    X, _ = blobs
    with pytest.raises(err, match=match):
        ClusterLDML(**{"n_clusters": 3, **params}).fit(X)


def test_bad_data():
    rng = np.random.RandomState(0)
    X = rng.randn(20, 3)
    with pytest.raises(ValueError, match="n_samples=5"):
        ClusterLDML(n_clusters=8).fit(X[:5])
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ClusterLDML(n_clusters=2).fit(Xn)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        ClusterLDML(n_clusters=2).fit(Xi)
    with pytest.raises(ValueError):
        ClusterLDML(n_clusters=2).fit(X[:, 0])
    m = ClusterLDML(n_clusters=2, random_state=0, **FAST).fit(X)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        m.predict(Xn)


def test_unfitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ClusterLDML().predict(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        ClusterLDML().transform(np.zeros((3, 2)))


# --------------------------------------------------------------------------
# scikit-learn API
# --------------------------------------------------------------------------
def test_clone_get_params_pickle(blobs, fitted):
    X, _ = blobs
    est = ClusterLDML(n_clusters=4, update_rate=0.3, alpha=0.5, kmeans="minibatch")
    params = est.get_params()
    assert params["n_clusters"] == 4 and params["update_rate"] == 0.3
    assert params["kmeans"] == "minibatch"
    c = clone(est)
    assert c.get_params() == params
    est.set_params(n_clusters=5)
    assert est.n_clusters == 5
    again = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(again.predict(X), fitted.labels_)
    names = fitted.get_feature_names_out()
    assert list(names) == [f"clusterldml{i}" for i in range(5)]


def test_subset_and_order_invariance(blobs, fitted):
    X, _ = blobs
    full_t, full_p = fitted.transform(X), fitted.predict(X)
    for idx in (np.arange(7), np.arange(50, 120), np.random.RandomState(0).permutation(120)):
        assert_allclose(fitted.transform(X[idx]), full_t[idx], rtol=1e-10, atol=1e-12)
        assert_array_equal(fitted.predict(X[idx]), full_p[idx])


def test_one_feature():
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(30, 1), 8 + rng.randn(30, 1)])
    m = ClusterLDML(n_clusters=2, random_state=0, **FAST).fit(X)
    assert m.components_.shape == (1, 1)
    assert m.components_[0, 0] > 0  # canonical sign, nonzero scale
    assert adjusted_rand_score(np.repeat([0, 1], 30), m.labels_) == 1.0


def test_predict_1d_raises(fitted):
    with pytest.raises(ValueError, match="2D array"):
        fitted.predict(np.zeros(5))
    with pytest.raises(ValueError, match="2D array"):
        fitted.transform(np.zeros(5))


def test_fit_does_not_change_params(blobs):
    X, _ = blobs
    est = ClusterLDML(n_clusters=2, init="pca", n_components=3, random_state=1, **FAST)
    before = {k: v for k, v in vars(est).items() if not k.startswith("_")}
    est.fit(X)
    after = {k: v for k, v in vars(est).items()
             if not k.startswith("_") and not k.endswith("_")}
    assert after == before


def test_metric_functions(blobs, fitted):
    X, _ = blobs
    f = fitted.get_metric()
    L = fitted.components_
    assert f(X[0], X[1]) == pytest.approx(np.linalg.norm(L @ (X[0] - X[1])))
    pairs = np.stack([X[:4], X[4:8]], axis=1)
    assert_allclose(fitted.pair_distance(pairs),
                    np.linalg.norm((X[:4] - X[4:8]) @ L.T, axis=1), rtol=1e-10)


# These checks set ``n_clusters = 1`` before fitting; ClusterLDML rejects it
# on purpose (one cluster gives no dissimilar pair, so no metric to learn).
# The properties they check are tested above with n_clusters >= 2:
# test_subset_and_order_invariance, test_one_feature, test_predict_1d_raises,
# test_fit_does_not_change_params.
_N_CLUSTERS_1 = "sets n_clusters=1, which ClusterLDML rejects (no dissimilar pairs)"
# These checks fit with a y of more classes than n_clusters.  ClusterLDML's y
# is semi-supervised labels (-1 unlabelled) and refuses more classes than
# groups (test_semi_supervised_bad_labels); fit(X) and fit(X, all -1) are
# what a clusterer's "y is ignored" means, and are tested above.
_Y_CLASSES = "passes a y with more classes than n_clusters, which the semi-supervised fit refuses"
EXPECTED_FAILED_CHECKS = {
    "check_dtype_object": _Y_CLASSES,
    "check_methods_sample_order_invariance": _Y_CLASSES,
    "check_dont_overwrite_parameters": _N_CLUSTERS_1,
    "check_methods_subset_invariance": _N_CLUSTERS_1,
    "check_fit2d_1feature": _N_CLUSTERS_1,
    "check_fit2d_predict1d": _N_CLUSTERS_1,
    "check_fit2d_1sample": _N_CLUSTERS_1,
}


@parametrize_with_checks(
    [ClusterLDML(n_clusters=3, max_rounds=2, ldml_max_iter=5, n_pairs_per_cluster=100,
                 random_state=0, n_jobs=1)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
    xfail_strict=True,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_lloyd_kmeans_in_memory(blobs):
    """kmeans='lloyd' (the distributed-capable k-means) clusters as well as
    scikit-learn's KMeans on separated blobs, and gives the same model for 1
    and 2 threads."""
    from sklearn.metrics import adjusted_rand_score

    X, y = blobs
    params = {"n_clusters": len(np.unique(y)), "max_rounds": 2, "ldml_max_iter": 5,
                  "n_pairs_per_cluster": 200, "random_state": 0, "kmeans": "lloyd"}
    one = ClusterLDML(n_jobs=1, **params).fit(X)
    two = ClusterLDML(n_jobs=2, **params).fit(X)
    assert_array_equal(one.components_, two.components_)
    ref = ClusterLDML(**{**params, "kmeans": "kmeans"}).fit(X)
    assert adjusted_rand_score(y, one.labels_) >= adjusted_rand_score(y, ref.labels_) - 0.05
    assert_array_equal(one.predict(X), one.labels_)


# --------------------------------------------------------------------------
# the rounds: whitening, restarts
# --------------------------------------------------------------------------
def test_whiten_auto_follows_pairs_against_parameters():
    """'auto' whitens when a group's pairs (min(2000, max(100, 10 n_g)))
    outnumber the q^2 entries of a map on the q = n_directions discriminant
    coordinates ('auto': n_clusters - 1): also with 64 features, where a
    full metric (4096 entries) would not be determined."""
    X, _ = make_blobs(n_samples=180, centers=3, n_features=13, random_state=0)
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X)
    assert m.whitened_  # 300 pairs (FAST) >= 2 * 2
    X64, _ = make_blobs(n_samples=300, centers=3, n_features=64, random_state=0)
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X64)
    assert m.whitened_  # 300 pairs >= 2 * 2 (a full metric: 64 * 64 entries)
    m = ClusterLDML(n_clusters=3, n_directions=18, random_state=0, **FAST).fit(X64)
    assert not m.whitened_  # 300 pairs (FAST) < 18 * 18
    m = ClusterLDML(n_clusters=3, n_directions=17, random_state=0, **FAST).fit(X64)
    assert m.whitened_  # 300 pairs >= 17 * 17
    m = ClusterLDML(n_clusters=3, random_state=0, whiten=False, **FAST).fit(X64)
    assert not m.whitened_ and np.isfinite(m.components_).all()


def test_whitened_metric_lives_on_the_discriminant_directions():
    """The whitened rounds learn in q = n_clusters - 1 discriminant
    coordinates (a callback sees the rounds' clustering); the final metric
    adds the other directions back (full rank) without changing the
    clustering, and the cluster maps keep the shape
    (n_clusters, n_components, n_features)."""
    X, _ = make_blobs(n_samples=300, centers=4, n_features=10, random_state=0)
    m = ClusterLDML(n_clusters=4, random_state=0, n_jobs=1).fit(X)
    assert m.whitened_
    assert np.linalg.matrix_rank(m.components_) == 10
    assert m.cluster_components_.shape == (4, 10, 10)
    assert_array_equal(m.predict(X), m.labels_)
    for q in (6, 50):  # 50: capped at n_features
        m = ClusterLDML(n_clusters=4, n_directions=q, random_state=0, n_jobs=1).fit(X)
        assert np.linalg.matrix_rank(m.components_) == 10
    m = ClusterLDML(n_clusters=4, n_components=2, random_state=0, n_jobs=1).fit(X)
    assert m.components_.shape == (2, 10) and m.cluster_components_.shape == (4, 2, 10)


def test_raw_scale_does_not_stall():
    """On wine's raw features one feature (proline, in the thousands) makes
    the first clustering, and the old rounds never left it (ARI 0.37, as
    k-means).  The whitened rounds with fresh restarts do."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    km = adjusted_rand_score(y, KMeans(3, n_init=10, random_state=0).fit_predict(X))
    m = ClusterLDML(n_clusters=3, random_state=0, n_jobs=1).fit(X)
    assert km < 0.4
    assert m.whitened_
    assert adjusted_rand_score(y, m.labels_) > 0.8


# --------------------------------------------------------------------------
# semi-supervised fit(X, y), y = -1 for unlabelled points
# --------------------------------------------------------------------------
def _partial(y, fraction, seed=0):
    rng = np.random.RandomState(seed)
    out = np.full(y.shape, -1)
    known = rng.rand(y.size) < fraction
    out[known] = y[known]
    return out


def test_semi_supervised_ties_clusters_to_classes():
    X, y = _noisy_blobs(n=150)
    classes = np.array([10, 20, 30])[y]  # class ids that are not cluster ids
    partial = _partial(classes, 0.2)
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X, partial)
    assert_array_equal(m.cluster_classes_, [10, 20, 30])
    known = partial != -1
    # labelled points sit in their class's cluster in labels_ (a label is a
    # constraint), the others at their nearest centre, as predict puts them
    assert_array_equal(m.cluster_classes_[m.labels_[known]], partial[known])
    assert_array_equal(m.labels_[~known], m.predict(X)[~known])
    # and the labels help: better than the unsupervised fit on these blobs
    unsup = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X)
    assert adjusted_rand_score(y, m.labels_) >= adjusted_rand_score(y, unsup.labels_)


def test_semi_supervised_all_unlabelled_is_the_unsupervised_fit(blobs, fitted):
    X, _ = blobs
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X, np.full(X.shape[0], -1))
    assert_array_equal(m.components_, fitted.components_)
    assert_array_equal(m.labels_, fitted.labels_)
    assert_array_equal(m.cluster_classes_, [-1, -1, -1])
    assert fitted.cluster_classes_ is None


def test_semi_supervised_one_class_and_more_clusters_than_classes():
    X, y = _noisy_blobs(n=150)
    partial = np.where((y == 1) & (np.arange(y.size) % 5 == 0), 7, -1)
    m = ClusterLDML(n_clusters=4, random_state=0, **FAST).fit(X, partial)
    assert_array_equal(m.cluster_classes_, [7, -1, -1, -1])
    assert np.isfinite(m.components_).all()
    assert np.all(m.labels_[partial == 7] == 0)


def test_semi_supervised_labels_against_the_clusters():
    """Labels that contradict the geometry (random classes) still give a
    finite model with the groups tied to the classes."""
    X, _ = _noisy_blobs(n=150)
    partial = _partial(np.random.RandomState(3).randint(0, 3, X.shape[0]), 0.3)
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X, partial)
    assert np.isfinite(m.components_).all() and m.labels_.shape == (X.shape[0],)
    assert_array_equal(m.cluster_classes_, [0, 1, 2])
    known = partial != -1
    assert_array_equal(m.cluster_classes_[m.labels_[known]], partial[known])


@pytest.mark.parametrize("y, error, match", [
    (np.zeros(5), ValueError, r"y has 5 labels but X has 150 samples"),
    (np.r_[np.nan, np.full(149, -1.0)], ValueError, r"y contains NaN or infinity"),
    (np.array(["a"] * 150), TypeError, r"y must hold numbers"),
    (np.arange(150) % 4, ValueError, r"y has 4 labelled classes, more than n_clusters=3"),
    (np.zeros((150, 2)), ValueError, r"y must be 1-D"),
])
def test_semi_supervised_bad_labels(y, error, match):
    X, _ = _noisy_blobs(n=150)
    with pytest.raises(error, match=match):
        ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X, y)


def test_semi_supervised_same_for_one_and_two_threads():
    X, y = make_blobs(n_samples=400, centers=4, n_features=6, random_state=5)
    partial = _partial(y, 0.1)
    m1 = ClusterLDML(n_clusters=4, random_state=3, **dict(FAST, n_jobs=1)).fit(X, partial)
    m2 = ClusterLDML(n_clusters=4, random_state=3, **dict(FAST, n_jobs=2)).fit(X, partial)
    assert_array_equal(m1.components_, m2.components_)
    assert_array_equal(m1.labels_, m2.labels_)


def test_semi_supervised_kmeans_starts_from_the_labelled_means():
    """Seeded k-means: the first rows of the start are the labelled classes'
    means in the metric; with more clusters than classes the others are the
    unseeded run's centres farthest from those already chosen."""
    X, y = _noisy_blobs(n=150)
    partial = _partial(y, 0.2)
    known = np.flatnonzero(partial != -1)
    means = np.array([X[known[partial[known] == c]].mean(axis=0) for c in range(3)])
    L = np.random.RandomState(0).randn(2, 3)
    tie = (known, partial[known], means)
    model = ClusterLDML(n_clusters=3)
    assert_allclose(model._seeded_centres(L, tie, None), means @ L.T, rtol=1e-12)
    # two more clusters: the unseeded centres not near a class mean come next
    far = means @ L.T
    unseeded = np.vstack([far[0] + 1e-3, far[1] + 30.0, far[2] - 1e-3, far[1] - 10.0, far[2]])
    start = ClusterLDML(n_clusters=5)._seeded_centres(L, tie, lambda init: (None, unseeded))
    assert_allclose(start[:3], far, rtol=1e-12)
    assert_allclose(start[3:], unseeded[[1, 3]])
    # a fit: the labelled points sit in their class's cluster
    m = ClusterLDML(n_clusters=3, random_state=0, **FAST).fit(X, partial)
    assert np.mean(m.labels_[known] == partial[known]) > 0.9


def test_whitened_rounds_keep_the_better_kmeans_optimum():
    """A restarted round also runs k-means from the previous clusters and
    keeps whichever ends with the lower inertia (both in the new metric)."""
    X, y = make_blobs(n_samples=300, centers=4, n_features=3, cluster_std=2.5, random_state=7)
    rows = MemoryRows(X)
    model = ClusterLDML(n_clusters=4, random_state=0, n_jobs=1)
    L = np.eye(3)
    fresh = model._kmeans(rows.embed(L), 11, None)
    for previous in (y, np.random.RandomState(0).randint(0, 4, y.size)):
        init = _cluster_means(X, previous, np.zeros((4, 3)))
        continued = model._kmeans(rows.embed(L), 11, init)
        labels, _, inertia = model._cluster(rows, L, 11, previous=previous, restart=True)
        assert inertia == min(fresh[2], continued[2])
        best = continued if continued[2] < fresh[2] * (1 - 1e-9) else fresh
        assert_array_equal(labels, best[0])


def test_init_from_a_fitted_transformer():
    """A fitted PCA is the starting metric (max_rounds=0 keeps it); with
    normalize=True it is applied to the normalised points."""
    from sklearn.decomposition import PCA

    X, _ = _noisy_blobs(n=150)
    pca = PCA(n_components=2).fit(X)
    m = ClusterLDML(n_clusters=3, init=pca, max_rounds=0, random_state=0, n_jobs=1).fit(X)
    direction = m.components_ / np.linalg.norm(m.components_)
    assert_allclose(direction, pca.components_ / np.linalg.norm(pca.components_), atol=1e-12)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    pca_n = PCA(n_components=2).fit(Xn)
    m = ClusterLDML(n_clusters=3, init=pca_n, normalize=True, max_rounds=0, random_state=0,
                    n_jobs=1).fit(X)
    # cosine geometry: the map acts on the unit rows, so scaling a point changes nothing
    assert_allclose(m.transform(5.0 * X), m.transform(X), rtol=1e-12)
    assert_allclose(m.components_ / np.linalg.norm(m.components_),
                    pca_n.components_ / np.linalg.norm(pca_n.components_), atol=1e-12)


def test_whitened_round_that_isolates_outliers_is_undone():
    """On standardised breast cancer a converged whitened round on all 30
    directions with a full step (the earlier defaults) gives 2 of 569 points
    a group of their own (ARI 0.005); that round is undone."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, _ = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    m = ClusterLDML(n_clusters=2, n_directions=30, update_rate=1.0, ldml_max_iter=100,
                    random_state=0, n_jobs=1).fit(X)
    assert m.whitened_
    assert m.history_[-1].get("reverted") is True
    assert np.bincount(m.labels_).min() > 50
    assert m.n_rounds_ == len(m.history_) - 1


@pytest.mark.parametrize("scale", ["raw", "std"])
def test_two_groups_not_below_kmeans(scale):
    """Breast cancer (2 groups): the defaults no longer let a few extreme
    points rule the metric (ARI was 0.14 raw and 0.44 standardised, against
    0.49 and 0.65 for k-means); now at least k-means' ARI - 0.01."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    if scale == "std":
        X = StandardScaler().fit_transform(X)
    km = adjusted_rand_score(y, KMeans(2, n_init=10, random_state=0).fit_predict(X))
    m = ClusterLDML(n_clusters=2, random_state=0, n_jobs=1).fit(X)
    assert not any(h.get("reverted") for h in m.history_)
    assert np.bincount(m.labels_).min() > 100
    assert adjusted_rand_score(y, m.labels_) >= km - 0.01


def test_rest_of_the_metric_keeps_the_clustering():
    """ClusterLDML._add_rest: a rank-2 metric plus the starting metric away
    from the cluster-mean differences is of full rank, at unit spread, and
    every point keeps its nearest cluster mean."""
    from fastmetric._core.cluster_rows import MemoryRows, nearest_center

    X, _ = make_blobs(n_samples=200, centers=3, n_features=6, random_state=1)
    rows = MemoryRows(X)
    labels = KMeans(3, n_init=4, random_state=0).fit_predict(X)
    L = np.vstack([np.random.RandomState(0).standard_normal((2, 6)), np.zeros((4, 6))])
    L_start = np.eye(6) / np.sqrt(rows.spread(np.eye(6)))
    L_new = ClusterLDML._add_rest(rows, L, L_start, labels)
    assert L_new.shape == (6, 6) and np.linalg.matrix_rank(L_new) == 6
    assert rows.spread(L_new) == pytest.approx(1.0)
    means = np.stack([X[labels == c].mean(axis=0) for c in range(3)])
    assert_array_equal(nearest_center(X @ L_new.T, means @ L_new.T),
                       nearest_center(X @ L.T, means @ L.T))
    # Nothing left outside the span of the mean differences: L unchanged.
    L2 = L[:, :2].copy()
    assert ClusterLDML._add_rest(MemoryRows(X[:, :2].copy()), L2, np.eye(2), labels) is L2


def test_fit_predict_passes_the_labels_and_unclaimed_clusters_warn():
    """fit_predict(X, y) was scikit-learn's ClusterMixin.fit_predict, which
    fits on X alone: the labels were silently dropped.  With every point
    labelled and fewer classes than clusters, the extra clusters get no
    training point: a warning says so.  Boolean labels got True for an
    unclaimed cluster (a bool cannot hold -1)."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    partial = np.full(150, -1)
    partial[::10] = y[::10]
    est = ClusterLDML(n_clusters=3, random_state=0)
    labels = est.fit_predict(X, partial)
    ref = ClusterLDML(n_clusters=3, random_state=0).fit(X, partial)
    np.testing.assert_array_equal(labels, ref.labels_)
    np.testing.assert_array_equal(est.cluster_classes_, [0, 1, 2])
    with pytest.warns(UserWarning, match="every point is labelled, with 3 classes, and "
                                         "n_clusters=4"):
        est = ClusterLDML(n_clusters=4, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.cluster_classes_, [0, 1, 2, -1])
    with pytest.warns(UserWarning, match="with 2 classes"):
        est = ClusterLDML(n_clusters=3, random_state=0).fit(X, y > 0)
    np.testing.assert_array_equal(est.cluster_classes_, [0, 1, -1])


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_a_constant_feature_is_left_out_of_the_metric(value):
    """With as many discriminant directions as varying features, the rest of
    the starting metric was only a constant column: its spread was the
    rounding of the projection (about 1e-34), scaled up to a share of the
    metric it became the whole metric (M = diag(0, 0, 2.5e29), every
    distance 0).  Now the constant column gets no weight, and the clustering
    and the distances are about those learned without it."""
    rng = np.random.RandomState(0)
    X = rng.randn(150, 2) + 5.0 * (np.arange(150) % 3)[:, None]
    with_constant = np.c_[X, np.full(150, value)]
    fitted = ClusterLDML(n_clusters=3, random_state=0).fit(with_constant)
    M = fitted.get_mahalanobis_matrix()
    assert np.allclose(M[2], 0.0) and np.all(np.isfinite(M))
    alone = ClusterLDML(n_clusters=3, random_state=0).fit(X)
    assert adjusted_rand_score(alone.labels_, fitted.labels_) == 1.0
    d_with = np.sqrt(np.einsum("ij,jk,ik->i", X[1:] - X[:-1], M[:2, :2], X[1:] - X[:-1]))
    d_alone = np.sqrt(np.einsum("ij,jk,ik->i", X[1:] - X[:-1], alone.get_mahalanobis_matrix(),
                                X[1:] - X[:-1]))
    assert d_with.max() > 1.0 and np.corrcoef(d_with, d_alone)[0, 1] > 0.99

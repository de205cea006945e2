"""Tests of the shared metric base: init strategies, pair input, targets,
transform/distances/get_metric, and the pairs-classifier threshold logic."""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import DBSCAN
from sklearn.datasets import load_iris
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.init import initialize_components
from fastmetric._core.inputs import check_pair_targets, check_pairs
from fastmetric._core.pairs import PairsClassifierMixin
from fastmetric._core.rows import l2_normalize_rows


# --------------------------------------------------------------------------
# Minimal concrete learners with a fixed map, to test the base alone.
# --------------------------------------------------------------------------
class FixedMetric(MahalanobisMixin):
    def __init__(self, components=None, normalize=False, preprocessor=None, n_jobs=None):
        self.components = components
        self.normalize = normalize
        self.preprocessor = preprocessor
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        X = np.asarray(X)
        d = X.shape[-1]
        self.components_ = (
            np.eye(d) if self.components is None else np.asarray(self.components, float)
        )
        self.n_features_in_ = d
        return self


class FixedPairs(PairsClassifierMixin, FixedMetric):
    def fit(self, pairs, y=None):
        super().fit(pairs)
        self.classes_ = np.array([-1, 1])
        return self


def _numpy_distances(X, idx, L, normalize=False):
    if normalize:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    diff = (X[idx[:, 0]] - X[idx[:, 1]]) @ L.T
    return np.sqrt(np.sum(diff**2, axis=1))


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(30, 4)
    L = rng.randn(3, 4)
    idx = rng.randint(0, 30, size=(50, 2))
    return X, L, idx


# --------------------------------------------------------------------------
# initialize_components
# --------------------------------------------------------------------------
def test_init_identity_random_array_learner():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 5)
    assert_array_equal(initialize_components("identity", X, n_components=3), np.eye(3, 5))
    R1 = initialize_components("random", X, n_components=2, random_state=3)
    R2 = initialize_components("random", X, n_components=2, random_state=3)
    assert R1.shape == (2, 5)
    assert_array_equal(R1, R2)
    A = rng.randn(2, 5)
    out = initialize_components(A, X)
    assert_array_equal(out, A)
    assert out is not A  # a copy: the learner must not write into the user's array
    learner = FixedMetric(components=A).fit(X)
    assert_array_equal(initialize_components(learner, X), A)


def test_init_pca_is_sklearn_pca_axes():
    from sklearn.decomposition import PCA

    rng = np.random.RandomState(0)
    X = rng.randn(60, 6) * np.arange(1, 7)
    L = initialize_components("pca", X, n_components=3, random_state=0)
    ref = PCA(3, random_state=0).fit(X).components_
    assert_allclose(np.abs(L), np.abs(ref), atol=1e-10)
    assert_allclose(L @ L.T, np.eye(3), atol=1e-10)


def test_init_lda_matches_sklearn_scalings():
    X, y = load_iris(return_X_y=True)
    L = initialize_components("lda", X, y, n_components=2)
    ref = LinearDiscriminantAnalysis(n_components=2).fit(X, y).scalings_.T[:2]
    assert_allclose(L, ref, rtol=1e-8, atol=1e-10)


def test_init_covariance_whitens():
    rng = np.random.RandomState(0)
    A = rng.randn(4, 4)
    X = rng.randn(500, 4) @ A
    L = initialize_components("covariance", X)
    C = np.cov(X, rowvar=False)
    # L (C + r I) L^T = I exactly, with the documented ridge r.
    C_reg = C + 1e-3 * np.trace(C) / 4 * np.eye(4)
    assert_allclose(L @ C_reg @ L.T, np.eye(4), atol=1e-10)
    assert_allclose(L, L.T, atol=1e-10)  # symmetric inverse square root
    L2 = initialize_components("covariance", X, n_components=2)
    assert L2.shape == (2, 4)
    assert_allclose(L2 @ C_reg @ L2.T, np.eye(2), atol=1e-10)
    # The two kept directions are those of largest variance.
    w, V = np.linalg.eigh(C)
    assert_allclose(np.abs(L2 @ V[:, :2]), 0, atol=1e-8)


def test_init_auto_choices():
    X, y = load_iris(return_X_y=True)
    lda = initialize_components("lda", X, y, n_components=2)
    assert_allclose(initialize_components("auto", X, y, n_components=2), lda)
    # 4 components > n_classes - 1: PCA would need k < d, so identity.
    assert_array_equal(initialize_components("auto", X, y), np.eye(4))
    pca = initialize_components("pca", X, n_components=3, random_state=0)
    assert_allclose(initialize_components("auto", X, n_components=3, random_state=0), pca)
    # One class: LDA impossible, falls back to PCA.
    assert_allclose(
        initialize_components("auto", X, np.zeros(150), n_components=3, random_state=0), pca
    )


DEGENERATE = {
    "constant_features": lambda rng: np.column_stack(
        [rng.randn(30, 3), np.ones(30), np.zeros(30)]
    ),
    "duplicated_rows": lambda rng: np.repeat(rng.randn(6, 5), 5, axis=0),
    "d_greater_than_n": lambda rng: rng.randn(8, 20),
    "all_constant": lambda rng: np.ones((10, 5)),
}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("init", ["auto", "identity", "pca", "lda", "covariance", "random"])
@pytest.mark.parametrize("n_components", [None, 2])
def test_init_degenerate_data(case, init, n_components):
    rng = np.random.RandomState(0)
    X = DEGENERATE[case](rng)
    y = np.arange(X.shape[0]) % 3
    d = X.shape[1]
    if init == "lda" and (n_components or d) > 2:
        with pytest.raises(ValueError, match="at most"):
            initialize_components(init, X, y, n_components=n_components)
        return
    L = initialize_components(init, X, y, n_components=n_components, random_state=0)
    assert L.shape == (n_components or d, d)
    assert L.dtype == np.float64
    assert np.isfinite(L).all()
    # The map is never degenerate: every requested direction is used.
    assert np.linalg.matrix_rank(L) == L.shape[0]


def test_init_single_sample():
    X = np.array([[1.0, 2.0, 3.0]])
    for init in ("pca", "covariance", "identity"):
        L = initialize_components(init, X, n_components=2)
        assert L.shape == (2, 3) and np.isfinite(L).all()


def test_init_errors():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="not a known strategy"):
        initialize_components("nope", X)
    with pytest.raises(ValueError, match="n_components=5"):
        initialize_components("identity", X, n_components=5)
    with pytest.raises(TypeError, match="n_components"):
        initialize_components("identity", X, n_components=2.5)
    with pytest.raises(ValueError, match="shape"):
        initialize_components(np.eye(3), X)
    with pytest.raises(ValueError, match="must agree"):
        initialize_components(np.eye(4), X, n_components=2)
    with pytest.raises(ValueError, match="NaN"):
        initialize_components(np.full((2, 4), np.nan), X)
    with pytest.raises(ValueError, match="class labels"):
        initialize_components("lda", X, n_components=2)
    with pytest.raises(ValueError, match="1 class"):
        initialize_components("lda", X, np.zeros(150), n_components=1)
    with pytest.raises(ValueError, match="not fitted"):
        initialize_components(FixedMetric(), X)
    with pytest.raises(ValueError, match="NaN"):
        initialize_components("pca", np.full((3, 2), np.nan))


# --------------------------------------------------------------------------
# Pair input and targets
# --------------------------------------------------------------------------
def test_check_pairs_3d_view_and_dedupe(data):
    X, _, idx = data
    pairs = X[idx]
    P, ip = check_pairs(pairs)
    assert np.shares_memory(P, pairs)  # no copy without dedupe
    assert_array_equal(P[ip], pairs)
    Pd, ipd = check_pairs(pairs, dedupe=True)
    assert_array_equal(Pd[ipd], pairs)
    assert Pd.shape[0] == len(np.unique(idx))  # one row per distinct point


def test_check_pairs_index_form_does_not_copy(data):
    X, _, idx = data
    P, ip = check_pairs(idx, X)
    assert P is X  # the preprocessor itself: kernels index into it
    assert_array_equal(ip, idx)
    # Callable preprocessor: only the distinct rows are fetched.
    calls = []

    def fetch(indices):
        calls.append(np.asarray(indices).copy())
        return X[indices]

    P2, ip2 = check_pairs(idx, fetch)
    assert_array_equal(P2[ip2], X[idx])
    assert len(calls) == 1 and len(calls[0]) == len(np.unique(idx))


def test_check_pairs_errors(data):
    X, _, idx = data
    with pytest.raises(ValueError, match=r"\(n_pairs, 2, n_features\)"):
        check_pairs(np.zeros((5, 3, 4)))
    with pytest.raises(ValueError, match="preprocessor"):
        check_pairs(idx)  # 2-D without a preprocessor
    with pytest.raises(ValueError, match="outside"):
        check_pairs(np.array([[0, 30]]), X)
    with pytest.raises(ValueError, match="outside"):
        check_pairs(np.array([[-1, 2]]), X)
    with pytest.raises(TypeError, match="integer"):
        check_pairs(idx.astype(float), X)
    bad = X[idx].copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        check_pairs(bad)
    Xbad = X.copy()
    Xbad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        check_pairs(idx, Xbad)
    with pytest.raises(ValueError, match="features"):
        check_pairs(X[idx], n_features=5)
    with pytest.raises(ValueError, match="empty"):
        check_pairs(np.zeros((0, 2, 4)))
    with pytest.raises(ValueError, match="dimension"):
        check_pairs(np.zeros(4))


def test_check_pair_targets():
    assert_array_equal(check_pair_targets([-1, 1, 1], 3), [0, 1, 1])
    assert_array_equal(check_pair_targets([0, 1, 1], 3), [0, 1, 1])
    assert_array_equal(check_pair_targets([True, False], 2), [1, 0])
    assert_array_equal(check_pair_targets([0.2, 0.9], 2), [0.2, 0.9])
    assert_array_equal(check_pair_targets([1, 1], 2), [1, 1])
    assert_array_equal(check_pair_targets([-1, -1], 2), [0, 0])
    for bad in ([-1, 0, 1], [0, 2], [-0.5, 1], [1.5, 0]):
        with pytest.raises(ValueError, match="y"):
            check_pair_targets(bad, len(bad))
    with pytest.raises(ValueError, match="NaN"):
        check_pair_targets([np.nan, 1], 2)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        check_pair_targets([0, 1], 3)
    with pytest.raises(TypeError, match="numbers"):
        check_pair_targets(["a", "b"], 2)
    with pytest.raises(ValueError, match="None"):
        check_pair_targets(None, 2)


def test_l2_normalize_rows():
    X = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    N = l2_normalize_rows(X)
    assert N.dtype == np.float32
    assert_allclose(N, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert_array_equal(X, [[3.0, 4.0], [0.0, 0.0]])  # input untouched


# --------------------------------------------------------------------------
# MahalanobisMixin
# --------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", [False, True])
def test_transform_distances_metric_agree(data, normalize):
    X, L, idx = data
    est = FixedMetric(components=L, normalize=normalize, preprocessor=X).fit(X)
    expected = _numpy_distances(X, idx, L, normalize)
    assert_allclose(est.pair_distance(idx), expected, rtol=1e-10)
    assert_allclose(est.pair_distance(X[idx]), expected, rtol=1e-10)
    assert_allclose(est.pair_score(X[idx]), -expected, rtol=1e-10)
    Z = est.transform(X)
    assert_allclose(np.linalg.norm(Z[idx[:, 0]] - Z[idx[:, 1]], axis=1), expected, rtol=1e-10)
    metric = est.get_metric()
    got = [metric(X[a], X[b]) for a, b in idx[:10]]
    assert_allclose(got, expected[:10], rtol=1e-10)
    assert_allclose(metric(X[0], X[1], squared=True), metric(X[0], X[1]) ** 2)
    assert_allclose(est.get_mahalanobis_matrix(), L.T @ L)
    # Indices through the preprocessor in transform (metric-learn's form).
    assert_allclose(est.transform(np.array([3, 5])), Z[[3, 5]])


def test_transform_keeps_float32(data):
    X, L, _ = data
    est = FixedMetric(components=L).fit(X)
    Z = est.transform(X.astype(np.float32))
    assert Z.dtype == np.float32
    assert_allclose(Z, X @ L.T, rtol=1e-5, atol=1e-5)


def test_get_metric_picklable_and_usable_by_sklearn(data):
    X, L, _ = data
    y = (X[:, 0] > 0).astype(int)
    est = FixedMetric(components=L).fit(X)
    metric = pickle.loads(pickle.dumps(est.get_metric()))
    knn = KNeighborsClassifier(n_neighbors=3, metric=metric).fit(X, y)
    knn_ref = KNeighborsClassifier(n_neighbors=3).fit(X @ L.T, y)
    assert_array_equal(knn.predict(X), knn_ref.predict(X @ L.T))
    labels = DBSCAN(eps=1.0, min_samples=2, metric=metric).fit(X).labels_
    labels_ref = DBSCAN(eps=1.0, min_samples=2).fit(X @ L.T).labels_
    assert_array_equal(labels, labels_ref)
    with pytest.raises(ValueError, match="features"):
        metric(X[0, :2], X[1, :2])


def test_feature_names_out(data):
    X, L, _ = data
    est = FixedMetric(components=L).fit(X)
    assert list(est.get_feature_names_out()) == ["fixedmetric0", "fixedmetric1", "fixedmetric2"]


def test_not_fitted_and_wrong_features(data):
    X, L, idx = data
    est = FixedMetric(components=L, preprocessor=X)
    for call in (
        lambda: est.transform(X),
        lambda: est.pair_distance(idx),
        lambda: est.get_metric(),
        lambda: est.get_mahalanobis_matrix(),
    ):
        with pytest.raises(NotFittedError):
            call()
    est.fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :3])
    with pytest.raises(ValueError, match="features"):
        est.pair_distance(X[idx][:, :, :3])
    with pytest.warns(FutureWarning, match="pair_distance"):
        assert_allclose(est.score_pairs(idx), est.pair_distance(idx))


# --------------------------------------------------------------------------
# PairsClassifierMixin
# --------------------------------------------------------------------------
@pytest.fixture
def scored_pairs():
    """Pairs whose Euclidean distance is informative but noisy."""
    rng = np.random.RandomState(1)
    X = rng.randn(200, 3)
    idx = rng.randint(0, 200, size=(300, 2))
    d = np.linalg.norm(X[idx[:, 0]] - X[idx[:, 1]], axis=1)
    y = np.where(d + 0.5 * rng.randn(300) < np.median(d), 1, -1)
    est = FixedPairs(preprocessor=X).fit(X)
    return est, idx, y, d


def _rates(pred, y):
    pos, neg = y == 1, y == -1
    tp = np.sum((pred == 1) & pos)
    tn = np.sum((pred == -1) & neg)
    return tp, tn, tp / pos.sum(), tn / neg.sum()


def _all_thresholds(dist):
    """One distance threshold per split "distance <= t is similar"."""
    u = np.unique(dist)
    return np.concatenate([[u[0] - 1], (u[:-1] + u[1:]) / 2, [u[-1]]])


def test_predict_decision_score(scored_pairs):
    est, idx, y, dist = scored_pairs
    with pytest.raises(AttributeError, match="threshold"):
        est.predict(idx)
    assert_allclose(est.decision_function(idx), -dist)
    # threshold_ is a distance: similar when the distance is at most it.
    est.set_threshold(1.0)
    assert_array_equal(est.predict(idx), np.where(dist <= 1.0, 1, -1))
    assert est.score(idx, y) == pytest.approx(roc_auc_score(y, -dist))
    assert est.score(idx, (y + 1) // 2) == pytest.approx(roc_auc_score(y, -dist))
    assert not hasattr(est, "predict_proba")  # no probabilistic model here
    with pytest.raises(TypeError):
        est.set_threshold("a")


def test_calibrate_accuracy_and_fbeta_are_optimal(scored_pairs):
    est, idx, y, dist = scored_pairs
    cands = _all_thresholds(dist)
    est.calibrate_threshold(idx, y, strategy="accuracy")
    acc = np.mean(est.predict(idx) == y)
    best = max(np.mean(np.where(dist <= t, 1, -1) == y) for t in cands)
    assert acc == pytest.approx(best)

    def fbeta(pred, beta):
        tp = np.sum((pred == 1) & (y == 1))
        fp = np.sum((pred == 1) & (y == -1))
        fn = np.sum((pred == -1) & (y == 1))
        denom = (1 + beta**2) * tp + beta**2 * fn + fp
        return (1 + beta**2) * tp / denom if denom > 0 else 0.0  # none predicted: 0

    for beta in (0.0, 0.5, 1.0, 2.0):  # beta = 0: the precision
        est.calibrate_threshold(idx, y, strategy="f_beta", beta=beta)
        got = fbeta(est.predict(idx), beta)
        best = max(fbeta(np.where(dist <= t, 1, -1), beta) for t in cands)
        assert got == pytest.approx(best)


@pytest.mark.parametrize("min_rate", [0.0, 0.3, 0.8, 1.0])
def test_calibrate_max_tpr_max_tnr(scored_pairs, min_rate):
    est, idx, y, dist = scored_pairs
    cands = _all_thresholds(dist)
    table = [_rates(np.where(dist <= t, 1, -1), y) for t in cands]

    est.calibrate_threshold(idx, y, strategy="max_tpr", min_rate=min_rate)
    _, _, tpr, tnr = _rates(est.predict(idx), y)
    assert tnr >= min_rate
    assert tpr == pytest.approx(max(r[2] for r in table if r[3] >= min_rate))

    est.calibrate_threshold(idx, y, strategy="max_tnr", min_rate=min_rate)
    _, _, tpr, tnr = _rates(est.predict(idx), y)
    assert tpr >= min_rate
    assert tnr == pytest.approx(max(r[3] for r in table if r[2] >= min_rate))


def test_calibrate_threshold_ties_and_extremes():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    est = FixedPairs(preprocessor=X).fit(X)
    idx = np.array([[0, 1], [1, 2], [0, 2], [0, 3]])  # distances 1, 1, 2, 3
    y = np.array([1, 1, -1, -1])
    est.calibrate_threshold(idx, y)
    assert_array_equal(est.predict(idx), y)
    assert 1 < est.threshold_ < 2
    # Every pair similar: the threshold goes above every distance.
    est.calibrate_threshold(idx, y, strategy="max_tnr", min_rate=1.0)
    assert est.predict(idx).tolist() in ([1, 1, 1, 1], [1, 1, -1, -1])
    est.calibrate_threshold(idx, [1, -1, 1, -1], strategy="max_tnr", min_rate=1.0)
    assert_array_equal(est.predict(idx), [1, 1, 1, -1])


def test_calibrate_threshold_errors(scored_pairs):
    est, idx, y, _ = scored_pairs
    with pytest.raises(ValueError, match="(?i)strategy"):
        est.calibrate_threshold(idx, y, strategy="precision")
    with pytest.raises(ValueError, match="min_rate"):
        est.calibrate_threshold(idx, y, strategy="max_tpr")
    with pytest.raises(ValueError, match="min_rate"):
        est.calibrate_threshold(idx, y, strategy="max_tnr", min_rate=1.5)
    with pytest.raises(ValueError, match="beta"):
        est.calibrate_threshold(idx, y, strategy="f_beta", beta=np.inf)
    with pytest.raises(ValueError, match="one class"):
        est.calibrate_threshold(idx, np.ones(len(y)))
    with pytest.raises(ValueError, match="soft"):
        est.calibrate_threshold(idx, np.full(len(y), 0.5))

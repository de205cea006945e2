"""Covariance: the (shrunk) inverse covariance metric."""
import doctest
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.covariance import ledoit_wolf_shrinkage, oas
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import Covariance
from fastmetric._core.covariance import MIN_SHRINKAGE

from ..conftest import tolerance


def _well_conditioned(n=200, d=4, seed=0):
    rng = np.random.RandomState(seed)
    A = rng.randn(d, d) + 2 * np.eye(d)
    return rng.randn(n, d) @ A.T * [1.0, 10.0, 0.1, 3.0][:d] + 5.0


def _assert_psd(M, tol=1e-10):
    assert np.isfinite(M).all()
    assert_allclose(M, M.T, atol=tol * max(1.0, np.abs(M).max()))
    assert np.linalg.eigvalsh(M).min() >= -tol * max(1.0, np.abs(M).max())


@parametrize_with_checks([Covariance(), Covariance(shrinkage="ledoit_wolf")])
def test_sklearn_checks(estimator, check):
    check(estimator)


def test_docstring_example():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(Covariance.__doc__, {}, "Covariance", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert test.examples and runner.failures == 0


def test_plain_inverse_covariance(dtype):
    X = _well_conditioned().astype(dtype)
    cov = Covariance(shrinkage=0.0).fit(X)
    ref = np.linalg.inv(np.cov(X.astype(np.float64), rowvar=False))
    rtol = 1e-7 if dtype == np.float64 else 1e-3
    assert_allclose(cov.get_mahalanobis_matrix(), ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    assert cov.components_.dtype == np.float64
    assert cov.shrinkage_ == 0.0


@pytest.mark.parametrize("a", [0.3, 0.7, 1.0])
def test_shrinkage_formula(a):
    X = _well_conditioned()
    cov = Covariance(shrinkage=a).fit(X)
    C = np.cov(X, rowvar=False)
    C_a = (1 - a) * C + a * np.diag(np.diag(C))
    assert_allclose(cov.covariance_, C_a, rtol=1e-10)
    assert_allclose(cov.get_mahalanobis_matrix(), np.linalg.inv(C_a), rtol=1e-8)
    if a == 1.0:  # standardised Euclidean
        assert_allclose(cov.get_mahalanobis_matrix(), np.diag(1 / np.diag(C)), rtol=1e-8,
                        atol=1e-12)


def test_whitening_gives_identity_covariance():
    X = _well_conditioned()
    Z = Covariance(shrinkage=0.0).fit(X).transform(X)
    assert_allclose(np.cov(Z, rowvar=False), np.eye(X.shape[1]), atol=1e-8)


@pytest.mark.parametrize("rule", ["ledoit_wolf", "oas"])
def test_estimated_shrinkage(rule):
    X = _well_conditioned(n=30, d=4)
    cov = Covariance(shrinkage=rule).fit(X)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    expected = (ledoit_wolf_shrinkage(Z, assume_centered=True) if rule == "ledoit_wolf"
                else oas(Z, assume_centered=True)[1])
    assert_allclose(cov.shrinkage_, expected, rtol=1e-10)
    C = np.cov(X, rowvar=False)
    a = cov.shrinkage_
    assert_allclose(cov.covariance_, (1 - a) * C + a * np.diag(np.diag(C)), rtol=1e-10)


def test_metric_ignores_feature_units_and_translation():
    X = _well_conditioned()
    scale = np.array([1e-3, 2.0, 1e4, 0.5])
    pairs = np.stack([X[:20], X[20:40]], axis=1)
    base = Covariance().fit(X).pair_distance(pairs)
    moved = Covariance().fit(X * scale - 7.0).pair_distance(pairs * scale - 7.0)
    assert_allclose(moved, base, rtol=1e-8)


def test_constant_features_get_a_typical_weight():
    rng = np.random.RandomState(0)
    X = np.column_stack([rng.randn(100, 3), np.full(100, 4.0)])
    for a in (0.0, 0.7):
        cov = Covariance(shrinkage=a).fit(X)
        M = cov.get_mahalanobis_matrix()
        _assert_psd(M)
        typical = np.var(X[:, :3], axis=0, ddof=1).mean()
        # No correlation with the others; weight 1 / typical variance.
        assert_allclose(M[3, :3], 0.0, atol=1e-12)
        assert_allclose(M[3, 3], 1.0 / typical, rtol=1e-8)


@pytest.mark.parametrize("case", ["d>n", "duplicates", "all_equal", "collinear", "one_feature"])
def test_degenerate_data_gives_finite_psd_metric(case):
    rng = np.random.RandomState(0)
    if case == "d>n":
        X = rng.randn(5, 20)
    elif case == "duplicates":
        X = np.repeat(rng.randn(4, 3), 5, axis=0)
    elif case == "all_equal":
        X = np.ones((6, 3))
    elif case == "collinear":
        base = rng.randn(50, 2)
        X = np.column_stack([base, base[:, 0] * 2 - base[:, 1]])
    else:
        X = rng.randn(10, 1)
    for shrinkage in (0.0, 0.7, "ledoit_wolf", "oas"):
        cov = Covariance(shrinkage=shrinkage).fit(X)
        _assert_psd(cov.get_mahalanobis_matrix(), tol=1e-8)
        assert np.isfinite(cov.transform(X)).all()
    if case == "all_equal":
        for value in (1.0, 5.0, -1e-30, 1e-250, 1e250):
            M = Covariance().fit(np.full((6, 3), value)).get_mahalanobis_matrix()
            assert_allclose(M, np.eye(3))


def test_float32_close_to_float64():
    X = _well_conditioned()
    M64 = Covariance().fit(X).get_mahalanobis_matrix()
    M32 = Covariance().fit(X.astype(np.float32)).get_mahalanobis_matrix()
    assert_allclose(M32, M64, rtol=tolerance(np.float32) * 10, atol=1e-6 * np.abs(M64).max())
    Z = Covariance().fit(X).transform(X.astype(np.float32))
    assert Z.dtype == np.float32


def test_preprocessor_indices():
    X = _well_conditioned()
    idx = np.arange(0, 200, 2)
    est = Covariance(preprocessor=X).fit(idx)
    ref = Covariance().fit(X[idx])
    assert_allclose(est.components_, ref.components_)
    assert_allclose(est.transform(idx[:5]), ref.transform(X[idx[:5]]))
    est_callable = Covariance(preprocessor=lambda i: X[i]).fit(idx)
    assert_allclose(est_callable.components_, ref.components_)


def test_bad_input():
    X = _well_conditioned()
    with pytest.raises(ValueError, match="NaN|infinity"):
        Covariance().fit(np.where(np.arange(800).reshape(200, 4) == 5, np.nan, X))
    with pytest.raises(ValueError, match="1 sample"):
        Covariance().fit(X[:1])
    with pytest.raises(ValueError):
        Covariance().fit(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        Covariance().fit(X[None])
    with pytest.raises(TypeError):
        Covariance().fit(scipy.sparse.csr_matrix(X))
    with pytest.raises(ValueError, match="shrinkage"):
        Covariance(shrinkage=1.5).fit(X)
    with pytest.raises(ValueError, match="shrinkage"):
        Covariance(shrinkage=-0.1).fit(X)
    with pytest.raises(ValueError, match="shrinkage"):
        Covariance(shrinkage=np.nan).fit(X)
    with pytest.raises(ValueError, match="shrinkage"):
        Covariance(shrinkage="auto").fit(X)
    with pytest.raises(TypeError, match="shrinkage"):
        Covariance(shrinkage=True).fit(X)
    with pytest.raises(ValueError, match="features"):
        Covariance().fit(X).transform(X[:, :3])


def test_pickle_and_refit():
    X = _well_conditioned()
    est = Covariance().fit(X)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.transform(X), est.transform(X))
    first = est.components_.copy()
    assert_array_equal(est.fit(X).components_, first)


def test_minimal_shrinkage_floor():
    # shrinkage=0 on singular data: the floor keeps M finite.
    X = np.random.RandomState(0).randn(3, 6)
    M = Covariance(shrinkage=0.0).fit(X).get_mahalanobis_matrix()
    assert np.isfinite(M).all()
    # ||R_a^{-1}|| <= 1 / a_min, scaled by the inverse variances.
    bound = 1.0 / (MIN_SHRINKAGE * np.var(X, axis=0, ddof=1).min())
    assert np.linalg.eigvalsh(M).max() <= bound * (1 + 1e-6)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def _knn_accuracy(est, X, y):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    est.fit(Xtr, ytr)
    knn = KNeighborsClassifier(n_neighbors=3).fit(est.transform(Xtr), ytr)
    return knn.score(est.transform(Xte), yte)


def test_digits_quality_bar(digits):
    X, y = digits
    Xs = StandardScaler().fit_transform(X)
    assert _knn_accuracy(Covariance(), Xs, y) >= 0.9696
    # Raw digits: constant pixels; finite PSD metric, and as good (unit-free).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = Covariance().fit(X)
    _assert_psd(cov.get_mahalanobis_matrix(), tol=1e-8)
    assert _knn_accuracy(Covariance(), X, y) >= 0.9696


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_extreme_magnitudes(scale):
    X = _well_conditioned()
    ref = Covariance().fit(X).transform(X)
    est = Covariance().fit(X * scale)
    assert np.isfinite(est.components_).all()
    assert_allclose(est.transform(X * scale), ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())

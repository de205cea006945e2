"""LFDA: local Fisher discriminant analysis (its scatters: tests/core/test_local_scatter.py)."""
import doctest
import pickle
import warnings

import numpy as np
import pytest
import scipy.linalg
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import LFDA

from ..core.test_local_scatter import _data, _reference_scatters


def _reference_components(X, y, k, n_components, embedding_type):
    S_b, S_w = _reference_scatters(X, y, k)
    vals, vecs = scipy.linalg.eigh(S_b, S_w)
    vals, vecs = vals[::-1][:n_components], vecs[:, ::-1][:, :n_components]
    if embedding_type == "weighted":
        return (vecs * np.sqrt(vals)).T, vals
    if embedding_type == "orthonormalized":
        return np.linalg.qr(vecs)[0].T, vals
    return vecs.T, vals


@pytest.mark.parametrize("embedding_type", ["weighted", "orthonormalized", "plain"])
@pytest.mark.parametrize("n_components", [None, 2])
def test_lfda_matches_generalised_eigenproblem(embedding_type, n_components, dtype):
    X, y = _data()
    est = LFDA(k=3, n_components=n_components, embedding_type=embedding_type,
               shrinkage=0.0).fit(X.astype(dtype), y)
    m = n_components or X.shape[1]
    L_ref, vals = _reference_components(X.astype(dtype), y, 3, m, embedding_type)
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    assert_allclose(est.eigenvalues_, vals, rtol=rtol)
    # Rows equal up to sign.
    signs = np.sign(np.sum(est.components_ * L_ref, axis=1))
    assert_allclose(est.components_, signs[:, None] * L_ref, rtol=rtol,
                    atol=rtol * np.abs(L_ref).max())
    if embedding_type == "orthonormalized":
        assert_allclose(est.components_ @ est.components_.T, np.eye(m), atol=1e-10)


def test_shrinkage_formula_and_eigenvalue_bound():
    X, y = _data()
    a = 0.3
    est = LFDA(k=3, shrinkage=a).fit(X, y)
    S_b, S_w = _reference_scatters(X, y, 3)
    Xc = X - X.mean(0)
    S_t = Xc.T @ Xc
    vals, _vecs = scipy.linalg.eigh(S_b, (1 - a) * S_w + a * S_t)
    assert_allclose(est.eigenvalues_, vals[::-1], rtol=1e-8)
    assert est.eigenvalues_.max() <= 1 / a + 1e-9
    # Default shrinkage 0.01: eigenvalues bounded by 100.
    assert LFDA().fit(X, y).eigenvalues_.max() <= 100 + 1e-9


def test_translation_invariance_and_deterministic_signs():
    X, y = _data()
    a = LFDA().fit(X, y).components_
    b = LFDA().fit(X + 100.0, y).components_
    assert_allclose(a, b, rtol=1e-6, atol=1e-8 * np.abs(a).max())
    rows = np.arange(a.shape[0])
    assert np.all(a[rows, np.argmax(np.abs(a), axis=1)] > 0)


@pytest.mark.parametrize("case", ["constant_feature", "d>n", "duplicates", "singletons",
                                  "class_constant_direction"])
def test_degenerate_data(case):
    rng = np.random.RandomState(0)
    X, y = _data(n=30, d=4)
    if case == "constant_feature":
        X[:, 2] = 7.0
    elif case == "d>n":
        X = rng.randn(12, 40)
        y = np.repeat([0, 1, 2], 4)
    elif case == "duplicates":
        X[:10] = X[0]
    elif case == "singletons":
        y = np.r_[np.repeat(np.arange(7), 4), [7, 8]]  # k=3 > some class sizes - 1
    else:
        X[:, 3] = y * 2.0  # constant inside each class: infinitely discriminative
    for embedding_type in ("weighted", "orthonormalized", "plain"):
        for shrinkage in (0.0, 0.01, 0.5):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                est = LFDA(embedding_type=embedding_type, shrinkage=shrinkage).fit(X, y)
            L = est.components_
            assert np.isfinite(L).all() and np.isrealobj(L)
            assert np.isfinite(est.transform(X)).all()
            M = est.get_mahalanobis_matrix()
            assert np.linalg.eigvalsh(M).min() >= -1e-8 * max(np.abs(M).max(), 1.0)
    if case == "constant_feature":
        # No training variation along feature 2: it gets no weight.
        assert_allclose(LFDA().fit(X, y).components_[:, 2], 0.0, atol=1e-8)


def test_padding_beyond_rank():
    rng = np.random.RandomState(0)
    X = rng.randn(6, 10)
    y = np.array([0, 0, 0, 1, 1, 1])
    # Default n_components: silent zero rows for the directions without data.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LFDA().fit(X, y)
    assert est.components_.shape == (10, 10)
    assert_allclose(est.components_[5:], 0.0)
    assert_allclose(est.eigenvalues_[5:], 0.0)
    with pytest.warns(UserWarning, match="vary in only 5"):
        est = LFDA(n_components=8, embedding_type="orthonormalized").fit(X, y)
    assert_allclose(est.components_ @ est.components_.T, np.eye(8), atol=1e-10)


def test_bad_input():
    X, y = _data()
    with pytest.raises(ValueError, match="1 class"):
        LFDA().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="embedding_type"):
        LFDA(embedding_type="whitened").fit(X, y)
    with pytest.raises(ValueError, match=r"'k' parameter of LFDA must be .*Got 0 "):
        LFDA(k=0).fit(X, y)
    with pytest.raises(TypeError, match=r"'k' parameter of LFDA must be .*Got 2\.5 "):
        LFDA(k=2.5).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        LFDA(n_components=5).fit(X, y)
    with pytest.raises(ValueError, match="shrinkage"):
        LFDA(shrinkage=1.5).fit(X, y)
    with pytest.raises(ValueError, match="shrinkage"):
        LFDA(shrinkage="ledoit_wolf").fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        LFDA().fit(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError):
        LFDA().fit(X, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        LFDA().fit(X, np.linspace(0, 1, len(X)))


def test_float32_preprocessor_pickle():
    X, y = _data()
    ref = LFDA().fit(X, y)
    est32 = LFDA().fit(X.astype(np.float32), y)
    assert_allclose(est32.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(), rtol=1e-3,
                    atol=1e-4 * np.abs(ref.get_mahalanobis_matrix()).max())
    assert est32.transform(X.astype(np.float32)).dtype == np.float32
    pre = LFDA(preprocessor=X).fit(np.arange(len(X)), y)
    assert_allclose(pre.components_, ref.components_)
    restored = pickle.loads(pickle.dumps(ref))
    assert_array_equal(restored.transform(X), ref.transform(X))


def test_docstring_example():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(LFDA.__doc__, {}, "LFDA", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert test.examples and runner.failures == 0


@parametrize_with_checks([LFDA(), LFDA(n_components=1, embedding_type="orthonormalized")])
def test_sklearn_checks(estimator, check):
    check(estimator)


def test_digits_quality_bar_and_raw_digits():
    X, y = load_digits(return_X_y=True)
    for data in (StandardScaler().fit_transform(X), X):
        Xtr, Xte, ytr, yte = train_test_split(data, y, test_size=0.3, stratify=y,
                                              random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est = LFDA().fit(Xtr, ytr)
        L = est.components_
        assert np.isfinite(L).all() and np.isrealobj(L)
        M = est.get_mahalanobis_matrix()
        assert np.linalg.eigvalsh(M).min() >= -1e-8 * np.abs(M).max()
        knn = KNeighborsClassifier(n_neighbors=3).fit(est.transform(Xtr), ytr)
        assert knn.score(est.transform(Xte), yte) >= 0.9696


@pytest.mark.parametrize("scale", [1e-200, 1e200])
@pytest.mark.parametrize("embedding_type", ["weighted", "orthonormalized", "plain"])
def test_extreme_magnitudes(scale, embedding_type):
    X, y = _data()
    ref = LFDA(embedding_type=embedding_type).fit(X, y)
    est = LFDA(embedding_type=embedding_type).fit(X * scale, y)
    assert np.isfinite(est.components_).all()
    assert_allclose(est.eigenvalues_, ref.eigenvalues_, rtol=1e-8)
    # Distances scale-free, except for orthonormal rows (a rotation, not a metric fit).
    factor = scale if embedding_type == "orthonormalized" else 1.0
    Z = est.transform(X * scale) / factor
    Zr = ref.transform(X)
    assert_allclose(Z, Zr, rtol=1e-6, atol=1e-8 * np.abs(Zr).max())

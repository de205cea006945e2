"""Tests of the LMNN learner: threads, dtypes, degenerate data, parameters
and the scikit-learn contract (its objective: tests/core/objectives/test_lmnn.py)."""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric._learners.lmnn import LMNN

from ..core.objectives.test_lmnn import blobs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def always_parallel(monkeypatch):
    """Small problems run single-threaded by default: force the threads."""
    import fastmetric._core.objectives.lmnn

    monkeypatch.setattr(fastmetric._core.objectives.lmnn, "_PARALLEL_WORK", 0)


# --------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------
def test_fit_same_for_one_and_two_threads(always_parallel):
    X, y = blobs(400, 6, 4, seed=16)
    a = LMNN(max_iter=30, n_jobs=1).fit(X, y)
    b = LMNN(max_iter=30, n_jobs=2).fit(X, y)
    assert_array_equal(a.components_, b.components_)
    assert a.loss_curve_ == b.loss_curve_


def test_fit_improves_neighbours():
    """Noise features of large scale hide the classes from Euclidean 3-NN;
    LMNN learns to shrink them."""
    rng = np.random.RandomState(17)
    n = 300
    y = np.arange(n) % 3
    X = np.c_[np.eye(3)[y] * 2 + 0.3 * rng.randn(n, 3), 6 * rng.randn(n, 3)]
    tr, te = np.arange(n) < 200, np.arange(n) >= 200
    knn = KNeighborsClassifier(n_neighbors=3)
    before = knn.fit(X[tr], y[tr]).score(X[te], y[te])
    lmnn = LMNN(n_neighbors=3, n_jobs=1).fit(X[tr], y[tr])
    after = knn.fit(lmnn.transform(X[tr]), y[tr]).score(lmnn.transform(X[te]), y[te])
    assert after >= 0.95 > before
    assert lmnn.loss_ < lmnn.loss_curve_[0] or lmnn.n_iter_ <= 1
    assert lmnn.n_searches_ <= lmnn.n_evaluations_
    assert lmnn.components_.shape == (6, 6)


def test_float32(dtype):
    X, y = blobs(150, 5, 3, seed=18, dtype=dtype)
    lmnn = LMNN(max_iter=20, n_jobs=1).fit(X, y)
    assert lmnn.components_.dtype == np.float64
    Xt = lmnn.transform(X)
    assert Xt.dtype == dtype and np.isfinite(Xt).all()


@pytest.mark.parametrize("init", ["auto", "pca", "lda", "random"])
def test_low_rank(init):
    X, y = blobs(150, 6, 4, seed=20)
    lmnn = LMNN(n_components=2, init=init, max_iter=40, random_state=0, n_jobs=1).fit(X, y)
    assert lmnn.components_.shape == (2, 6)
    assert lmnn.transform(X).shape == (150, 2)
    assert lmnn.loss_curve_[-1] <= lmnn.loss_curve_[0]


def test_degenerate_data():
    X, y = blobs(120, 5, 3, seed=21)
    X[:, 2] = 4.0  # a constant feature
    X[10:20] = X[10]  # duplicated points (several classes)
    X[30] = X[31]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lmnn = LMNN(max_iter=30, n_jobs=1).fit(X, y)
    assert np.isfinite(lmnn.components_).all() and np.isfinite(lmnn.loss_)
    # All points equal: every pair of classes stays an impostor pair.
    same = np.ones((12, 3))
    lmnn = LMNN(max_iter=5, n_jobs=1).fit(same, np.arange(12) % 2)
    assert np.isfinite(lmnn.components_).all()


def test_small_classes_and_errors():
    X, y = blobs(30, 3, 3, seed=22)
    y = y.copy()
    y[:2] = 5  # a class with 2 points: 1 target each
    with pytest.warns(UserWarning, match="target neighbours"):
        LMNN(n_neighbors=3, max_iter=5, n_jobs=1).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LMNN().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="single sample"):
        LMNN().fit(X[:4], [0, 1, 2, 3])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LMNN().fit(bad, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        LMNN().fit(X, np.linspace(0, 1, 30))


@pytest.mark.parametrize("params, error, match", [
    ({"n_neighbors": 0}, ValueError, "n_neighbors"),
    ({"n_neighbors": 2.5}, TypeError, "n_neighbors"),
    ({"regularization": 1.5}, ValueError, "regularization"),
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"learn_rate": -1.0}, ValueError, "learn_rate"),
    ({"convergence_tol": np.nan}, ValueError, "convergence_tol"),
    ({"solver": "newton"}, ValueError, "solver"),
    ({"callback": 3}, TypeError, "callback"),
    ({"n_components": 9}, ValueError, "n_components"),
    ({"init": "spectral"}, ValueError, "init"),
])
def test_bad_parameters(params, error, match):
    X, y = blobs(30, 3, 3)
    with pytest.raises(error, match=match):
        LMNN(**params).fit(X, y)


def test_callback_verbose_and_gd(capsys):
    X, y = blobs(90, 4, 3, seed=23)
    seen = []

    def stop_at_3(est, iteration, loss):
        seen.append((iteration, loss, est.components_.shape))
        return iteration >= 3

    lmnn = LMNN(callback=stop_at_3, verbose=1, n_jobs=1).fit(X, y)
    assert [s[0] for s in seen] == [1, 2, 3] and lmnn.n_iter_ == 3
    assert "[LMNN]" in capsys.readouterr().out
    gd = LMNN(solver="gd", learn_rate=1e-3, max_iter=30, n_jobs=1).fit(X, y)
    curve = gd.loss_curve_
    assert all(b <= a for a, b in zip(curve, curve[1:]))  # steps never increase f
    assert curve[-1] < curve[0]


def test_preprocessor_indices():
    X, y = blobs(60, 3, 3, seed=24)
    a = LMNN(preprocessor=X, max_iter=10, n_jobs=1).fit(np.arange(60), y)
    b = LMNN(max_iter=10, n_jobs=1).fit(X, y)
    assert_array_equal(a.components_, b.components_)
    assert_allclose(a.transform(np.arange(5)), b.transform(X[:5]))


@parametrize_with_checks([LMNN(max_iter=15, min_iter=0, n_jobs=1)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Some checks fit on classes smaller than n_neighbors + 1.
        warnings.filterwarnings("ignore", message="LMNN:.*target neighbours")
        check(estimator)

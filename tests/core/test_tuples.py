"""Triplet/quadruplet validation and the tuple classifier mixins."""
import pickle

import numpy as np
import pytest
import scipy.sparse
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import is_classifier

from fastmetric._core.base import MahalanobisMixin
from fastmetric._core.inputs import check_tuples
from fastmetric._core.tuples import QuadrupletsClassifierMixin, TripletsClassifierMixin


# --------------------------------------------------------------------------
# check_tuples
# --------------------------------------------------------------------------
@pytest.mark.parametrize("t", [3, 4])
def test_three_d_form_round_trips(t, dtype):
    rng = np.random.RandomState(0)
    tuples = rng.randn(7, t, 5).astype(dtype)
    X, idx = check_tuples(tuples, t)
    assert X.dtype == dtype and X.flags.c_contiguous
    assert idx.shape == (7, t) and idx.dtype == np.intp
    assert_array_equal(X[idx], tuples)


@pytest.mark.parametrize("t", [3, 4])
def test_dedupe_keeps_one_copy_per_point(t):
    rng = np.random.RandomState(1)
    P = rng.randn(6, 3)
    ind = rng.randint(0, 6, size=(50, t))
    X, idx = check_tuples(P[ind], t, dedupe=True)
    assert X.shape[0] == len(np.unique(ind))
    assert_array_equal(X[idx], P[ind])


def test_integer_points_become_float64():
    X, idx = check_tuples(np.arange(24).reshape(2, 3, 4), 3)
    assert X.dtype == np.float64
    assert_array_equal(X[idx], np.arange(24).reshape(2, 3, 4))


def test_array_preprocessor_is_not_copied():
    P = np.random.RandomState(0).randn(10, 3)
    ind = np.array([[0, 1, 2, 3], [9, 8, 7, 6]], dtype=np.int32)
    X, idx = check_tuples(ind, 4, preprocessor=P)
    assert X is P
    assert idx.dtype == np.intp
    assert_array_equal(idx, ind)


def test_callable_preprocessor_called_once_on_distinct_indices():
    P = np.random.RandomState(0).randn(10, 3)
    calls = []

    def prep(indices):
        calls.append(np.array(indices))
        return P[indices]

    ind = np.array([[5, 1, 5], [1, 9, 5]])
    X, idx = check_tuples(ind, 3, preprocessor=prep)
    assert len(calls) == 1
    assert_array_equal(calls[0], [1, 5, 9])
    assert_array_equal(X[idx], P[ind])


def test_callable_preprocessor_bad_output():
    with pytest.raises(ValueError, match="one row per index"):
        check_tuples([[0, 1, 2]], 3, preprocessor=lambda i: np.zeros((1, 2)))
    with pytest.raises(ValueError, match="features"):
        check_tuples([[0, 1, 2]], 3, preprocessor=lambda i: np.zeros((len(i), 2)),
                     n_features=3)


@pytest.mark.parametrize(
    "tuples, kwargs, exc, match",
    [
        (np.zeros((0, 3, 2)), {}, ValueError, "empty"),
        (np.zeros((4, 2, 2)), {}, ValueError, "axis 1 has 2 points, not 3"),
        (np.zeros((4, 4, 2)), {}, ValueError, "not 3"),
        (np.zeros((4, 3, 0)), {}, ValueError, "0 features"),
        (np.zeros((4, 3, 2)), {"n_features": 5}, ValueError, "fitted with 5"),
        (np.zeros((4, 3)), {}, ValueError, "preprocessor"),
        (np.zeros(3), {}, ValueError, "1 dimension"),
        (np.zeros((2, 3, 2, 1)), {}, ValueError, "4 dimension"),
        (np.full((2, 3, 2), np.nan), {}, ValueError, "NaN or infinity"),
        (np.full((2, 3, 2), np.inf), {}, ValueError, "NaN or infinity"),
        (np.zeros((2, 3, 2), dtype=complex), {}, TypeError, "real numbers"),
        (np.array(["a", "b", "c"]).reshape(1, 3, 1), {}, TypeError, "real numbers"),
        (None, {}, ValueError, "None"),
    ],
)
def test_bad_point_tuples(tuples, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_tuples(tuples, 3, **kwargs)


def test_ragged_and_sparse():
    with pytest.raises((TypeError, ValueError)):
        check_tuples([[[0, 1], [2, 3], [4]]], 3)
    with pytest.raises(TypeError, match="dense"):
        check_tuples(scipy.sparse.csr_matrix(np.zeros((3, 3))), 3)


@pytest.mark.parametrize(
    "ind, exc, match",
    [
        (np.array([[0, 1, 10]]), ValueError, r"index 10 at triplet 0, position 2"),
        (np.array([[0, -1, 2]]), ValueError, r"index -1 at triplet 0, position 1"),
        (np.array([[0.0, 1.0, 2.0]]), TypeError, "integer"),
        (np.array([[0.5, 1.0, 2.0]]), TypeError, "integer"),
        (np.array([[True, False, True]]), TypeError, "booleans"),
        (np.array([[0, 1]]), ValueError, r"\(n_triplets, 3\)"),
        (np.zeros((0, 3), dtype=int), ValueError, "empty"),
    ],
)
def test_bad_index_tuples(ind, exc, match):
    P = np.zeros((10, 2))
    with pytest.raises(exc, match=match):
        check_tuples(ind, 3, preprocessor=P)
    if exc is TypeError or "position" not in match:
        with pytest.raises(exc, match=match):
            check_tuples(ind, 3, preprocessor=lambda i: P[i])


def test_negative_index_with_callable_preprocessor():
    with pytest.raises(ValueError, match="index -1"):
        check_tuples(np.array([[0, -1, 2]]), 3, preprocessor=lambda i: np.zeros((len(i), 2)))


def test_bad_preprocessor_array():
    with pytest.raises(ValueError, match="NaN"):
        check_tuples([[0, 1, 2]], 3, preprocessor=np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="fitted with 3"):
        check_tuples([[0, 1, 2]], 3, preprocessor=np.zeros((3, 2)), n_features=3)


def test_bad_tuple_size():
    with pytest.raises(ValueError, match="tuple_size"):
        check_tuples(np.zeros((2, 1, 2)), 1)


def test_error_names_quadruplets():
    with pytest.raises(ValueError, match=r"quadruplets.*\(n_quadruplets, 4, n_features\)"):
        check_tuples(np.zeros((3, 3, 2)), 4)


# --------------------------------------------------------------------------
# Mixins
# --------------------------------------------------------------------------
class _FixedTriplets(TripletsClassifierMixin, MahalanobisMixin):
    def __init__(self, components=None, preprocessor=None, normalize=False, n_jobs=None):
        self.components = components
        self.preprocessor = preprocessor
        self.normalize = normalize
        self.n_jobs = n_jobs

    def fit(self, triplets, y=None):
        X, _ = check_tuples(triplets, 3, self.preprocessor)
        self.components_ = np.asarray(self.components, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        return self


class _FixedQuadruplets(QuadrupletsClassifierMixin, MahalanobisMixin):
    def __init__(self, components=None, preprocessor=None, normalize=False, n_jobs=None):
        self.components = components
        self.preprocessor = preprocessor
        self.normalize = normalize
        self.n_jobs = n_jobs

    def fit(self, quadruplets, y=None):
        X, _ = check_tuples(quadruplets, 4, self.preprocessor)
        self.components_ = np.asarray(self.components, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        return self


def _dist(L, u, v):
    return np.linalg.norm((u - v) @ L.T, axis=-1)


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(30, 4)
    L = rng.randn(2, 4)
    return X, L, rng


def test_triplets_against_numpy(data, dtype):
    X, L, rng = data
    ind = rng.randint(0, 30, size=(40, 3))
    T = X[ind].astype(dtype)
    est = _FixedTriplets(L).fit(T)
    ref = _dist(L, X[ind[:, 0]], X[ind[:, 2]]) - _dist(L, X[ind[:, 0]], X[ind[:, 1]])
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert_allclose(est.decision_function(T), ref, rtol=tol, atol=tol)
    pred = est.predict(T)
    assert_array_equal(pred, np.where(ref > 0, 1, -1))
    assert est.score(T) == pytest.approx(np.mean(ref > 0))
    assert est.score(T, -np.ones(40)) == pytest.approx(np.mean(ref <= 0))
    # Index form, array and callable preprocessors, give the same.
    est_idx = _FixedTriplets(L, preprocessor=X.astype(dtype)).fit(ind)
    assert_allclose(est_idx.decision_function(ind), est.decision_function(T), rtol=tol)
    est_call = _FixedTriplets(L, preprocessor=lambda i: X[i]).fit(ind)
    assert_allclose(est_call.decision_function(ind), ref, rtol=1e-10)


def test_quadruplets_against_numpy(data, dtype):
    X, L, rng = data
    ind = rng.randint(0, 30, size=(40, 4))
    Q = X[ind].astype(dtype)
    est = _FixedQuadruplets(L).fit(Q)
    ref = _dist(L, X[ind[:, 2]], X[ind[:, 3]]) - _dist(L, X[ind[:, 0]], X[ind[:, 1]])
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert_allclose(est.decision_function(Q), ref, rtol=tol, atol=tol)
    assert_array_equal(est.predict(Q), np.where(ref > 0, 1, -1))
    assert est.score(Q) == pytest.approx(np.mean(ref > 0))
    est_idx = _FixedQuadruplets(L, preprocessor=X).fit(ind)
    assert_allclose(est_idx.decision_function(ind), ref, rtol=1e-10)


def test_ties_predict_minus_one():
    X = np.zeros((1, 4, 2))
    est = _FixedQuadruplets(np.eye(2)).fit(X)
    assert_array_equal(est.predict(X), [-1])
    est3 = _FixedTriplets(np.eye(2)).fit(X[:, :3])
    assert_array_equal(est3.predict(X[:, :3]), [-1])


def test_normalize_is_applied(data):
    X, L, rng = data
    ind = rng.randint(0, 30, size=(10, 3))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    est = _FixedTriplets(L, normalize=True).fit(X[ind])
    ref = _dist(L, Xn[ind[:, 0]], Xn[ind[:, 2]]) - _dist(L, Xn[ind[:, 0]], Xn[ind[:, 1]])
    assert_allclose(est.decision_function(X[ind]), ref, rtol=1e-10)


def test_threads_do_not_change_results(data):
    X, L, rng = data
    ind = rng.randint(0, 30, size=(5000, 4))
    d1 = _FixedQuadruplets(L, preprocessor=X, n_jobs=1).fit(ind).decision_function(ind)
    d2 = _FixedQuadruplets(L, preprocessor=X, n_jobs=2).fit(ind).decision_function(ind)
    assert_array_equal(d1, d2)


def test_mixin_checks_prediction_input(data):
    X, L, rng = data
    est = _FixedTriplets(L).fit(X[rng.randint(0, 30, size=(5, 3))])
    with pytest.raises(ValueError, match="fitted with 4"):
        est.decision_function(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="not 3"):
        est.predict(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="preprocessor"):
        est.predict(np.zeros((2, 3), dtype=int))
    T = X[:3][None]
    with pytest.raises(ValueError, match="shape"):
        est.score(T, [1, 1])
    with pytest.raises(ValueError, match="-1 and \\+1"):
        est.score(T, [0])
    with pytest.raises(TypeError):
        est.score(T, ["a"])


def test_unfitted_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        _FixedTriplets(np.eye(2)).predict(np.zeros((1, 3, 2)))


def test_tags_classes_and_pickle(data):
    X, L, rng = data
    for est in (_FixedTriplets(L), _FixedQuadruplets(L)):
        assert is_classifier(est)
        tags = est.__sklearn_tags__()
        assert tags.input_tags.three_d_array
        assert not tags.target_tags.required
        assert_array_equal(est.classes_, [-1, 1])
    ind = rng.randint(0, 30, size=(10, 4))
    est = _FixedQuadruplets(L).fit(X[ind])
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.decision_function(X[ind]), est.decision_function(X[ind]))


@pytest.mark.parametrize(
    "obj", [check_tuples, TripletsClassifierMixin, QuadrupletsClassifierMixin],
    ids=lambda o: o.__name__,
)
def test_docstring_examples(obj):
    import doctest

    test = doctest.DocTestParser().get_doctest(obj.__doc__, {}, obj.__name__, None, 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0

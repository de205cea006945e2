"""Pair classifiers answer in the label encoding of their fit.

ITML, MMC, SDML and LDML accept pair labels -1/+1 (metric-learn's) and 0/1
(and LDML soft targets in [0, 1]).  ``classes_`` and ``predict`` follow the
encoding of ``fit``'s ``y``, as for any scikit-learn classifier: before,
``predict`` answered -1/+1 after a fit on 0/1 labels, and scikit-learn's
scorers comparing it with ``y`` (``cross_val_score(scoring='accuracy')``)
silently gave wrong numbers (0.48 instead of 0.93 on iris pairs).  With
-1/+1 labels nothing changes.
"""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_validate
from sklearn.preprocessing import StandardScaler

import fastmetric as fm
from fastmetric._core.pairs import PairsClassifierMixin
from fastmetric.pairwise import sample_pairs

# Small, quick fits: the encoding, not the metric, is under test.
LEARNERS = {
    "ITML": lambda X: fm.ITML(preprocessor=X, random_state=0, n_jobs=1),
    "MMC": lambda X: fm.MMC(preprocessor=X, random_state=0, n_jobs=1),
    "SDML": lambda X: fm.SDML(preprocessor=X, random_state=0, n_jobs=1),
    "LDML": lambda X: fm.LDML(preprocessor=X, random_state=0, n_jobs=1, max_iter=30),
}


@pytest.fixture(scope="module")
def iris_pairs():
    """Standardised iris, index pairs into it, and their labels as 0/1 and -1/+1."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    idx, same = sample_pairs(y, 150, 150, random_state=0)
    y01 = same.astype(np.int64)
    return X, idx, y01, 2 * y01 - 1


def _fit(name, X, idx, y):
    return LEARNERS[name](X).fit(idx, y)


@pytest.mark.parametrize("name", LEARNERS)
def test_classes_and_predict_follow_the_encoding_of_fit(iris_pairs, name):
    X, idx, y01, ypm = iris_pairs
    zero_one = _fit(name, X, idx, y01)
    minus_plus = _fit(name, X, idx, ypm)
    assert_array_equal(zero_one.classes_, [0, 1])
    assert_array_equal(minus_plus.classes_, [-1, 1])
    assert zero_one.classes_.dtype.kind == minus_plus.classes_.dtype.kind == "i"
    pred01, predpm = zero_one.predict(idx), minus_plus.predict(idx)
    assert set(np.unique(pred01)) <= {0, 1}
    assert set(np.unique(predpm)) <= {-1, 1}
    # The same model either way: only the names of the two classes differ.
    assert_array_equal(zero_one.components_, minus_plus.components_)
    assert zero_one.threshold_ == minus_plus.threshold_
    assert_array_equal(pred01, (predpm + 1) // 2)
    # The predictions are the labels of fit: comparing them with y is the accuracy.
    assert np.mean(pred01 == y01) == np.mean(predpm == ypm) > 0.8


@pytest.mark.parametrize("name", LEARNERS)
def test_cross_validated_accuracy_and_f1_do_not_depend_on_the_encoding(iris_pairs, name):
    X, idx, y01, ypm = iris_pairs
    scores = {}
    for key, y in (("01", y01), ("pm", ypm)):
        scores[key] = cross_validate(LEARNERS[name](X), idx, y, cv=3,
                                     scoring=("accuracy", "f1"))
    for scoring in ("test_accuracy", "test_f1"):
        assert_array_equal(scores["01"][scoring], scores["pm"][scoring])
        assert np.all(scores["01"][scoring] > 0.75), (scoring, scores["01"][scoring])


@pytest.mark.parametrize("name", LEARNERS)
def test_minus_plus_labels_behave_as_before(iris_pairs, name):
    """metric-learn's encoding: classes_ is exactly [-1, 1] (int, as numpy
    makes it) and predict the rule ``distance <= threshold_`` as +1/-1, of
    the dtype it had."""
    X, idx, _, ypm = iris_pairs
    est = _fit(name, X, idx, ypm)
    expected_classes = np.array([-1, 1])
    assert_array_equal(est.classes_, expected_classes)
    assert est.classes_.dtype == expected_classes.dtype
    dist = est.pair_distance(idx)
    before = np.where(dist <= est.threshold_, 1, -1)
    pred = est.predict(idx)
    assert pred.dtype == before.dtype
    assert_array_equal(pred, before)
    assert_array_equal(est.decision_function(idx), -dist)
    # On points instead of index pairs, the same.
    assert_array_equal(est.predict(X[idx]), before)


def test_ldml_soft_targets_give_classes_zero_one(iris_pairs):
    X, idx, y01, _ = iris_pairs
    soft = 0.1 + 0.8 * y01  # fractional targets in [0, 1]
    est = fm.LDML(preprocessor=X, random_state=0, n_jobs=1, max_iter=30).fit(idx, soft)
    assert_array_equal(est.classes_, [0, 1])
    pred = est.predict(idx)
    assert set(np.unique(pred)) <= {0, 1}
    # predict_proba's columns follow classes_: similar (1) where P(similar) > 1/2.
    proba = est.predict_proba(idx)
    assert_array_equal(pred == est.classes_[1], proba[:, 1] > 0.5)


def test_boolean_labels_count_as_zero_one(iris_pairs):
    X, idx, y01, _ = iris_pairs
    est = fm.ITML(preprocessor=X, random_state=0, n_jobs=1).fit(idx, y01.astype(bool))
    assert_array_equal(est.classes_, [0, 1])
    assert set(np.unique(est.predict(idx))) <= {0, 1}


def test_labels_of_one_kind(iris_pairs):
    """All +1 reads the same in both encodings: metric-learn's [-1, 1] is
    kept.  All 0 can only be the 0/1 encoding."""
    X, idx, y01, _ = iris_pairs
    similar = idx[y01 == 1]
    est = fm.SDML(preprocessor=X, random_state=0, n_jobs=1).fit(
        similar, np.ones(len(similar), dtype=np.int64))
    assert_array_equal(est.classes_, [-1, 1])
    dissimilar = idx[y01 == 0]
    est = fm.SDML(preprocessor=X, random_state=0, n_jobs=1).fit(
        dissimilar, np.zeros(len(dissimilar), dtype=np.int64))
    assert_array_equal(est.classes_, [0, 1])
    assert set(np.unique(est.predict(idx))) <= {0, 1}


@pytest.mark.parametrize("name", LEARNERS)
def test_calibrate_threshold_takes_either_encoding_and_keeps_classes(iris_pairs, name):
    X, idx, y01, ypm = iris_pairs
    for fit_y, other_y, classes in ((y01, ypm, [0, 1]), (ypm, y01, [-1, 1])):
        est = _fit(name, X, idx, fit_y)
        same = _fit(name, X, idx, fit_y)
        est.calibrate_threshold(idx, other_y, strategy="f_beta", beta=0.5)
        same.calibrate_threshold(idx, fit_y, strategy="f_beta", beta=0.5)
        assert est.threshold_ == same.threshold_
        assert_array_equal(est.classes_, classes)
        assert set(np.unique(est.predict(idx))) <= set(classes)
        assert_array_equal(est.predict(idx), same.predict(idx))


def test_ldml_partial_fit_keeps_the_encoding_of_the_batch_that_started_it(iris_pairs):
    X, idx, y01, ypm = iris_pairs
    params = dict(preprocessor=X, solver="adam", batch_size=100, random_state=0, n_jobs=1)
    stream = fm.LDML(**params).partial_fit(idx, y01)
    assert_array_equal(stream.classes_, [0, 1])
    stream.partial_fit(idx, ypm)  # continues: the stream keeps answering 0/1
    assert_array_equal(stream.classes_, [0, 1])
    assert set(np.unique(stream.predict(idx))) <= {0, 1}
    # A stochastic fit continued by partial_fit keeps the fit's encoding too.
    est = fm.LDML(max_iter=2, **params).fit(idx, ypm).partial_fit(idx, y01)
    assert_array_equal(est.classes_, [-1, 1])
    # partial_fit after a full-batch fit starts afresh (it warns): its batch decides.
    est = fm.LDML(preprocessor=X, random_state=0, n_jobs=1, max_iter=5).fit(idx, ypm)
    est.set_params(solver="adam", batch_size=100)
    with pytest.warns(UserWarning, match="starts a new fit"):
        est.partial_fit(idx, y01)
    assert_array_equal(est.classes_, [0, 1])


@pytest.mark.parametrize("name", LEARNERS)
def test_a_model_without_its_own_classes_predicts_minus_plus(iris_pairs, name, tmp_path):
    """A model pickled or saved before classes_ followed the encoding may
    have none of its own: it reads [-1, 1] and predicts -1/+1, as it did."""
    X, idx, y01, _ = iris_pairs
    est = _fit(name, X, idx, y01)
    del est.classes_
    assert "classes_" not in vars(est)
    expected = np.where(est.pair_distance(idx) <= est.threshold_, 1, -1)
    assert_array_equal(est.classes_, [-1, 1])
    assert_array_equal(est.predict(idx), expected)
    restored = pickle.loads(pickle.dumps(est))
    assert "classes_" not in vars(restored)
    assert_array_equal(restored.predict(idx), expected)
    path = tmp_path / "model.npz"
    fm.save(est.set_params(preprocessor=None), path)
    loaded = fm.load(path)
    assert "classes_" not in vars(loaded)
    assert_array_equal(loaded.classes_, [-1, 1])
    assert_array_equal(loaded.predict(X[idx]), expected)


@pytest.mark.parametrize("name", LEARNERS)
def test_pickle_and_save_keep_the_encoding(iris_pairs, name, tmp_path):
    X, idx, y01, _ = iris_pairs
    est = _fit(name, X, idx, y01)
    pred = est.predict(idx)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.classes_, [0, 1])
    assert_array_equal(restored.predict(idx), pred)
    path = tmp_path / "model.npz"
    fm.save(est.set_params(preprocessor=None), path)
    loaded = fm.load(path)
    assert_array_equal(loaded.classes_, [0, 1])
    assert_array_equal(loaded.predict(X[idx]), pred)


def test_the_shared_fallback_classes_cannot_be_changed_through_a_model(iris_pairs):
    """The class-level [-1, 1] is shared by every model without its own
    classes_: it is read-only, and fit gives each model its own array."""
    X, idx, y01, _ = iris_pairs
    assert not PairsClassifierMixin.classes_.flags.writeable
    with pytest.raises(ValueError):
        fm.ITML().classes_[0] = 0
    est = fm.ITML(preprocessor=X, random_state=0, n_jobs=1).fit(idx, 2 * y01 - 1)
    assert est.classes_ is not PairsClassifierMixin.classes_
    est.classes_[0] = -1  # its own, writeable array

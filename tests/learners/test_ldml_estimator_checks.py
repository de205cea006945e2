"""scikit-learn API contract of the LDML learners.

``LDML_Supervised`` takes ``(X, y)`` like any transformer: it runs the whole
of sklearn's ``parametrize_with_checks`` suite, with nothing skipped.

``LDML`` learns from *pairs* (3-D arrays, or index pairs with a
preprocessor), which sklearn's generic checks cannot produce: they feed 2-D
points.  As metric-learn does, we run the generic checks that never fit
(construction, parameters, cloning, repr, tags, mixin order), and test the
rest of the contract on pair data below, check by check.
"""
import copy
import pickle

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric._core.sampling import sample_pairs
from fastmetric._learners.ldml import LDML, LDML_Supervised

from .._sklearn_checks import NO_FIT_CHECKS

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# tol=1e-5 (LDML's; LDML_Supervised's default is 1e-3): the blobs of
# check_transformer_n_iter are separated at the start, where the gradient is
# already below 1e-3, so the default fit rightly does no iteration while that
# check asks for one.
@parametrize_with_checks(
    [
        LDML_Supervised(n_pairs=200, max_iter=20, tol=1e-5, random_state=0, n_jobs=1),
        LDML_Supervised(n_pairs=200, max_iter=3, solver="adam", batch_size=64,
                        n_components=1, random_state=0, n_jobs=1),
    ]
)
def test_sklearn_checks_supervised(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# LDML on pairs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_pairs(check):
    check("LDML", LDML())


@pytest.fixture(scope="module")
def pair_data():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(40, 3), rng.randn(40, 3) + [3, 0, 0]]
    labels = np.repeat([0, 1], 40)
    idx, t = sample_pairs(labels, 150, 150, random_state=0)
    return X, idx, 2 * t.astype(int) - 1


def _fit(X, idx, y, **params):
    return LDML(max_iter=20, random_state=0, n_jobs=1, **params).fit(X[idx], y)


def test_tags_and_classifier_interface(pair_data):
    X, idx, y = pair_data
    est = LDML()
    assert is_classifier(est)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.three_d_array and tags.target_tags.required
    assert tags.transformer_tags is not None
    fitted = _fit(X, idx, y)
    assert_array_equal(fitted.classes_, [-1, 1])
    assert set(np.unique(fitted.predict(X[idx]))) <= {-1, 1}


def test_unfitted_raises(pair_data):
    X, idx, _ = pair_data
    est = LDML(preprocessor=X)
    for method in ("predict", "decision_function", "predict_proba", "pair_distance",
                   "pair_score"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(idx)
    with pytest.raises(NotFittedError):
        est.transform(X)


def test_fit_returns_self_and_keeps_params(pair_data):
    X, idx, y = pair_data
    init = np.eye(3)[:2]
    est = LDML(n_components=2, init=init, preprocessor=X, max_iter=10, n_jobs=1)
    before = joblib.hash(est.get_params())
    init_before = init.copy()
    assert est.fit(idx, y) is est
    assert joblib.hash(est.get_params()) == before
    assert_array_equal(init, init_before)
    # fit only adds attributes ending with "_" (or private ones).
    public = [k for k in vars(est) if not k.startswith("_")]
    params = set(est.get_params())
    assert all(k in params or k.endswith("_") for k in public)


def test_fit_idempotent_and_refit_overwrites(pair_data):
    X, idx, y = pair_data
    est = LDML(max_iter=20, random_state=0, n_jobs=1)
    first = est.fit(X[idx], y).decision_function(X[idx])
    assert_array_equal(est.fit(X[idx], y).decision_function(X[idx]), first)
    est.set_params(n_components=1).fit(X[idx], y)
    assert est.components_.shape == (1, 3)


def test_methods_do_not_change_state(pair_data):
    X, idx, y = pair_data
    est = _fit(X, idx, y)
    state = copy.deepcopy(est.__dict__)
    pairs = X[idx]
    for method in ("predict", "decision_function", "predict_proba", "pair_distance",
                   "pair_score"):
        getattr(est, method)(pairs)
    est.transform(X)
    est.score(pairs, y)
    assert joblib.hash(est.__dict__) == joblib.hash(state)


def test_methods_subset_and_order_invariance(pair_data):
    X, idx, y = pair_data
    est = _fit(X, idx, y)
    pairs = X[idx]
    perm = np.random.RandomState(1).permutation(len(pairs))
    for method in ("predict", "decision_function", "predict_proba"):
        full = getattr(est, method)(pairs)
        assert_allclose(getattr(est, method)(pairs[perm]), full[perm], rtol=1e-12)
        assert_allclose(getattr(est, method)(pairs[:7]), full[:7], rtol=1e-12)


def test_dtypes_and_readonly_input(pair_data, tmp_path):
    X, idx, y = pair_data
    ref = _fit(X, idx, y)
    est32 = _fit(X.astype(np.float32), idx, y)
    assert est32.components_.dtype == np.float64
    assert_allclose(est32.decision_function(X[idx]), ref.decision_function(X[idx]),
                    rtol=1e-2, atol=1e-2)
    est_int = LDML(max_iter=20, random_state=0, n_jobs=1).fit(
        np.round(X[idx] * 10).astype(np.int64), y)
    assert np.isfinite(est_int.components_).all()
    # Read-only memory-mapped pairs.
    path = tmp_path / "pairs.npy"
    np.save(path, X[idx])
    mm = np.load(path, mmap_mode="r")
    est_mm = LDML(max_iter=20, random_state=0, n_jobs=1).fit(mm, y)
    assert_allclose(est_mm.components_, ref.components_)
    assert_allclose(est_mm.predict_proba(mm), ref.predict_proba(X[idx]))
    # Lists work too.
    est_list = LDML(max_iter=20, random_state=0, n_jobs=1).fit(X[idx].tolist(), y.tolist())
    assert_allclose(est_list.components_, ref.components_)


def test_pickle_and_clone_of_fitted(pair_data):
    X, idx, y = pair_data
    est = _fit(X, idx, y)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.predict_proba(X[idx]), est.predict_proba(X[idx]))
    cloned = clone(est)
    assert not hasattr(cloned, "components_")
    assert cloned.get_params()["max_iter"] == 20


def test_bad_pairs_inputs(pair_data):
    X, idx, y = pair_data
    est = LDML(n_jobs=1)
    with pytest.raises(ValueError, match="empty"):
        est.fit(np.zeros((0, 2, 3)), np.zeros(0))
    with pytest.raises(ValueError):
        est.fit(X, np.ones(len(X)))  # 2-D points are not pairs
    with pytest.raises(TypeError, match="real numbers"):
        est.fit(X[idx] + 1j, y)
    with pytest.raises(TypeError, match="sparse"):
        import scipy.sparse

        est.fit(scipy.sparse.csr_matrix(X), y[: len(X)])
    with pytest.raises(ValueError, match=r"\(n_pairs,\)"):
        est.fit(X[idx], y[:-3])
    with pytest.raises(ValueError, match="None"):
        est.fit(X[idx], None)

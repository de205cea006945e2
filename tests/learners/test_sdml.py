"""SDML and SDML_Supervised: the defining formula, the PD rule, the API."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.covariance import graphical_lasso
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import SDML, SDML_Supervised
from fastmetric._core.sampling import sample_pairs
from fastmetric._learners.sdml import shifted_for_condition

from .._sklearn_checks import NO_FIT_CHECKS


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(40, 4), rng.randn(40, 4) + [2, 0, 0, 0]] * 0.3
    labels = np.repeat([0, 1], 40)
    idx, t = sample_pairs(labels, 60, 60, random_state=0)
    return X, labels, idx, np.where(t == 1, 1, -1)


def reference_metric(X, idx, y, balance=0.5, alpha=0.01, kappa=3.0, prior_inv=None,
                     enet_tol=1e-6):
    """SDML by its definition, in plain numpy + sklearn's graphical lasso."""
    D = X[idx[:, 0]] - X[idx[:, 1]]
    P = (np.eye(X.shape[1]) if prior_inv is None else prior_inv) + balance * (D.T * y) @ D
    lam = np.linalg.eigvalsh(P)
    shift = max(0.0, (lam[-1] - kappa * lam[0]) / (kappa - 1))
    P = P + shift * np.eye(X.shape[1])
    return graphical_lasso(P, alpha=alpha, enet_tol=enet_tol)[1], P, shift


def test_matches_defining_formula(data):
    X, _, idx, y = data
    est = SDML(preprocessor=X, n_jobs=1).fit(idx, y)
    M_ref, P, shift = reference_metric(X, idx, y)
    assert_allclose(est.shift_, shift, rtol=1e-10, atol=1e-12)
    assert_allclose(est.get_mahalanobis_matrix(), M_ref, rtol=1e-6, atol=1e-8)
    assert not est.glasso_failed_
    # enet_tol=1e-4: scikit-learn's default, the graphical lasso metric-learn runs.
    est4 = SDML(preprocessor=X, n_jobs=1, enet_tol=1e-4).fit(idx, y)
    M_ref4 = reference_metric(X, idx, y, enet_tol=1e-4)[0]
    assert_allclose(est4.get_mahalanobis_matrix(), M_ref4, rtol=1e-6, atol=1e-8)
    # Without the penalty: the inverse of the (shifted) P.
    est0 = SDML(sparsity_param=0.0, preprocessor=X, n_jobs=1).fit(idx, y)
    assert_allclose(est0.get_mahalanobis_matrix(), np.linalg.inv(P), rtol=1e-8)


def test_condition_rule():
    rng = np.random.RandomState(0)
    A = rng.randn(6, 6)
    P = A + A.T  # indefinite
    Q, s = shifted_for_condition(P, 10.0)
    lam = np.linalg.eigvalsh(Q)
    assert lam[0] > 0 and s > 0
    assert_allclose(lam[-1] / lam[0], 10.0, rtol=1e-8)
    # Well-conditioned PD input is unchanged.
    Q, s = shifted_for_condition(np.diag([1.0, 2.0, 3.0]), 10.0)
    assert s == 0 and np.allclose(Q, np.diag([1.0, 2.0, 3.0]))
    # Zero matrix: identity-like.
    Q, _ = shifted_for_condition(np.zeros((3, 3)), 10.0)
    assert np.linalg.eigvalsh(Q)[0] > 0


def test_fallback_when_glasso_fails(data, monkeypatch):
    X, _, idx, y = data
    import sklearn.covariance

    def boom(*args, **kwargs):
        raise FloatingPointError("simulated failure")

    monkeypatch.setattr(sklearn.covariance, "graphical_lasso", boom)
    with pytest.warns(ConvergenceWarning, match="graphical_lasso failed"):
        est = SDML(preprocessor=X, n_jobs=1).fit(idx, y)
    assert est.glasso_failed_
    _, P, _ = reference_metric(X, idx, y)
    assert_allclose(est.get_mahalanobis_matrix(), np.linalg.inv(P), rtol=1e-8)


def test_priors(data):
    X, labels, idx, y = data
    est = SDML(prior="covariance", preprocessor=X, n_jobs=1).fit(idx, y)
    # With index pairs, X is the preprocessor; the covariance is of its rows.
    M_ref, _, _ = reference_metric(X, idx, y, prior_inv=np.cov(X, rowvar=False))
    assert_allclose(est.get_mahalanobis_matrix(), M_ref, rtol=1e-6, atol=1e-8)
    M0 = np.diag([1.0, 2.0, 3.0, 4.0])
    est = SDML(prior=M0, preprocessor=X, n_jobs=1).fit(idx, y)
    M_ref, _, _ = reference_metric(X, idx, y, prior_inv=np.linalg.inv(M0))
    assert_allclose(est.get_mahalanobis_matrix(), M_ref, rtol=1e-6, atol=1e-8)
    a = SDML_Supervised(prior="random", random_state=0, n_jobs=1).fit(X, labels)
    b = SDML_Supervised(prior="random", random_state=0, n_jobs=1).fit(X, labels)
    assert_array_equal(a.components_, b.components_)
    with pytest.raises(ValueError, match="positive definite"):
        SDML(prior=-np.eye(4), preprocessor=X).fit(idx, y)
    with pytest.raises(ValueError, match="symmetric"):
        SDML(prior=np.triu(np.ones((4, 4))), preprocessor=X).fit(idx, y)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        SDML(prior=np.eye(3), preprocessor=X).fit(idx, y)
    with pytest.raises(ValueError, match="prior"):
        SDML(prior="lda", preprocessor=X).fit(idx, y)


def test_same_result_for_1_and_2_threads(data):
    X, labels, _, _ = data
    a = SDML_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    b = SDML_Supervised(random_state=0, n_jobs=2).fit(X, labels)
    assert_array_equal(a.components_, b.components_)


def test_dtypes(data, dtype):
    X, labels, _, _ = data
    a = SDML_Supervised(random_state=0, n_jobs=1).fit(X.astype(dtype), labels)
    b = SDML_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    assert a.transform(X.astype(dtype)).dtype == dtype
    Mb = b.get_mahalanobis_matrix()
    assert_allclose(a.get_mahalanobis_matrix(), Mb, atol=1e-3 * np.abs(Mb).max())


def test_one_feature_and_degenerate_data():
    rng = np.random.RandomState(0)
    labels = np.tile([0, 1, 2], 5)
    est = SDML_Supervised(random_state=0, n_jobs=1).fit(rng.randn(15, 1), labels)
    assert est.components_.shape == (1, 1) and np.isfinite(est.components_).all()
    X = np.c_[rng.randn(15, 3), np.ones((15, 2)), rng.randn(15, 30)]
    X[8:] = X[:7]
    est = SDML_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    M = est.get_mahalanobis_matrix()
    assert np.isfinite(M).all() and np.linalg.eigvalsh(M).min() > 0


def test_raw_digits_finite_pd():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    est = SDML_Supervised(random_state=0, n_jobs=1).fit(X[:500], y[:500])
    M = est.get_mahalanobis_matrix()
    assert np.isfinite(M).all() and np.linalg.eigvalsh(M).min() > 0


def test_pairs_api_and_pickle(data):
    X, _, idx, y = data
    est = SDML(n_jobs=1).fit(X[idx], y)
    assert_array_equal(est.classes_, [-1, 1])
    assert est.score(X[idx], y) > 0.6
    r = pickle.loads(pickle.dumps(est))
    assert_array_equal(r.predict(X[idx]), est.predict(X[idx]))
    assert not hasattr(clone(est), "components_")
    # Only similar pairs: fits, threshold from the distances.
    est = SDML(n_jobs=1).fit(X[idx[y == 1]], np.ones((y == 1).sum()))
    assert np.isfinite(est.threshold_)


@pytest.mark.parametrize(
    "params, err, match",
    [
        (dict(balance_param=-1), ValueError, "balance_param"),
        (dict(sparsity_param=np.nan), ValueError, "sparsity_param"),
        (dict(max_condition=1.0), ValueError, "max_condition"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(n_constraints=-2), ValueError, "n_constraints"),
        (dict(verbose=-1), ValueError, "verbose"),
        (dict(n_jobs=0), ValueError, "n_jobs"),
    ],
)
def test_bad_params(data, params, err, match):
    X, labels, _, _ = data
    with pytest.raises(err, match=match):
        SDML_Supervised(**params).fit(X, labels)


def test_bad_inputs(data):
    X, labels, idx, y = data
    with pytest.raises(ValueError, match="hard pair labels"):
        SDML(n_jobs=1).fit(X[idx], np.full(len(idx), 0.5))
    with pytest.raises(ValueError, match="2 classes"):
        SDML_Supervised().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="infinity"):
        bad = X.copy()
        bad[0, 0] = np.inf
        SDML_Supervised().fit(bad, labels)


@parametrize_with_checks([SDML_Supervised(random_state=0, n_jobs=1)])
def test_sklearn_checks_supervised(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_pairs(check):
    check("SDML", SDML())


def test_graphical_lasso_converges_with_the_default_enet_tol():
    """With scikit-learn's enet_tol (1e-4, equal to the graphical lasso's own
    tolerance on its dual gap) the inexact inner solves leave a gap the outer
    iterations cannot close: 100 iterations and a ConvergenceWarning on this
    min-max scaled 30-feature set.  SDML's default (1e-6) converges in a few
    iterations to nearly the same metric."""
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import MinMaxScaler

    X, y = make_classification(n_samples=200, n_features=30, n_informative=10, random_state=1)
    X = MinMaxScaler().fit_transform(X)
    with pytest.warns(ConvergenceWarning, match="graphical_lasso did not converge"):
        stalled = SDML_Supervised(random_state=0, enet_tol=1e-4, max_condition=10.0).fit(X, y)
    assert stalled.n_iter_ == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = SDML_Supervised(random_state=0, max_condition=10.0).fit(X, y)
    assert est.n_iter_ <= 5 and not est.glasso_failed_
    M, M_stalled = est.get_mahalanobis_matrix(), stalled.get_mahalanobis_matrix()
    assert np.abs(M - M_stalled).max() < 1e-2 * np.abs(M).max()

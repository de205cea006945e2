"""LSML, LSML_Supervised and their kernels (the objective: tests/core/objectives/test_lsml.py)."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import LSML, LSML_Supervised
from fastmetric._core.objectives.lsml import pair_quadratic_forms
from fastmetric._learners.lsml import _covariance_prior
from fastmetric.kernels.lsml import (
    residual_loss,
    residual_loss_coefficients,
)

from .._sklearn_checks import NO_FIT_CHECKS
from ..core.objectives.test_lsml import random_quads, ref_gradient, ref_objective, spd


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(30, 4), rng.randn(30, 4) + [4, 0, 0, 0], rng.randn(30, 4) + [0, 0, 4, 0]]
    X[:, 3] *= 5  # a noisy direction LSML should shrink
    y = np.repeat([0, 1, 2], 30)
    return X, y


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    Xs = StandardScaler().fit_transform(X)
    return train_test_split(Xs, y, test_size=0.3, stratify=y, random_state=0), X, y


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n_threads", [1, 2])
def test_pair_quadratic_forms_against_numpy(dtype, n_threads):
    rng = np.random.RandomState(0)
    X = rng.randn(300, 7).astype(dtype)
    S = rng.randn(7, 7)
    S = S + S.T  # indefinite symmetric
    a = rng.randint(0, 300, 1000).astype(np.intp)
    b = rng.randint(0, 300, 1000).astype(np.intp)
    out = np.empty(1000)
    pair_quadratic_forms(X, S, a, b, out, n_threads)
    V = X[a].astype(np.float64) - X[b]
    ref = np.einsum("ij,jk,ik->i", V, S, V)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_pair_quadratic_forms_thread_invariance_and_errors():
    rng = np.random.RandomState(1)
    X = rng.randn(4000, 40)  # 6.4e6 multiply-adds: up to 6 threads used
    S = spd(rng, 40)
    a = rng.randint(0, 4000, 5000).astype(np.intp)
    b = rng.randint(0, 4000, 5000).astype(np.intp)
    outs = []
    for t in (1, 2, 3):
        out = np.empty(5000)
        outs.append(pair_quadratic_forms(X, S, a, b, out, t).copy())
    assert_array_equal(outs[0], outs[1])
    assert_array_equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="same length"):
        pair_quadratic_forms(X, S, a, b[:-1], np.empty(5000), 1)
    with pytest.raises(ValueError, match="shape"):
        pair_quadratic_forms(X, S[:3, :3], a, b, np.empty(5000), 1)


def test_residual_loss_and_coefficients():
    rng = np.random.RandomState(0)
    dab = rng.rand(200) * 4
    dcd = rng.rand(200) * 4
    dcd[:5] = 0.0  # violated with D_cd = 0: the (c, d) term is dropped
    dab[5:8] = -1e-17  # round-off of a zero distance
    w = rng.rand(200)
    loss, n_viol = residual_loss(dab, dcd, w)
    u, v = np.maximum(dab, 0), np.maximum(dcd, 0)
    viol = u > v
    assert n_viol == viol.sum()
    assert loss == pytest.approx(np.sum(w[viol] * (np.sqrt(u[viol]) - np.sqrt(v[viol])) ** 2))
    cab, ccd = np.empty(200), np.empty(200)
    loss2, n2 = residual_loss_coefficients(dab, dcd, w, cab, ccd)
    assert (loss2, n2) == (loss, n_viol)
    ref_ab = np.where(viol, w * (1 - np.sqrt(v / np.where(u > 0, u, 1))), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_cd = np.where(viol & (v > 0), w * (1 - np.sqrt(u / v)), 0)
    assert_allclose(cab, ref_ab, rtol=1e-12)
    assert_allclose(ccd, ref_cd, rtol=1e-12)
    assert residual_loss(np.empty(0), np.empty(0), np.empty(0)) == (0.0, 0)
    with pytest.raises(ValueError, match="same length"):
        residual_loss(dab, dcd[:3], w)


def test_fitted_loss_matches_reference_and_is_optimal(blobs):
    X, y = blobs
    rng = np.random.RandomState(3)
    quads = random_quads(rng, len(X), 300)
    # Order each quadruplet as a true statement for the class structure.
    same = y[quads[:, 0]] == y[quads[:, 1]]
    quads = quads[same & (y[quads[:, 2]] != y[quads[:, 3]])]
    w = rng.rand(len(quads)) + 0.5
    for prior in ("identity", "covariance", "random"):
        est = LSML(prior=prior, tol=1e-8, max_iter=500, random_state=0, preprocessor=X,
                   n_jobs=1).fit(quads, weights=w)
        M = est.get_mahalanobis_matrix()
        if prior == "identity":
            M0 = np.eye(4)
        elif prior == "covariance":
            M0 = np.linalg.inv(_covariance_prior(X[np.unique(quads)]))
        else:
            from sklearn.datasets import make_spd_matrix

            M0 = make_spd_matrix(4, random_state=np.random.RandomState(0))
        P = np.linalg.inv(M0)
        f = ref_objective(M, X, quads, w, P)
        assert est.loss_ == pytest.approx(f, rel=1e-9, abs=1e-9)
        assert est.loss_ < ref_objective(M0, X, quads, w, P)
        # Convex problem: M is a minimum, so no nearby PD matrix is better.
        for _ in range(5):
            E = rng.randn(4, 4)
            E = 1e-3 * (E + E.T)
            assert f <= ref_objective(M + E, X, quads, w, P) + 1e-12
        assert np.linalg.norm(ref_gradient(M, X, quads, w, P)) < 1e-4 * max(1, np.abs(P).max())
        assert est.loss_curve_[-1] == pytest.approx(est.loss_)
        assert np.all(np.diff(est.loss_curve_) <= 1e-12)


def test_prior_shrinks_noisy_direction(blobs):
    X, y = blobs
    est = LSML_Supervised(random_state=0, n_jobs=1).fit(X, y)
    M = est.get_mahalanobis_matrix()
    assert M[3, 3] < M[0, 0] and M[3, 3] < M[2, 2]


# --------------------------------------------------------------------------
# Digits: quality, raw data, thread and dtype invariance
# --------------------------------------------------------------------------
def test_digits_knn_accuracy(digits_split):
    (Xtr, Xte, ytr, yte), _, _ = digits_split
    est = LSML_Supervised(random_state=0).fit(Xtr, ytr)
    assert est.n_constraints_ == 2000
    knn = KNeighborsClassifier(3).fit(est.transform(Xtr), ytr)
    assert knn.score(est.transform(Xte), yte) >= 0.9696


@pytest.mark.parametrize("prior", ["identity", "covariance"])
def test_raw_digits_finite_psd(digits_split, prior):
    _, X, y = digits_split  # raw pixels: several constant features
    est = LSML_Supervised(prior=prior, random_state=0, n_constraints=500).fit(X, y)
    L = est.components_
    assert np.isfinite(L).all() and np.isfinite(est.loss_)
    assert np.linalg.eigvalsh(L.T @ L).min() >= -1e-8


def test_same_result_for_1_and_2_threads(digits_split):
    (Xtr, _, ytr, _), _, _ = digits_split
    a = LSML_Supervised(random_state=0, n_jobs=1).fit(Xtr, ytr)
    b = LSML_Supervised(random_state=0, n_jobs=2).fit(Xtr, ytr)
    assert_array_equal(a.components_, b.components_)
    assert a.n_iter_ == b.n_iter_


def test_float32_close_to_float64(blobs, dtype):
    X, y = blobs
    ref = LSML_Supervised(random_state=0, n_jobs=1).fit(X, y)
    est = LSML_Supervised(random_state=0, n_jobs=1).fit(X.astype(dtype), y)
    assert est.components_.dtype == np.float64
    assert_allclose(est.components_, ref.components_, rtol=1e-4, atol=1e-4)
    assert est.transform(X.astype(dtype)).dtype == dtype


# --------------------------------------------------------------------------
# LSML on quadruplets
# --------------------------------------------------------------------------
def test_quadruplet_forms_agree_and_predict(blobs):
    X, y = blobs
    rng = np.random.RandomState(0)
    quads = random_quads(rng, len(X), 400)
    quads = quads[(y[quads[:, 0]] == y[quads[:, 1]]) & (y[quads[:, 2]] != y[quads[:, 3]])]
    est = LSML(n_jobs=1).fit(X[quads])
    est_idx = LSML(preprocessor=X, n_jobs=1).fit(quads)
    est_call = LSML(preprocessor=lambda i: X[i], n_jobs=1).fit(quads)
    assert_allclose(est_idx.components_, est.components_, rtol=1e-10, atol=1e-12)
    assert_allclose(est_call.components_, est.components_, rtol=1e-10, atol=1e-12)
    euclidean = LSML(max_iter=1, tol=1e30).fit(X[quads])  # stops at the start alpha I
    L = euclidean.components_
    assert_allclose(L, L[0, 0] * np.eye(4), atol=1e-14)
    assert est.score(X[quads]) > euclidean.score(X[quads])
    assert set(np.unique(est.predict(X[quads]))) <= {-1, 1}
    M = est.get_mahalanobis_matrix()
    dist = lambda u, v: np.sqrt(np.einsum("ij,jk,ik->i", u - v, M, u - v))  # noqa: E731
    ref = dist(X[quads[:, 2]], X[quads[:, 3]]) - dist(X[quads[:, 0]], X[quads[:, 1]])
    assert_allclose(est_idx.decision_function(quads), ref, rtol=1e-8, atol=1e-10)
    # Reversed quadruplets are predicted the other way.
    assert_array_equal(est.predict(X[quads][:, [2, 3, 0, 1]]), -est.predict(X[quads]))
    # Uniform weights are the default; weights are normalised.
    est_w = LSML(n_jobs=1).fit(X[quads], weights=np.full(len(quads), 7.0))
    assert_allclose(est_w.components_, est.components_, rtol=1e-12)


def test_metric_learn_docstring_example():
    quadruplets = np.array([[[1.2, 7.5], [1.3, 1.5], [6.4, 2.6], [6.2, 9.7]],
                            [[1.3, 4.5], [3.2, 4.6], [6.2, 5.5], [5.4, 5.4]],
                            [[3.2, 7.5], [3.3, 1.5], [8.4, 2.6], [8.2, 9.7]],
                            [[3.3, 4.5], [5.2, 4.6], [8.2, 5.5], [7.4, 5.4]]])
    est = LSML().fit(quadruplets)
    # metric-learn 0.7.0 gives M ~ [[0.613, -0.0003], [-0.0003, 1.003]] and
    # predictions [1, -1, 1, -1] (it stops before the optimum).
    assert_array_equal(est.predict(quadruplets), [1, -1, 1, -1])
    assert_allclose(est.get_mahalanobis_matrix(), [[0.613, 0.0], [0.0, 1.003]], atol=0.02)
    assert est.score(quadruplets) == 0.5


def test_data_scale(blobs):
    X, y = blobs
    ref = LSML_Supervised(random_state=0, n_jobs=1).fit(X, y)
    for scale in (1e-150, 1e-3, 1e3, 1e100):
        est = LSML_Supervised(random_state=0, n_jobs=1).fit(X * scale, y)
        assert np.isfinite(est.components_).all() and np.isfinite(est.loss_)
        assert est.n_iter_ < 100
    # Outside the common window the data are brought to a range of one by a
    # power of two: the fit is the same, bit for bit, at 2^40 and 2^400 (and
    # at 2^-40), up to the scale itself.
    kw = dict(random_state=0, n_jobs=1)
    far = [LSML_Supervised(**kw).fit(X * 2.0 ** e, y).components_ * 2.0 ** e
           for e in (40, 400, -40)]
    assert_array_equal(far[0], far[1])
    assert_array_equal(far[0], far[2])
    assert ref.n_iter_ < 100
    # Without it, the data term dominates at large scale, and the metric the
    # data favour is found whatever the scale (up to the scale itself).
    big = [LSML_Supervised(**kw, feature_scaling=None).fit(X * s, y).components_ * s
           for s in (1e6, 1e100)]
    assert_allclose(big[0], big[1], rtol=1e-4, atol=1e-6 * np.abs(big[0]).max())
    with pytest.raises(ValueError, match="overflow"):
        LSML_Supervised(random_state=0, feature_scaling=None).fit(X * 1e160, y)


def test_degenerate_data():
    rng = np.random.RandomState(0)
    # d > n, a constant feature, duplicated points.
    X = rng.randn(6, 10)
    X[:, 4] = 3.0
    X = np.r_[X, X[:2]]
    y = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    for prior in ("identity", "covariance", "random"):
        est = LSML_Supervised(prior=prior, random_state=0, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            est.fit(X, y)
        L = est.components_
        assert L.shape == (10, 10) and np.isfinite(L).all()
        assert np.linalg.eigvalsh(L.T @ L).min() >= -1e-8
    # Quadruplets of identical points: nothing to learn, the prior is kept.
    Q = np.zeros((3, 4, 2))
    assert_allclose(LSML().fit(Q).get_mahalanobis_matrix(), np.eye(2), atol=1e-12)
    # One feature.
    est = LSML_Supervised(random_state=0).fit(rng.randn(20, 1), np.repeat([0, 1], 10))
    assert est.components_.shape == (1, 1) and est.components_[0, 0] > 0


def test_too_few_pairs_warns():
    X = np.arange(8.0).reshape(4, 2)
    y = np.array([0, 0, 1, 1])  # 2 positive pairs exist
    with pytest.warns(UserWarning, match="only 2 quadruplets"):
        est = LSML_Supervised(random_state=0).fit(X, y)
    assert est.n_constraints_ == 2


def test_default_number_of_constraints(blobs):
    X, y = blobs
    assert LSML_Supervised(random_state=0, n_jobs=1).fit(X, y).n_constraints_ == 20 * 9
    assert LSML_Supervised(n_constraints=50, random_state=0).fit(X, y).n_constraints_ == 50


def test_supervised_weights_and_preprocessor(blobs):
    X, y = blobs
    ref = LSML_Supervised(n_constraints=60, random_state=0, n_jobs=1).fit(X, y)
    est = LSML_Supervised(n_constraints=60, weights=np.full(60, 2.0), random_state=0,
                          n_jobs=1).fit(X, y)
    assert_allclose(est.components_, ref.components_, rtol=1e-12)
    w = np.r_[np.ones(30), np.zeros(30)]
    est2 = LSML_Supervised(n_constraints=60, weights=w, random_state=0, n_jobs=1).fit(X, y)
    assert not np.allclose(est2.components_, ref.components_)
    est_idx = LSML_Supervised(n_constraints=60, preprocessor=X, random_state=0,
                              n_jobs=1).fit(np.arange(len(X)), y)
    assert_allclose(est_idx.components_, ref.components_, rtol=1e-12)
    assert_allclose(est_idx.transform(np.arange(5)), ref.transform(X[:5]))


def test_callback_verbose_and_max_iter(blobs, capsys):
    X, y = blobs
    seen = []
    est = LSML_Supervised(random_state=0, verbose=1, n_jobs=1,
                          callback=lambda e, i, f: seen.append((i, f)) or i >= 3).fit(X, y)
    assert [i for i, _ in seen] == [1, 2, 3] and est.n_iter_ == 3
    assert "LSML_Supervised" in capsys.readouterr().out
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        LSML_Supervised(random_state=0, max_iter=1, tol=0.0, n_jobs=1).fit(X, y)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"prior": "pca"}, ValueError, r"'prior' parameter of LSML_Supervised .*Got 'pca'"),
        ({"prior": np.eye(3)}, ValueError, r"\(4, 4\)"),
        ({"prior": -np.eye(4)}, ValueError, "positive definite"),
        ({"prior": np.triu(np.ones((4, 4)))}, ValueError, "symmetric"),
        ({"prior": np.full((4, 4), np.nan)}, ValueError, "NaN"),
        ({"prior": np.array([["a"] * 4] * 4)}, TypeError, "real array"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"tol": "x"}, TypeError, "tol"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 1.5}, TypeError, "max_iter"),
        ({"n_constraints": 0}, ValueError, "n_constraints"),
        ({"n_constraints": 2.0}, TypeError, "n_constraints"),
        ({"weights": np.ones(3)}, ValueError, r"\(180,\)"),
        ({"weights": -np.ones(180)}, ValueError, "non-negative"),
        ({"weights": np.zeros(180)}, ValueError, "sum to 0"),
        ({"weights": np.full(180, np.nan)}, ValueError, "NaN"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"callback": 3}, TypeError, "callback"),
        ({"verbose": -1}, ValueError, "verbose"),
    ],
)
def test_bad_params(blobs, params, exc, match):
    X, y = blobs
    with pytest.raises(exc, match=match):
        LSML_Supervised(random_state=0, **params).fit(X, y)


def test_bad_labels_and_data(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="2 classes"):
        LSML_Supervised().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="single sample"):
        LSML_Supervised().fit(X[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="NaN|infinity"):
        LSML_Supervised().fit(np.full_like(X, np.nan), y)
    with pytest.raises(ValueError):
        LSML_Supervised().fit(X, y[:-1])


def test_bad_quadruplets(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="not 4"):
        LSML().fit(np.zeros((5, 3, 2)))
    with pytest.raises(ValueError, match="empty"):
        LSML().fit(np.zeros((0, 4, 2)))
    with pytest.raises(ValueError, match="preprocessor"):
        LSML().fit(np.zeros((5, 4), dtype=int))
    with pytest.raises(ValueError, match="index 90"):
        LSML(preprocessor=X).fit(np.array([[0, 1, 2, 90]]))
    with pytest.raises(ValueError, match="NaN"):
        LSML().fit(np.full((2, 4, 2), np.inf))
    with pytest.raises(ValueError, match=r"\(n_quadruplets,\) = \(2,\)"):
        LSML().fit(np.random.rand(2, 4, 2), weights=[1.0])
    est = LSML().fit(np.random.RandomState(0).rand(5, 4, 2))
    with pytest.raises(ValueError, match="fitted with 2"):
        est.predict(np.zeros((1, 4, 3)))


# --------------------------------------------------------------------------
# scikit-learn contract, pickling
# --------------------------------------------------------------------------
@parametrize_with_checks(
    [
        LSML_Supervised(random_state=0, n_jobs=1),
        LSML_Supervised(prior="covariance", n_constraints=100, random_state=0, n_jobs=1),
    ]
)
def test_sklearn_checks_supervised(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few pairs on tiny data
        check(estimator)


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_quadruplets(check):
    check("LSML", LSML())


def test_pickle_and_clone(blobs):
    X, y = blobs
    est = LSML_Supervised(random_state=0, n_jobs=1).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert_array_equal(restored.transform(X), est.transform(X))
    assert not hasattr(clone(est), "components_")
    q = LSML(preprocessor=X).fit(np.array([[0, 1, 30, 60], [2, 3, 31, 61]]))
    restored = pickle.loads(pickle.dumps(q))
    assert_array_equal(restored.decision_function([[0, 1, 30, 60]]),
                       q.decision_function([[0, 1, 30, 60]]))


@pytest.mark.parametrize("obj", [LSML, LSML_Supervised], ids=lambda o: o.__name__)
def test_docstring_examples(obj):
    import doctest

    test = doctest.DocTestParser().get_doctest(obj.__doc__, {}, obj.__name__, None, 0)
    assert test.examples
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0

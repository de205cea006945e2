"""Tests of ITML: the projection kernel against plain numpy, constraint
satisfaction, bounds, priors, threads, dtypes, bad input, degenerate data and
the scikit-learn contract."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import ITML, ITML_Supervised
from fastmetric._core.objectives.itml import itml_projections
from fastmetric._core.sampling import sample_pairs
from fastmetric._learners.itml import components_from_psd

from .._sklearn_checks import NO_FIT_CHECKS
from ..conftest import tolerance

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------------
# Plain numpy reference of the same update sequence
# --------------------------------------------------------------------------
def numpy_itml(X, a, b, delta, xi, A, gamma, tol, max_sweeps):
    """Cyclic Bregman projections, one constraint at a time, as in the paper."""
    X = X.astype(np.float64)
    A = A.astype(np.float64).copy()
    xi = np.asarray(xi, dtype=np.float64).copy()
    m = len(a)
    lam, lam_old = np.zeros(m), np.zeros(m)
    gproj = 1.0 if np.isinf(gamma) else gamma / (gamma + 1.0)
    convs, converged = [], False
    for _sweep in range(max_sweeps):
        for c in range(m):
            v = X[a[c]] - X[b[c]]
            w = A @ v
            p = v @ w
            if not p > 0:
                continue
            alpha = min(lam[c], gproj * delta[c] * (1.0 / p - 1.0 / xi[c]))
            if alpha == 0:
                continue
            beta = delta[c] * alpha / (1.0 - delta[c] * alpha * p)
            if np.isfinite(gamma):
                xi[c] = 1.0 / (1.0 / xi[c] + delta[c] * alpha / gamma)
            lam[c] -= alpha
            A += beta * np.outer(w, w)
        normsum = np.linalg.norm(lam) + np.linalg.norm(lam_old)
        if normsum == 0:
            convs.append(np.inf)
            converged = True
            break
        conv = np.abs(lam_old - lam).sum() / normsum
        convs.append(conv)
        if conv < tol:
            converged = True
            break
        lam_old = lam.copy()
    return A, xi, lam, len(convs), converged, np.array(convs)


def random_problem(n=40, d=5, m=60, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d).astype(dtype)
    labels = rng.randint(0, 3, n)
    X[:, 0] += 2.0 * labels  # labels tell along feature 0
    idx, t = sample_pairs(labels, m // 2, m - m // 2, random_state=seed)
    a = np.ascontiguousarray(idx[:, 0])
    b = np.ascontiguousarray(idx[:, 1])
    delta = np.where(t == 1, 1.0, -1.0)
    D = ((X[a].astype(float) - X[b]) ** 2).sum(1)
    lo, hi = np.percentile(D, [20, 80])
    xi = np.where(delta > 0, lo, hi)
    return X, a, b, delta, xi


@pytest.mark.parametrize("d", [5, 13, 37, 64])
@pytest.mark.parametrize("gamma", [1.0, 0.1, np.inf])
def test_kernel_matches_numpy(dtype, d, gamma):
    X, a, b, delta, xi = random_problem(d=d, dtype=dtype)
    A0 = np.eye(d) + 0.1 * np.ones((d, d))
    ref_A, ref_xi, ref_lam, ref_n, ref_conv_flag, ref_conv = numpy_itml(
        X, a, b, delta, xi, A0, gamma, 1e-12, 15)
    A, xi_k = A0.copy(), xi.copy()
    lam, lam_old = np.zeros(len(a)), np.zeros(len(a))
    n, converged, conv = itml_projections(X, a, b, delta, xi_k, lam, lam_old, A,
                                          gamma=gamma, tol=1e-12, max_sweeps=15)
    assert n == ref_n and converged == ref_conv_flag
    assert_allclose(A, ref_A, rtol=1e-9, atol=1e-9 * np.abs(ref_A).max())
    assert_allclose(xi_k, ref_xi, rtol=1e-9)
    assert_allclose(lam, ref_lam, rtol=1e-8, atol=1e-12)
    assert_allclose(conv, ref_conv, rtol=1e-6, atol=1e-12)
    assert_array_equal(A, A.T)  # bitwise symmetric
    assert np.linalg.eigvalsh(A).min() > 0


def test_kernel_resumes_exactly_in_chunks():
    """Sweeps run in several calls give bitwise the same state as one call."""
    X, a, b, delta, xi = random_problem(d=11)
    states = []
    for chunks in ([6], [1, 2, 3]):
        A, x = np.eye(11), xi.copy()
        lam, lam_old = np.zeros(len(a)), np.zeros(len(a))
        for k in chunks:
            itml_projections(X, a, b, delta, x, lam, lam_old, A, tol=0.0, max_sweeps=k)
        states.append((A, x, lam, lam_old))
    for u, v in zip(*states):
        assert_array_equal(u, v)


def test_kernel_large_d_matches_numpy():
    # 261 features: blocks of four rows plus one, 16 column blocks plus 5.
    X, a, b, delta, xi = random_problem(n=30, d=261, m=24, seed=3)
    A, x = np.eye(261), xi.copy()
    lam, lam_old = np.zeros(len(a)), np.zeros(len(a))
    itml_projections(X, a, b, delta, x, lam, lam_old, A, tol=0.0, max_sweeps=3)
    ref_A = numpy_itml(X, a, b, delta, xi, np.eye(261), 1.0, 0.0, 3)[0]
    assert_allclose(A, ref_A, rtol=1e-9, atol=1e-12)
    assert_array_equal(A, A.T)


def test_kernel_argument_checks():
    X, a, b, delta, xi = random_problem(d=4)
    m = len(a)

    def run(**kw):
        args = dict(X=X, a=a, b=b, delta=delta, xi=xi.copy(), lam=np.zeros(m),
                    lam_old=np.zeros(m), A=np.eye(4))
        args.update(kw)
        return itml_projections(**args, max_sweeps=2)

    with pytest.raises(ValueError, match="outside"):
        run(a=a + 1000)
    with pytest.raises(ValueError, match="same length"):
        run(b=b[:-1])
    with pytest.raises(ValueError, match="delta"):
        run(delta=np.zeros(m))
    with pytest.raises(ValueError, match="xi"):
        run(xi=-xi)
    with pytest.raises(ValueError, match="in place"):
        run(A=np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="in place"):
        run(lam=np.zeros(m + 1))
    with pytest.raises(ValueError, match="NaN"):
        run(X=np.full_like(X, np.nan))
    with pytest.raises(ValueError, match="gamma"):
        itml_projections(X, a, b, delta, xi.copy(), np.zeros(m), np.zeros(m), np.eye(4),
                         gamma=0.0)


def test_kernel_skips_zero_difference_and_all_satisfied():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    a, b = np.array([0, 0, 0]), np.array([1, 2, 3])  # pair 0: equal points
    delta = np.array([1.0, 1.0, -1.0])
    xi = np.array([1.0, 2.0, 4.0])  # every constraint already holds
    A, lam, lam_old = np.eye(2), np.zeros(3), np.zeros(3)
    n, converged, conv = itml_projections(X, a, b, delta, xi, lam, lam_old, A,
                                          max_sweeps=10)
    assert (n, converged) == (1, True) and np.isinf(conv[0])
    assert_array_equal(A, np.eye(2))


# --------------------------------------------------------------------------
# The estimators on pairs
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pair_data():
    rng = np.random.RandomState(0)
    X = np.r_[rng.randn(40, 3), rng.randn(40, 3) + [4, 0, 0]]
    labels = np.repeat([0, 1], 40)
    idx, t = sample_pairs(labels, 100, 100, unique=True, random_state=0)
    return X, idx, 2 * t.astype(int) - 1


def test_itml_matches_numpy_reference(pair_data):
    X, idx, y = pair_data
    itml = ITML(max_iter=50, tol=1e-6, order="similar_first")
    itml.fit(X[idx], y, bounds=[1.0, 9.0])
    delta = np.where(y == 1, 1.0, -1.0)
    order = np.argsort(-delta, kind="stable")  # similar pairs first
    ref_A, _, _, n_ref, _, _ = numpy_itml(X, idx[order, 0], idx[order, 1], delta[order],
                                          np.where(delta[order] > 0, 1.0, 9.0), np.eye(3),
                                          1.0, 1e-6, 50)
    assert itml.n_iter_ == n_ref
    assert_allclose(itml.get_mahalanobis_matrix(), ref_A, rtol=1e-8, atol=1e-10)


def test_default_order_alternates_and_tol_grows_with_constraints(pair_data):
    """The default visits similar and dissimilar pairs in turn and stops at
    the tolerance 1e-3 sqrt(m) (m constraints) of metric-learn's measure."""
    X, idx, y = pair_data
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        itml = ITML().fit(X[idx], y, bounds=[1.0, 9.0])
    delta = np.where(y == 1, 1.0, -1.0)
    order = np.r_[np.c_[np.flatnonzero(delta > 0), np.flatnonzero(delta < 0)].ravel()]
    assert len(order) == len(y)  # as many similar as dissimilar pairs here
    tol = 1e-3 * np.sqrt(len(y))
    ref_A, _, _, n_ref, converged, _ = numpy_itml(
        X, idx[order, 0], idx[order, 1], delta[order], np.where(delta[order] > 0, 1.0, 9.0),
        np.eye(3), 1.0, tol, 1000)
    assert converged
    assert itml.n_iter_ == n_ref
    assert_allclose(itml.get_mahalanobis_matrix(), ref_A, rtol=1e-8, atol=1e-10)
    # metric-learn's settings: another order and a stricter test, more sweeps.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ml = ITML(tol=1e-3, order="similar_first").fit(X[idx], y, bounds=[1.0, 9.0])
    assert ml.n_iter_ > itml.n_iter_


def test_alternating_order():
    from fastmetric._learners.itml import alternating_order

    delta = np.array([-1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    assert alternating_order(delta).tolist() == [1, 0, 4, 2, 3, 5]
    assert alternating_order(np.ones(3)).tolist() == [0, 1, 2]


@pytest.fixture(scope="module")
def separable_data():
    """Two groups far apart along feature 0 (tight in it), noisy in the others."""
    rng = np.random.RandomState(0)
    X = np.c_[0.05 * rng.randn(60, 1), rng.randn(60, 2)]
    labels = np.repeat([0, 1], 30)
    X[labels == 1, 0] += 4.0
    idx, t = sample_pairs(labels, 60, 60, unique=True, random_state=0)
    return X, idx, 2 * t.astype(int) - 1


def test_constraints_hold_after_convergence_hard(separable_data):
    X, idx, y = separable_data
    u, lo = 0.5, 20.0
    itml = ITML(gamma=np.inf, max_iter=20000, tol=1e-7, preprocessor=X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        itml.fit(idx, y, bounds=(u, lo))
    d2 = itml.pair_distance(idx) ** 2
    assert d2[y == 1].max() <= u * (1 + 1e-3)
    assert d2[y == -1].min() >= lo * (1 - 1e-3)
    # The Euclidean metric violated both kinds.
    e2 = ((X[idx[:, 0]] - X[idx[:, 1]]) ** 2).sum(1)
    assert e2[y == 1].max() > u and e2[y == -1].min() < lo
    assert itml.score(idx, y) == 1.0
    assert_array_equal(itml.predict(idx), y)


def test_gamma_trades_prior_for_constraints(separable_data):
    """Small gamma: cheap slack, the metric stays near the prior; large gamma:
    the constraints win."""
    X, idx, y = separable_data
    dist_to_prior, violation = [], []
    for gamma in (1e-3, 1.0, 1e3):
        itml = ITML(gamma=gamma, preprocessor=X, max_iter=3000, tol=1e-6).fit(
            idx, y, bounds=(0.5, 20.0))
        M = itml.get_mahalanobis_matrix()
        dist_to_prior.append(np.linalg.norm(M - np.eye(3)))
        d2 = itml.pair_distance(idx) ** 2
        violation.append(np.maximum(d2[y == 1] - 0.5, 0).sum()
                         + np.maximum(20.0 - d2[y == -1], 0).sum())
    assert dist_to_prior[0] < dist_to_prior[1] < dist_to_prior[2]
    assert violation[0] > violation[1] > violation[2]


def test_default_bounds_are_distance_percentiles(pair_data):
    X, idx, y = pair_data
    itml = ITML(max_iter=5).fit(X[idx], y)
    P = np.unique(X[np.unique(idx)], axis=0)
    D = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
    assert_allclose(itml.bounds_, np.percentile(D, [5, 95]), rtol=1e-7)
    # Index pairs into a preprocessor: only the rows in pairs count.
    itml_pre = ITML(max_iter=5, preprocessor=np.r_[X, 100 + X]).fit(idx, y)
    assert_allclose(itml_pre.bounds_, itml.bounds_, rtol=1e-12)
    # Given bounds are kept; zeros become 1e-9.
    itml.fit(X[idx], y, bounds=np.array([0.0, 3.0]))
    assert_array_equal(itml.bounds_, [1e-9, 3.0])


def test_default_bounds_subsample_many_points():
    rng = np.random.RandomState(0)
    X = rng.randn(2500, 2)
    labels = rng.randint(0, 2, 2500)
    est = ITML_Supervised(n_constraints=3000, max_iter=2, random_state=0, n_jobs=1)
    est.fit(X, labels)
    # Percentiles of |x - x'| for 2-D Gaussians: about 0.42 and 3.46.
    assert 0.3 < est.bounds_[0] < 0.55 and 3.2 < est.bounds_[1] < 3.7


def test_predict_calibration_and_classifier_api(pair_data):
    X, idx, y = pair_data
    itml = ITML(max_iter=100, preprocessor=X).fit(idx, y)
    assert is_classifier(itml)
    assert_array_equal(itml.classes_, [-1, 1])
    assert itml.score(idx, y) > 0.95
    acc = np.mean(itml.predict(idx) == y)
    assert acc > 0.9
    itml2 = ITML(max_iter=100, preprocessor=X).fit(
        idx, y, calibration_params={"strategy": "max_tpr", "min_rate": 0.9})
    tnr = np.mean(itml2.predict(idx)[y == -1] == -1)
    assert tnr >= 0.9
    with pytest.raises(ValueError, match="unknown key"):
        ITML(preprocessor=X).fit(idx, y, calibration_params={"strat": "accuracy"})
    with pytest.raises(ValueError, match="(?i)strategy"):
        ITML(preprocessor=X).fit(idx, y, calibration_params={"strategy": "best"})


# --------------------------------------------------------------------------
# Priors and the factorisation
# --------------------------------------------------------------------------
def test_priors(pair_data):
    X, idx, y = pair_data
    P = np.unique(X[np.unique(idx)], axis=0)
    # All constraints hold for the prior: M stays the prior exactly.
    for prior, expected in [("identity", np.eye(3)),
                            ("covariance", np.linalg.inv(np.cov(P, rowvar=False)))]:
        itml = ITML(prior=prior, max_iter=3).fit(X[idx], y, bounds=(1e6, 1e-6))
        assert_allclose(itml.get_mahalanobis_matrix(), expected, rtol=1e-8, atol=1e-10)
    spd = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 3.0]])
    itml = ITML(prior=spd, max_iter=3).fit(X[idx], y, bounds=(1e6, 1e-6))
    assert_allclose(itml.get_mahalanobis_matrix(), spd, rtol=1e-10, atol=1e-14)
    from sklearn.datasets import make_spd_matrix

    itml = ITML(prior="random", random_state=7, max_iter=3).fit(X[idx], y,
                                                                  bounds=(1e6, 1e-6))
    assert_allclose(itml.get_mahalanobis_matrix(), make_spd_matrix(3, random_state=7),
                    rtol=1e-8)


def test_covariance_prior_on_singular_data():
    rng = np.random.RandomState(0)
    X = np.c_[rng.randn(60, 3), np.zeros(60), rng.randn(60, 1)]
    X[:, 4] = X[:, 0] + X[:, 1]  # dependent feature
    y = np.repeat([0, 1, 2], 20)
    X[:, 0] += y
    est = ITML_Supervised(prior="covariance", max_iter=50, random_state=0).fit(X, y)
    M = est.get_mahalanobis_matrix()
    assert np.isfinite(M).all()
    assert np.linalg.eigvalsh(M).min() >= -1e-9 * np.abs(M).max()


def test_components_from_psd():
    rng = np.random.RandomState(0)
    B = rng.randn(6, 4)
    A = B @ B.T  # rank 4, PSD
    A[0, 0] -= 1e-13  # a rounding-level negative eigenvalue is tolerated
    L = components_from_psd(A)
    assert L.shape == (6, 6)
    assert_allclose(L.T @ L, A, atol=1e-10)
    norms = np.linalg.norm(L, axis=1)
    assert np.all(np.diff(norms) <= 1e-12)  # decreasing eigenvalues
    assert_allclose(norms[4:], 0, atol=1e-6)


@pytest.mark.parametrize("prior, exc, match", [
    ("pca", ValueError, "prior"),
    (np.eye(2), ValueError, "shape"),
    (np.array([[1.0, 2.0, 0], [0, 1.0, 0], [0, 0, 1.0]]), ValueError, "symmetric"),
    (np.diag([1.0, 0.0, 1.0]), np.linalg.LinAlgError, "positive definite"),
    (np.diag([1.0, np.nan, 1.0]), ValueError, "NaN"),
    (None, TypeError, "prior"),
])
def test_bad_priors(pair_data, prior, exc, match):
    X, idx, y = pair_data
    with pytest.raises(exc, match=match):
        ITML(prior=prior, max_iter=2).fit(X[idx], y)


# --------------------------------------------------------------------------
# Supervised form
# --------------------------------------------------------------------------
def test_supervised_constraint_count_and_threads():
    X, y = load_iris(return_X_y=True)
    fits = [ITML_Supervised(random_state=0, n_jobs=n, max_iter=100).fit(X, y) for n in (1, 2)]
    assert_array_equal(fits[0].components_, fits[1].components_)
    assert fits[0].n_iter_ == fits[1].n_iter_
    assert_array_equal(fits[0].bounds_, fits[1].bounds_)
    # Default: max(20 n_classes^2, min(10 n, 100000)) similar and as many dissimilar
    # pairs (it grows with the data); n_constraints=20 n_classes^2 is metric-learn's.
    from fastmetric._learners import itml as _itml

    seen = {}
    orig = _itml._BaseITML._fit_constraints

    def spy(self, X, a, b, delta, bounds):
        seen["n_pos"], seen["n_neg"] = int((delta > 0).sum()), int((delta < 0).sum())
        seen["distinct"] = len({(min(p), max(p)) for p in zip(a, b)})
        return orig(self, X, a, b, delta, bounds)

    _itml._BaseITML._fit_constraints = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ITML_Supervised(random_state=0, max_iter=2).fit(X, y)
            default = dict(seen)
            ITML_Supervised(random_state=0, max_iter=2, n_constraints=180).fit(X, y)
    finally:
        _itml._BaseITML._fit_constraints = orig
    assert default == {"n_pos": 1500, "n_neg": 1500, "distinct": 3000}
    assert seen == {"n_pos": 180, "n_neg": 180, "distinct": 360}


def test_supervised_separates_classes():
    X, y = load_iris(return_X_y=True)
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(ITML_Supervised(random_state=0, max_iter=200),
                         KNeighborsClassifier(3))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.93


def test_supervised_few_pairs_warns_and_deprecated_aliases():
    X = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 3.0], [4.0, 4.0]])
    y = np.array([0, 0, 1, 1])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ITML_Supervised(n_constraints=10, max_iter=5).fit(X, y)
    messages = [str(w.message) for w in rec if w.category is UserWarning]
    assert any("only 2 distinct similar pairs" in msg for msg in messages)
    assert any("only 4 distinct dissimilar pairs" in msg for msg in messages)
    with pytest.warns(FutureWarning, match="num_constraints"):
        est = ITML_Supervised(num_constraints=2, max_iter=5).fit(X, y)
    with pytest.warns(FutureWarning, match="convergence_threshold"):
        ITML(convergence_threshold=0.1, max_iter=5).fit(
            X[[[0, 1], [2, 3], [0, 2], [1, 3]]], [1, 1, -1, -1])
    assert np.isfinite(est.components_).all()


def test_dtypes(dtype):
    X, y = load_iris(return_X_y=True)
    ref = ITML_Supervised(random_state=0, max_iter=50, n_jobs=1).fit(X, y)
    est = ITML_Supervised(random_state=0, max_iter=50, n_jobs=1).fit(X.astype(dtype), y)
    assert est.components_.dtype == np.float64
    assert_allclose(est.get_mahalanobis_matrix(), ref.get_mahalanobis_matrix(),
                    rtol=10 * tolerance(dtype) if dtype == np.float32 else 1e-12,
                    atol=1e-3 if dtype == np.float32 else 1e-12)
    assert est.transform(X.astype(dtype)).dtype == dtype


def test_degenerate_data():
    rng = np.random.RandomState(0)
    y = np.repeat([0, 1], 10)
    cases = {
        "constant feature": np.c_[rng.randn(20, 2), np.full(20, 3.0)],
        "duplicated points": np.repeat(rng.randn(5, 3), 4, axis=0),
        "d > n": rng.randn(20, 40),
        "all equal": np.ones((20, 3)),
    }
    for name, X in cases.items():
        for prior in ("identity", "covariance"):
            est = ITML_Supervised(prior=prior, max_iter=30, random_state=0).fit(X, y)
            M = est.get_mahalanobis_matrix()
            assert np.isfinite(M).all(), name
            assert np.linalg.eigvalsh(M).min() >= -1e-8 * max(np.abs(M).max(), 1), name


def test_raw_digits_finite_psd():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]  # constant pixels: a singular covariance
    for prior in ("identity", "covariance"):
        est = ITML_Supervised(prior=prior, max_iter=20, random_state=0).fit(X, y)
        M = est.get_mahalanobis_matrix()
        assert np.isfinite(M).all()
        assert np.linalg.eigvalsh(M).min() >= -1e-9 * np.abs(M).max()


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------
def test_bad_inputs(pair_data):
    X, idx, y = pair_data
    pairs = X[idx]
    with pytest.raises(ValueError, match="empty"):
        ITML().fit(np.zeros((0, 2, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="3-D"):
        ITML().fit(X, np.ones(len(X)))
    bad = pairs.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ITML().fit(bad, y)
    with pytest.raises(ValueError, match="index"):
        ITML(preprocessor=X).fit(idx + 1000, y)
    with pytest.raises(ValueError, match="both"):
        ITML().fit(pairs, np.ones(len(y)))
    with pytest.raises(ValueError, match="soft"):
        ITML().fit(pairs, np.full(len(y), 0.5))
    with pytest.raises(ValueError, match=r"\(n_pairs,\)"):
        ITML().fit(pairs, y[:-1])
    for params, exc in [({"gamma": 0}, ValueError), ({"gamma": -1.0}, ValueError),
                        ({"gamma": "1"}, TypeError), ({"gamma": np.nan}, ValueError),
                        ({"max_iter": 0}, ValueError), ({"tol": -1.0}, ValueError),
                        ({"n_jobs": 0}, ValueError), ({"verbose": -1}, ValueError)]:
        with pytest.raises(exc):
            ITML(**params).fit(pairs, y)
    for bounds in ([1.0], [1.0, 2.0, 3.0], [-1.0, 2.0], [1.0, np.inf], "ab"):
        with pytest.raises((ValueError, TypeError), match="bounds"):
            ITML().fit(pairs, y, bounds=bounds)
    Xs, ys = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="overflow"):
        ITML_Supervised(max_iter=2, feature_scaling=None).fit(Xs * 1e160, ys)
    # the default brings such data to a range of one first: a finite fit
    huge = ITML_Supervised(max_iter=2).fit(Xs * 1e160, ys)
    assert np.isfinite(huge.components_).all() and huge.feature_scales_[0] > 1e160
    with pytest.raises(ValueError, match="2 classes"):
        ITML_Supervised().fit(Xs, np.zeros(len(Xs)))
    with pytest.raises(ValueError, match="single sample"):
        ITML_Supervised().fit(Xs[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="n_constraints"):
        ITML_Supervised(n_constraints=0).fit(Xs, ys)
    with pytest.raises(TypeError, match="n_constraints"):
        ITML_Supervised(n_constraints=2.5).fit(Xs, ys)


# --------------------------------------------------------------------------
# scikit-learn contract, pickling, verbose
# --------------------------------------------------------------------------
@parametrize_with_checks([
    ITML_Supervised(n_constraints=50, max_iter=30, random_state=0, n_jobs=1),
    ITML_Supervised(n_constraints=20, max_iter=5, prior="covariance", random_state=0),
])
def test_sklearn_checks_supervised(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "only k distinct pairs" on tiny data
        check(estimator)


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_pairs(check):
    check("ITML", ITML())


def test_pairs_methods_invariance_and_state(pair_data):
    X, idx, y = pair_data
    itml = ITML(max_iter=50).fit(X[idx], y)
    pairs = X[idx]
    perm = np.random.RandomState(1).permutation(len(pairs))
    for method in ("predict", "decision_function", "pair_distance"):
        full = getattr(itml, method)(pairs)
        assert_allclose(getattr(itml, method)(pairs[perm]), full[perm], rtol=1e-12)
    first = itml.components_.copy()
    assert_array_equal(itml.fit(X[idx], y).components_, first)  # refit is idempotent


def test_pickle_and_clone(pair_data):
    X, idx, y = pair_data
    itml = ITML(max_iter=50, preprocessor=X).fit(idx, y)
    restored = pickle.loads(pickle.dumps(itml))
    assert_array_equal(restored.decision_function(idx), itml.decision_function(idx))
    assert_array_equal(restored.predict(idx), itml.predict(idx))
    sup = ITML_Supervised(max_iter=20, random_state=0).fit(*load_iris(return_X_y=True))
    assert_array_equal(pickle.loads(pickle.dumps(sup)).components_, sup.components_)
    assert not hasattr(clone(sup), "components_")


def test_verbose_prints_and_matches_silent(pair_data, capsys):
    X, idx, y = pair_data
    loud = ITML(max_iter=20, verbose=True).fit(X[idx], y)
    out = capsys.readouterr().out
    assert "sweep" in out and out.count("\n") >= loud.n_iter_ + 2
    quiet = ITML(max_iter=20).fit(X[idx], y)
    assert_array_equal(loud.components_, quiet.components_)
    assert loud.n_iter_ == quiet.n_iter_


def test_convergence_warning(pair_data):
    X, idx, y = pair_data
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        ITML(max_iter=2, tol=0.0).fit(X[idx], y)


def test_callback_sees_each_sweep_and_can_stop(pair_data):
    X, idx, y = pair_data
    seen = []

    def callback(est, sweep, conv):
        seen.append((sweep, conv, est.get_mahalanobis_matrix().copy()))
        return sweep == 4

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a callback stop is not a failure
        est = ITML(max_iter=50, tol=0.0, callback=callback).fit(X[idx], y)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4] and est.n_iter_ == 4
    ref = ITML(max_iter=4, tol=0.0).fit(X[idx], y)
    assert_array_equal(est.components_, ref.components_)
    assert_allclose(seen[1][2], ITML(max_iter=2, tol=0.0).fit(X[idx], y)
                    .get_mahalanobis_matrix(), rtol=1e-12)
    with pytest.raises(TypeError, match="callback"):
        ITML(callback=3).fit(X[idx], y)

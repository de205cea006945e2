"""MMC and MMC_Supervised: the solvers and the API (the objective and the constraint:
tests/core/objectives/test_mmc.py)."""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmetric import MMC, MMC_Supervised

from .._sklearn_checks import NO_FIT_CHECKS
from ..core.objectives.test_mmc import numpy_g, numpy_scatter, pair_data

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def data():
    return pair_data()


def test_logdet_reg_keeps_full_rank(data):
    X, labels, idx, sim = data
    # At the optimum (tol=1e-6: the default tol=1e-2 stops early, before the
    # plain objective has collapsed the metric's rank).
    plain = MMC_Supervised(logdet_reg=0.0, tol=1e-6, random_state=0, n_jobs=1).fit(X, labels)
    reg = MMC_Supervised(logdet_reg=1.0, tol=1e-6, random_state=0, n_jobs=1).fit(X, labels)
    lam_plain = np.linalg.eigvalsh(plain.get_mahalanobis_matrix())
    lam_reg = np.linalg.eigvalsh(reg.get_mahalanobis_matrix())
    assert lam_reg[0] / lam_reg[-1] > 100 * max(lam_plain[0] / lam_plain[-1], 1e-300)
    assert lam_reg[0] > 0
    with pytest.raises(ValueError, match="logdet_reg"):
        MMC_Supervised(logdet_reg=1.0, diagonal=True).fit(X, labels)
    with pytest.raises(ValueError, match="logdet_reg"):
        MMC_Supervised(logdet_reg=-1.0).fit(X, labels)


@pytest.mark.parametrize("solver", ["lbfgs", "projection"])
def test_fit_satisfies_constraint_and_increases_objective(data, solver):
    X, _, idx, sim = data
    y = np.where(sim, 1, -1)
    mmc = MMC(solver=solver, logdet_reg=0.0, preprocessor=X, n_jobs=1,
              max_iter=200).fit(idx, y)
    M = mmc.get_mahalanobis_matrix()
    S = idx[sim]
    # The constraint sum_S d^T M d <= 1 holds (with equality at the optimum).
    assert_allclose(np.einsum("ij,jk,ik->", X[S[:, 0]] - X[S[:, 1]], M,
                              X[S[:, 0]] - X[S[:, 1]]), 1.0, rtol=1e-8)
    g = numpy_g(X, idx[~sim, 0], idx[~sim, 1], M)
    assert_allclose(mmc.objective_, g, rtol=1e-8)
    # Better than the (rescaled) identity start.
    W = numpy_scatter(X, S[:, 0], S[:, 1])
    g0 = numpy_g(X, idx[~sim, 0], idx[~sim, 1], np.eye(4) / np.trace(W))
    assert g > 1.05 * g0
    assert np.linalg.eigvalsh(M).min() > -1e-10 * np.abs(M).max()
    # The classes differ along feature 0 only: the metric weighs it most.
    assert np.argmax(np.diag(M) * X.var(0)) == 0


def test_solvers_agree_on_optimum(data):
    X, _, idx, sim = data
    y = np.where(sim, 1, -1)
    lb = MMC(logdet_reg=0.0, preprocessor=X, n_jobs=1, max_iter=500, tol=1e-10).fit(idx, y)
    pj = MMC(solver="projection", preprocessor=X, n_jobs=1, max_iter=2000,
             tol=1e-9).fit(idx, y)
    # The problem is convex in M: both approach the same maximum (L-BFGS
    # gets there first).
    assert lb.objective_ >= pj.objective_ * (1 - 1e-6)
    assert_allclose(lb.objective_, pj.objective_, rtol=1e-2)


def test_diagonal_matches_bounded_optimiser(data):
    X, _, idx, sim = data
    y = np.where(sim, 1, -1)
    mmc = MMC(diagonal=True, diagonal_c=2.0, preprocessor=X, n_jobs=1, tol=1e-12,
              max_iter=200).fit(idx, y)
    M = mmc.get_mahalanobis_matrix()
    assert_allclose(M, np.diag(np.diag(M)), atol=1e-14)
    w = np.diag(M)
    S, D = idx[sim], idx[~sim]
    s = ((X[S[:, 0]] - X[S[:, 1]]) ** 2).sum(0)
    Q = (X[D[:, 0]] - X[D[:, 1]]) ** 2

    def F(v):
        return s @ v - 2.0 * np.log(np.sqrt(Q @ v + 1e-300).sum())

    ref = minimize(F, np.ones(4), method="L-BFGS-B", bounds=[(0, None)] * 4,
                   options=dict(ftol=1e-14, gtol=1e-10, maxiter=5000))
    assert F(w) <= ref.fun + 1e-6 * abs(ref.fun)


@pytest.mark.parametrize("kw", [{}, {"diagonal": True}, {"solver": "projection"},
                                {"logdet_reg": 0.0}])
def test_same_result_for_1_and_2_threads(data, kw):
    X, labels, _, _ = data
    m1 = MMC_Supervised(random_state=0, n_jobs=1, **kw).fit(X, labels)
    m2 = MMC_Supervised(random_state=0, n_jobs=2, **kw).fit(X, labels)
    assert_array_equal(m1.components_, m2.components_)


def test_dtypes(data, dtype):
    X, labels, _, _ = data
    m = MMC_Supervised(random_state=0, n_jobs=1).fit(X.astype(dtype), labels)
    ref = MMC_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    assert m.components_.dtype == np.float64
    assert m.transform(X.astype(dtype)).dtype == dtype
    Mr = ref.get_mahalanobis_matrix()
    assert_allclose(m.get_mahalanobis_matrix(), Mr, atol=2e-2 * np.abs(Mr).max())


def test_degenerate_data_finite_psd():
    rng = np.random.RandomState(0)
    # Constant features, duplicated points, more features than samples.
    X = np.c_[rng.randn(12, 3), np.ones((12, 2)), rng.randn(12, 20)]
    X[6:] = X[:6]
    labels = np.tile([0, 1, 2], 4)
    for kw in ({}, {"diagonal": True}, {"solver": "projection", "max_iter": 20},
               {"logdet_reg": 0.0}):
        m = MMC_Supervised(random_state=0, n_jobs=1, **kw).fit(X, labels)
        M = m.get_mahalanobis_matrix()
        assert np.isfinite(M).all()
        assert np.linalg.eigvalsh(M).min() > -1e-8 * np.abs(M).max()


def test_raw_digits_finite_psd():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    m = MMC_Supervised(random_state=0, n_jobs=1, max_iter=30).fit(X, y)
    M = m.get_mahalanobis_matrix()
    assert np.isfinite(M).all()
    assert np.linalg.eigvalsh(M).min() > -1e-8 * np.abs(M).max()


def test_init_options(data):
    X, labels, _, _ = data
    for init in ("identity", "covariance", "random", 2 * np.eye(4)):
        m = MMC_Supervised(init=init, random_state=0, n_jobs=1).fit(X, labels)
        assert np.isfinite(m.components_).all()
    fitted = MMC_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    m = MMC_Supervised(init=fitted, random_state=0, n_jobs=1).fit(X, labels)
    assert np.isfinite(m.components_).all()


def test_pairs_api(data):
    X, _, idx, sim = data
    y = np.where(sim, 1, -1)
    mmc = MMC(n_jobs=1).fit(X[idx], y)
    assert_array_equal(mmc.classes_, [-1, 1])
    assert set(np.unique(mmc.predict(X[idx]))) <= {-1, 1}
    assert (mmc.predict(X[idx]) == y).mean() > 0.7
    mmc2 = MMC(n_jobs=1).fit(X[idx], y, calibration_params={"strategy": "f_beta"})
    assert np.isfinite(mmc2.threshold_)
    # Index pairs with a preprocessor give the same model as 3-D pairs.
    mmc3 = MMC(preprocessor=X, n_jobs=1).fit(idx, y)
    assert_allclose(mmc3.components_, mmc.components_, rtol=1e-8, atol=1e-10)


def test_callback_and_verbose(data, capsys):
    X, labels, _, _ = data
    seen = []

    def cb(est, it, obj):
        seen.append(it)
        return it >= 3

    MMC_Supervised(callback=cb, verbose=1, random_state=0, n_jobs=1).fit(X, labels)
    assert seen == [1, 2, 3]
    assert "MMC_Supervised" in capsys.readouterr().out


@pytest.mark.parametrize(
    "params, err, match",
    [
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_proj=1.5), TypeError, "max_proj"),
        (dict(tol=-1), ValueError, "tol"),
        (dict(diagonal_c=0), ValueError, "diagonal_c"),
        (dict(diagonal="yes"), TypeError, "diagonal"),
        (dict(solver="newton"), ValueError, "solver"),
        (dict(init="lda"), ValueError, "init"),
        (dict(n_constraints=0), ValueError, "n_constraints"),
        (dict(n_jobs=0), ValueError, "n_jobs"),
        (dict(callback=3), TypeError, "callback"),
    ],
)
def test_bad_params(data, params, err, match):
    X, labels, _, _ = data
    with pytest.raises(err, match=match):
        MMC_Supervised(**params).fit(X, labels)


def test_bad_inputs(data):
    X, labels, idx, sim = data
    y = np.where(sim, 1, -1)
    with pytest.raises(ValueError, match="both similar and dissimilar"):
        MMC(n_jobs=1).fit(X[idx], np.ones(len(idx)))
    with pytest.raises(ValueError, match="hard pair labels"):
        MMC(n_jobs=1).fit(X[idx], np.full(len(idx), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        bad = X[idx].copy()
        bad[0, 0, 0] = np.nan
        MMC(n_jobs=1).fit(bad, y)
    with pytest.raises(ValueError, match="2 classes"):
        MMC_Supervised().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        MMC_Supervised().fit(X[:3], [0, 1, 2])
    with pytest.raises(ValueError, match="symmetric"):
        MMC_Supervised(init=np.triu(np.ones((4, 4)))).fit(X, labels)
    with pytest.raises(TypeError, match="calibration_params"):
        MMC(n_jobs=1).fit(X[idx], y, calibration_params=3)


def test_pickle_and_clone(data):
    X, labels, idx, sim = data
    m = MMC_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    r = pickle.loads(pickle.dumps(m))
    assert_array_equal(r.transform(X), m.transform(X))
    p = MMC(n_jobs=1).fit(X[idx], np.where(sim, 1, -1))
    r = pickle.loads(pickle.dumps(p))
    assert_array_equal(r.predict(X[idx]), p.predict(X[idx]))
    assert not hasattr(clone(p), "components_")


@parametrize_with_checks(
    [
        MMC_Supervised(random_state=0, n_jobs=1, max_iter=30),
        MMC_Supervised(diagonal=True, random_state=0, n_jobs=1, max_iter=30),
        MMC_Supervised(logdet_reg=0.0, random_state=0, n_jobs=1, max_iter=30),
    ]
)
def test_sklearn_checks_supervised(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("check", NO_FIT_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_no_fit_checks_pairs(check):
    check("MMC", MMC())


def test_auto_logdet_reg(data):
    """'auto' is the barrier (1.0) for the full-matrix L-BFGS solver and MMC's
    exact objective (0) for the diagonal and projection solvers."""
    X, labels, _, _ = data
    auto = MMC_Supervised(random_state=0, n_jobs=1).fit(X, labels)
    one = MMC_Supervised(logdet_reg=1.0, random_state=0, n_jobs=1).fit(X, labels)
    assert_array_equal(auto.components_, one.components_)
    for kw in ({"diagonal": True}, {"solver": "projection", "max_iter": 20}):
        auto = MMC_Supervised(random_state=0, n_jobs=1, **kw).fit(X, labels)
        zero = MMC_Supervised(logdet_reg=0.0, random_state=0, n_jobs=1, **kw).fit(X, labels)
        assert_array_equal(auto.components_, zero.components_)
    with pytest.raises(TypeError, match="logdet_reg"):
        MMC_Supervised(logdet_reg="yes").fit(X, labels)


def test_supervised_defaults_grow_with_the_data():
    """MMC_Supervised draws data_pair_count pairs (not metric-learn's 20
    n_classes^2) and stops at tol=1e-2; n_constraints=20 n_classes^2 and
    tol=1e-6 give metric-learn's settings back."""
    from fastmetric._core.constraints import data_pair_count, pairs_from_labels

    rng = np.random.RandomState(0)
    X = rng.randn(120, 4)
    y = np.repeat([0, 1], 60)
    assert MMC_Supervised().tol == 1e-2
    default = MMC_Supervised(random_state=0, n_jobs=1).fit(X, y)
    # The same fit from the pairs the default rule draws, passed explicitly.
    n = data_pair_count(None, [60, 60])
    assert n == 1200
    explicit = MMC_Supervised(n_constraints=n, random_state=0, n_jobs=1).fit(X, y)
    assert_array_equal(default.components_, explicit.components_)
    metric_learn = MMC_Supervised(n_constraints=80, random_state=0, n_jobs=1).fit(X, y)
    assert not np.array_equal(default.components_, metric_learn.components_)
    a, _, similar = pairs_from_labels(y, 80, np.random.RandomState(0), "MMC")
    assert similar.sum() == 80
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MMC_Supervised(random_state=0, n_jobs=1).fit(X, y)

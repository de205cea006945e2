"""Tests of MLKR (metric learning for kernel regression)."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad
from scipy.special import logsumexp
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._learners.mlkr import MLKR

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def numpy_mlkr(X, y, L):
    """Plain numpy MLKR objective sum_i (yhat_i - y_i)^2 and its gradient."""
    X = np.asarray(X, dtype=np.float64)
    Z = X @ L.T
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    P = np.exp(-D - logsumexp(-D, axis=1)[:, None])
    yhat = P @ y
    resid = yhat - y
    # d loss / dD_ij = 2 (yhat_i - y_i) p_ij (yhat_i - y_j)
    W = 2 * resid[:, None] * P * (yhat[:, None] - y[None, :])
    diff = X[:, None, :] - X[None, :, :]
    grad = 2 * L @ np.einsum("ij,ijk,ijl->kl", W, diff, diff)
    return float(resid @ resid), grad


@pytest.fixture(scope="module")
def regression():
    rng = np.random.RandomState(0)
    X = rng.randn(150, 5)
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.05 * rng.randn(150)
    return X, y


def loo_error(Z, y):
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    P = np.exp(-D - logsumexp(-D, axis=1)[:, None])
    return float(((P @ y - y) ** 2).sum())


@pytest.mark.parametrize("scale", [1e-3, 1.0, 5.0])
@pytest.mark.parametrize("chunk_size", [None, 11])
def test_objective_matches_numpy(regression, scale, chunk_size):
    X, y = regression
    L = np.random.RandomState(1).randn(3, 5) * scale
    problem = SoftmaxNeighborsProblem(X, targets=y, chunk_size=chunk_size, tile_size=32)
    ref_loss, ref_grad = numpy_mlkr(X, y, L)
    for _ in range(2):  # the second evaluation may use the tile strategy
        loss, grad = problem.loss_grad(L, 2)
        assert loss == pytest.approx(ref_loss, rel=1e-11)
        # (A saturated softmax has a gradient near 0: compare absolutely there.)
        assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(ref_grad).max()))


def test_gradient_finite_differences(regression):
    X, y = regression
    k, d = 2, 5
    problem = SoftmaxNeighborsProblem(X[:70], targets=y[:70], chunk_size=8)
    rng = np.random.RandomState(2)

    def f(theta):
        return problem.loss_grad(theta.reshape(k, d), 1, compute_gradient=False)[0]

    def g(theta):
        return problem.loss_grad(theta.reshape(k, d), 1)[1].ravel()

    for scale in (0.3, 1.0, 3.0):
        theta = rng.randn(k * d) * scale
        err = check_grad(f, g, theta, epsilon=1e-7)
        assert err < 1e-5 * max(1.0, np.linalg.norm(g(theta)))


def test_fit_lowers_leave_one_out_error(regression):
    X, y = regression
    mlkr = MLKR(max_iter=100, random_state=0, n_jobs=1).fit(X, y)
    assert mlkr.loss_ == pytest.approx(loo_error(mlkr.transform(X), y), rel=1e-9)
    assert mlkr.loss_ < 0.5 * loo_error(X, y)
    # The relevant features (0 and 1) get the largest weights.
    M = mlkr.get_mahalanobis_matrix()
    assert set(np.argsort(np.diag(M))[-2:]) == {0, 1}


def test_same_result_for_any_thread_count(regression):
    X, y = regression
    fits = []
    for n_jobs in (1, 2):
        with threadpool_limits(limits=n_jobs):
            fits.append(MLKR(max_iter=20, n_jobs=n_jobs).fit(X, y))
    assert_array_equal(fits[0].components_, fits[1].components_)


def test_float32_and_low_rank(regression):
    X, y = regression
    X32 = X.astype(np.float32)
    L = np.random.RandomState(3).randn(2, 5)
    ref = numpy_mlkr(X32, y, L)
    loss, grad = SoftmaxNeighborsProblem(X32, targets=y).loss_grad(L, 2)
    assert loss == pytest.approx(ref[0], rel=1e-5)
    assert_allclose(grad, ref[1], rtol=1e-3, atol=1e-4 * np.abs(ref[1]).max())
    f64 = MLKR(n_components=2, max_iter=30, random_state=0, n_jobs=1).fit(X, y)
    f32 = MLKR(n_components=2, max_iter=30, random_state=0, n_jobs=1).fit(X32, y)
    assert f32.components_.shape == (2, 5) and f32.components_.dtype == np.float64
    assert f32.transform(X32).dtype == np.float32
    # Non-convex: the two precisions may end in different places, both good.
    assert max(f32.loss_, f64.loss_) < 0.5 * loo_error(X, y)


def test_degenerate_data():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    X[:, 1] = -2.0        # a constant feature
    X[20:] = X[:20]       # duplicated points
    y = X[:, 0] ** 2
    mlkr = MLKR(max_iter=30, n_jobs=1).fit(X, y)
    assert np.isfinite(mlkr.components_).all()
    # Constant targets: the objective is 0 everywhere, the init is kept.
    flat = MLKR(init="identity", n_jobs=1).fit(X, np.ones(40))
    assert_allclose(flat.components_, np.eye(3))
    assert flat.loss_ == pytest.approx(0.0, abs=1e-20)


def test_callback_and_preprocessor(regression):
    X, y = regression
    calls = []
    est = MLKR(max_iter=50, n_jobs=1, preprocessor=X,
               callback=lambda e, it, loss: calls.append(loss) or it == 2)
    est.fit(np.arange(len(X)), y)
    assert len(calls) == 2 and est.n_iter_ == 2
    assert_allclose(est.transform(np.arange(3)), est.transform(X[:3]))


def test_bad_input(regression):
    X, y = regression
    ynan = y.copy()
    ynan[4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MLKR(n_jobs=1).fit(X, ynan)
    Xinf = X.copy()
    Xinf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        MLKR(n_jobs=1).fit(Xinf, y)
    with pytest.raises(ValueError, match="lda"):
        MLKR(init="lda").fit(X, y)
    with pytest.raises(ValueError, match="1 sample"):
        MLKR().fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLKR().fit(X, y[:-2])
    with pytest.raises(ValueError, match="init has 2 rows"):
        MLKR(init=np.eye(5)[:2], n_components=3).fit(X, y)
    with pytest.raises(ValueError, match="could not convert|numeric"):
        MLKR().fit(X, np.array(["a"] * len(X), dtype=object))


@parametrize_with_checks([MLKR(max_iter=10, n_jobs=1)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)

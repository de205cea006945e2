"""Tests of NCA and of the stochastic-neighbour kernel it runs on."""
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from fastmetric._core.init import unsaturated_start
from fastmetric._core.objectives.softmax_neighbors import SoftmaxNeighborsProblem
from fastmetric._core.softmax_learner import start_pull
from fastmetric._learners.nca import NCA

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def numpy_nca(X, y, L):
    """Plain numpy NCA objective -sum_i p_i and its gradient (dense n x n)."""
    X = np.asarray(X, dtype=np.float64)
    Z = X @ L.T
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    P = np.exp(-D - logsumexp(-D, axis=1)[:, None])
    same = y[:, None] == y[None, :]
    p = (P * same).sum(1)
    # d(sum p)/dD_ij = p_ij (p_i - [y_i = y_j]);  dD_ij/dL = 2 L d_ij d_ij^T
    W = P * (p[:, None] - same)
    diff = X[:, None, :] - X[None, :, :]
    grad = 2 * L @ np.einsum("ij,ijk,ijl->kl", W, diff, diff)
    return -p.sum(), -grad


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.RandomState(0)
    X = rng.randn(150, 5)
    y = rng.randint(0, 3, 150)
    X[:, 0] += 2.0 * y  # one informative feature
    return X, y


# --------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e-3, 1.0, 4.0, 30.0])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_objective_matches_numpy(blobs, scale, chunk_size):
    X, y = blobs
    L = np.random.RandomState(1).randn(3, 5) * scale
    problem = SoftmaxNeighborsProblem(X, labels=y, chunk_size=chunk_size, tile_size=32)
    ref_loss, ref_grad = numpy_nca(X, y, L)
    for _ in range(2):  # the second evaluation may use the tile strategy
        loss, grad = problem.loss_grad(L, 2)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
        # (A saturated softmax has a gradient near 0: compare absolutely there.)
        assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(ref_grad).max()))


def test_tile_and_row_strategies_agree_bitwise(blobs):
    X, y = blobs
    L = np.random.RandomState(2).randn(5, 5) * 10  # a concentrated softmax
    rows = SoftmaxNeighborsProblem(X, labels=y, chunk_size=16, tiles=False)
    tiles = SoftmaxNeighborsProblem(X, labels=y, chunk_size=16, tile_size=32)
    tiles.loss_grad(L * 1.01, 1)  # hints from a nearby map, as during L-BFGS
    loss_t, grad_t = tiles.loss_grad(L, 1)
    assert tiles.used_tiles
    loss_r, grad_r = rows.loss_grad(L, 1)
    assert not rows.used_tiles
    assert loss_t == loss_r
    assert_array_equal(grad_t, grad_r)
    # Tiles are shared out to the threads dynamically; the candidates are
    # sorted per row afterwards, so two threads give the same bits.
    loss_2, grad_2 = tiles.loss_grad(L, 2)
    assert tiles.used_tiles and loss_2 == loss_r
    assert_array_equal(grad_2, grad_r)
    # Far-off hints (a poor start) still give the exact result.
    tiles.loss_grad(L * 0.2, 1)
    assert tiles.loss_grad(L, 1)[0] == loss_r


@pytest.mark.parametrize("dtype_", [np.float64, np.float32])
def test_same_bits_for_any_thread_count(blobs, dtype_):
    X, y = blobs
    L = np.random.RandomState(6).randn(5, 5)
    results = []
    for n_threads in (1, 2):
        # Small chunks and tiles: many groups and tiles shared among threads.
        problem = SoftmaxNeighborsProblem(X.astype(dtype_), labels=y, chunk_size=5,
                                          tile_size=16)
        for scale in (0.5, 8.0, 8.0):  # the last one by tiles
            results.append(problem.loss_grad(L * scale, n_threads))
        assert problem.used_tiles
    for (l1, g1), (l2, g2) in zip(results[:3], results[3:]):
        assert l1 == l2
        assert_array_equal(g1, g2)


@pytest.mark.parametrize("dtype_", [np.float64, np.float32])
@pytest.mark.parametrize("regression", [False, True])   # NCA's and MLKR's pass
@pytest.mark.parametrize("team_threads", [2, 3, 8])
def test_team_gives_the_openmp_result(blobs, dtype_, regression, team_threads):
    # fm_team.h's team (used under load) computes every group of rows as
    # OpenMP does, whoever computes it: bitwise the same, job after job, by
    # rows and by tiles.
    from fastmetric.kernels.team import team_held

    X, y = blobs
    X = X.astype(dtype_)
    target = dict(targets=X[:, 0] + 0.5 * y) if regression else dict(labels=y)
    L = np.random.RandomState(6).randn(5, 5)
    scales = (0.5, 8.0, 8.0, 8.0, 0.5)   # the 8.0s after the first by tiles
    omp = SoftmaxNeighborsProblem(X, chunk_size=5, tile_size=16, **target)
    ref = [omp.loss_grad(L * s, 1) for s in scales]
    team = SoftmaxNeighborsProblem(X, chunk_size=5, tile_size=16, **target)
    assert team.n_groups == 30
    for _ in range(4):
        strategies = []
        for s, (loss, grad) in zip(scales, ref):
            got_loss, got_grad = team.loss_grad(L * s, 1, team_threads=team_threads)
            assert got_loss == loss
            assert_array_equal(got_grad, grad)
            strategies.append(team.used_tiles)
        assert True in strategies and False in strategies
    # What a late helper may read is kept only while one may read it.
    assert team_held() <= 4


def test_fit_runs_its_pass_on_the_team_under_load(blobs, monkeypatch):
    # Beside busy processes the default n_jobs runs the main pass on the
    # team; the fit is bitwise the one of a quiet machine.
    from fastmetric._core import threads

    X, y = blobs
    quiet = NCA(max_iter=15, random_state=0).fit(X, y)
    problems = []
    original = SoftmaxNeighborsProblem.loss_grad

    def spy(self, *args, **kwargs):
        problems.append(self.team_threads)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(threads, "team_threads", lambda n_jobs=None: 3 if n_jobs is None else 0)
    monkeypatch.setattr(SoftmaxNeighborsProblem, "loss_grad", spy)
    import fastmetric._core.softmax_learner as softmax_learner
    monkeypatch.setattr(softmax_learner, "team_threads", threads.team_threads)
    busy = NCA(max_iter=15, random_state=0).fit(X, y)
    assert problems and set(problems) == {3}
    assert_array_equal(busy.components_, quiet.components_)
    problems.clear()
    NCA(max_iter=3, random_state=0, n_jobs=2).fit(X, y)   # an explicit n_jobs: OpenMP's
    assert set(problems) == {0}


def test_vectorised_exponential():
    from fastmetric.kernels.softmax_neighbors import _exp_window

    x = np.concatenate([-np.random.RandomState(7).rand(100_000) * 50, [0.0, -50.0, -1e-300]])
    val = -x  # exp(m - val) with m = 0
    _exp_window(val, 0.0, 50.0)
    ref = np.exp(x)
    assert np.max(np.abs(val - ref) / np.spacing(ref)) <= 2
    outside = np.array([50.5, 700.0, 1e300])
    _exp_window(outside, 0.0, 50.0)
    assert_array_equal(outside, 0.0)


def test_gradient_finite_differences(blobs):
    X, y = blobs
    rng = np.random.RandomState(3)
    k, d = 2, 5  # low rank
    problem = SoftmaxNeighborsProblem(X[:60], labels=y[:60], chunk_size=9)

    def f(theta):
        return problem.loss_grad(theta.reshape(k, d), 1, compute_gradient=False)[0]

    def g(theta):
        return problem.loss_grad(theta.reshape(k, d), 1)[1].ravel()

    for scale in (0.3, 1.0, 3.0):
        theta = rng.randn(k * d) * scale
        err = check_grad(f, g, theta, epsilon=1e-7)
        assert err < 1e-5 * max(1.0, np.linalg.norm(g(theta)))


def test_float32_objective(blobs):
    X, y = blobs
    L = np.random.RandomState(4).randn(4, 5)
    ref_loss, ref_grad = numpy_nca(X.astype(np.float32), y, L)
    loss, grad = SoftmaxNeighborsProblem(X.astype(np.float32), labels=y).loss_grad(L, 2)
    assert grad.dtype == np.float64
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-4 * np.abs(ref_grad).max())


def test_extreme_scales_stay_finite(blobs):
    # Huge maps (float32 screening would overflow without rescaling) and
    # tiny ones (every pair in the window) give the exact objective.
    X, y = blobs
    L = np.random.RandomState(5).randn(3, 5)
    for scale in (1e-30, 1e18):
        ref = numpy_nca(X, y, L * scale)
        loss, grad = SoftmaxNeighborsProblem(X, labels=y).loss_grad(L * scale, 1)
        assert loss == pytest.approx(ref[0], rel=1e-12)
        assert np.isfinite(grad).all()


# --------------------------------------------------------------------------
# the learner
# --------------------------------------------------------------------------
def test_fit_improves_nearest_neighbours():
    # 3 informative features among 20 louder noise features: NCA must
    # find them (kNN on the raw features is close to chance).
    X, y = make_classification(n_samples=300, n_features=23, n_informative=3,
                               n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               class_sep=1.5, shuffle=False, random_state=0)
    X[:, 3:] *= 3.0
    order = np.random.RandomState(0).permutation(300)
    X, y = X[order], y[order]
    Xtr, Xte, ytr, yte = X[:200], X[200:], y[:200], y[200:]
    base = KNeighborsClassifier(3).fit(Xtr, ytr).score(Xte, yte)
    nca = NCA(n_components=2, random_state=0, n_jobs=1).fit(Xtr, ytr)  # 'auto': LDA start
    learned = KNeighborsClassifier(3).fit(nca.transform(Xtr), ytr).score(nca.transform(Xte), yte)
    assert base < 0.7 and learned > 0.95
    assert nca.loss_ < nca.loss_curve_[0]
    assert -len(ytr) <= nca.loss_ < 0  # -sum_i p_i, a count of points
    # The informative features carry the metric.
    M = nca.get_mahalanobis_matrix()
    assert np.diag(M)[:3].sum() > 10 * np.diag(M)[3:].sum()


def test_same_result_for_any_thread_count():
    X, y = make_classification(n_samples=400, n_features=8, n_informative=4, n_classes=4,
                               random_state=1)
    fits = []
    for n_jobs in (1, 2):
        with threadpool_limits(limits=n_jobs):
            fits.append(NCA(max_iter=15, n_jobs=n_jobs, random_state=0).fit(X, y))
    assert_array_equal(fits[0].components_, fits[1].components_)
    assert fits[0].loss_ == fits[1].loss_


@pytest.mark.parametrize("init", ["auto", "identity", "pca", "lda", "random", "covariance"])
def test_inits_and_low_rank(init, dtype):
    X, y = load_iris(return_X_y=True)
    X = X.astype(dtype)
    nca = NCA(n_components=2, init=init, max_iter=20, random_state=0, n_jobs=1).fit(X, y)
    assert nca.components_.shape == (2, 4) and nca.components_.dtype == np.float64
    Xt = nca.transform(X)
    assert Xt.dtype == dtype and Xt.shape == (150, 2)
    assert np.isfinite(nca.components_).all()
    assert KNeighborsClassifier(3).fit(Xt, y).score(Xt, y) > 0.9


def test_float32_close_to_float64():
    X, y = load_iris(return_X_y=True)
    f64 = NCA(max_iter=30, random_state=0, n_jobs=1).fit(X, y)
    f32 = NCA(max_iter=30, random_state=0, n_jobs=1).fit(X.astype(np.float32), y)
    assert abs(f32.loss_ - f64.loss_) < 1e-3 * abs(f64.loss_)


def test_array_and_learner_init_and_callback(blobs):
    X, y = blobs
    first = NCA(n_components=2, max_iter=5, random_state=0, n_jobs=1).fit(X, y)
    warm = NCA(init=first, max_iter=5, n_jobs=1).fit(X, y)
    assert warm.components_.shape == (2, 5)
    seen = []

    def stop_at_3(est, iteration, loss):
        seen.append((iteration, loss, est.components_.copy()))
        return iteration >= 3

    est = NCA(init=first.components_, max_iter=50, callback=stop_at_3, n_jobs=1).fit(X, y)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert est.n_iter_ == 3
    assert_array_equal(est.components_, seen[-1][2])


def test_verbose_prints(blobs, capsys):
    X, y = blobs
    NCA(max_iter=3, verbose=True, n_jobs=1).fit(X, y)
    out = capsys.readouterr().out
    assert "[NCA]" in out and "loss" in out


def test_degenerate_data():
    rng = np.random.RandomState(0)
    X = rng.randn(60, 4)
    X[:, 2] = 3.0                 # a constant feature
    X[30:] = X[:30]               # every point duplicated
    y = np.repeat([0, 1, 2], 20)
    nca = NCA(max_iter=20, n_jobs=1).fit(X, y)
    assert np.isfinite(nca.components_).all() and np.isfinite(nca.loss_)
    # All points identical: the objective is flat, the fit keeps the init.
    same = NCA(init="identity", n_jobs=1).fit(np.ones((10, 3)), [0, 1] * 5)
    assert_allclose(same.components_, np.eye(3))
    # Two points, classes of a single sample: p_i = 0, nothing to learn.  The
    # fit keeps its start: the named identity shrunk to a squared distance of
    # 1 between the two points (their squared distance is 2), an array init
    # as given.
    two = NCA(init="identity", n_jobs=1).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    assert_allclose(two.components_, np.eye(2) / np.sqrt(2.0))
    assert two.loss_ == 0.0
    given = NCA(init=np.eye(2), n_jobs=1).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    assert_allclose(given.components_, np.eye(2))


def test_preprocessor_indices_and_pipeline(blobs):
    X, y = blobs
    by_rows = NCA(max_iter=5, n_jobs=1, random_state=0).fit(X, y)
    by_index = NCA(max_iter=5, n_jobs=1, random_state=0, preprocessor=X).fit(
        np.arange(len(X)), y)
    assert_array_equal(by_rows.components_, by_index.components_)
    assert_allclose(by_index.transform(np.arange(5)), by_rows.transform(X[:5]))
    pipe = make_pipeline(NCA(max_iter=5, n_jobs=1), KNeighborsClassifier(3)).fit(X, y)
    assert pipe.score(X, y) > 0.8
    restored = pickle.loads(pickle.dumps(by_rows))
    assert_array_equal(restored.transform(X), by_rows.transform(X))
    assert not hasattr(clone(by_rows), "components_")


def test_bad_input(blobs):
    X, y = blobs
    est = NCA(n_jobs=1)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(Xnan, y)
    # One class: nothing to learn, the initial map is kept (metric-learn's answer).
    one = NCA(init="identity", n_jobs=1).fit(X, np.zeros(len(X)))
    assert one.n_iter_ == 0
    assert_array_equal(one.components_, np.eye(X.shape[1]))
    with pytest.raises(ValueError, match="1 sample"):
        est.fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="2D array"):
        est.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="n_components=9"):
        NCA(n_components=9).fit(X, y)
    with pytest.raises(ValueError, match="max_iter"):
        NCA(max_iter=0).fit(X, y)
    with pytest.raises(TypeError, match="max_iter"):
        NCA(max_iter=2.5).fit(X, y)
    with pytest.raises(ValueError, match="tol"):
        NCA(tol=-1.0).fit(X, y)
    with pytest.raises(TypeError, match="callback"):
        NCA(callback=3).fit(X, y)
    with pytest.raises(ValueError, match="n_jobs"):
        NCA(n_jobs=0).fit(X, y)
    with pytest.raises(ValueError, match="init"):
        NCA(init="nope").fit(X, y)
    with pytest.raises(ValueError, match="outside the valid range"):
        NCA(preprocessor=X).fit(np.array([0, 1, 500]), y[:3])
    fitted = NCA(max_iter=3, n_jobs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(X[:, :3])


def test_non_convergence_warns(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        NCA(max_iter=1, tol=0.0, n_jobs=1).fit(X, y)


@parametrize_with_checks([NCA(max_iter=10, n_jobs=1)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("learner", ["NCA", "LMNN", "MLKR"])
def test_ctrl_c_keeps_the_last_iterate(learner):
    """Ctrl-C (KeyboardInterrupt) during a fit warns and leaves the model of
    the last completed iteration (shared L-BFGS driver)."""
    import fastmetric

    rng = np.random.RandomState(0)
    X = rng.randn(80, 4)
    y = (X[:, 0] > 0).astype(int) if learner != "MLKR" else X[:, 0] + 0.1 * rng.randn(80)

    def interrupt(estimator, iteration, loss):
        if iteration == 2:
            raise KeyboardInterrupt

    est = getattr(fastmetric, learner)(max_iter=50, callback=interrupt, n_jobs=1)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 2
    assert np.all(np.isfinite(est.components_))
    assert est.transform(X[:3]).shape[0] == 3


def test_unscaled_features_learn():
    """A named start is shrunk where its softmax would be saturated: on raw
    pixels (values 0..16, nearest neighbours hundreds of squared units apart)
    the identity start gives each point all its weight on its nearest
    neighbour and L-BFGS stops at once; the shrunk start learns, and is the
    same fit as on pixels divided by 16 (only the scale of the start differs)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    raw_start = NCA(init=np.eye(64), max_iter=30, n_jobs=1).fit(X, y)
    nca = NCA(max_iter=30, n_jobs=1).fit(X, y)
    assert raw_start.n_iter_ <= 2
    assert nca.n_iter_ > raw_start.n_iter_
    # The learned map moved away from its start: more than a rescaling.
    start = unsaturated_start(np.eye(64), X)
    assert np.linalg.norm(nca.components_ - start) > 0.1 * np.linalg.norm(start)
    # The saturated start's loss is the hard leave-one-out 1-NN count; the
    # learned map does at least as well.
    assert nca.loss_ < raw_start.loss_
    scaled = NCA(max_iter=30, n_jobs=1).fit(X / 16.0, y)
    assert scaled.n_iter_ > raw_start.n_iter_


# --------------------------------------------------------------------------
# alpha: the pull toward the initial map
# --------------------------------------------------------------------------
def test_alpha_pull_is_stationary_at_the_fit(blobs):
    """The fit is a stationary point of ``-sum p_i + alpha ||L - L0||^2 /
    ||L0||^2``: NCA's own gradient there is balanced by the pull's (while
    with alpha=0 it is not balanced by it)."""
    X, y = blobs
    L0 = np.random.RandomState(3).randn(5, 5) * 0.5 + np.eye(5)
    _, labels = np.unique(y, return_inverse=True)
    problem = SoftmaxNeighborsProblem(X, labels=labels)
    weight = 8.0 / np.sum(L0 ** 2)
    for alpha in (8.0, 0.0):
        nca = NCA(init=L0, alpha=alpha, tol=1e-9, max_iter=500, n_jobs=1).fit(X, y)
        _, nca_grad = problem.loss_grad(nca.components_)
        pull_grad = 2 * weight * (nca.components_ - L0)
        ratio = np.linalg.norm(nca_grad + pull_grad) / np.linalg.norm(pull_grad)
        if alpha:
            assert ratio < 1e-2
        else:
            assert ratio > 0.5


def test_alpha_keeps_the_map_near_its_start():
    """A stronger pull keeps the map nearer its start."""
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    L0 = NCA(max_iter=1, alpha=0, n_jobs=1).fit(X, y).components_  # any start
    moved = []
    for alpha in (0, 5.0, 50.0, 500.0):
        L = NCA(init=L0, alpha=alpha, n_jobs=1).fit(X, y).components_
        moved.append(np.linalg.norm(L - L0) / np.linalg.norm(L0))
    assert moved == sorted(moved, reverse=True)
    assert moved[0] > 2 * moved[-1]


def test_start_pull_gradient_and_units():
    """The pull's gradient is its derivative, and the pull is relative to the
    start's size: the map and its start multiplied by one constant (features
    in other units) give the same value."""
    rng = np.random.RandomState(4)
    theta0, theta = rng.randn(12), rng.randn(12)
    pull = start_pull(theta0, 4.5)
    assert check_grad(lambda t: pull(t)[0], lambda t: pull(t)[1], theta) < 1e-6
    assert_allclose(pull(theta)[0], 4.5 * np.sum((theta - theta0) ** 2)
                    / np.sum(theta0 ** 2), rtol=1e-12)
    assert_allclose(start_pull(theta0 / 8, 4.5)(theta / 8)[0], pull(theta)[0], rtol=1e-12)
    assert start_pull(theta0, 0.0) is None
    assert start_pull(np.zeros(12), 4.5) is None  # no size to compare with


def test_alpha_with_the_stochastic_solvers(blobs):
    X, y = blobs
    kw = dict(solver="adam", batch_size=50, max_iter=3, random_state=0, n_jobs=1)
    assert np.all(np.isfinite(NCA(alpha=0, **kw).fit(X, y).components_))
    with pytest.raises(NotImplementedError, match="alpha=2.0.*solver='lbfgs' only"):
        NCA(alpha=2.0, **kw).fit(X, y)
    with pytest.raises(NotImplementedError, match="alpha"):
        NCA(alpha=2.0, **kw).partial_fit(X, y)


@pytest.mark.parametrize("alpha", [-0.1, "auto", None, np.nan])
def test_bad_alpha(blobs, alpha):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = blobs
    with pytest.raises(InvalidParameterError, match="alpha"):
        NCA(alpha=alpha).fit(X, y)

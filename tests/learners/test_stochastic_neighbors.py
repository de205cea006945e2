"""Stochastic (minibatch) NCA, LMNN and MLKR for large data: the minibatch
objectives and their gradients, the fits with Adam/SGD, solver='auto',
partial_fit streaming, thread-count determinism, float32 and Ctrl-C."""
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import check_grad
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils._param_validation import InvalidParameterError

from fastmetric import LMNN, MLKR, NCA
from fastmetric._core import minibatch_learner
from fastmetric._core.minibatch_learner import AUTO_STOCHASTIC_ROWS, resolve_solver
from fastmetric._core.objectives.lmnn import find_target_neighbors
from fastmetric._core.objectives.neighbor_batches import (
    BLOCK_ROWS,
    LMNNBatchObjective,
    MLKRBatchObjective,
    NCABatchObjective,
    block_target_neighbors,
    draw_candidates,
    row_mean,
)

from .._signals import sigint_after
from .test_ldml_partial_fit import blobs as ldml_blobs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LEARNERS = [NCA, LMNN, MLKR]


def blobs(n, d=6, seed=0, dtype=np.float64):
    """Three classes separated along the first axis only, hidden by noisy axes."""
    return ldml_blobs(n, d=d, n_classes=3, seed=seed, dtype=dtype)


def knn_accuracy(L, X, y, X_test, y_test):
    knn = KNeighborsClassifier(3).fit(X @ L.T, y)
    return knn.score(X_test @ L.T, y_test)


def stochastic(cls, **params):
    base = dict(solver="adam", batch_size=100, n_candidates=100, max_iter=8,
                learning_rate=0.05, init="identity", random_state=0, n_jobs=1)
    if cls is LMNN:
        # The minibatch epochs themselves, from init (the subsample start has
        # its own tests below).
        base["init_subsample"] = None
    base.update(params)
    return cls(**base)


# --------------------------------------------------------------------------
# Parameters and solver='auto'
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("name, value", [
    ("solver", "newton"), ("batch_size", 0), ("n_candidates", -1),
    ("learning_rate", 0.0), ("n_iter_no_change", 0), ("batch_size", 2.5),
])
def test_bad_stochastic_parameters(cls, name, value):
    X, y = blobs(40)
    with pytest.raises(InvalidParameterError, match=name):
        cls(**{name: value}).fit(X, y)


def test_bad_target_block_size():
    X, y = blobs(40)
    with pytest.raises(InvalidParameterError, match="target_block_size"):
        LMNN(solver="adam", target_block_size=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="init_subsample"):
        LMNN(solver="adam", init_subsample=1).fit(X, y)


def test_auto_picks_by_size():
    assert resolve_solver("auto", AUTO_STOCHASTIC_ROWS) == "lbfgs"
    assert resolve_solver("auto", AUTO_STOCHASTIC_ROWS + 1) == "adam"
    assert resolve_solver("sgd", 10) == "sgd"
    assert resolve_solver("lbfgs", 10**9) == "lbfgs"


@pytest.mark.parametrize("cls", LEARNERS)
def test_auto_on_small_data_is_the_full_batch_fit(cls):
    X, y = blobs(60)
    params = dict(max_iter=5, random_state=0, n_jobs=1)
    auto = cls(solver="auto", **params).fit(X, y)
    full = cls(**params).fit(X, y)
    assert_array_equal(auto.components_, full.components_)


@pytest.mark.parametrize("cls", LEARNERS)
def test_partial_fit_only_with_stochastic_solvers(cls):
    assert not hasattr(cls(), "partial_fit")
    for solver in ("adam", "sgd", "auto"):
        assert hasattr(cls(solver=solver), "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as exc:
        _ = cls(solver="lbfgs").partial_fit
    assert "only available with a stochastic solver" in str(exc.value.__cause__)


# --------------------------------------------------------------------------
# The minibatch objectives
# --------------------------------------------------------------------------
def _objective(kind, X, y, n_threads=1):
    if kind == "nca":
        return NCABatchObjective(X, y, n_threads=n_threads)
    if kind == "mlkr":
        return MLKRBatchObjective(X, y + 0.3 * X[:, 1], n_threads=n_threads)
    targets, _ = block_target_neighbors(X, y, 3, 3, np.eye(X.shape[1]), row_mean(X))
    return LMNNBatchObjective(X, y, targets, 0.5, n_threads=n_threads)


@pytest.mark.parametrize("kind", ["nca", "lmnn", "mlkr"])
def test_minibatch_gradient_matches_finite_differences(kind):
    X, y = blobs(300, d=5)
    objective = _objective(kind, X, y)
    # More batch rows than a block, so that several blocks are summed.
    data = objective.batch(np.arange(0, 300, 2)[:BLOCK_ROWS + 20],
                           draw_candidates(300, 60, seed=1, epoch=0, batch=0))
    L = np.random.RandomState(1).randn(3, 5) * 0.4

    def f(theta):
        return objective.loss_grad(theta.reshape(3, 5), data)[0]

    def g(theta):
        return objective.loss_grad(theta.reshape(3, 5), data)[1].ravel()

    err = check_grad(f, g, L.ravel(), epsilon=1e-6)
    assert err <= 1e-5 * max(1.0, np.linalg.norm(g(L.ravel())))


def test_nca_minibatch_loss_matches_a_dense_softmax():
    X, y = blobs(50, d=4)
    objective = NCABatchObjective(X, y)
    rows = np.arange(0, 50, 3)
    drawn = np.array([0, 1, 1, 7, 40])
    data = objective.batch(rows, drawn)
    L = np.random.RandomState(2).randn(2, 4) * 0.5
    loss, _ = objective.loss_grad(L, data)
    Z = X @ L.T
    expected = []
    for i in rows:
        cand = np.r_[rows, drawn]
        cand = cand[cand != i]  # neither itself nor a drawn copy of itself
        w = np.exp(-((Z[i] - Z[cand]) ** 2).sum(1))
        expected.append(-(w * (y[cand] == y[i])).sum() / w.sum())
    assert_allclose(loss, np.mean(expected), rtol=1e-10)


def test_mlkr_minibatch_loss_matches_a_dense_kernel_regression():
    X, y = blobs(50, d=4)
    t = y + 0.5 * X[:, 2]
    objective = MLKRBatchObjective(X, t)
    rows = np.arange(0, 50, 3)
    drawn = np.array([0, 1, 1, 7, 40])
    L = np.random.RandomState(2).randn(2, 4) * 0.5
    loss, _ = objective.loss_grad(L, objective.batch(rows, drawn))
    Z = X @ L.T
    expected = []
    for i in rows:
        cand = np.r_[rows, drawn]
        cand = cand[cand != i]
        w = np.exp(-((Z[i] - Z[cand]) ** 2).sum(1))
        expected.append(((w * t[cand]).sum() / w.sum() - t[i]) ** 2)
    assert_allclose(loss, np.mean(expected), rtol=1e-10)


def test_lmnn_minibatch_loss_matches_the_formula():
    X, y = blobs(40, d=3)
    targets, _ = block_target_neighbors(X, y, 3, 2, np.eye(3), row_mean(X))
    objective = LMNNBatchObjective(X, y, targets, 0.3)
    rows, drawn = np.arange(0, 40, 4), np.array([3, 5, 5, 21])
    data = objective.batch(rows, drawn)
    L = np.random.RandomState(3).randn(3, 3) * 0.3
    loss, _ = objective.loss_grad(L, data)
    Z = X @ L.T
    cand = np.r_[rows, drawn]
    s = (40 - 1) / (cand.shape[0] - 1)
    total = 0.0
    for i in rows:
        for j in targets[i][targets[i] >= 0]:
            d_ij = ((Z[i] - Z[j]) ** 2).sum()
            total += 0.7 * d_ij
            for l_ in cand[y[cand] != y[i]]:
                total += 0.3 * s * max(0.0, 1 + d_ij - ((Z[i] - Z[l_]) ** 2).sum())
    assert_allclose(loss, total / rows.shape[0], rtol=1e-10)


def test_candidates_depend_on_their_position_only():
    a = draw_candidates(1000, 50, seed=3, epoch=2, batch=7)
    assert_array_equal(a, draw_candidates(1000, 50, seed=3, epoch=2, batch=7))
    assert not np.array_equal(a, draw_candidates(1000, 50, seed=3, epoch=2, batch=8))
    assert a.min() >= 0 and a.max() < 1000 and np.all(np.diff(a) >= 0)


def test_targets_found_exactly():
    X, y = blobs(200, d=4)
    targets, n_small = block_target_neighbors(X, y, 3, 3, np.eye(4), row_mean(X))
    expected, _ = find_target_neighbors(X, y, 3)
    assert_array_equal(targets, expected)
    assert n_small == 0
    # In blocks: each target is a same-class row of the point's block, and
    # the nearest such row.
    targets, _ = block_target_neighbors(X, y, 3, 2, np.eye(4), row_mean(X), block_size=50,
                                        seed=0)
    perm = np.random.default_rng(0).permutation(200)
    for b in range(4):
        block = np.sort(perm[50 * b:50 * (b + 1)])
        for i in block[:5]:
            same = block[(y[block] == y[i]) & (block != i)]
            d = ((X[same] - X[i]) ** 2).sum(1)
            assert_array_equal(targets[i], same[np.lexsort((same, d))][:2])


# --------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stochastic_fit_improves_3nn_accuracy(cls, solver):
    X, y = blobs(1500, seed=0)
    X_test, y_test = blobs(600, seed=1)
    before = knn_accuracy(np.eye(6), X, y, X_test, y_test)
    lr = 0.05 if solver == "adam" else (1e-3 if cls is LMNN else 0.05)
    est = stochastic(cls, solver=solver, learning_rate=lr).fit(X, y)
    after = knn_accuracy(est.components_, X, y, X_test, y_test)
    assert after >= before + 0.1, (before, after)
    assert est.n_iter_ == len(est.loss_curve_) >= 1
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    assert est.transform(X[:3]).shape == (3, 6)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stochastic_mlkr_improves_kernel_regression(solver):
    """A real target of one axis, hidden by noisy axes: the fit raises the
    held-out R^2 of 5-NN regression."""
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.RandomState(0)
    X = rng.randn(2100, 6) * np.r_[1.0, 3, 3, 3, 3, 3]
    t = np.sin(2 * X[:, 0]) + 0.05 * rng.randn(2100)

    def r2(L):
        knn = KNeighborsRegressor(5).fit(X[:1500] @ L.T, t[:1500])
        return knn.score(X[1500:] @ L.T, t[1500:])

    est = stochastic(MLKR, solver=solver, learning_rate=0.05 if solver == "adam" else 0.01,
                     init=np.eye(6) * 0.3).fit(X[:1500], t[:1500])
    assert r2(est.components_) >= r2(np.eye(6)) + 0.2
    assert est.loss_curve_[-1] < est.loss_curve_[0]


@pytest.mark.parametrize("cls, extra", [(NCA, {}), (LMNN, {}), (MLKR, {}),
                                        (LMNN, {"init_subsample": 300})])
def test_same_bits_for_any_thread_count(cls, extra):
    X, y = blobs(700, dtype=np.float32)
    fits = [stochastic(cls, batch_size=300, max_iter=2, n_jobs=n, **extra).fit(X, y)
            for n in (1, 2)]
    assert_array_equal(fits[0].components_, fits[1].components_)
    assert fits[0].loss_curve_ == fits[1].loss_curve_
    streams = []
    for n in (1, 2):
        est = stochastic(cls, batch_size=300, n_jobs=n, **extra)
        for start in range(0, 700, 350):
            est.partial_fit(X[start:start + 350], y[start:start + 350])
        streams.append(est.components_)
    assert_array_equal(streams[0], streams[1])


@pytest.mark.parametrize("cls", LEARNERS)
def test_float32_stays_float32(cls, monkeypatch):
    X, y = blobs(400, dtype=np.float32)
    seen = []
    original = minibatch_learner.neighbor_batch_fun

    def spy(objective, data, shape):
        seen.append((data.XC.dtype, objective.X is X or np.shares_memory(objective.X, X)))
        return original(objective, data, shape)

    monkeypatch.setattr(minibatch_learner, "neighbor_batch_fun", spy)
    est32 = stochastic(cls, max_iter=1).fit(X, y)
    assert seen and all(dtype == np.float32 and shared for dtype, shared in seen)
    monkeypatch.undo()
    est64 = stochastic(cls, max_iter=1).fit(X.astype(np.float64), y)
    assert_allclose(est32.components_, est64.components_, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cls", LEARNERS)
def test_partial_fit_streams_blocks(cls, tmp_path):
    X, y = blobs(1600, seed=0)
    X_test, y_test = blobs(600, seed=1)
    mm = np.memmap(tmp_path / "rows.dat", dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    est = stochastic(cls)
    for _ in range(4):
        for start in range(0, 1600, 400):
            est.partial_fit(mm[start:start + 400], y[start:start + 400])
    assert est.n_iter_ == 16 and len(est.loss_curve_) == 16
    before = knn_accuracy(np.eye(6), X, y, X_test, y_test)
    assert knn_accuracy(est.components_, X, y, X_test, y_test) >= before + 0.1
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:50, :4], y[:50])


@pytest.mark.parametrize("cls", LEARNERS)
def test_partial_fit_continues_a_fit(cls):
    X, y = blobs(600)
    est = stochastic(cls, max_iter=2).fit(X, y)
    state = est._optimizer.n_steps
    L = est.components_.copy()
    est.partial_fit(X[:300], y[:300])
    assert est.n_iter_ == 3
    assert est._optimizer.n_steps == state + 3  # Adam's moments carried over
    assert not np.array_equal(L, est.components_)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("fit", ["fit", "partial_fit"])
def test_nca_steps_scale_with_a_shrunk_start(solver, fit):
    """Features scaled by s: the saturated start is shrunk by 1/s and the
    steps with it (Adam: the rate by the shrink, its epsilon by the inverse;
    SGD: the rate by the square), so the embedding is the same.  Without the
    step scaling, steps of the rate's size were far too large for the
    shrunk map of raw pixels."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]  # pixels 0..16: the identity start is saturated
    # SGD: several epochs agree to rounding.  Adam: one step (one minibatch),
    # since its sign-like early steps amplify the rounding differences of
    # the two scales from the third step on.
    kw = dict(solver=solver, batch_size=32 if solver == "sgd" else 300, n_candidates=100,
              learning_rate=0.01, max_iter=3 if solver == "sgd" else 1, tol=0.0,
              random_state=0, n_jobs=1)
    raw, scaled, unscaled_steps = NCA(**kw), NCA(**kw), NCA(**kw)
    unscaled_steps._optimizer_for = (
        lambda solver, shrink: minibatch_learner.StochasticOptimizer(solver, 0.01))
    getattr(raw, fit)(X, y)
    getattr(scaled, fit)(10.0 * X, y)
    getattr(unscaled_steps, fit)(X, y)
    assert raw._optimizer.learning_rate < 0.01  # the start was shrunk, and the rate
    assert_allclose(raw.transform(X), scaled.transform(10.0 * X), rtol=1e-9, atol=1e-12)
    moved = np.linalg.norm(unscaled_steps.transform(X) - raw.transform(X))
    assert moved > 0.1 * np.linalg.norm(raw.transform(X))


def test_nca_fits_a_memmap_without_copying_it(tmp_path):
    X, y = blobs(800, dtype=np.float32)
    mm = np.memmap(tmp_path / "rows.dat", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    a = stochastic(NCA, max_iter=2).fit(mm, y)
    b = stochastic(NCA, max_iter=2).fit(X, y)
    assert_array_equal(a.components_, b.components_)


def test_lmnn_attributes_and_target_blocks():
    X, y = blobs(600)
    est = stochastic(LMNN, max_iter=2, batch_size=200).fit(X, y)
    assert est.n_searches_ == 0
    assert est.n_evaluations_ == 2 * 3
    assert est.n_active_ >= 0
    blocked = stochastic(LMNN, max_iter=2, batch_size=200, target_block_size=200).fit(X, y)
    assert np.all(np.isfinite(blocked.components_))
    assert not np.array_equal(blocked.components_, est.components_)


def test_lmnn_starts_from_the_full_batch_fit_on_a_subsample(monkeypatch):
    X, y = blobs(900)
    starts = []
    original = LMNN._fit_minibatch

    def spy(self, objective, L0, solver, tol, **kwargs):
        starts.append(np.array(L0))
        return original(self, objective, L0, solver, tol, **kwargs)

    monkeypatch.setattr(LMNN, "_fit_minibatch", spy)
    est = stochastic(LMNN, init_subsample=300, max_iter=2).fit(X, y)
    rows = np.linspace(0, 899, 300).astype(np.intp)  # evenly spaced
    full = LMNN(init="identity", random_state=0, n_jobs=1).fit(X[rows], y[rows])
    assert_array_equal(starts[0], full.components_)
    assert not np.array_equal(est.components_, full.components_)  # the epochs refine it
    assert est.n_iter_ == 2
    # More rows than X: the full-batch fit on all of them.
    stochastic(LMNN, init_subsample=5000, max_iter=1).fit(X[:400], y[:400])
    assert_array_equal(starts[1], LMNN(init="identity", random_state=0, n_jobs=1)
                       .fit(X[:400], y[:400]).components_)


def test_lmnn_subsample_start_beats_the_identity_start():
    """Few epochs from the identity leave the map far from LMNN's optimum in
    scale; from the subsample's fit the same epochs give a lower loss."""
    X, y = blobs(1500, seed=0)
    params = dict(max_iter=2, learning_rate=1e-3)
    cold = stochastic(LMNN, **params).fit(X, y)
    warm = stochastic(LMNN, init_subsample=500, **params).fit(X, y)
    assert warm.loss_curve_[-1] < cold.loss_curve_[-1]


def test_ctrl_c_in_the_subsample_fit_keeps_its_iterate(monkeypatch):
    from fastmetric._core.objectives.lmnn import LMNNProblem

    X, y = blobs(600)
    calls = []
    original = LMNNProblem.loss_grad

    def interrupting(self, L, compute_gradient=True):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, L, compute_gradient)

    monkeypatch.setattr(LMNNProblem, "loss_grad", interrupting)
    est = stochastic(LMNN, init_subsample=300, max_iter=5)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 0 and est.loss_curve_ == []
    assert np.all(np.isfinite(est.components_))
    assert not np.array_equal(est.components_, np.eye(6))  # L-BFGS iterations were kept


@pytest.mark.parametrize("cls", LEARNERS)
def test_verbose_prints_epochs(cls, capsys):
    X, y = blobs(300)
    stochastic(cls, max_iter=2, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert f"[{cls.__name__}]" in out and "epoch" in out


# --------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LEARNERS)
def test_ctrl_c_after_an_epoch_keeps_it(cls):
    X, y = blobs(400)

    def interrupt(estimator, epoch, loss):
        if epoch == 2:
            raise KeyboardInterrupt

    est = stochastic(cls, max_iter=20, callback=interrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 2
    assert np.all(np.isfinite(est.components_))


@pytest.mark.parametrize("cls", LEARNERS)
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_ctrl_c_inside_an_epoch_keeps_the_last_minibatch(cls, n_jobs, monkeypatch):
    """An interrupt in the 3rd minibatch leaves the parameters after the 2nd."""
    X, y = blobs(500)
    calls = []
    original = minibatch_learner.neighbor_batch_fun

    def counting(objective, data, shape):
        fun = original(objective, data, shape)

        def counted(theta):
            calls.append(theta.copy())
            if len(calls) == 3:
                raise KeyboardInterrupt
            return fun(theta)

        return counted

    monkeypatch.setattr(minibatch_learner, "neighbor_batch_fun", counting)
    est = stochastic(cls, max_iter=5, n_jobs=n_jobs)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    # calls[2] is the point the third minibatch started from: after two steps.
    assert_array_equal(est.components_.ravel(), calls[2])
    assert est.n_iter_ == 0


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to the own process is POSIX")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("cls", LEARNERS)
def test_sigint_stops_a_stochastic_fit(cls):
    X, y = blobs(2000)
    est = stochastic(cls, max_iter=100_000, n_iter_no_change=100_000, n_jobs=2,
                     **({"convergence_tol": 0} if cls is LMNN else {"tol": 0}))
    # (sigint_after installs Python's handler: background jobs ignore SIGINT.)
    with sigint_after(0.5), pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert 0 <= est.n_iter_ < 100_000
    assert np.all(np.isfinite(est.components_))
    assert est.transform(X[:3]).shape == (3, 6)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_lmnn_minibatch_with_a_class_smaller_than_n_neighbors(size):
    """A class of 3..n_neighbors rows has fewer targets than slots: the
    target table's assignment failed on the shapes (it broadcast only for a
    class of 2), in fit and in partial_fit (a streamed block with a rare
    class).  Its points get size - 1 targets, as in the full-batch fit."""
    X = np.random.RandomState(0).randn(60, 3)
    y = np.zeros(60, dtype=int)
    y[:size] = 1
    targets, n_small = block_target_neighbors(X, y, 2, 5, np.eye(3), X.mean(axis=0))
    assert n_small == size and np.all((targets[:size] >= 0).sum(axis=1) == size - 1)
    assert set(targets[:size].ravel()) - {-1} <= set(range(size))
    for est in (stochastic(LMNN, n_neighbors=5, max_iter=2).fit(X, y),
                stochastic(LMNN, n_neighbors=5).partial_fit(X, y)):
        assert np.all(np.isfinite(est.components_))

"""Streaming and long fits of the LDML learners: partial_fit (over batches,
e.g. row blocks of a memmap), memory-bounded minibatch sampling, progress
bars and a clean stop on Ctrl-C."""
import os
import time
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from fastmetric import LDML, LDML_Supervised
from fastmetric._core.sampling import sample_pairs

from .._signals import sigint_after

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def blobs(n, d=5, n_classes=3, seed=0, dtype=np.float64):
    """Classes separated along the first axis only, hidden by noisy axes."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, n_classes, n)
    X = rng.randn(n, d) * np.r_[0.3, np.full(d - 1, 3.0)]
    X[:, 0] += 2.0 * y
    return X.astype(dtype), y


def pair_auc(transform, X, y):
    pairs, same = sample_pairs(y, 500, 500, random_state=1)
    Z = transform(X)
    dist = ((Z[pairs[:, 0]] - Z[pairs[:, 1]]) ** 2).sum(1)
    return roc_auc_score(same, -dist)


def test_partial_fit_only_with_stochastic_solvers():
    assert not hasattr(LDML(), "partial_fit")
    assert not hasattr(LDML_Supervised(), "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as exc:
        _ = LDML_Supervised().partial_fit
    assert "only available with a stochastic solver" in str(exc.value.__cause__)
    assert hasattr(LDML(solver="adam"), "partial_fit")
    assert hasattr(LDML_Supervised(solver="sgd"), "partial_fit")


def test_partial_fit_streams_a_memmap(tmp_path, dtype):
    X, y = blobs(3000, dtype=dtype)
    path = tmp_path / "rows.dat"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    rows = np.memmap(path, dtype=dtype, mode="r", shape=X.shape)
    est = LDML_Supervised(solver="adam", learning_rate=0.05, batch_size=500, n_pairs=4000,
                          random_state=0, n_jobs=1)
    for _ in range(3):
        for start in range(0, rows.shape[0], 600):
            est.partial_fit(rows[start:start + 600], y[start:start + 600])
    assert est.n_iter_ == 15 and len(est.loss_curve_) == 15
    assert np.all(np.isfinite(est.components_))
    assert est.transform(rows[:10]).dtype == dtype
    assert np.mean(est.loss_curve_[-5:]) < np.mean(est.loss_curve_[:5])
    assert pair_auc(est.transform, X, y) > pair_auc(lambda Z: Z, X, y) + 0.05


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_partial_fit_reproducible_for_any_thread_count(n_jobs):
    X, y = blobs(1200, seed=3)

    def run(jobs):
        est = LDML_Supervised(solver="adam", batch_size=300, n_pairs=2000, random_state=7,
                              n_jobs=jobs)
        for start in range(0, 1200, 400):
            est.partial_fit(X[start:start + 400], y[start:start + 400])
        return est

    assert_array_equal(run(1).components_, run(n_jobs).components_)
    assert_array_equal(run(1).bias_, run(n_jobs).bias_)


def test_one_partial_fit_is_one_epoch_of_fit():
    """partial_fit continues exactly the stochastic fit: one call on the whole
    pair set equals fit with max_iter=1, and a second call equals max_iter=2."""
    X, y = blobs(200, seed=5)
    idx, t = sample_pairs(y, 600, 600, random_state=0)
    params = dict(preprocessor=X, solver="adam", batch_size=100, random_state=0, n_jobs=1,
                  tol=0)
    stream = LDML(**params).partial_fit(idx, t)
    assert_array_equal(stream.components_, LDML(max_iter=1, **params).fit(idx, t).components_)
    stream.partial_fit(idx, t)
    two = LDML(max_iter=2, n_iter_no_change=5, **params).fit(idx, t)
    assert_array_equal(stream.components_, two.components_)
    assert stream.predict(idx[:5]).shape == (5,)


def test_partial_fit_after_fit_continues():
    X, y = blobs(300, seed=2)
    est = LDML_Supervised(solver="adam", max_iter=2, n_pairs=1000, random_state=0,
                          n_jobs=1).fit(X, y)
    L = est.components_.copy()
    est.partial_fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    assert not np.array_equal(L, est.components_)


def test_partial_fit_bad_input():
    X, y = blobs(100)
    est = LDML_Supervised(solver="adam", n_pairs=200, random_state=0).partial_fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError, match="1 class"):
        est.partial_fit(X, np.zeros(100))
    with pytest.raises(ValueError, match="NaN|infinity"):
        bad = X.copy()
        bad[3, 1] = np.nan
        est.partial_fit(bad, y)
    idx, t = sample_pairs(y, 50, 50, random_state=0)
    pairs_est = LDML(solver="sgd", learning_rate=1e-3, random_state=0).partial_fit(X[idx], t)
    with pytest.raises(ValueError, match="features"):
        pairs_est.partial_fit(X[idx][:, :, :2], t)


def test_stochastic_fit_holds_one_minibatch_of_pairs(monkeypatch):
    """With a stochastic solver no array of all the epoch's pairs is built:
    every call to the pair-loss kernel sees at most batch_size pairs."""
    import fastmetric._core.objectives.ldml as ldml_module

    sizes = []
    original = ldml_module.PairLossProblem

    def recording(X, a, *args, **kwargs):
        sizes.append(a.shape[0])
        return original(X, a, *args, **kwargs)

    monkeypatch.setattr(ldml_module, "PairLossProblem", recording)
    X, y = blobs(2000)
    LDML_Supervised(solver="adam", n_pairs=20_000, batch_size=1000, max_iter=2,
                    random_state=0, n_jobs=1).fit(X, y)
    assert len(sizes) == 2 * 20 and max(sizes) == 1000


# --------------------------------------------------------------------------
# Ctrl-C and progress
# --------------------------------------------------------------------------
@pytest.mark.skipif(os.name == "nt", reason="SIGINT to the own process is POSIX")
@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_stochastic_fit_promptly():
    X, y = blobs(3000)
    est = LDML_Supervised(solver="adam", n_pairs=50_000, batch_size=500, max_iter=100_000,
                          tol=0, n_iter_no_change=100_000, random_state=0, n_jobs=1)
    start = time.perf_counter()
    with sigint_after(0.5), pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert time.perf_counter() - start < 10
    assert 0 <= est.n_iter_ < 100_000
    assert np.all(np.isfinite(est.components_)) and np.isfinite(est.bias_)
    assert est.transform(X[:3]).shape == (3, 5)


def test_ctrl_c_in_lbfgs_keeps_the_last_iterate():
    X, y = blobs(500)

    def interrupt(estimator, iteration, loss):
        if iteration == 3:
            raise KeyboardInterrupt

    est = LDML_Supervised(n_pairs=2000, max_iter=50, random_state=0, n_jobs=1,
                          callback=interrupt)
    with pytest.warns(UserWarning, match="interrupted"):
        est.fit(X, y)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    three = LDML_Supervised(n_pairs=2000, max_iter=3, random_state=0, n_jobs=1).fit(X, y)
    assert_array_equal(est.components_, three.components_)


def test_progress_bar_with_verbose_2(capsys):
    pytest.importorskip("tqdm")  # the test extra installs it; the fallback is tested below
    X, y = blobs(300)
    LDML_Supervised(solver="adam", n_pairs=1000, batch_size=100, max_iter=2, random_state=0,
                    verbose=2).fit(X, y)
    captured = capsys.readouterr()
    assert "epoch 1" in captured.err and "batch" in captured.err
    assert "[LDML_Supervised]" in captured.out  # the per-epoch table as with verbose=1


def test_progress_without_tqdm_falls_back_to_the_table(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    X, y = blobs(300)
    # max_iter=2 warns; kept off stderr also when pytest's warning capture
    # is off (-p no:warnings), where it would print there.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        LDML_Supervised(solver="adam", n_pairs=1000, batch_size=100, max_iter=2,
                        random_state=0, verbose=2).fit(X, y)
    captured = capsys.readouterr()
    assert "[LDML_Supervised]" in captured.out and captured.err == ""

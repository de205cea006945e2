"""Faults: a dask worker killed in the middle of a fit, Ctrl-C (SIGINT) in the
middle of every learner's fit, and requests for more memory than exists.

What holds: a fit that loses a worker completes (Dask recomputes the lost
blocks) or raises a clear error, and the estimator is never left half fitted;
an iterative fit stopped by SIGINT returns promptly with a warning and the
model of its last completed iteration, and a closed-form fit either finishes
or lets the KeyboardInterrupt through without leaving a fitted attribute
behind; an impossible memory request is a ValueError or MemoryError raised
before anything is allocated.
"""
import os
import signal
import warnings

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import fastmetric as fm
from fastmetric.pairwise import sample_chunks, sample_pairs

from ._dask_cluster import two_worker_client
from ._learner_cases import iris_std, iris_tuples
from ._signals import sigint_after

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

posix_only = pytest.mark.skipif(os.name == "nt", reason="SIGINT to the own process is POSIX")


# --------------------------------------------------------------------------
# Ctrl-C in the middle of every learner's fit
# --------------------------------------------------------------------------
def _sigint_at(iteration):
    """A callback that sends a real SIGINT to this process at ``iteration``:
    the signal arrives in the middle of the fit, at a point that does not
    depend on the machine's speed."""
    def callback(estimator, it, loss):
        if it >= iteration:
            os.kill(os.getpid(), signal.SIGINT)
        return False
    return callback


def _iterative_cases():
    """(id, estimator, fit arguments, budget): fits that would run ``budget``
    iterations (or rounds) unless stopped; each has a callback."""
    X, y = iris_std()
    pairs, y_pairs, triplets, quads, _ = iris_tuples()
    one = {"n_jobs": 1, "random_state": 0}
    big = 10**5
    return [
        ("LDML-lbfgs", fm.LDML(preprocessor=X, max_iter=big, tol=0, **one), (pairs, y_pairs), big),
        ("LDML-adam", fm.LDML(preprocessor=X, solver="adam", batch_size=20, max_iter=big, tol=0,
                              n_iter_no_change=big, **one), (pairs, y_pairs), big),
        ("LDML_Supervised", fm.LDML_Supervised(n_pairs=300, max_iter=big, tol=0, **one), (X, y),
         big),
        ("NCA", fm.NCA(max_iter=big, tol=0, **one), (X, y), big),
        ("LMNN-lbfgs", fm.LMNN(max_iter=big, convergence_tol=0, **one), (X, y), big),
        ("LMNN-gd", fm.LMNN(solver="gd", max_iter=big, convergence_tol=0, learn_rate=1e-3,
                            **one), (X, y), big),
        ("MLKR", fm.MLKR(max_iter=big, tol=0, **one), (X, y.astype(float)), big),
        ("ITML", fm.ITML(preprocessor=X, max_iter=big, tol=0, **one), (pairs, y_pairs), big),
        ("ITML_Supervised", fm.ITML_Supervised(max_iter=big, tol=0, **one), (X, y), big),
        ("MMC-lbfgs", fm.MMC(preprocessor=X, max_iter=big, tol=0, **one), (pairs, y_pairs), big),
        ("MMC-projection", fm.MMC(preprocessor=X, solver="projection", max_iter=big, tol=0,
                                  **one), (pairs, y_pairs), big),
        ("MMC-diagonal", fm.MMC(preprocessor=X, diagonal=True, max_iter=big, tol=0, **one),
         (pairs, y_pairs), big),
        ("MMC_Supervised", fm.MMC_Supervised(max_iter=big, tol=0, **one), (X, y), big),
        ("LSML", fm.LSML(preprocessor=X, max_iter=big, tol=0, **one), (quads,), big),
        ("LSML_Supervised", fm.LSML_Supervised(max_iter=big, tol=0, **one), (X, y), big),
        ("SCML", fm.SCML(preprocessor=X, max_iter=big, output_iter=10, **one), (triplets,), big),
        ("SCML_Supervised", fm.SCML_Supervised(max_iter=big, output_iter=10, **one), (X, y),
         big),
        ("ClusterLDML", fm.ClusterLDML(n_clusters=3, max_rounds=200, tol=1.0, ldml_max_iter=5,
                                       n_pairs_per_cluster=100, **one), (X,), 200),
    ]


ITERATIVE = _iterative_cases()


@posix_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, est, args, budget", ITERATIVE, ids=[c[0] for c in ITERATIVE])
def test_sigint_in_an_iterative_fit_keeps_the_last_iterate(name, est, args, budget):
    est.set_params(callback=_sigint_at(2))
    # (sigint_after installs Python's SIGINT handler, as in a terminal; its
    # own timer never fires here)
    with sigint_after(3600), pytest.warns(UserWarning, match="interrupted"):
        est.fit(*args)
    n_done = est.n_rounds_ if name == "ClusterLDML" else est.n_iter_
    assert n_done < budget  # it stopped early, at the signal
    assert np.all(np.isfinite(est.components_))
    X = iris_std()[0]
    assert np.all(np.isfinite(est.transform(X)))
    assert est.transform(X).shape == (len(X), est.components_.shape[0])


@posix_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["LDML-lbfgs", "NCA", "MLKR", "ITML", "LSML"])
def test_sigint_state_is_the_state_of_a_shorter_fit(name):
    """Stopped by the signal at iteration 2, the model is exactly the one of
    a fit with ``max_iter=2``."""
    from sklearn.base import clone

    _, est, args, _ = next(c for c in _iterative_cases() if c[0] == name)
    reference = clone(est).set_params(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(*args)
    est.set_params(callback=_sigint_at(2))
    with sigint_after(3600), pytest.warns(UserWarning, match="interrupted"):
        est.fit(*args)
    np.testing.assert_array_equal(est.components_, reference.components_)


@posix_only
@pytest.mark.timeout(120)
def test_sigint_inside_a_long_itml_kernel_call_is_prompt(monkeypatch):
    """Without a callback ITML runs its sweeps in chunks; a SIGINT sent while
    a chunk runs in the kernel stops the fit once that chunk returns (not
    after max_iter sweeps), with the state of the completed sweeps."""
    import threading

    import fastmetric._learners.itml as itml_module

    rng = np.random.RandomState(0)
    X = rng.randn(1000, 60)
    pairs = rng.randint(0, 1000, size=(4000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    y_pairs = np.where(rng.rand(len(pairs)) < 0.5, 1, -1)
    kernel = itml_module.itml_projections
    calls = []

    def armed_kernel(*args, **kwargs):
        calls.append(kwargs["max_sweeps"])
        if len(calls) == 3:  # sent from another thread while this call runs
            threading.Timer(0.005, os.kill, (os.getpid(), signal.SIGINT)).start()
        return kernel(*args, **kwargs)

    monkeypatch.setattr(itml_module, "itml_projections", armed_kernel)
    est = fm.ITML(preprocessor=X, max_iter=10**7, tol=0, n_jobs=1)
    with sigint_after(3600), pytest.warns(UserWarning, match="interrupted"):
        est.fit(pairs, y_pairs)
    assert 3 <= len(calls) <= 6 and max(calls) < 10**7
    assert est.n_iter_ in (sum(calls), sum(calls[:-1]))
    assert np.all(np.isfinite(est.components_))


def _closed_form_cases():
    X, _ = iris_std()
    rng = np.random.RandomState(0)
    Xb = rng.randn(3000, 30)
    yb = rng.randint(0, 5, 3000)
    pairs, y_pairs, _, _, chunks = iris_tuples()
    return [
        ("SDML", fm.SDML(preprocessor=X, n_jobs=1), (pairs, y_pairs)),
        ("SDML_Supervised", fm.SDML_Supervised(n_jobs=1, random_state=0), (Xb, yb)),
        ("RCA", fm.RCA(), (X, chunks)),
        ("RCA_Supervised", fm.RCA_Supervised(random_state=0), (Xb, yb)),
        ("LFDA", fm.LFDA(), (Xb, yb)),
        ("Covariance", fm.Covariance(), (Xb,)),
    ]


CLOSED_FORM = _closed_form_cases()


@posix_only
@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.02])
@pytest.mark.parametrize("name, est, args", CLOSED_FORM, ids=[c[0] for c in CLOSED_FORM])
def test_sigint_in_a_closed_form_fit_finishes_or_leaves_it_unfitted(name, est, args, delay):
    """A closed-form learner (or SDML, whose graphical lasso is scikit-learn's)
    has no intermediate model to keep: the fit finishes, or the
    KeyboardInterrupt goes through and no fitted attribute is left."""
    outcome = None
    try:
        with sigint_after(delay):
            try:
                est.fit(*args)
                outcome = "finished"
            except KeyboardInterrupt:
                outcome = "interrupted"
    except KeyboardInterrupt:  # the signal landed after the fit returned
        outcome = outcome or "interrupted"
    if outcome == "finished":
        assert np.all(np.isfinite(est.components_))
    else:
        assert not hasattr(est, "components_")
        with pytest.raises(NotFittedError):
            est.transform(iris_std()[0])


# --------------------------------------------------------------------------
# A dask worker killed in the middle of a fit (with Dask's retries, the fit
# completes with the model of an undisturbed fit:
# tests/core/test_dask.py::test_a_lost_worker_does_not_corrupt_the_fit)
# --------------------------------------------------------------------------
def _needs_dask():
    pytest.importorskip("distributed")
    pytest.importorskip("dask.array")


@pytest.fixture
def dask_cluster():
    """A fresh cluster per test: a killed worker's restart by its nanny is
    Dask's business (and slow on a busy machine), not what is tested here."""
    _needs_dask()
    with two_worker_client() as client:
        yield client


def _dask_data(n=3000, d=6, seed=3):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 3, n)
    X = rng.randn(n, d)
    X[:, 0] += 2 * y
    return X, y


def _dying_blocks(X, marker):
    """``X`` as a dask array whose first block task to run kills its worker
    process in the middle of the task (once: the marker file records it)."""
    import dask.array as da

    test_process = os.getpid()

    def exit_once(block):
        # Only in a worker process, and not on the empty block of a meta probe.
        if os.getpid() != test_process and block.size and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return block

    return da.from_array(X, chunks=500).map_blocks(exit_once, dtype=X.dtype,
                                                   meta=np.empty((0, 0), dtype=X.dtype))


@pytest.mark.timeout(300)
def test_a_worker_killed_in_a_task_the_fit_completes_through_retries(dask_cluster, tmp_path):
    X, y = _dask_data()
    params = {"n_pairs": 4000, "max_iter": 10, "random_state": 0}
    reference = fm.LDML_Supervised(**params).fit(X, y)
    marker = tmp_path / "killed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fm.LDML_Supervised(**params).fit(_dying_blocks(X, str(marker)), y)
    assert marker.exists()  # a worker did die
    np.testing.assert_allclose(est.components_, reference.components_, rtol=1e-7, atol=1e-9)


@pytest.mark.timeout(300)
def test_a_worker_killed_without_retries_raises_and_leaves_no_half_fit(tmp_path):
    """With Dask's retries switched off the lost task cannot be rerun: the fit
    raises Dask's KilledWorker (the workers died running a task), a fresh estimator stays
    unfitted and a fitted one keeps its previous model."""
    _needs_dask()
    import distributed

    X, y = _dask_data()
    params = {"n_pairs": 4000, "max_iter": 10, "random_state": 0}
    previous = fm.LDML_Supervised(max_iter=3, n_pairs=500, random_state=1).fit(X, y)
    before = {k: np.copy(v) for k, v in vars(previous).items() if k.endswith("_")}

    def no_retries(dask_scheduler):
        dask_scheduler.allowed_failures = 0

    for i, est in enumerate((fm.LDML_Supervised(**params), previous)):
        marker = tmp_path / f"killed-{i}"
        est.set_params(**params)
        # A fresh cluster for each fit: the one a worker died in is not reused.
        with two_worker_client() as client:
            client.run_on_scheduler(no_retries)
            with warnings.catch_warnings(), \
                    pytest.raises(distributed.scheduler.KilledWorker, match="workers died"):
                warnings.simplefilter("ignore")
                est.fit(_dying_blocks(X, str(marker)), y)
        assert marker.exists()
        if est is previous:
            after = {k: v for k, v in vars(est).items() if k.endswith("_")}
            assert sorted(after) == sorted(before)
            for k, v in before.items():
                np.testing.assert_array_equal(after[k], v)
        else:
            assert not hasattr(est, "components_")


# --------------------------------------------------------------------------
# Impossible memory requests
# --------------------------------------------------------------------------
def _memory_cases():
    X, y = iris_std()
    labels = np.repeat(np.arange(3), 50)
    return [
        ("sample_pairs 1e13", lambda: sample_pairs(labels, 10**13, 10**13, random_state=0)),
        ("sample_pairs unique", lambda: sample_pairs(labels, 10**6, 10**6, unique=True,
                                                     random_state=0)),
        ("sample_chunks", lambda: sample_chunks(labels, 10**12, 2, random_state=0)),
        ("sample_chunks size", lambda: sample_chunks(labels, 2, 10**12, random_state=0)),
        ("LDML_Supervised n_pairs", lambda: fm.LDML_Supervised(n_pairs=10**12).fit(X, y)),
        ("MMC_Supervised", lambda: fm.MMC_Supervised(n_constraints=10**12).fit(X, y)),
        ("SDML_Supervised", lambda: fm.SDML_Supervised(n_constraints=10**12).fit(X, y)),
        ("RCA_Supervised", lambda: fm.RCA_Supervised(n_chunks=10**12).fit(X, y)),
        ("ClusterLDML pairs", lambda: fm.ClusterLDML(n_clusters=2, n_pairs_per_cluster=10**12)
         .fit(X)),
        ("ClusterLDML rounds", lambda: fm.ClusterLDML(n_clusters=2, max_rounds=10**12).fit(X)),
        ("SCML n_basis", lambda: fm.SCML_Supervised(basis="triplet_diffs", n_basis=10**12)
         .fit(X, y)),
        ("SCML triplets n_basis", lambda: fm.SCML(preprocessor=X, n_basis=10**12)
         .fit(iris_tuples()[2])),
        ("LDML n_components", lambda: fm.LDML_Supervised(n_components=10**9).fit(X, y)),
        ("NCA n_components", lambda: fm.NCA(n_components=10**9).fit(X, y)),
        ("MLKR n_components", lambda: fm.MLKR(n_components=10**9).fit(X, y.astype(float))),
        ("LFDA n_components", lambda: fm.LFDA(n_components=10**9).fit(X, y)),
        ("distances 1e6 x 1e6", lambda: fm.pairwise.mahalanobis_distances(
            np.broadcast_to(np.ones((1, 2)), (10**6, 2)),
            np.broadcast_to(np.ones((1, 2)), (10**6, 2)))),
    ]


MEMORY = _memory_cases()


def _peak_rss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS in bytes: Linux")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, call", MEMORY, ids=[c[0] for c in MEMORY])
def test_impossible_memory_requests_fail_cleanly(name, call):
    """Each request fails at once with a ValueError or MemoryError whose
    message gives the size, and the process's peak memory does not grow (an
    allocation that is refused, or reserved but never touched, costs
    nothing; a filled one would show)."""
    before = _peak_rss()
    with pytest.raises((ValueError, MemoryError)) as info:
        call()
    assert str(info.value)
    assert _peak_rss() - before < 2**30, f"{name}: peak memory grew before the error"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", [fm.ITML_Supervised, fm.LSML_Supervised])
def test_more_unique_constraints_than_exist_are_capped_with_a_warning(cls):
    """The learners that draw distinct pairs use all that exist, and say so."""
    X, y = iris_std()
    with pytest.warns(UserWarning, match="distinct|only"):
        est = cls(n_constraints=10**12, max_iter=3).fit(X, y)
    assert np.all(np.isfinite(est.components_))

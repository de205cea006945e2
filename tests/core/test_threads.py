"""The default thread count under load, and the wait policy set at import.

Deterministic: the load samples and environments are made up here; nothing
is timed.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmetric.kernels as kernels
from fastmetric._core import threads
from fastmetric._core.threads import (
    LARGE_WORK,
    MEDIUM_WORK,
    LoadEstimate,
    busy_cores_of_others,
    effective_n_threads,
    limited_openmp,
    own_running_threads,
    parse_proc_stat,
    parse_running,
    threads_for_load,
)
from fastmetric.kernels.openmp_helpers import openmp_max_threads

PROC_STAT = """\
cpu  300 0 100 1000 20 0 5 0 0 0
cpu0 100 0 50 500 10 0 5 0 0 0
cpu1 200 0 50 500 10 0 0 0 0 0
intr 12345
ctxt 678
"""


@pytest.mark.parametrize("max_threads, n_cpus, others, expected", [
    (2, 2, None, 2),      # unknown load: OpenMP's limit
    (2, 2, 0.0, 2),       # quiet
    (2, 2, 0.3, 2),       # background noise below the cut
    (2, 2, 0.67, 1),      # one busy loop: the free core only
    (2, 2, 1.0, 1),
    (2, 2, 1.5, 1),       # two busy loops: no free core, one thread (the waits at
    (2, 2, 3.4, 1),       # the region ends cost more than a share of a core brings)
    (2, 2, 3.5, 1),       # others want twice the cores: one thread
    (8, 8, 2.2, 6),       # the free cores
    (8, 8, 2.6, 5),
    (8, 8, 7.9, 1),
    (8, 8, 16.0, 1),
    (4, 8, 2.0, 4),       # the limit still caps
    (1, 2, 0.0, 1),
])
def test_threads_for_load_small_work(max_threads, n_cpus, others, expected):
    assert threads_for_load(max_threads, n_cpus, others) == expected


@pytest.mark.parametrize("max_threads, n_cpus, others, extra_allowed, expected", [
    (2, 2, 0.0, True, 2),     # quiet: OpenMP's limit
    (2, 2, 1.0, True, 1),     # a free core: kept to it, as small work
    (2, 2, 1.5, True, 4),     # no free core: a share of the taken ones, as large work
    (2, 2, 3.4, True, 4),
    (2, 2, 1.5, False, 2),    # a user's limit holds
    (2, 2, 3.5, True, 1),     # others want twice the cores: one thread
    (8, 8, 2.2, True, 6),
    (8, 8, 7.9, True, 16),
])
def test_threads_for_load_medium_work(max_threads, n_cpus, others, extra_allowed, expected):
    for work in (MEDIUM_WORK, LARGE_WORK - 1):
        assert threads_for_load(max_threads, n_cpus, others, work=work,
                                extra_allowed=extra_allowed) == expected


@pytest.mark.parametrize("others, expected", [(0.0, 2), (1.0, 1), (2.0, 1), (3.4, 1), (4.0, 1)])
def test_threads_for_load_tiny_work_without_free_core_runs_one_thread(others, expected):
    # Below MEDIUM_WORK the waits at the region ends cost more than a share
    # of the taken cores brings; without a work estimate, one per CPU.
    assert threads_for_load(2, 2, others, work=MEDIUM_WORK - 1, extra_allowed=True) == expected
    assert threads_for_load(2, 2, others, work=0) == expected


def test_multiply_adds_sums_products_and_gives_up_on_unknown_sizes():
    assert threads.multiply_adds((569, 30, 30), (1000, 30)) == 569 * 900 + 30_000
    assert threads.multiply_adds((3, 4)) == 12
    assert threads.multiply_adds() == 0
    # A dask array with unknown chunks has NaN rows: the call counts as small.
    assert threads.multiply_adds((float("nan"), 30, 30), (1000, 30)) is None
    assert threads.multiply_adds((10, 30), (float("nan"), 30)) is None


@pytest.mark.parametrize("others, expected", [(0.0, 2), (1.0, 1), (2.0, 1), (8.0, 1)])
def test_threads_for_load_static_shares_keep_to_free_cores(others, expected):
    for work in (None, LARGE_WORK):
        assert threads_for_load(2, 2, others, work=work, extra_allowed=True,
                                static=True) == expected


@pytest.mark.parametrize("max_threads, n_cpus, others, extra_allowed, expected", [
    (2, 2, 0.0, True, 2),     # quiet: OpenMP's limit, whatever the work
    (2, 2, 1.0, True, 4),     # one busy loop: a thread per CPU and two per busy process
    (2, 2, 2.0, True, 4),     # never more than twice the CPUs
    (2, 2, 1.0, False, 2),    # a user's limit holds
    (8, 8, 1.0, True, 10),
    (8, 8, 3.0, True, 14),
    (8, 8, 7.0, True, 16),
])
def test_threads_for_load_large_work(max_threads, n_cpus, others, extra_allowed, expected):
    assert threads_for_load(max_threads, n_cpus, others, work=LARGE_WORK,
                            extra_allowed=extra_allowed) == expected


def test_busy_cores_of_others_subtracts_own_time():
    # 1 s of wall time, 1.5 CPU-seconds busy, 0.8 of them ours.
    assert busy_cores_of_others((10.0, 100.0, 5.0), (11.0, 101.5, 5.8)) == pytest.approx(0.7)
    # Our own time can exceed the machine's by rounding of the ticks: clip at 0.
    assert busy_cores_of_others((10.0, 100.0, 5.0), (11.0, 100.5, 5.8)) == 0.0
    # A window shorter than LOAD_WINDOW says nothing.
    assert busy_cores_of_others((10.0, 100.0, 5.0), (10.01, 100.0, 5.0)) is None


def test_parse_proc_stat_counts_our_cpus_only():
    # cpu0: busy = 100 + 50 + 5 = 155 ticks; cpu1: 200 + 50 = 250 ticks.
    assert parse_proc_stat(PROC_STAT, {0, 1}, 100) == pytest.approx(4.05)
    assert parse_proc_stat(PROC_STAT, {1}, 100) == pytest.approx(2.5)
    assert parse_proc_stat(PROC_STAT, {7}, 100) is None
    assert parse_proc_stat("cpu0 1 2\n", {0}, 100) == pytest.approx(0.03)  # short line


def test_load_estimate_keeps_the_last_full_window():
    # The clock of each call, and the samples taken (only once a window has
    # passed since the sample the estimate started from).
    clock = iter([0.0, 0.1, 1.0, 1.1, 2.0, 3.0])
    samples = iter([
        (0.0, 0.0, 0.0),     # at creation
        (1.0, 1.5, 0.5),     # 1 s: others used 1 core
        (2.0, 2.0, 1.5),     # 1 s since the last full window: others idle
        None,                # /proc/stat unreadable: the last estimate stands
    ])
    taken = []

    def sample():
        value = next(samples)
        taken.append(value)
        return value

    est = LoadEstimate(sample, clock=lambda: next(clock), runnable=lambda: None)
    assert est.others_busy() is None              # 0.1 s: too early, nothing read
    assert est.others_busy() == pytest.approx(1.0)
    assert est.others_busy() == pytest.approx(1.0)  # 1.1 s: too early, nothing read
    assert est.others_busy() == pytest.approx(0.0)
    assert est.others_busy() == pytest.approx(0.0)
    # /proc/stat was read at creation and once per full window, never within one.
    assert len(taken) == 4


def test_load_estimate_counts_what_others_want(monkeypatch):
    # Two busy processes beside two threads of ours on 2 cores get 1 core
    # between them (CPU time), but 2 threads of theirs want one each.
    # The clock below steps 0.1 s between samples: a gap of 0.05 s.
    monkeypatch.setattr(threads, "RUNNABLE_GAP", 0.05)
    clock = iter([0.0, 0.001, 0.1, 0.3, 0.302, 0.4, 0.6, 0.7, 0.8, 0.9])
    samples = iter([(0.0, 0.0, 0.0), (0.3, 0.6, 0.3), (0.6, 1.2, 0.9), (0.9, 1.5, 1.2)])
    runnable = iter([2, 3, 2, 1, 0, 0, 1, 1])
    est = LoadEstimate(lambda: next(samples), clock=lambda: next(clock),
                       runnable=lambda: next(runnable))
    assert est.others_busy() is None    # 0.001 s: within RUNNABLE_GAP, no sample
    assert est.others_busy() is None    # 0.1 s: a runnable sample, the window still open
    # The lower median of 2, 3, 2 beats 1 core of CPU time.
    assert est.others_busy() == pytest.approx(2.0)
    assert est.others_busy() == pytest.approx(2.0)   # 0.302 s: nothing read
    assert est.others_busy() == pytest.approx(2.0)   # 0.4 s: a sample, the window open
    # The others went quiet: CPU time 0.6 - 0.6 over 0.3 s, the lower median of 1, 0 is 0.
    assert est.others_busy() == pytest.approx(0.0)
    # One busy process again, one sample missed it: the lower median of 0, 1, 1 is 1.
    assert est.others_busy() == pytest.approx(0.0)   # 0.7 s: a sample, the window open
    assert est.others_busy() == pytest.approx(0.0)   # 0.8 s: a sample, the window open
    assert est.others_busy() == pytest.approx(1.0)


def test_runnable_parsing(tmp_path):
    assert parse_running("0.45 0.94 1.48 3/80 22887\n") == 3
    # The state follows the last ')': the name may hold ") " itself.
    for tid, name, state in (("1", "x", "R"), ("2", "x", "S"), ("3", "a) b (c) S", "R"),
                             ("5", "a) R (c", "S")):
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "stat").write_text(f"{tid} ({name}) {state} 0 0\n")
    (tmp_path / "4").mkdir()    # a thread that ended: no stat file
    assert own_running_threads(str(tmp_path)) == 2
    with pytest.raises(OSError, match="cannot read"):
        own_running_threads(str(tmp_path / "missing"))
    # This process: the caller at least.
    assert own_running_threads() >= 1


class FixedLoad:
    """A load estimate that always says ``busy`` cores are the others'."""

    def __init__(self, busy):
        self.busy = busy

    def others_busy(self):
        return self.busy


def test_default_threads_follow_the_load(monkeypatch):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    with threadpool_limits(2):
        monkeypatch.setattr(threads, "_LOAD", FixedLoad(0.0))
        assert effective_n_threads(None) == 2
        monkeypatch.setattr(threads, "_LOAD", FixedLoad(0.9))
        assert effective_n_threads(None) == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert effective_n_threads(None, work=LARGE_WORK) == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "2")    # a user's limit: no thread beyond it
        assert effective_n_threads(None, work=LARGE_WORK) == 2
        monkeypatch.setattr(threads, "_LOAD", FixedLoad(1.8))
        assert effective_n_threads(None) == 1          # no free core, no size stated
        assert effective_n_threads(None, work=MEDIUM_WORK) == 2
        monkeypatch.setattr(threads, "_LOAD", FixedLoad(4.0))
        assert effective_n_threads(None) == 1
        # An explicit n_jobs is obeyed whatever the load.
        assert effective_n_threads(2) == 2
        assert effective_n_threads(-1) == 2


@pytest.mark.parametrize("environ, loaded, value", [
    ({}, False, kernels.SHORT_SPINCOUNT),
    ({"OMP_WAIT_POLICY": "active"}, False, None),
    ({"OMP_WAIT_POLICY": "passive"}, False, None),
    ({"GOMP_SPINCOUNT": "infinity"}, False, None),
    ({}, True, None),
])
def test_short_spin_setting(environ, loaded, value):
    got, note = kernels.short_spin_setting(environ, loaded)
    assert got == value
    assert note


def test_short_spin_setting_reports_the_users_choice():
    _, note = kernels.short_spin_setting({"GOMP_SPINCOUNT": "5"}, False)
    assert "GOMP_SPINCOUNT=5" in note and "user" in note
    _, note = kernels.short_spin_setting({}, True)
    assert "loaded before" in note


def test_libgomp_loaded_reads_the_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0\n")
    assert kernels._libgomp_loaded(str(maps))
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /site-packages/scikit_learn.libs/libgomp-e98.so.1\n")
    assert not kernels._libgomp_loaded(str(maps))
    assert not kernels._libgomp_loaded(str(tmp_path / "absent"))


def test_team_threads_only_under_load_and_for_the_default(monkeypatch):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads, "_TEAM_AVAILABLE", True)
    monkeypatch.setattr(threads, "openmp_enabled", lambda: True)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with threadpool_limits(2):
        for busy, expected in [(None, 0), (0.0, 0), (0.4, 0), (0.9, 3), (1.8, 4), (7.0, 4)]:
            monkeypatch.setattr(threads, "_LOAD", FixedLoad(busy))
            assert threads.team_threads() == expected, busy
            assert threads.team_threads(2) == 0      # an explicit n_jobs: OpenMP's
        monkeypatch.setenv("OMP_NUM_THREADS", "2")     # a user's limit caps the team
        assert threads.team_threads() == 2
    monkeypatch.setattr(threads, "_TEAM_AVAILABLE", False)
    assert threads.team_threads() == 0


def test_limited_openmp_holds_every_openmp_runtime_and_restores_it():
    from threadpoolctl import threadpool_info

    def openmp_counts():
        return sorted((lib["filepath"], lib["num_threads"]) for lib in threadpool_info()
                      if lib["user_api"] == "openmp")

    with threadpool_limits(limits=2, user_api="openmp"):
        before = openmp_counts()
        assert before and all(n == 2 for _, n in before)
        with limited_openmp(1):
            inside = openmp_counts()
            assert [path for path, _ in inside] == [path for path, _ in before]
            assert all(n == 1 for _, n in inside)
            assert openmp_max_threads() == 1
        assert openmp_counts() == before


def _recorded_work(monkeypatch, module):
    """Patch ``module.effective_n_threads`` to record the ``work`` of each call."""
    seen = []
    original = module.effective_n_threads

    def recording(n_jobs=None, work=None, static=False):
        seen.append(work)
        return original(n_jobs, work=work, static=static)

    monkeypatch.setattr(module, "effective_n_threads", recording)
    return seen


def test_public_pair_kernels_state_their_work(monkeypatch):
    # Under load with no free core, a call that states no work runs one
    # thread; these kernels state theirs so that a large call takes a share
    # of the taken cores.
    from fastmetric._core import scatter
    from fastmetric._core.objectives import pair_loss
    from fastmetric.pairwise import ldml_loss, weighted_pair_scatter

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 6))
    pairs = rng.integers(0, 50, size=(40, 2))
    L = rng.standard_normal((3, 6))
    seen = _recorded_work(monkeypatch, pair_loss)
    ldml_loss(X, pairs, rng.integers(0, 2, 40).astype(float), L, 1.0)
    assert 50 * 3 * 6 + 40 * 3 in seen
    seen = _recorded_work(monkeypatch, scatter)
    weighted_pair_scatter(X, pairs[:, 0], pairs[:, 1])
    assert seen == [40 * 6 * 6]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nca_and_mlkr_state_their_work(monkeypatch):
    # The full-batch softmax pass of both: one region of n^2 d multiply-adds.
    from fastmetric import MLKR, NCA
    from fastmetric._core import softmax_learner

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    seen = _recorded_work(monkeypatch, softmax_learner)
    MLKR(max_iter=2, random_state=0).fit(X, X[:, 0])
    assert seen == [30 * 30 * 4]
    seen.clear()
    NCA(max_iter=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    assert seen == [30 * 30 * 4]


class _FakeBlas:
    """A BLAS library and its controller, as threadpoolctl's controller
    shows them to single_threaded_blas: a thread count, and limit() that
    sets it and gives it back."""

    def __init__(self, n_threads):
        self.num_threads = n_threads
        self.lib_controllers = [self]

    def limit(self, limits):
        blas = self

        class Limiter:
            def __init__(self):
                self.original = blas.num_threads
                blas.num_threads = limits

            def restore_original_limits(self):
                blas.num_threads = self.original

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.restore_original_limits()

        return Limiter()


def test_blas_hold_is_shared_by_concurrent_fits(monkeypatch):
    # Fit A takes the hold, fit B (another thread) takes it too, A ends
    # first: B must still run with one BLAS thread, and the count must come
    # back once B ends.  (BLAS's thread count is the process's: each hold
    # setting and restoring it alone let A's end lift the hold under B.)
    import threading

    from fastmetric._core.threads import single_threaded_blas

    blas = _FakeBlas(2)
    monkeypatch.setattr(threads, "_blas_controller", lambda: blas)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def fit_a():
        with single_threaded_blas():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def fit_b():
        a_in.wait(10)
        with single_threaded_blas():
            b_in.set()
            a_out.wait(10)
            seen["b after a ended"] = blas.num_threads

    threads_ = [threading.Thread(target=fit_a), threading.Thread(target=fit_b)]
    for t in threads_:
        t.start()
    for t in threads_:
        t.join(30)
    assert seen["b after a ended"] == 1
    assert blas.num_threads == 2
    with single_threaded_blas():          # nested holds: one limit
        with single_threaded_blas():
            assert blas.num_threads == 1
        assert blas.num_threads == 1
    assert blas.num_threads == 2

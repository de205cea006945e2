"""The default thread count under load, and the wait policy set at import.

Deterministic: the load samples and environments are made up here; nothing
is timed.
"""
import pytest
from threadpoolctl import threadpool_limits

import fastmetric.kernels as kernels
from fastmetric._core import threads
from fastmetric._core.threads import (
    LoadEstimate,
    busy_cores_of_others,
    effective_n_threads,
    parse_proc_stat,
    threads_for_load,
)

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
    (2, 2, 0.67, 2),      # one busy loop beside two of our threads: 1 free + 1 shared
    (2, 2, 1.0, 2),       # one busy loop beside one thread of ours
    (2, 2, 1.4, 2),       # two busy loops: still one shared thread
    (2, 2, 1.5, 1),       # others fill both cores
    (2, 2, 2.0, 1),       # never fewer than one thread
    (8, 8, 2.2, 7),       # 6 free + 1 shared
    (8, 8, 2.6, 6),
    (8, 8, 7.9, 1),
    (4, 8, 2.0, 4),       # the limit still caps
    (1, 2, 0.0, 1),
])
def test_threads_for_load(max_threads, n_cpus, others, expected):
    assert threads_for_load(max_threads, n_cpus, others) == expected


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
    clock = iter([0.1, 1.0, 1.1, 2.0, 3.0])
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

    est = LoadEstimate(sample, clock=lambda: next(clock))
    assert est.others_busy() is None              # 0.1 s: too early, nothing read
    assert est.others_busy() == pytest.approx(1.0)
    assert est.others_busy() == pytest.approx(1.0)  # 1.1 s: too early, nothing read
    assert est.others_busy() == pytest.approx(0.0)
    assert est.others_busy() == pytest.approx(0.0)
    # /proc/stat was read at creation and once per full window, never within one.
    assert len(taken) == 4


def test_default_threads_follow_the_load(monkeypatch):
    class Fixed:
        def __init__(self, busy):
            self.busy = busy

        def others_busy(self):
            return self.busy

    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    with threadpool_limits(2):
        monkeypatch.setattr(threads, "_LOAD", Fixed(0.0))
        assert effective_n_threads(None) == 2
        monkeypatch.setattr(threads, "_LOAD", Fixed(0.9))
        assert effective_n_threads(None) == 2
        monkeypatch.setattr(threads, "_LOAD", Fixed(1.8))
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

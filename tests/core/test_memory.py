"""fastmetric._core.memory: the allocation check and heap reuse in a loop."""
import os
import subprocess
import sys
import textwrap

import pytest

from fastmetric._core import memory


def test_check_memory_refuses_more_than_the_machine():
    total = memory.physical_memory()
    if total is None:
        pytest.skip("physical memory unknown on this platform")
    memory.check_memory(1 << 20, "a small table")
    with pytest.raises(MemoryError, match="max_rounds=huge"):
        memory.check_memory(4 * total, "max_rounds=huge")


class _RecordingLibc:
    """Stands in for glibc: records mallopt and malloc_trim calls."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_heap_reuse_does_nothing_without_tuned_malloc(monkeypatch):
    monkeypatch.setattr(memory, "_tuned_glibc", lambda: None)
    monkeypatch.setattr(memory, "_heap_users", 0)
    with memory.heap_kept_for_reuse():
        assert memory._heap_users == 0  # nothing counted, nothing set


def test_heap_reuse_raises_once_and_restores_the_start_up_thresholds(monkeypatch):
    libc = _RecordingLibc()
    # Started with MALLOC_TRIM_THRESHOLD_=65536 and no mmap threshold.
    monkeypatch.setattr(memory, "_tuned_glibc",
                        lambda: (libc, 65536, memory._GLIBC_DEFAULT_THRESHOLD))
    monkeypatch.setattr(memory, "_heap_users", 0)
    with memory.heap_kept_for_reuse():
        raised = list(libc.calls)
        with memory.heap_kept_for_reuse():  # nested: the thresholds stay raised
            assert libc.calls == raised
        assert libc.calls == raised
    assert raised == [("mallopt", memory._M_MMAP_THRESHOLD, memory._REUSE_MMAP_THRESHOLD),
                      ("mallopt", memory._M_TRIM_THRESHOLD, memory._REUSE_TRIM_THRESHOLD)]
    # Set back to what the process started with (glibc's default where the
    # variable was unset), and the kept heap is returned.
    assert libc.calls[2:] == [
        ("mallopt", memory._M_MMAP_THRESHOLD, memory._GLIBC_DEFAULT_THRESHOLD),
        ("mallopt", memory._M_TRIM_THRESHOLD, 65536),
        ("malloc_trim", 0),
    ]


def test_heap_reuse_restores_after_an_exception(monkeypatch):
    libc = _RecordingLibc()
    monkeypatch.setattr(memory, "_tuned_glibc", lambda: (libc, 65536, 262144))
    monkeypatch.setattr(memory, "_heap_users", 0)
    with pytest.raises(KeyboardInterrupt):
        with memory.heap_kept_for_reuse():
            raise KeyboardInterrupt
    assert ("mallopt", memory._M_MMAP_THRESHOLD, 262144) in libc.calls
    assert libc.calls[-1] == ("malloc_trim", 0)
    assert memory._heap_users == 0


def _run(script, **env_vars):
    env = dict(os.environ)
    for name in memory._FIXED_HEAP_VARIABLES:
        env.pop(name, None)
    env.update(env_vars)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.mark.skipif(memory.startup_environment() is None, reason="/proc/self/environ only")
def test_a_variable_set_after_start_up_does_not_count():
    # Dask's nanny adds MALLOC_TRIM_THRESHOLD_ to os.environ of the process
    # that starts a LocalCluster; that process's malloc is not tuned by it.
    out = _run("""
        import os
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"
        from fastmetric._core import memory
        print(memory._tuned_glibc() is None)
    """)
    assert out.split() == ["True"]


@pytest.mark.skipif(memory.startup_environment() is None, reason="/proc/self/environ only")
def test_heap_reuse_saves_the_page_faults_of_a_tuned_malloc():
    # A process started as Dask starts its workers: each large temporary is
    # mapped and unmapped, so every one of its pages faults.  Fault counts,
    # not times: the same on a busy machine.  numpy asks for transparent huge
    # pages for arrays of 4 MiB and more (madvise), which the kernel grants
    # when it has free 2 MiB blocks: then a temporary faults 2-3 times, not
    # 1024 (the suite beside two busy loops once counted 120 faults for the
    # 40 temporaries).  Small pages only, so the counts mean one thing.
    out = _run("""
        import resource
        import numpy as np
        from fastmetric._core import memory

        def faults_of_temporaries():
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(40):
                a = np.ones(1 << 19)  # 4 MiB, written: every page touched
                del a
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

        if memory._tuned_glibc() is None:
            print("not-glibc")
        else:
            before = faults_of_temporaries()
            with memory.heap_kept_for_reuse():
                faults_of_temporaries()  # the first one takes its pages
                inside = faults_of_temporaries()
            after = faults_of_temporaries()
            print(before, inside, after)
    """, MALLOC_TRIM_THRESHOLD_="65536", NUMPY_MADVISE_HUGEPAGE="0")
    if out.strip() == "not-glibc":
        pytest.skip("glibc's mallopt only")
    before, inside, after = map(int, out.split())
    pages = 40 * (4 << 20) // 4096
    assert before >= pages // 2          # each temporary faulted in afresh
    assert inside <= pages // 20         # reused: a handful of faults
    assert after >= pages // 2           # the tuned behaviour is back

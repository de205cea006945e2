"""Thread-count resolution and BLAS/OpenMP coordination.

The default thread count (``n_jobs=None``) takes the load that other
processes put on this process's CPUs into account: a core that another
process keeps busy is not counted as free (see :func:`threads_for_load`).
"""
import contextlib
import numbers
import os
import time

from threadpoolctl import ThreadpoolController

from fastmetric.kernels.openmp_helpers import openmp_enabled, openmp_max_threads


def cpu_count():
    """Number of CPUs this process may run on (affinity and cgroups aware)."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        n = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count()
    return max(1, n or 1)


# The kernels take the thread count as a C int.
MAX_N_JOBS = 2**31 - 1


def effective_n_threads(n_jobs=None):
    """Resolve an ``n_jobs`` argument into a positive number of OpenMP threads.

    Parameters
    ----------
    n_jobs : int or None
        ``None``: as many threads as OpenMP allows now (``OMP_NUM_THREADS``
        and threadpoolctl limits are respected), less the cores that other
        processes have kept busy lately (:func:`threads_for_load`). ``-1``: every CPU of this
        process. ``k > 0``: exactly ``k``. ``k < -1``: all CPUs but
        ``|k| - 1`` (joblib's convention).

    Returns
    -------
    n_threads : int
        Always 1 when the package was built without OpenMP.
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
    ):
        raise TypeError(f"n_jobs must be None or an integer, got {n_jobs!r}.")
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, -1 or a positive integer.")
    if n_jobs is not None and abs(n_jobs) > MAX_N_JOBS:
        # The kernels take the count as a C int: a larger one cannot be passed.
        raise ValueError(f"n_jobs={n_jobs} is out of range: |n_jobs| must be at most "
                         f"{MAX_N_JOBS}.")
    if not openmp_enabled():
        return 1
    if n_jobs is None:
        return threads_for_load(max(1, openmp_max_threads()), cpu_count(),
                                _LOAD.others_busy())
    if n_jobs < 0:
        return max(1, cpu_count() + 1 + int(n_jobs))
    return int(n_jobs)


def machine_n_threads(n_jobs=None):
    """:func:`effective_n_threads`, with ``None`` counting this process's CPUs
    instead of OpenMP's current limit.

    For a Dask task that runs alone in its fit (a minibatch fit's steps):
    Dask sets ``OMP_NUM_THREADS=1`` in its worker processes, so that tasks
    side by side do not oversubscribe the cores, which would leave such a
    task one thread on an otherwise idle machine.  The load of other
    processes is still taken into account.
    """
    if n_jobs is not None or not openmp_enabled():
        return effective_n_threads(n_jobs)
    return threads_for_load(cpu_count(), cpu_count(), _LOAD.others_busy())


_CONTROLLER = None


def _controller():
    # Scanning the loaded libraries costs milliseconds: do it once.  The
    # BLAS libraries we call (numpy's, scipy's) are loaded by then.
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


@contextlib.contextmanager
def single_threaded_blas():
    """Hold BLAS to one thread while our OpenMP threads call it.

    Each OpenMP thread of a kernel may call GEMM on its own block; a
    multithreaded BLAS underneath would oversubscribe the cores.
    """
    controller = _controller().select(user_api="blas")
    if all(lib.num_threads == 1 for lib in controller.lib_controllers):
        yield  # already single-threaded (e.g. inside a learner's fit)
        return
    with controller.limit(limits=1):
        yield


def threads_for_work(n_threads, n_items, min_items_per_thread):
    """Cap a thread count so that each thread gets a worthwhile share.

    Starting and joining an OpenMP team costs microseconds on an idle
    machine but much more when the cores are shared; a kernel call with
    little work runs faster on fewer threads.  The kernels split their work
    into chunks that do not depend on the thread count, so this cap never
    changes a result.
    """
    if min_items_per_thread <= 0:  # no minimum: every thread
        return max(1, int(n_threads))
    return max(1, min(int(n_threads), int(n_items) // int(min_items_per_thread)))


# ---------------------------------------------------------------------------
# The load of other processes
# ---------------------------------------------------------------------------
# Threads of ours on cores that other processes keep busy wait for the
# scheduler's time slices, and the kernels' threads meet at barriers: beyond
# one such thread, they cost more than they bring (threads_for_load).  The
# estimate is the CPU time that the machine spent busy on our CPUs over
# the last window, less the CPU time of this process, per second of wall
# time: "cores kept busy by others".  Read from /proc/stat (Linux); where it
# is not readable, no load is assumed (the thread count is then what it was
# before: OpenMP's limit).

# Shortest window (seconds) over which the busy time is measured: /proc/stat
# counts in clock ticks (10 ms), so shorter windows are mostly rounding.
LOAD_WINDOW = 0.25
# Cores' worth of others' CPU time at or above which a core counts as theirs
# (rounding half up).
BUSY_CORE_CUT = 0.5


def threads_for_load(max_threads, n_cpus, others_busy):
    """Threads to use when other processes keep ``others_busy`` cores busy.

    The rule: the free cores, plus one thread that shares a core with the
    others.  The scheduler shares a core between the threads that want it,
    so with one busy process on two cores two threads of ours get about 4/3
    of a core where one thread gets 1, and the kernels' dynamic schedules
    let the thread that runs more take more chunks: the shared thread pays
    (measured: NCA on digits 1.5 s with 2 threads against 2.7 s with 1).
    A second thread on a taken core does not: when others fill every core,
    our threads spend their time waiting for each other's time slices at
    the barriers (measured at a load average of 16 on 2 cores: 2 threads
    15-40 % slower than 1).

    Parameters
    ----------
    max_threads : int
        The most threads allowed (OpenMP's limit, ``OMP_NUM_THREADS``,
        threadpoolctl).
    n_cpus : int
        CPUs this process may run on.
    others_busy : float or None
        Cores' worth of CPU time that other processes used lately (None:
        unknown, taken as no load).

    Returns
    -------
    n_threads : int
        ``min(max_threads, n_cpus - taken + 1)`` with ``taken`` the cores
        the others fill (``others_busy`` rounded, half up); at least 1.
    """
    max_threads = max(1, int(max_threads))
    if others_busy is None or others_busy <= 0:
        return max_threads
    taken = int(others_busy + (1.0 - BUSY_CORE_CUT))
    if taken == 0:
        return max_threads
    return max(1, min(max_threads, int(n_cpus) - taken + 1))


def busy_cores_of_others(before, after):
    """Cores' worth of CPU time used by other processes between two samples.

    Parameters
    ----------
    before, after : tuple of float
        ``(wall_seconds, busy_cpu_seconds, own_cpu_seconds)`` as
        :func:`cpu_sample` returns: wall time, the CPU time all processes
        spent on our CPUs, and this process's CPU time.

    Returns
    -------
    busy : float or None
        ``(busy - own) / wall`` over the window, at least 0; None when the
        window is shorter than ``LOAD_WINDOW``.
    """
    wall = after[0] - before[0]
    if wall < LOAD_WINDOW:
        return None
    busy = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, busy / wall)


def parse_proc_stat(text, cpus, ticks_per_second):
    """CPU seconds spent busy on ``cpus`` from the text of /proc/stat.

    Busy is every column but idle and iowait (user, nice, system, irq,
    softirq, steal; guest time is already in user).  Lines of CPUs outside
    ``cpus`` are skipped.

    Returns
    -------
    seconds : float or None
        None when no line of ``cpus`` is found.
    """
    busy_ticks = 0
    found = False
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        fields = line.split()
        try:
            cpu = int(fields[0][3:])
            if cpu not in cpus:
                continue
            values = [int(v) for v in fields[1:9]]
        except ValueError:
            continue
        values += [0] * (8 - len(values))
        # user nice system idle iowait irq softirq steal
        busy_ticks += sum(values) - values[3] - values[4]
        found = True
    return busy_ticks / ticks_per_second if found else None


def cpu_sample():
    """``(wall, busy_cpu_seconds, own_cpu_seconds)`` now, or None where
    /proc/stat or the affinity cannot be read."""
    try:
        cpus = os.sched_getaffinity(0)
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            text = f.read()
    except (AttributeError, OSError, ValueError):
        return None
    busy = parse_proc_stat(text, cpus, ticks)
    if busy is None:
        return None
    own = os.times()
    return (time.monotonic(), busy, own.user + own.system)


class LoadEstimate:
    """The busy cores of other processes, measured between calls.

    Each call of :meth:`others_busy` within ``LOAD_WINDOW`` of the sample
    that the current estimate started from returns that estimate without
    reading anything (the kernels resolve their thread count on every
    call, and a window of a few clock ticks would be rounding); a later
    call takes a new sample and compares it with that one.  The first
    sample is taken when the object is made (at import).

    Parameters
    ----------
    sample : callable
        Returns a sample as :func:`cpu_sample` does (or None).
    clock : callable
        The wall clock of the samples (``time.monotonic``).
    """

    def __init__(self, sample=cpu_sample, clock=time.monotonic):
        self._sample = sample
        self._clock = clock
        self._start = sample()
        self._busy = None

    def others_busy(self):
        """Cores' worth of CPU time that other processes used lately, or
        None when unknown."""
        if self._start is not None and self._clock() - self._start[0] < LOAD_WINDOW:
            return self._busy
        now = self._sample()
        if now is None or self._start is None:
            self._start = now
            return self._busy
        busy = busy_cores_of_others(self._start, now)
        if busy is not None:
            self._busy = busy
            self._start = now
        return self._busy


_LOAD = LoadEstimate()

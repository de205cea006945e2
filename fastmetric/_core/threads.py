"""Thread-count resolution and BLAS/OpenMP coordination.

The default thread count (``n_jobs=None``) takes the load that other
processes put on this process's CPUs into account, and the work of the call
(see :func:`threads_for_load`): a call with little work per parallel region
keeps to the cores that others leave free, a call with much work takes its
share of the taken cores too.
"""
import contextlib
import functools
import math
import numbers
import os
import statistics
import sys
import threading
import time

from threadpoolctl import ThreadpoolController

from fastmetric.kernels.openmp_helpers import openmp_enabled, openmp_max_threads, running_tasks

if hasattr(os, "process_cpu_count"):  # Python >= 3.13
    _process_cpus = os.process_cpu_count
elif hasattr(os, "sched_getaffinity"):
    def _process_cpus():
        return len(os.sched_getaffinity(0))
else:
    _process_cpus = os.cpu_count

# The CPUs of the machine (os.cpu_count reads /sys on each call).
_MACHINE_CPUS = os.cpu_count()
# How long a count of this process's CPUs is reused (seconds): the default
# thread count is resolved on every kernel call, and the count costs a
# system call.  An affinity change shows within this time.
CPU_COUNT_REUSE = 0.25
_cpu_count_cache = [0, -math.inf]   # (count, time.monotonic() when read)


def cpu_count():
    """Number of CPUs this process may run on (affinity and cgroups aware),
    read at most every ``CPU_COUNT_REUSE`` seconds."""
    now = time.monotonic()
    if now - _cpu_count_cache[1] >= CPU_COUNT_REUSE:
        _cpu_count_cache[0] = max(1, _process_cpus() or 1)
        _cpu_count_cache[1] = now
    return _cpu_count_cache[0]


# The kernels take the thread count as a C int.
MAX_N_JOBS = 2**31 - 1

# A positive n_jobs above this many threads per CPU is lowered to it: more
# threads only queue on the same cores (the results are the same for any
# count), and tens of thousands of them exhaust the OpenMP runtime, which
# then hangs or crashes while creating its threads.
MAX_THREADS_PER_CPU = 4


def effective_n_threads(n_jobs=None, work=None, static=False):
    """Resolve an ``n_jobs`` argument into a positive number of OpenMP threads.

    Parameters
    ----------
    n_jobs : int or None
        ``None``: as many threads as OpenMP allows now (``OMP_NUM_THREADS``
        and threadpoolctl limits are respected) on a quiet machine; when
        other processes keep cores busy, the free cores, or for a call of
        ``work >= LARGE_WORK`` (``MEDIUM_WORK`` when no core is free) one
        thread per CPU and two per busy process of the others, at most two
        per CPU (:func:`threads_for_load`).  ``-1``: every CPU of this
        process. ``k > 0``: ``k``, at most ``MAX_THREADS_PER_CPU`` (4) per
        CPU. ``k < -1``: all CPUs but ``|k| - 1`` (joblib's convention).
    work : int, optional
        Multiply-adds in one parallel region of the call (its largest); only
        used for ``n_jobs=None`` under load.  None: small.
    static : bool, default=False
        The call's parallel regions split their work into equal fixed shares
        (scikit-learn's k-means): under load it keeps to the free cores.

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
        max_threads = max(1, openmp_max_threads())
        n_cpus = cpu_count()
        return threads_for_load(max_threads, n_cpus, _LOAD.others_busy(), work=work,
                                extra_allowed=_limit_is_default(max_threads, n_cpus),
                                static=static)
    if n_jobs < 0:
        return max(1, cpu_count() + 1 + int(n_jobs))
    return min(int(n_jobs), MAX_THREADS_PER_CPU * cpu_count())


def team_threads(n_jobs=None):
    """Threads of fm_team.h's team for a call's short regions, or 0 for
    OpenMP's threads (:func:`effective_n_threads`).

    Only the default ``n_jobs=None`` uses the team, and only while other
    processes keep at least one of this process's cores busy: then an
    OpenMP region waits at its end for a thread that the scheduler holds off
    its core, while the team's caller takes over such a thread's chunk.  It
    then runs one thread per CPU and one per busy core of the others, at
    most two per CPU (``benchmarks/region_waits.py``: beside one busy
    process on 2 cores, 3 threads did best); a limit on OpenMP's threads
    (``OMP_NUM_THREADS``, threadpoolctl) caps it as it caps OpenMP.
    """
    if n_jobs is not None or not openmp_enabled() or not _TEAM_AVAILABLE:
        return 0
    taken = taken_cores(_LOAD.others_busy())
    if taken < 1:
        return 0
    n_cpus = cpu_count()
    max_threads = max(1, openmp_max_threads())
    cap = 2 * n_cpus if _limit_is_default(max_threads, n_cpus) else max_threads
    n = min(cap, n_cpus + taken)
    return n if n > 1 else 0


# fm_team.h's threads need Linux's futexes (elsewhere it runs serially).
_TEAM_AVAILABLE = sys.platform.startswith("linux")


def _limit_is_default(max_threads, n_cpus):
    """True when nobody has limited OpenMP's threads below its default (one
    per CPU): then a call with large work may run more threads than CPUs
    when others hold some (:func:`threads_for_load`).  ``OMP_NUM_THREADS``
    counts as a limit whatever its value; a threadpoolctl limit equal to the
    CPU count cannot be told from the default."""
    return max_threads >= n_cpus and not _omp_num_threads_set()


try:
    # os.environ's own store, keyed as it stores keys: the default thread
    # count is resolved on every kernel call, and ``key in os.environ``
    # costs half a microsecond (it encodes the key each time).
    _ENVIRON_STORE = os.environ._data
    _OMP_NUM_THREADS_KEY = os.environ.encodekey("OMP_NUM_THREADS")
except AttributeError:  # not CPython's os._Environ
    _ENVIRON_STORE = None


def _omp_num_threads_set():
    if _ENVIRON_STORE is None:
        return "OMP_NUM_THREADS" in os.environ
    return _OMP_NUM_THREADS_KEY in _ENVIRON_STORE


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


@functools.lru_cache(maxsize=1)
def _blas_controller():
    # The BLAS part of the controller made once (selecting costs 4 us, and
    # every fit and many kernel calls hold BLAS to one thread).
    return _controller().select(user_api="blas")


# The BLAS hold is process-wide (BLAS's thread count is), and fits may run
# in several Python threads at once: the first holder sets one thread, the
# last one to leave gives the count back.  (Each holder setting and
# restoring the limit on its own would let the first fit to finish lift the
# hold under a fit still running, or restore a count of 1 for good.)
_BLAS_HOLD_LOCK = threading.Lock()
_blas_hold = {"holders": 0, "limiter": None}


@contextlib.contextmanager
def single_threaded_blas():
    """Hold BLAS to one thread while our OpenMP threads call it.

    Each OpenMP thread of a kernel may call GEMM on its own block; a
    multithreaded BLAS underneath would oversubscribe the cores.  Nested
    and concurrent holds (fits in several threads) share one limit, set by
    the first and lifted when the last ends.
    """
    with _BLAS_HOLD_LOCK:
        if _blas_hold["holders"] == 0:
            controller = _blas_controller()
            if not all(lib.num_threads == 1 for lib in controller.lib_controllers):
                _blas_hold["limiter"] = controller.limit(limits=1)
        _blas_hold["holders"] += 1
    try:
        yield
    finally:
        with _BLAS_HOLD_LOCK:
            _blas_hold["holders"] -= 1
            if _blas_hold["holders"] == 0 and _blas_hold["limiter"] is not None:
                _blas_hold["limiter"].restore_original_limits()
                _blas_hold["limiter"] = None


@contextlib.contextmanager
def limited_openmp(n_threads):
    """Hold every loaded OpenMP runtime (ours and scikit-learn's own) to
    ``n_threads`` within the block: scikit-learn's k-means takes its thread
    count from OpenMP's limit.

    threadpoolctl's ``threadpool_limits`` scans the loaded libraries on each
    call (about a millisecond); the controller made once is reused instead.
    ``import fastmetric`` loads both runtimes before it is made.
    """
    with _controller().limit(limits=int(n_threads), user_api="openmp"):
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
# scheduler's time slices, and the kernels' threads meet at barriers
# (threads_for_load).  Two measures of the others' load, over the last
# window, the larger counts:
#
# * CPU time: the CPU time that the machine spent busy on our CPUs, less the
#   CPU time of this process, per second of wall time (/proc/stat).  This
#   is what the others got, not what they wanted: while two threads of ours
#   share 2 cores with two busy processes, those get 1 core between them.
# * Runnable threads: the threads that want a CPU now (/proc/loadavg), less
#   the threads of this process that do, sampled at the calls (at most once
#   per RUNNABLE_GAP); the lower median over the window counts.  A process
#   that woke for a moment at one sample does not count (a busy process is
#   runnable at every sample; one that runs on and off shows in the CPU
#   time), nor does one sample that missed a busy process (the count and
#   our own threads are read one after the other, and one of our threads
#   may wake in between).  Between kernel calls our worker threads sleep, so
#   this is what the others want.  The count is the whole machine's: it is
#   used only when this process may run on every CPU (not in a cpuset that
#   leaves out others' busy CPUs).
#
# Where neither is readable (not Linux), no load is assumed: the thread
# count is then OpenMP's limit.

# Shortest window (seconds) over which the busy time is measured: /proc/stat
# counts in clock ticks (10 ms), so shorter windows are mostly rounding.
LOAD_WINDOW = 0.25
# Shortest time (seconds) between two samples of the runnable threads.  A
# sample costs 20-70 us on a quiet machine and up to 0.4 ms beside busy
# processes (it reads /proc/loadavg and each of our threads' stat); with a
# gap of 5 ms, back-to-back kernel calls of 6 ms (pairwise distances of
# 2,000 x 500 points) beside one busy process paid 8 % for it, and with
# 20 ms a ClusterLDML fit on breast cancer that ran the n_jobs=1
# computation beside one busy process still paid 1 % (median of 41 pairs).
# A window (LOAD_WINDOW) then holds up to 5 samples.
RUNNABLE_GAP = 0.1
# Cores' worth of others' load at or above which a core counts as theirs
# (rounding half up).
BUSY_CORE_CUT = 0.5
# Multiply-adds per parallel region from which a call gains from threads on
# the cores that others hold (see threads_for_load).  Measured on 2 cores
# with one busy process: NCA on digits (1797^2 x 64 = 2.1e8 per gradient)
# took 515 ms on 1 thread, 392-412 ms on 4; on breast cancer (569^2 x 30 =
# 9.7e6) 51 ms on 1 and 56-64 ms on 2-4, as LMNN and LDML_Supervised on
# both data sets, whose regions are smaller still.
LARGE_WORK = 50_000_000
# Multiply-adds per parallel region from which a call with no core free
# takes a share of the taken cores as a large one does; below it, one
# thread.  Measured on 2 cores beside two busy processes (medians; the
# README's Threads section): LDML_Supervised on breast cancer (about 8.5e5
# per evaluation) took 33-39 ms on 1 thread and 53-60 ms on 2-4, LMNN there
# (5e5) 92-113 ms on 1 and 102-125 ms on 2-4; NCA there (9.7e6) 205-231 ms
# on 1 and 165-192 ms on 2-4, LDML_Supervised on digits (9.7e6) 225 ms on 1
# and 188-197 ms on 2-4, LMNN on digits (7.4e6) 854 and 748-788 ms.
MEDIUM_WORK = 3_000_000


def taken_cores(others_busy):
    """Cores that other processes hold: their load (cores' worth, None when
    unknown) rounded half up at ``BUSY_CORE_CUT``."""
    if others_busy is None or others_busy <= 0:
        return 0
    return int(others_busy + (1.0 - BUSY_CORE_CUT))


# A pure function of its arguments, called on every kernel call of a
# default fit with the same few arguments: its answers are kept.
@functools.lru_cache(maxsize=1024)
def threads_for_load(max_threads, n_cpus, others_busy, work=None, extra_allowed=False,
                     static=False):
    """Threads to use when other processes keep ``others_busy`` cores busy.

    The scheduler shares a core between the threads that want it, one time
    slice each, and the kernels' threads meet at the end of every parallel
    region: a thread of ours on a core that another process wants waits
    for its turn there, and the others wait for it.  So:

    * ``taken = round(others_busy)`` cores are the others'; with none, the
      answer is ``max_threads``.
    * A call with little work per region (``work`` None or below
      ``LARGE_WORK``) runs on the ``n_cpus - taken`` free cores, alone on
      each.  When there is no free core, a call of ``work`` below
      ``MEDIUM_WORK``, or that gives no ``work``, runs on one thread (its
      regions are too short for the waits at their ends to pay for a share
      of the taken cores), and one of ``MEDIUM_WORK`` or more as a large
      call (below); all on one thread once the others want twice the cores
      (then the waits at the region ends cost more than the shares bring:
      2 threads 15-40 % slower than 1 at a load average of 16 on 2 cores).
      A call that gives no ``work`` used to run ``n_cpus`` threads there:
      beside two busy processes on 2 cores, LSML_Supervised on digits then
      took 116 ms against 19 ms on one thread (median of 9; MMC_Supervised
      149 against 111 ms).
    * A call with large work per region runs ``n_cpus + 2 taken`` threads
      (at most ``2 n_cpus``): the scheduler gives each runnable thread about
      the same share, so with one busy process on 2 cores 4 threads of ours
      get 1.6 cores, 3 get 1.5 and 2 get 1-1.5 (two of them may share a
      core), and the dynamic chunk schedules let the threads that run take
      more chunks.  The waits at the region ends for a thread that is not
      running take part of that share back.  Measured there, NCA on digits:
      392-412 ms on 4 threads, 427-442 ms on 3, 465 ms on 2, 515 ms on 1
      (279 ms on 2 threads on the quiet machine).  This may exceed
      ``max_threads`` only when ``extra_allowed`` (no user limit on
      OpenMP's threads).
    * A call whose regions split the work into equal fixed shares
      (``static``, e.g. scikit-learn's k-means) keeps to the free cores
      (at least one thread), whatever its work: there the thread on a
      shared core holds up the others at every region's end (ClusterLDML
      on breast cancer with two busy processes: 575 ms when its k-means
      ran 2 threads, 145 ms on 1).

    Parameters
    ----------
    max_threads : int
        The most threads allowed (OpenMP's limit, ``OMP_NUM_THREADS``,
        threadpoolctl).
    n_cpus : int
        CPUs this process may run on.
    others_busy : float or None
        Cores' worth of load that other processes put on our CPUs lately
        (None: unknown, taken as no load).
    work : int, optional
        Multiply-adds in one parallel region of the call; None: small.
    extra_allowed : bool, default=False
        Whether a call with large work may run more than ``max_threads``.
    static : bool, default=False
        Whether the call splits its work in equal fixed shares.

    Returns
    -------
    n_threads : int
        At least 1.
    """
    max_threads = max(1, int(max_threads))
    n_cpus = max(1, int(n_cpus))
    taken = taken_cores(others_busy)
    if taken == 0:
        return max_threads
    free = n_cpus - taken
    if static:
        return max(1, min(max_threads, free))
    # With no core free (and others wanting less than twice the cores), a
    # medium call gains from a share of the taken cores as a large one does.
    no_free_core = free < 1 and taken < 2 * n_cpus
    if work is not None and (work >= LARGE_WORK or (no_free_core and work >= MEDIUM_WORK)):
        cap = 2 * n_cpus if extra_allowed else max_threads
        return max(1, min(cap, n_cpus + 2 * taken))
    if free >= 1:
        return max(1, min(max_threads, free))
    return 1


def multiply_adds(*products):
    """The ``work`` of a call for :func:`effective_n_threads`: the sum of the
    products of each tuple of sizes, e.g. ``multiply_adds((n, d, d), (P, d))``
    for n d^2 + P d.

    Returns
    -------
    work : int or None
        None when a size is not known (NaN: a dask array with unknown
        chunks), which counts as a small call.
    """
    total = 0
    for sizes in products:
        term = 1
        for size in sizes:
            if not math.isfinite(size):
                return None
            term *= int(size)
        total += term
    return total


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


def _read_proc_text(path):
    """The text of a /proc file, by os.read on a descriptor (a fraction of
    the cost of a text-mode open(); these are read during fits)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", errors="replace")


def cpu_sample():
    """``(wall, busy_cpu_seconds, own_cpu_seconds)`` now, or None where
    /proc/stat or the affinity cannot be read."""
    try:
        cpus = os.sched_getaffinity(0)
        ticks = os.sysconf("SC_CLK_TCK")
        text = _read_proc_text("/proc/stat")
    except (AttributeError, OSError, ValueError):
        return None
    busy = parse_proc_stat(text, cpus, ticks)
    if busy is None:
        return None
    own = os.times()
    return (time.monotonic(), busy, own.user + own.system)


def parse_running(loadavg_text):
    """Threads that want a CPU now, from the text of /proc/loadavg (its
    fourth field, ``running/total``)."""
    return int(loadavg_text.split()[3].split("/")[0])


def own_running_threads(task_dir="/proc/self/task"):
    """Threads of this process that want a CPU now (the caller included):
    those whose stat under ``task_dir`` says runnable.  Read in C
    (:func:`fastmetric.kernels.openmp_helpers.running_tasks`): in Python a
    sample cost about 0.2 ms inside a fit beside a busy process."""
    n = running_tasks(task_dir)
    if n < 0:
        raise OSError(f"cannot read the threads' states under {task_dir!r}")
    return n


def runnable_others():
    """Threads of other processes that want a CPU now, or None where it
    cannot be read or would count CPUs outside this process's (a cpuset
    smaller than the machine)."""
    try:
        if cpu_count() != _MACHINE_CPUS:
            return None
        running = parse_running(_read_proc_text("/proc/loadavg"))
        if running <= 1:  # the caller itself: no need to list our threads
            return 0
        return max(0, running - own_running_threads())
    except (AttributeError, OSError, ValueError, IndexError):
        return None


class LoadEstimate:
    """The load of other processes, measured between calls.

    Each call of :meth:`others_busy` samples the runnable threads of others
    (at most once per ``RUNNABLE_GAP``).  A call within ``LOAD_WINDOW`` of
    the CPU-time sample that the current window started from returns the
    last estimate without reading /proc/stat (the kernels resolve their
    thread count on every call, and a window of a few clock ticks would be
    rounding); a later call takes a new CPU-time sample, and the new
    estimate is the larger of the others' CPU time per second over the
    window and the lower median of its samples of others' runnable threads.
    The first samples are taken when the object is made (at import).

    Parameters
    ----------
    sample : callable
        Returns a sample as :func:`cpu_sample` does (or None).
    clock : callable
        The wall clock of the samples (``time.monotonic``).
    runnable : callable
        Returns the runnable threads of others now, as
        :func:`runnable_others` does (or None).
    """

    def __init__(self, sample=cpu_sample, clock=time.monotonic, runnable=runnable_others):
        self._sample = sample
        self._clock = clock
        self._runnable = runnable
        self._start = sample()
        self._busy = None
        self._runnable_samples = []
        self._last_runnable = None
        self._take_runnable(clock())

    def _take_runnable(self, now):
        if self._last_runnable is not None and now - self._last_runnable < RUNNABLE_GAP:
            return
        self._last_runnable = now
        value = self._runnable()
        if value is not None:
            self._runnable_samples.append(value)

    def others_busy(self):
        """Cores' worth of load that other processes put on our CPUs lately
        (the larger of their CPU time and their runnable threads), or None
        when unknown."""
        now_clock = self._clock()
        self._take_runnable(now_clock)
        if self._start is not None and now_clock - self._start[0] < LOAD_WINDOW:
            return self._busy
        now = self._sample()
        if now is None or self._start is None:
            self._start = now
            self._runnable_samples = []
            return self._busy
        busy = busy_cores_of_others(self._start, now)
        if busy is not None:
            if self._runnable_samples:
                busy = max(busy, float(statistics.median_low(self._runnable_samples)))
            self._busy = busy
            self._start = now
            self._runnable_samples = []
        return self._busy


_LOAD = LoadEstimate()

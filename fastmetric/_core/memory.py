"""Memory: a check that an allocation can fit, and heap reuse in a loop.

Some requests are impossible on any machine (``max_rounds=10**12`` asks for
a table of 16 TB of seeds).  With memory overcommit an allocation of that
size may even succeed at first and fail, or bring the machine to a halt,
only when it is touched: :func:`check_memory` refuses it up front, with a
message that names the parameter and the size.

:func:`heap_kept_for_reuse` is for loops that allocate and free the same
large temporaries many times (the numpy code of the minibatch objectives).
glibc's malloc serves blocks of 128 KiB and more from fresh memory maps and
returns them to the system on ``free``, unless it has seen such frees
before: it then raises that threshold by itself, up to 32 MiB, and reuses
its heap.  Setting any of ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``MALLOC_MMAP_MAX_``
turns that adaptation off, and Dask's workers start with
``MALLOC_TRIM_THRESHOLD_=65536``.  Every temporary then costs a map, a page
fault per 4 KiB page on first touch and an unmap: an NCA minibatch fit of
200,000 rows took 2.2 million page faults and 2x the time in such a
process (5.3 s against 2.8 s), and 5,600 faults with the adaptation on.
"""
import contextlib
import ctypes
import functools
import os
import threading

__all__ = ["check_memory", "heap_kept_for_reuse", "physical_memory", "startup_environment"]


def physical_memory():
    """Bytes of physical memory of this machine, or None when unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None


def check_memory(n_bytes, what):
    """Raise MemoryError when ``n_bytes`` exceed the machine's physical memory.

    Parameters
    ----------
    n_bytes : int
        Size of the allocation (a Python int: no overflow).
    what : str
        What asks for it, for the message (e.g. ``"max_rounds=10**12 (a seed
        table of max_rounds + 1 rows)"``).
    """
    total = physical_memory()
    if total is not None and int(n_bytes) > total:
        raise MemoryError(
            f"{what} needs {int(n_bytes) / 2**30:.4g} GiB, more than this machine's "
            f"{total / 2**30:.4g} GiB of memory; ask for less."
        )


# glibc's mallopt parameters (malloc.h) and the environment variables that
# set them at start-up; setting any of them turns off the adaptive mmap
# threshold.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_FIXED_HEAP_VARIABLES = (
    "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
)
# glibc's start-up values of both thresholds, and the largest mmap threshold
# its adaptation reaches on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
_GLIBC_DEFAULT_THRESHOLD = 128 << 10
_REUSE_MMAP_THRESHOLD = 32 << 20
# Free memory at the heap's top kept while the loop runs: more than the
# temporaries of one step, so that they are not unmapped between steps.
_REUSE_TRIM_THRESHOLD = 256 << 20

_heap_lock = threading.Lock()
_heap_users = 0


def startup_environment():
    """The environment this process started with (Linux), else None.

    Not ``os.environ``: glibc reads its tuning variables once, at start-up,
    and a library may add them to ``os.environ`` later for its child
    processes (Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` in the process
    that starts a ``LocalCluster``), which does not tune this process.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return None
    env = {}
    for entry in entries:
        name, sep, value = entry.partition(b"=")
        if sep:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


@functools.cache  # a property of the process: decided at the first call
def _tuned_glibc():
    """``(libc, trim threshold, mmap threshold)`` when this process runs on
    glibc and was started with its malloc tuned by environment variables
    (the thresholds being those it started with); else None."""
    env = startup_environment()
    if env is None or not any(variable in env for variable in _FIXED_HEAP_VARIABLES):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: no search, no subprocess
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it; musl has no mallopt)
        libc.mallopt  # noqa: B018
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None

    def threshold(variable):
        try:
            return int(env[variable])
        except (KeyError, ValueError):
            return _GLIBC_DEFAULT_THRESHOLD

    return libc, threshold("MALLOC_TRIM_THRESHOLD_"), threshold("MALLOC_MMAP_THRESHOLD_")


@contextlib.contextmanager
def heap_kept_for_reuse():
    """Let glibc reuse its heap for large temporaries inside the block.

    Where the process was started with glibc's malloc tuned by environment
    variables (``MALLOC_TRIM_THRESHOLD_`` and the like, as Dask starts its
    workers), glibc maps and unmaps every block of 128 KiB or more; a loop
    that allocates large temporaries then spends its time in page faults.
    Inside the block the thresholds are those that glibc's own adaptation
    would reach (blocks up to 32 MiB come from the heap; up to 256 MiB of
    free heap is kept).  On leaving the last such block, the start-up
    thresholds are set back and the free heap is returned to the system
    (``malloc_trim``), so that the process keeps the memory footprint its
    settings ask for.  Elsewhere (not started with such a variable, or not
    glibc) it does nothing: glibc's adaptation, or the platform's
    allocator, already reuses memory.

    The thresholds are the process's, so nested and concurrent blocks
    share them: the first to enter raises them and the last to leave puts
    them back.
    """
    global _heap_users
    tuned = _tuned_glibc()
    if tuned is None:
        yield
        return
    libc, trim_threshold, mmap_threshold = tuned
    with _heap_lock:
        if _heap_users == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, _REUSE_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _REUSE_TRIM_THRESHOLD)
        _heap_users += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
                libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
                libc.malloc_trim(0)

"""Thread-count resolution and BLAS/OpenMP coordination."""
import contextlib
import numbers
import os

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
        and threadpoolctl limits are respected). ``-1``: every CPU of this
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
        return max(1, openmp_max_threads())
    if n_jobs < 0:
        return max(1, cpu_count() + 1 + int(n_jobs))
    return int(n_jobs)


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

# Python-visible facts about the OpenMP runtime this package was built with,
# and the runnable threads of this process (for the load estimate).
from fastmetric.kernels.common cimport FM_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(FM_OPENMP_ENABLED)


def openmp_max_threads():
    """``omp_get_max_threads()`` as seen now (1 in a serial build).

    It reflects ``OMP_NUM_THREADS`` and any limit set by threadpoolctl.
    """
    return omp_get_max_threads()


cdef extern from "fastmetric/kernels/include/fm_proc.h" nogil:
    int fm_count_running_tasks(const char *task_dir)


def running_tasks(task_dir="/proc/self/task"):
    """Threads among ``task_dir``'s entries whose /proc stat says runnable
    (state R), or -1 when the directory cannot be read (not Linux).

    Used by the load estimate (:mod:`fastmetric._core.threads`) to leave
    out this process's own threads; one ``read`` per thread, in C.
    """
    cdef bytes path = task_dir.encode() if isinstance(task_dir, str) else bytes(task_dir)
    return fm_count_running_tasks(path)

"""The process's one team of fm_team.h (see team.pxd and the header).

Kernel modules cimport :func:`team_run` and :func:`team_released`; from
Python, a kernel hands what a finished job's context pointed to
(arrays that a helper late in that job may still read) to
:func:`team_keep`, which holds them until no helper can read them.
"""
import atexit
import time

from libc.stdint cimport int64_t, uint64_t

cdef extern from "fastmetric/kernels/include/fm_team.h" nogil:
    int64_t fm_team_run(const fm_team_job *job, int n_threads)
    int fm_team_released(uint64_t gen)


cdef int64_t team_run(const fm_team_job *job, int n_threads) noexcept nogil:
    return fm_team_run(job, n_threads)


cdef bint team_released(uint64_t generation) noexcept nogil:
    return fm_team_released(generation) != 0


# What the team's jobs point to, kept until no helper can read it any more:
# (generation, objects) pairs.
_HELD = []


def team_keep(generation, *objects):
    """Keep ``objects`` referenced until the team has released job
    ``generation`` (a helper off its core may still read them); drop what
    earlier jobs kept and the team has released since.

    Parameters
    ----------
    generation : int
        What the job's run returned (0: it ran alone, nothing is kept).
    *objects
        The arrays (or their owners) that the job's context points into.
    """
    global _HELD
    _HELD = [(g, objs) for g, objs in _HELD if not team_released(g)]
    if generation > 0 and not team_released(generation):
        _HELD.append((generation, objects))


def team_held():
    """How many jobs' inputs are still kept for late helpers."""
    return len(_HELD)


def _release_at_exit(timeout=1.0):
    """Wait, at most ``timeout`` seconds, until no helper can read what the
    jobs kept (the interpreter frees it on the way out; a helper that the
    scheduler kept off its core finishes its dropped chunk within a time
    slice once it runs).  True when nothing is kept any more."""
    global _HELD
    deadline = time.monotonic() + timeout
    while True:
        _HELD = [(g, objs) for g, objs in _HELD if not team_released(g)]
        if not _HELD or time.monotonic() >= deadline:
            return not _HELD
        time.sleep(0.001)


atexit.register(_release_at_exit)

# Python-visible facts about the OpenMP runtime this package was built with.
from fastmetric.kernels.common cimport FM_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(FM_OPENMP_ENABLED)


def openmp_max_threads():
    """``omp_get_max_threads()`` as seen now (1 in a serial build).

    It reflects ``OMP_NUM_THREADS`` and any limit set by threadpoolctl.
    """
    return omp_get_max_threads()

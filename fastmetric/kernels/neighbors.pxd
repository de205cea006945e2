# nogil entry points of the exact neighbour search (see neighbors.pyx for the
# method).  Other Cython code may cimport them; the caller allocates every
# array and holds BLAS to one thread while they run.
from libc.stdint cimport int64_t

from fastmetric.kernels.common cimport floating


cdef bint panels_in_use() noexcept nogil


cdef void pack_database(
    const floating[:, ::1] Z,
    bint panels,
    floating *P,
    floating *zlo,
    int n_threads,
) noexcept nogil


cdef int knn_search(
    const floating[:, ::1] Q,
    const floating[:, ::1] Z,
    Py_ssize_t k,
    bint exclude_self,
    Py_ssize_t self_shift,
    double[:, ::1] out_dist,
    int64_t[:, ::1] out_idx,
    int n_threads,
) noexcept nogil

# nogil kernel of the weighted scatter of pair differences (see _pair_scatter.pyx).
from fastmetric.kernels.common cimport floating


cdef int pair_scatter_nogil(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    const double[::1] w,
    double[:, ::1] out,
    int method,
    int n_threads,
) noexcept nogil

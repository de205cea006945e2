# nogil Mahalanobis distance kernels (see _distances.pyx for the math).
# Other Cython code may cimport these; all arrays are allocated by the caller.
from fastmetric.kernels.common cimport floating


cdef bint transform_rows(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
    bint check_finite=*,
) noexcept nogil


cdef void transform_selected_rows(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] rows,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void row_sq_norms(
    const floating[:, ::1] Z,
    floating[::1] out,
    int n_threads,
) noexcept nogil


cdef void pairwise_sq_dist_transformed(
    const floating[:, ::1] XL,
    const floating[::1] x_sq_norms,
    const floating[:, ::1] YL,
    const floating[::1] y_sq_norms,
    floating[:, ::1] out,
    bint same_rows,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void paired_sq_dist_transformed(
    const floating[:, ::1] XL,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    floating[::1] out,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void paired_sq_dist_direct(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    floating[::1] out,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil

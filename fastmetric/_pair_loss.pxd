# nogil kernel of the LDML log-loss over pairs (see _pair_loss.pyx).
from fastmetric._common cimport floating


cdef void build_endpoint_index(
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    const Py_ssize_t[::1] point_rows,
    bint identity_rows,
    Py_ssize_t[::1] offsets,
    Py_ssize_t[::1] incident_pair,
    Py_ssize_t[::1] incident_row,
) noexcept nogil


cdef void ldml_pair_terms(
    const floating[:, ::1] XL,
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    const double[::1] targets,
    const double[::1] weights,
    bint has_weights,
    double bias,
    double[::1] pair_grad,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void laplacian_times_points(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] point_rows,
    bint identity_rows,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] incident_pair,
    const Py_ssize_t[::1] incident_row,
    const double[::1] pair_grad,
    floating[:, ::1] G,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil

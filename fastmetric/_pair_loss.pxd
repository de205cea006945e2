# nogil kernels of the LDML log-loss over pairs (see _pair_loss.pyx).
from fastmetric._common cimport floating


cdef void build_endpoint_index(
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    Py_ssize_t[::1] offsets,
    Py_ssize_t[::1] incident_other,
    Py_ssize_t[::1] incident_code,
    Py_ssize_t[:, ::1] cursor,
    int n_threads,
) noexcept nogil


cdef void ldml_point_pass(
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] incident_other,
    const Py_ssize_t[::1] incident_code,
    const double[::1] targets,
    const double[::1] weights,
    bint has_weights,
    double bias,
    floating[:, ::1] H,
    bint compute_gradient,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil

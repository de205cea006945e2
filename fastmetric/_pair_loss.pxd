# nogil kernels of the LDML log-loss over pairs (see _pair_loss.pyx).
from fastmetric._common cimport floating


# One entry of the per-point index of incident pairs: the pair's other end,
# ``code = 2 p + side`` (side 0 when the point is the pair's first end), and
# the pair's target and weight, so that a pass over a point's entries reads
# them in sequence (the numpy dtype is ``_pair_loss.INCIDENT_ENTRY``).
cdef struct IncidentEntry:
    Py_ssize_t other
    Py_ssize_t code
    double target
    double weight


cdef void build_endpoint_index(
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    const double[::1] targets,
    const double[::1] weights,
    bint has_weights,
    Py_ssize_t[::1] offsets,
    IncidentEntry[::1] entries,
    Py_ssize_t[:, ::1] cursor,
    int n_threads,
) noexcept nogil


cdef void ldml_point_pass(
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const IncidentEntry[::1] entries,
    double bias,
    floating[:, ::1] H,
    bint compute_gradient,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil

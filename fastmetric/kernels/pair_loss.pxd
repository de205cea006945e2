# nogil kernels of the LDML log-loss over pairs (see _pair_loss.pyx).
from fastmetric.kernels.common cimport floating


# The per-point index of incident pairs is a CSR structure: point u's
# entries are ``offsets[u] <= e < offsets[u + 1]``, one per pair that has u
# as an end, in increasing pair order.  Entry e is one 64-bit key,
#
#     keys[e] = (other << ENTRY_SHIFT) | (target_bit << 1) | side,
#
# with ``other`` the pair's other end and ``side`` 0 when u is the pair's
# first end.  Eight bytes per entry keep the index small: it is written at
# random places once and read in sequence at every evaluation.  The target
# fits in the key when it is 0 or 1 and the pairs are unweighted (the usual
# case); otherwise each entry also has a PairValues record in a parallel
# array (and the target bit is 0).
cdef enum:
    ENTRY_SHIFT = 2


cdef struct PairValues:
    double target
    double weight


cdef void build_endpoint_index(
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    const double[::1] targets,
    const double[::1] weights,
    bint has_weights,
    Py_ssize_t[::1] offsets,
    Py_ssize_t[::1] keys,
    PairValues[::1] values,
    Py_ssize_t[:, ::1] cursor,
    int n_threads,
) noexcept nogil


cdef void ldml_point_pass(
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] keys,
    const PairValues[::1] values,
    double bias,
    floating[:, ::1] H,
    bint compute_gradient,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil

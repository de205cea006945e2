# nogil kernels of LMNN (see lmnn.pyx for the math).
#
# Every kernel works on the points sorted by class (rows of one class are
# contiguous), with int (32-bit) point and pair indices and outputs
# allocated by the caller.  Work is split into chunks whose boundaries
# depend on the data sizes only, and per-chunk partial sums are merged in
# chunk order, so results do not depend on the number of threads.
from fastmetric.kernels.common cimport floating


# A growable list of candidate pairs (a, b), a < b, owned by one row block
# of the impostor search.
cdef struct PairBuffer:
    int *a
    int *b
    Py_ssize_t size
    Py_ssize_t capacity


cdef void target_neighbors(
    const floating[:, ::1] Z,
    const double[::1] sq_norms,
    const Py_ssize_t[::1] item_start,
    const Py_ssize_t[::1] item_stop,
    const Py_ssize_t[::1] item_col_start,
    const Py_ssize_t[::1] item_col_stop,
    const int[::1] n_targets,
    int[:, ::1] targets,
    double[:, ::1] target_dist,
    Py_ssize_t col_chunk,
    int n_threads,
) noexcept nogil


cdef int search_row_block(
    const floating[:, ::1] Z,
    const double[::1] sq_norms,
    const Py_ssize_t[::1] class_end,
    const double[::1] rho,
    double tol_rel,
    double tol_thr,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t col_chunk,
    floating *gemm_buf,
    PairBuffer *out,
    long long *global_count,
    long long budget,
) noexcept nogil


cdef void target_distances(
    const floating[:, ::1] Z,
    const int[:, ::1] targets,
    const int[::1] n_targets,
    double[:, ::1] Dt,
    double[::1] radius,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


# The triplet graph of one evaluation as raw row-major arrays (a struct
# cannot hold memoryviews; ``target_graph`` fills it from them): row i's
# targets and their count, their squared distances Dt, the active-triplet
# count of each target pair (written by ``hinge_pass``), the radius 1 +
# max_s Dt[i, s] (-1 without targets), the incoming targets (CSR by target:
# tin_source[e] has this point as its tin_slot[e]-th target) and the
# candidate impostor pairs (CSR: inc_other[inc_offsets[u]:inc_offsets[u + 1]],
# NULL on the dense path, which has no candidate set).
cdef struct TargetGraph:
    const int *targets
    Py_ssize_t targets_stride
    const int *n_targets
    const double *Dt
    Py_ssize_t Dt_stride
    const double *radius
    int *active
    Py_ssize_t active_stride
    const Py_ssize_t *tin_offsets
    const int *tin_source
    const int *tin_slot
    const Py_ssize_t *inc_offsets
    const int *inc_other


cdef TargetGraph target_graph(
    const int[:, ::1] targets,
    const int[::1] n_targets,
    const double[:, ::1] Dt,
    const double[::1] radius,
    int[:, ::1] active,
    const Py_ssize_t[::1] tin_offsets,
    const int[::1] tin_source,
    const int[::1] tin_slot,
    const Py_ssize_t[::1] inc_offsets,
    const int[::1] inc_other,
) noexcept


cdef void hinge_pass(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    double[::1] chunk_loss,
    long long[::1] chunk_active,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void laplacian_embedded(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    floating[:, ::1] G,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil


cdef void gradient_partials(
    const floating[:, ::1] G,
    const floating[:, ::1] X,
    floating[:, :, ::1] partials,
    Py_ssize_t block,
    int n_threads,
) noexcept nogil

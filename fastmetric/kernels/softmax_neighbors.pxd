# nogil kernels of the stochastic-neighbour learners NCA and MLKR
# (see _softmax_neighbors.pyx for the math).  All arrays are allocated by the
# caller; other Cython code may cimport these.
from fastmetric.kernels.common cimport floating


cpdef double screening_margin_scale(Py_ssize_t k) noexcept nogil


cdef double row_softmax_weights(
    Py_ssize_t i,
    const int *idx,
    double *val,
    Py_ssize_t cnt,
    const Py_ssize_t[::1] labels,
    const double[::1] targets,
    bint regression,
    double *col_sums,
    double *row_sum,
    Py_ssize_t *n_window,
    Py_ssize_t *nearest,
) noexcept nogil


cdef void scan_chunk_candidates(
    const float[:, ::1] ZL,
    const float[:, ::1] ZR,
    const double[::1] z_sq_norms,
    double margin_scale,
    double z_sq_max,
    double screen_scale,
    Py_ssize_t start,
    Py_ssize_t stop,
    float *screen_buf,
    int *index_buf,
    const int **row_lists,
    Py_ssize_t *row_cnt,
) noexcept nogil


cdef Py_ssize_t chunk_from_candidates(
    const floating[:, ::1] Z,
    const floating[:, ::1] X,
    const Py_ssize_t[::1] labels,
    const double[::1] targets,
    bint regression,
    Py_ssize_t start,
    Py_ssize_t stop,
    const int **row_lists,
    const Py_ssize_t *row_cnt,
    double *val_buf,
    floating *dist_buf,
    double *row_acc,
    floating[:, ::1] A,
    double[::1] row_sums,
    double *col_sums,
    Py_ssize_t[::1] nearest,
    double *loss_out,
) noexcept nogil


# The scalar settings of one softmax_neighbors_pass: MLKR (``regression``)
# or NCA; the float32 screening's scale; whether the candidates come from
# the tile strategy; rows per chunk and chunks per group (which fix every
# sum's order).
cdef struct SoftmaxPassOptions:
    bint regression
    double screen_scale
    bint use_tiles
    Py_ssize_t chunk_size
    Py_ssize_t chunks_per_group


cdef int softmax_neighbors_pass(
    const floating[:, ::1] Z,
    const float[:, ::1] ZL,
    const float[:, ::1] ZR,
    const double[::1] z_sq_norms,
    const floating[:, ::1] X,
    const Py_ssize_t[::1] labels,
    const double[::1] targets,
    const SoftmaxPassOptions *opts,
    const Py_ssize_t[::1] cand_offsets,
    const int[::1] cand_index,
    floating[:, ::1] A,
    double[::1] row_sums,
    double[:, ::1] col_sums,
    double[::1] chunk_loss,
    Py_ssize_t[::1] chunk_window,
    Py_ssize_t[::1] nearest,
    int n_threads,
) noexcept nogil


cdef int tile_candidates(
    const float[:, ::1] ZL,
    const float[:, ::1] ZR,
    const float[::1] thresholds,
    const Py_ssize_t[::1] tile_rows,
    const Py_ssize_t[::1] tile_cols,
    Py_ssize_t tile,
    Py_ssize_t limit_per_thread,
    int **bufs,
    Py_ssize_t *counts,
    Py_ssize_t *capacities,
    int *overflow,
    Py_ssize_t[::1] tile_thread,
    Py_ssize_t[::1] tile_start,
    Py_ssize_t[::1] tile_stop,
    int n_threads,
) noexcept nogil

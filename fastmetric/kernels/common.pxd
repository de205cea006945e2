# Shared nogil helpers for fastmetric's kernels.
#
# Every kernel module cimports this file; other libraries' Cython code can
# cimport it too (``fastmetric.get_include()`` gives the include path).  It
# holds, in one place:
#
# * the OpenMP shim: ``omp_*`` calls that fall back to serial stubs when the
#   extension is compiled without OpenMP, so no kernel cimports ``openmp``;
# * the log-loss of a logit and its derivative, stable for any input;
# * a counter-based random generator: the n-th draw of a stream is a pure
#   function of (seed, stream, n), so parallel sampling gives the same result
#   for any number of threads;
# * a row-major GEMM wrapper over scipy's BLAS.

from libc.stdint cimport uint64_t, int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

ctypedef fused floating:
    float
    double


cdef extern from "fastmetric/kernels/include/fm_common.h" nogil:
    bint FM_OPENMP_ENABLED
    int omp_get_max_threads()
    int omp_get_thread_num()
    int omp_get_num_threads()
    double fm_logit_loss(double z, double t, double *dz)
    double fm_logit_loss_grad(double z, double t)
    uint64_t fm_mix64(uint64_t z)
    uint64_t fm_stream_key(uint64_t seed, uint64_t stream)
    uint64_t fm_random_u64(uint64_t key, uint64_t counter)
    double fm_u64_to_unit(uint64_t x)
    uint64_t fm_u64_below(uint64_t x, uint64_t m)
    bint fm_all_finite_d(const double *x, Py_ssize_t n)
    bint fm_all_finite_f(const float *x, Py_ssize_t n)
    void fm_prefetch(const void *p)
    void fm_prefetch_block(const void *p, size_t nbytes)
    enum: FM_PREFETCH_AHEAD
    double fm_diff_sq_d(const double *a, const double *b, double *diff, Py_ssize_t n)
    double fm_diff_sq_f(const float *a, const float *b, double *diff, Py_ssize_t n)
    double fm_sqdist_d(const double *a, const double *b, Py_ssize_t n)
    double fm_sqdist_f(const float *a, const float *b, Py_ssize_t n)
    double fm_sqnorm_d(const double *a, Py_ssize_t n)
    double fm_sqnorm_f(const float *a, Py_ssize_t n)
    void fm_axpy(double r, const double *x, double *y, Py_ssize_t n)
    void fm_axpy_rows(const double *r, const double *x, Py_ssize_t m, Py_ssize_t k,
                      double *acc)
    void fm_logit_batch(const double *z, const double *t, double *r, double *loss,
                        Py_ssize_t n)


cdef inline double sq_dist(const floating *a, const floating *b, Py_ssize_t n) noexcept nogil:
    """||a - b||^2 accumulated in float64."""
    if floating is float:
        return fm_sqdist_f(a, b, n)
    else:
        return fm_sqdist_d(a, b, n)


cdef inline double diff_sq_norm(const floating *a, const floating *b, double *diff,
                                Py_ssize_t n) noexcept nogil:
    """diff = a - b (float64) and its squared norm."""
    if floating is float:
        return fm_diff_sq_f(a, b, diff, n)
    else:
        return fm_diff_sq_d(a, b, diff, n)


cdef inline double sq_norm(const floating *a, Py_ssize_t n) noexcept nogil:
    """||a||^2 accumulated in float64."""
    if floating is float:
        return fm_sqnorm_f(a, n)
    else:
        return fm_sqnorm_d(a, n)


cdef inline bint all_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    """True when none of x[0..n) is NaN or infinite."""
    if floating is float:
        return fm_all_finite_f(x, n)
    else:
        return fm_all_finite_d(x, n)


cdef inline void insert_sorted(int *idx, double *dist, int kk, double e,
                               int j) noexcept nogil:
    """Insert (e, j) into a list of the kk best candidates (neighbour
    searches), kept sorted by (distance, index); the last one drops out."""
    cdef int s = kk - 1
    while s > 0 and (dist[s - 1] > e or (dist[s - 1] == e and idx[s - 1] > j)):
        dist[s] = dist[s - 1]
        idx[s] = idx[s - 1]
        s -= 1
    dist[s] = e
    idx[s] = j


cdef inline void parts_prefix_sum_ptr(Py_ssize_t *cursor, Py_ssize_t n_parts,
                                      Py_ssize_t n_buckets,
                                      Py_ssize_t *bucket_start) noexcept nogil:
    """The middle step of the parallel counting sorts (pair index, pair
    buckets, pair-scatter index), on a C-contiguous n_parts x n_buckets array.

    ``cursor[t, q]`` holds how many items of part t (a contiguous range of
    the input) go to bucket q; it becomes the position of the first of them,
    by an exclusive prefix sum in (bucket, part) order, so that part t's
    items of a bucket follow those of parts < t and the sort is stable and
    the same for any number of parts.  ``bucket_start`` (n_buckets + 1
    entries, or NULL) receives where each bucket starts, and the total.
    """
    cdef Py_ssize_t q, t, c, running = 0
    for q in range(n_buckets):
        if bucket_start != NULL:
            bucket_start[q] = running
        for t in range(n_parts):
            c = cursor[t * n_buckets + q]
            cursor[t * n_buckets + q] = running
            running += c
    if bucket_start != NULL:
        bucket_start[n_buckets] = running


cdef inline void parts_prefix_sum(Py_ssize_t[:, ::1] cursor,
                                  Py_ssize_t *bucket_start) noexcept nogil:
    """parts_prefix_sum_ptr on a typed memoryview."""
    if cursor.shape[1] == 0:
        if bucket_start != NULL:
            bucket_start[0] = 0
        return
    parts_prefix_sum_ptr(&cursor[0, 0], cursor.shape[0], cursor.shape[1], bucket_start)


cdef inline void gemm_rowmajor(
    bint trans_a, bint trans_b, int m, int n, int k,
    floating alpha, const floating *a, int lda,
    const floating *b, int ldb,
    floating beta, floating *c, int ldc,
) noexcept nogil:
    """Row-major C (m x n) = alpha * op(A) (m x k) @ op(B) (k x n) + beta * C.

    BLAS is column-major and a row-major matrix is the column-major storage
    of its transpose, so we ask BLAS for C^T = op(B)^T op(A)^T with the
    operands swapped.  lda, ldb, ldc are row strides (in elements).
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)

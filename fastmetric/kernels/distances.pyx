"""Mahalanobis distance kernels.

Under a linear map L (k x d) the squared Mahalanobis distance is
``d_M(x, y)^2 = ||L x - L y||^2`` with ``M = L^T L``.  Every kernel first
maps rows through L (``x -> L x`` costs O(k d) per row, done once per row
instead of once per pair; by the small-GEMM kernel of smallgemm.pxd where
the CPU has AVX-512F, else by BLAS) and then works in the k-dimensional
image:

* pairwise: ``||u - v||^2 = ||u||^2 + ||v||^2 - 2 u.v`` gives the whole
  block of cross products by one GEMM per chunk of rows; the result is
  clipped at 0 (rounding can make it slightly negative) and the diagonal of
  X against itself is exactly 0;
* paired: for index pairs (a_p, b_p) either sum ``(u_a - u_b)^2`` over the
  k coordinates of the transformed rows (when there are more pairs than
  rows), or gather the differences of a chunk of pairs into a thread-local
  buffer and multiply that by L^T (when there are fewer pairs than rows, so
  transforming every row would be wasted work).

Work is split into chunks of rows or pairs whose boundaries do not depend on
the number of threads, so the results do not either.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.math cimport sqrt
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

from fastmetric.kernels.common cimport (
    all_finite, floating, gemm_rowmajor, fm_prefetch_block, FM_PREFETCH_AHEAD, parts_prefix_sum,
    sq_dist, sq_norm,
)
from fastmetric.kernels.smallgemm cimport (
    rowmap, transposed_for_rowmap,
)
from fastmetric.kernels.team cimport fm_team_job, team_run
from fastmetric.kernels.team import team_keep

# Rows per GEMM block: large enough for BLAS efficiency, small enough that a
# block of the output stays in cache while it is corrected and clipped.
DEF_ROW_CHUNK = 256
# Pairs per work unit of the paired kernels.
DEF_PAIR_CHUNK = 4096
# Mapped rows per bucket of the sorted paired kernel, in bytes, and the size
# of the mapped rows above which sorting the pairs pays (they no longer fit
# in the last-level cache).
DEF_BUCKET_BYTES = 256 * 1024
DEF_SORT_ABOVE_BYTES = 16 * 1024 * 1024
cdef enum:
    # Mapped rows larger than this (bytes) are written with non-temporal
    # stores: they cannot stay in cache until they are read anyway.
    STREAM_ABOVE_BYTES = 8 * 1024 * 1024


cdef inline void _transform_block(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    const floating *lt,
    bint stream,
    floating[:, ::1] XL,
    Py_ssize_t start,
    Py_ssize_t size,
) noexcept nogil:
    """XL[start:start+size] = X[start:start+size] @ L.T.

    With ``lt`` (L^T from transposed_for_rowmap) by the small-GEMM kernel,
    else by one BLAS GEMM.
    """
    if lt != NULL:
        rowmap(&X[start, 0], X.shape[1], size, X.shape[1], lt, L.shape[0],
               &XL[start, 0], L.shape[0], stream)
        return
    gemm_rowmajor(False, True, <int> size, <int> L.shape[0], <int> X.shape[1],
                  <floating> 1.0, &X[start, 0], <int> X.shape[1],
                  &L[0, 0], <int> L.shape[1],
                  <floating> 0.0, &XL[start, 0], <int> L.shape[0])


cdef inline bint _stream_output(floating[:, ::1] XL) noexcept nogil:
    """Whether the mapped rows go out with non-temporal stores: a large
    output whose rows start on cache lines (the stores need that)."""
    cdef Py_ssize_t row_bytes = XL.shape[1] * sizeof(floating)
    return (XL.shape[0] * row_bytes > STREAM_ABOVE_BYTES
            and row_bytes % 64 == 0
            and (<size_t> &XL[0, 0]) % 64 == 0)


cdef bint transform_rows(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
    bint check_finite=False,
) noexcept nogil:
    """XL = X @ L.T, chunk by chunk of rows (small-GEMM kernel or BLAS).

    With ``check_finite``, returns False when X holds a NaN or an infinity:
    each chunk of X is scanned right after its GEMM, while it is still in
    cache, so the check costs no extra pass over memory.  Otherwise (and
    for finite X) returns True.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, size
    cdef Py_ssize_t n_bad = 0
    cdef floating *lt
    cdef bint stream
    if n == 0:
        return True
    lt = transposed_for_rowmap(L)
    stream = _stream_output(XL)
    for c in prange(n_chunks, schedule='dynamic', num_threads=n_threads):
        start = c * chunk_size
        size = min(chunk_size, n - start)
        _transform_block(X, L, lt, stream, XL, start, size)
        if check_finite and not all_finite(&X[start, 0], size * d):
            n_bad += 1
    free(lt)
    return n_bad == 0


cdef void transform_selected_rows(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] rows,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """XL[i] = L @ X[rows[i]]: rows gathered chunk by chunk into a buffer."""
    cdef Py_ssize_t m = rows.shape[0], d = X.shape[1], k = L.shape[0]
    cdef Py_ssize_t n_chunks = (m + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, size, i, j
    cdef floating *buf
    cdef floating *lt
    if m == 0:
        return
    lt = transposed_for_rowmap(L)
    with parallel(num_threads=n_threads):
        buf = <floating *> malloc(chunk_size * d * sizeof(floating))
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            size = min(chunk_size, m - start)
            for i in range(size):
                for j in range(d):
                    buf[i * d + j] = X[rows[start + i], j]
            if lt != NULL:
                rowmap(buf, d, size, d, lt, k, &XL[start, 0], k, False)
            else:
                gemm_rowmajor(False, True, <int> size, <int> k, <int> d,
                              <floating> 1.0, buf, <int> d,
                              &L[0, 0], <int> d,
                              <floating> 0.0, &XL[start, 0], <int> k)
        free(buf)
    free(lt)


cdef void row_sq_norms(
    const floating[:, ::1] Z,
    floating[::1] out,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
        out[i] = <floating> sq_norm(&Z[i, 0], k)


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
) noexcept nogil:
    """out[i, j] = ||XL[i] - YL[j]||^2 (or its root) by the GEMM expansion.

    For X against itself (``same_rows``) only the blocks on and above the
    diagonal are computed, then mirrored: half the work, and an exactly
    symmetric result.
    """
    cdef Py_ssize_t n = XL.shape[0], m = YL.shape[0], k = XL.shape[1]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, size, i, j, col0
    cdef floating v, xn
    if n == 0 or m == 0:
        return
    with parallel(num_threads=n_threads):
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            size = min(chunk_size, n - start)
            col0 = start if same_rows else 0
            # out block = -2 XL_block @ YL[col0:]^T, then add the squared norms.
            gemm_rowmajor(False, True, <int> size, <int> (m - col0), <int> k,
                          <floating> -2.0, &XL[start, 0], <int> k,
                          &YL[col0, 0], <int> k,
                          <floating> 0.0, &out[start, col0], <int> m)
            for i in range(start, start + size):
                xn = x_sq_norms[i]
                for j in range(col0, m):
                    v = out[i, j] + xn + y_sq_norms[j]
                    if v < 0:
                        v = 0
                    if take_sqrt:
                        v = sqrt(v)
                    out[i, j] = v
                if same_rows:
                    out[i, i] = 0
    if same_rows:
        for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
            # Every entry above the diagonal was computed: mirror it.
            for j in range(i):
                out[i, j] = out[j, i]


cdef inline void _paired_range(
    const floating *XL,
    Py_ssize_t k,
    const Py_ssize_t *a,
    const Py_ssize_t *b,
    const Py_ssize_t *positions,
    Py_ssize_t start,
    Py_ssize_t stop,
    bint take_sqrt,
    floating *out,
    Py_ssize_t out_offset,
) noexcept nogil:
    """out[q - out_offset] = ||XL[a[p]] - XL[b[p]]||^2 (or its root) for p
    in [start, stop), with q = positions[p] (p when ``positions`` is NULL);
    XL has rows of k."""
    cdef Py_ssize_t p
    cdef double s
    for p in range(start, stop):
        # The rows are read at random: ask for the rows of a pair a little
        # ahead so the memory latency overlaps this work.
        if p + FM_PREFETCH_AHEAD < stop:
            fm_prefetch_block(XL + b[p + FM_PREFETCH_AHEAD] * k, k * sizeof(floating))
            fm_prefetch_block(XL + a[p + FM_PREFETCH_AHEAD] * k, k * sizeof(floating))
        s = sq_dist(XL + a[p] * k, XL + b[p] * k, k)
        if take_sqrt:
            s = sqrt(s)
        out[(positions[p] if positions != NULL else p) - out_offset] = <floating> s


cdef void _paired_chunks(
    const floating[:, ::1] XL,
    const Py_ssize_t *a,
    const Py_ssize_t *b,
    const Py_ssize_t *positions,
    floating *out,
    Py_ssize_t n_pairs,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """out[positions[p]] = ||XL[a[p]] - XL[b[p]]||^2 (or its root), chunk by
    chunk in parallel; ``positions`` NULL means out[p]."""
    cdef Py_ssize_t k = XL.shape[1]
    cdef Py_ssize_t n_chunks = (n_pairs + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, stop
    if n_pairs == 0:
        return
    with parallel(num_threads=n_threads):
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_pairs)
            _paired_range(&XL[0, 0], k, a, b, positions, start, stop, take_sqrt, out, 0)


# The paired kernel on fm_team.h's team (busy machines): a chunk's distances
# go to the computing thread's scratch, then are copied to their place.
cdef struct _PairedJob:
    const void *XL                  # n x k, the output's dtype
    Py_ssize_t k
    const Py_ssize_t *a
    const Py_ssize_t *b
    void *out
    Py_ssize_t n_pairs
    Py_ssize_t chunk_size
    bint take_sqrt


cdef inline void _paired_team_compute(const void *ctx, int64_t c, void *scratch,
                                      floating *dtype_tag) noexcept nogil:
    cdef const _PairedJob *job = <const _PairedJob *> ctx
    cdef Py_ssize_t start = c * job.chunk_size
    cdef Py_ssize_t stop = min(start + job.chunk_size, job.n_pairs)
    _paired_range(<const floating *> job.XL, job.k, job.a, job.b, NULL, start, stop,
                  job.take_sqrt, <floating *> scratch, start)


cdef inline void _paired_team_publish(const void *ctx, int64_t c, const void *scratch,
                                      floating *dtype_tag) noexcept nogil:
    cdef const _PairedJob *job = <const _PairedJob *> ctx
    cdef Py_ssize_t start = c * job.chunk_size
    cdef Py_ssize_t stop = min(start + job.chunk_size, job.n_pairs)
    memcpy(<floating *> job.out + start, scratch, (stop - start) * sizeof(floating))


cdef void _paired_compute_f64(const void *ctx, int64_t c, void *scratch) noexcept nogil:
    _paired_team_compute(ctx, c, scratch, <double *> NULL)


cdef void _paired_compute_f32(const void *ctx, int64_t c, void *scratch) noexcept nogil:
    _paired_team_compute(ctx, c, scratch, <float *> NULL)


cdef void _paired_publish_f64(const void *ctx, int64_t c, const void *scratch) noexcept nogil:
    _paired_team_publish(ctx, c, scratch, <double *> NULL)


cdef void _paired_publish_f32(const void *ctx, int64_t c, const void *scratch) noexcept nogil:
    _paired_team_publish(ctx, c, scratch, <float *> NULL)


cdef void paired_sq_dist_transformed(
    const floating[:, ::1] XL,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    floating[::1] out,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """out[p] = ||XL[a[p]] - XL[b[p]]||^2 (or its root)."""
    if a.shape[0] > 0:
        _paired_chunks(XL, &a[0], &b[0], NULL, &out[0], a.shape[0], take_sqrt,
                       chunk_size, n_threads)


cdef void bucket_pairs_by_first_row(
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    Py_ssize_t bucket_rows,
    Py_ssize_t[:, ::1] cursor,
    Py_ssize_t[::1] sorted_a,
    Py_ssize_t[::1] sorted_b,
    Py_ssize_t[::1] sorted_pos,
    int n_threads,
) noexcept nogil:
    """Pairs reordered by the bucket ``a // bucket_rows`` of their first row.

    A stable counting sort: ``sorted_*[i]`` is the i-th pair in (bucket,
    pair) order, ``sorted_pos`` its position in the input.  ``cursor``
    (n_parts x n_buckets, zero-filled by the caller) splits the pairs into
    n_parts contiguous ranges counted and placed in parallel; part t's pairs
    of a bucket follow those of parts < t, so the order is the same for any
    number of parts or threads.
    """
    cdef Py_ssize_t n_pairs = a.shape[0], n_parts = cursor.shape[0]
    cdef Py_ssize_t part_size = (n_pairs + n_parts - 1) // n_parts
    cdef Py_ssize_t t, p, q
    for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            cursor[t, a[p] // bucket_rows] += 1
    parts_prefix_sum(cursor, NULL)
    for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            q = cursor[t, a[p] // bucket_rows]
            cursor[t, a[p] // bucket_rows] = q + 1
            sorted_a[q] = a[p]
            sorted_b[q] = b[p]
            sorted_pos[q] = p


cdef void paired_sq_dist_direct(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    floating[::1] out,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """out[p] = ||L (X[a[p]] - X[b[p]])||^2 via per-chunk difference buffers.

    Only a (chunk x d) block of differences and its (chunk x k) image exist
    at any time, per thread.
    """
    cdef Py_ssize_t n_pairs = a.shape[0], d = X.shape[1], k = L.shape[0]
    cdef Py_ssize_t n_chunks = (n_pairs + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, size, i, j, ia, ib
    cdef floating *diff
    cdef floating *img
    cdef double s
    if n_pairs == 0:
        return
    with parallel(num_threads=n_threads):
        diff = <floating *> malloc(chunk_size * d * sizeof(floating))
        img = <floating *> malloc(chunk_size * k * sizeof(floating))
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            size = min(chunk_size, n_pairs - start)
            for i in range(size):
                ia = a[start + i]
                ib = b[start + i]
                for j in range(d):
                    diff[i * d + j] = X[ia, j] - X[ib, j]
            gemm_rowmajor(False, True, <int> size, <int> k, <int> d,
                          <floating> 1.0, diff, <int> d,
                          &L[0, 0], <int> d,
                          <floating> 0.0, img, <int> k)
            for i in range(size):
                s = sq_norm(&img[i * k], k)
                if take_sqrt:
                    s = sqrt(s)
                out[start + i] = <floating> s
        free(diff)
        free(img)


# ---------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------

def _transform_f32(const float[:, ::1] X, const float[:, ::1] L, float[:, ::1] XL,
                   Py_ssize_t chunk_size, int n_threads, bint check_finite):
    """XL = X @ L.T (float32) into the caller's array, ``chunk_size`` rows per
    work unit: O(n k d).  With ``check_finite``, returns False when X holds a
    NaN or an infinity (found while the rows are mapped), else True."""
    cdef bint finite
    with nogil:
        finite = transform_rows(X, L, XL, chunk_size, n_threads, check_finite)
    return finite


def _transform_f64(const double[:, ::1] X, const double[:, ::1] L, double[:, ::1] XL,
                   Py_ssize_t chunk_size, int n_threads, bint check_finite):
    """_transform_f32 for float64 arrays."""
    cdef bint finite
    with nogil:
        finite = transform_rows(X, L, XL, chunk_size, n_threads, check_finite)
    return finite


def _pairwise(const floating[:, ::1] XL, const floating[:, ::1] YL,
              floating[:, ::1] out, bint same_rows, bint take_sqrt,
              Py_ssize_t chunk_size, int n_threads):
    """out[i, j] = ||XL[i] - YL[j]||^2 (or its root) from the mapped rows, by
    the expansion ||u||^2 + ||v||^2 - 2 u.v and one GEMM per chunk of rows of
    XL, clipped at 0 (``same_rows``: YL is XL and the diagonal is exactly 0).
    O(n m k) work.

    Returns ``max ||u||^2 + max ||v||^2`` (O(n + m)): since |2 u.v| <=
    ||u||^2 + ||v||^2, no term of any entry exceeds twice that, so while it
    is below a quarter of the dtype's largest value every entry is finite
    and the caller need not scan the n x m result for overflow."""
    cdef floating[::1] xn = np.empty(XL.shape[0], dtype=np.asarray(XL).dtype)
    cdef floating[::1] yn
    with nogil:
        row_sq_norms(XL, xn, n_threads)
    if same_rows:
        yn = xn
    else:
        yn = np.empty(YL.shape[0], dtype=np.asarray(YL).dtype)
        with nogil:
            row_sq_norms(YL, yn, n_threads)
    with nogil:
        pairwise_sq_dist_transformed(XL, xn, YL, yn, out, same_rows, take_sqrt,
                                     chunk_size, n_threads)
    if XL.shape[0] == 0 or YL.shape[0] == 0:
        return 0.0
    return float(np.max(np.asarray(xn))) + float(np.max(np.asarray(yn)))


def _paired_transformed(const floating[:, ::1] XL, const Py_ssize_t[::1] a,
                        const Py_ssize_t[::1] b, floating[::1] out, bint take_sqrt,
                        Py_ssize_t chunk_size, int n_threads, int team_threads=0):
    """out[p] = ||XL[a[p]] - XL[b[p]]||^2 (or its root) from the mapped rows:
    O(k) per pair, ``chunk_size`` pairs per work unit; on fm_team.h's team
    of ``team_threads`` threads when more than 1 (busy machines; the same
    result)."""
    cdef Py_ssize_t n_pairs = a.shape[0]
    cdef Py_ssize_t n_chunks = (n_pairs + chunk_size - 1) // chunk_size
    cdef _PairedJob pjob
    cdef fm_team_job job
    cdef int64_t generation
    if team_threads <= 1 or n_chunks <= 1:
        with nogil:
            paired_sq_dist_transformed(XL, a, b, out, take_sqrt, chunk_size, n_threads)
        return
    pjob.XL = &XL[0, 0]
    pjob.k = XL.shape[1]
    pjob.a = &a[0]
    pjob.b = &b[0]
    pjob.out = &out[0]
    pjob.n_pairs = n_pairs
    pjob.chunk_size = chunk_size
    pjob.take_sqrt = take_sqrt
    job.compute = _paired_compute_f32 if floating is float else _paired_compute_f64
    job.publish = _paired_publish_f32 if floating is float else _paired_publish_f64
    job.ctx = &pjob
    job.ctx_bytes = sizeof(_PairedJob)
    job.n_chunks = n_chunks
    job.scratch_bytes = chunk_size * sizeof(floating)
    with nogil:
        generation = team_run(&job, team_threads)
    if generation < 0:
        raise MemoryError("could not allocate the team's buffers or helpers")
    # A helper that was off its core may still read the mapped rows and pairs.
    team_keep(generation, XL, a, b)


def bucket_plan(Py_ssize_t n_rows, Py_ssize_t row_bytes, Py_ssize_t n_pairs, int n_threads):
    """Layout of the bucketed paired kernel: ``(bucket_rows, n_buckets,
    n_parts)``, the rows per bucket of first rows (a bucket fills a quarter
    of a typical L2 cache), the number of buckets and the parts of the
    parallel counting sort (one per thread, each with at least 2^16 pairs).
    The work arrays of :func:`_paired_bucketed` are sized from it."""
    cdef Py_ssize_t bucket_rows = max(1, DEF_BUCKET_BYTES // max(row_bytes, 1))
    cdef Py_ssize_t n_buckets = (n_rows + bucket_rows - 1) // bucket_rows
    cdef int n_parts = max(1, min(n_threads, 8, n_pairs // 65536))
    return bucket_rows, n_buckets, n_parts


def _paired_bucketed(const floating[:, ::1] XL, const Py_ssize_t[::1] a,
                     const Py_ssize_t[::1] b, floating[::1] out, bint take_sqrt,
                     Py_ssize_t chunk_size, int n_threads, Py_ssize_t bucket_rows,
                     Py_ssize_t[:, ::1] cursor, Py_ssize_t[::1] sa, Py_ssize_t[::1] sb,
                     Py_ssize_t[::1] sp):
    """_paired_transformed with the pairs first sorted by the bucket of their
    first row (a stable parallel counting sort into ``sa``, ``sb``, ``sp``,
    with the zero-filled ``cursor`` of shape (n_parts, n_buckets): see
    :func:`bucket_plan`), so that the first rows of consecutive pairs stay
    in cache.  O(n_pairs (k + 1)) work."""
    # In bucket order the first rows of consecutive pairs come from a few
    # cache-resident rows: only the second row of each pair is read from
    # memory at random.
    with nogil:
        bucket_pairs_by_first_row(a, b, bucket_rows, cursor, sa, sb, sp, n_threads)
        if sa.shape[0] > 0:
            _paired_chunks(XL, &sa[0], &sb[0], &sp[0], &out[0], sa.shape[0], take_sqrt,
                           chunk_size, n_threads)


def _paired_direct(const floating[:, ::1] X, const floating[:, ::1] L,
                   const Py_ssize_t[::1] a, const Py_ssize_t[::1] b,
                   floating[::1] out, bint take_sqrt,
                   Py_ssize_t chunk_size, int n_threads):
    """out[p] = ||L (X[a[p]] - X[b[p]])||^2 (or its root) without mapping
    every row: the differences of a chunk of pairs times L^T, O(n_pairs k d)
    (for fewer pairs than rows)."""
    with nogil:
        paired_sq_dist_direct(X, L, a, b, out, take_sqrt, chunk_size, n_threads)

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
from libc.stdlib cimport malloc, free

from fastmetric.kernels.common cimport (
    all_finite, floating, gemm_rowmajor, fm_prefetch_block, FM_PREFETCH_AHEAD, parts_prefix_sum, sq_dist, sq_norm,
)
from fastmetric.kernels.smallgemm cimport (
    rowmap, transposed_for_rowmap,
)

from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.workspace import empty_aligned
from fastmetric._core.validation import (
    check_chunk_size,
    check_components,
    check_index_pairs,
    check_points,
    raise_nonfinite,
)

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


cdef void transform_rows(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """XL = X @ L.T, chunk by chunk of rows (small-GEMM kernel or BLAS)."""
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start
    cdef floating *lt
    cdef bint stream
    if n == 0:
        return
    lt = transposed_for_rowmap(L)
    stream = _stream_output(XL)
    with parallel(num_threads=n_threads):
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            _transform_block(X, L, lt, stream, XL, start, min(chunk_size, n - start))
    free(lt)


cdef bint transform_rows_checked(
    const floating[:, ::1] X,
    const floating[:, ::1] L,
    floating[:, ::1] XL,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """XL = X @ L.T as transform_rows; False when X holds a NaN or infinity.

    Each chunk of X is scanned right after its GEMM, while it is still in
    cache: the check costs no extra pass over memory.
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
    for c in prange(n_chunks, schedule='static', num_threads=n_threads):
        start = c * chunk_size
        size = min(chunk_size, n - start)
        _transform_block(X, L, lt, stream, XL, start, size)
        if not all_finite(&X[start, 0], size * d):
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
        for c in prange(n_chunks, schedule='static'):
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
    for i in prange(n, schedule='static', num_threads=n_threads):
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
        for c in prange(n_chunks, schedule='static'):
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
        for i in prange(n, schedule='static', num_threads=n_threads):
            # Every entry above the diagonal was computed: mirror it.
            for j in range(i):
                out[i, j] = out[j, i]


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
    cdef Py_ssize_t c, p, start, stop
    cdef double s
    if n_pairs == 0:
        return
    with parallel(num_threads=n_threads):
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_pairs)
            for p in range(start, stop):
                # The rows are read at random: ask for the rows of a pair a
                # little ahead so the memory latency overlaps this work.
                if p + FM_PREFETCH_AHEAD < stop:
                    fm_prefetch_block(&XL[b[p + FM_PREFETCH_AHEAD], 0], k * sizeof(floating))
                    fm_prefetch_block(&XL[a[p + FM_PREFETCH_AHEAD], 0], k * sizeof(floating))
                s = sq_dist(&XL[a[p], 0], &XL[b[p], 0], k)
                if take_sqrt:
                    s = sqrt(s)
                out[positions[p] if positions != NULL else p] = <floating> s


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
    for t in prange(n_parts, schedule='static', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            cursor[t, a[p] // bucket_rows] += 1
    parts_prefix_sum(cursor, NULL)
    for t in prange(n_parts, schedule='static', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            q = cursor[t, a[p] // bucket_rows]
            cursor[t, a[p] // bucket_rows] = q + 1
            sorted_a[q] = a[p]
            sorted_b[q] = b[p]
            sorted_pos[q] = p


cdef void paired_sq_dist_sorted(
    const floating[:, ::1] XL,
    const Py_ssize_t[::1] sorted_a,
    const Py_ssize_t[::1] sorted_b,
    const Py_ssize_t[::1] sorted_pos,
    floating[::1] out,
    bint take_sqrt,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """out[sorted_pos[i]] = ||XL[sorted_a[i]] - XL[sorted_b[i]]||^2 (or its root).

    With the pairs in bucket order (bucket_pairs_by_first_row), the first
    rows of consecutive pairs come from a few cache-resident rows: only the
    second row of each pair is read from memory at random.
    """
    if sorted_a.shape[0] > 0:
        _paired_chunks(XL, &sorted_a[0], &sorted_b[0], &sorted_pos[0], &out[0],
                       sorted_a.shape[0], take_sqrt, chunk_size, n_threads)


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
    cdef Py_ssize_t c, p, start, size, i, j, ia, ib
    cdef floating *diff
    cdef floating *img
    cdef double s
    if n_pairs == 0:
        return
    with parallel(num_threads=n_threads):
        diff = <floating *> malloc(chunk_size * d * sizeof(floating))
        img = <floating *> malloc(chunk_size * k * sizeof(floating))
        for c in prange(n_chunks, schedule='static'):
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

def _transform(X, L, chunk_size, n_threads, check_finite=False, name="X"):
    """X @ L.T into a new aligned array.

    With ``check_finite``, X's values are checked during the GEMM (X was
    validated with ``allow_nan=True``) and a NaN or infinity raises the
    ValueError of :func:`check_points`.
    """
    # Aligned rows on huge pages: the paired kernel reads them at random (see
    # _workspace), and the threads filling them do not queue on page faults.
    XL = empty_aligned((X.shape[0], L.shape[0]), X.dtype)
    if X.dtype == np.float32:
        finite = _transform_f32(X, L, XL, chunk_size, n_threads, check_finite)
    else:
        finite = _transform_f64(X, L, XL, chunk_size, n_threads, check_finite)
    if not finite:
        raise_nonfinite(X, name)
    return XL


def _transform_f32(const float[:, ::1] X, const float[:, ::1] L, float[:, ::1] XL,
                   Py_ssize_t chunk_size, int n_threads, bint check_finite):
    cdef bint finite = True
    with nogil:
        if check_finite:
            finite = transform_rows_checked(X, L, XL, chunk_size, n_threads)
        else:
            transform_rows(X, L, XL, chunk_size, n_threads)
    return finite


def _transform_f64(const double[:, ::1] X, const double[:, ::1] L, double[:, ::1] XL,
                   Py_ssize_t chunk_size, int n_threads, bint check_finite):
    cdef bint finite = True
    with nogil:
        if check_finite:
            finite = transform_rows_checked(X, L, XL, chunk_size, n_threads)
        else:
            transform_rows(X, L, XL, chunk_size, n_threads)
    return finite


def _pairwise(const floating[:, ::1] XL, const floating[:, ::1] YL,
              floating[:, ::1] out, bint same_rows, bint take_sqrt,
              Py_ssize_t chunk_size, int n_threads):
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


def _paired_transformed(const floating[:, ::1] XL, const Py_ssize_t[::1] a,
                        const Py_ssize_t[::1] b, floating[::1] out, bint take_sqrt,
                        Py_ssize_t chunk_size, int n_threads):
    with nogil:
        paired_sq_dist_transformed(XL, a, b, out, take_sqrt, chunk_size, n_threads)


def _paired_bucketed(const floating[:, ::1] XL, const Py_ssize_t[::1] a,
                     const Py_ssize_t[::1] b, floating[::1] out, bint take_sqrt,
                     Py_ssize_t chunk_size, int n_threads):
    cdef Py_ssize_t n_pairs = a.shape[0], row_bytes = XL.shape[1] * XL.itemsize
    # A bucket's first rows fill a quarter of a typical L2 cache.
    cdef Py_ssize_t bucket_rows = max(1, DEF_BUCKET_BYTES // row_bytes)
    cdef Py_ssize_t n_buckets = (XL.shape[0] + bucket_rows - 1) // bucket_rows
    # One part per thread, each with at least 2^16 pairs.
    cdef int n_parts = max(1, min(n_threads, 8, n_pairs // 65536))
    cdef Py_ssize_t[:, ::1] cursor = np.zeros((n_parts, n_buckets), dtype=np.intp)
    cdef Py_ssize_t[::1] sa = empty_aligned(n_pairs, np.intp)
    cdef Py_ssize_t[::1] sb = empty_aligned(n_pairs, np.intp)
    cdef Py_ssize_t[::1] sp = empty_aligned(n_pairs, np.intp)
    with nogil:
        bucket_pairs_by_first_row(a, b, bucket_rows, cursor, sa, sb, sp, n_threads)
        paired_sq_dist_sorted(XL, sa, sb, sp, out, take_sqrt, chunk_size, n_threads)


def _paired_direct(const floating[:, ::1] X, const floating[:, ::1] L,
                   const Py_ssize_t[::1] a, const Py_ssize_t[::1] b,
                   floating[::1] out, bint take_sqrt,
                   Py_ssize_t chunk_size, int n_threads):
    with nogil:
        paired_sq_dist_direct(X, L, a, b, out, take_sqrt, chunk_size, n_threads)


def mahalanobis_distances(X, Y=None, *, components=None, squared=False,
                          chunk_size=None, n_jobs=None):
    """Mahalanobis distances between the rows of X and the rows of Y.

    Computes ``D[i, j] = ||L x_i - L y_j||`` (``M = L^T L``), in parallel over
    chunks of rows of X, with no intermediate larger than the output plus
    the transformed rows (no n x m x d temporaries).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        float32 input stays float32; integers are converted to float64.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` computes the distances among the rows of X (the diagonal is
        then exactly zero).
    components : array-like of shape (n_components, n_features), default=None
        The linear map L. ``None`` means the identity (Euclidean distance).
        ``n_components < n_features`` (a low-rank metric) is allowed.
    squared : bool, default=False
        Return squared distances.
    chunk_size : int, default=None
        Rows of X per work unit (default 256).
    n_jobs : int, default=None
        Number of OpenMP threads: ``None`` as many as OpenMP and threadpoolctl
        allow, ``-1`` all CPUs, ``k > 0`` exactly k.

    Returns
    -------
    D : ndarray of shape (n_samples_X, n_samples_Y)
        In the dtype of X (float64 if X and Y do not share a float dtype).

    Notes
    -----
    The squared distance is expanded as ``||u||^2 + ||v||^2 - 2 u.v`` with
    ``u = L x``, ``v = L y``, which turns the work into matrix products.  The
    expansion loses relative precision for points much closer to each other
    than to the origin (about ``eps * ||u||^2`` absolute error, eps the
    machine precision of the dtype); negative rounding results are clipped
    to zero.  Use :func:`paired_mahalanobis_distances` when only some pairs
    are needed: it computes differences directly.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import mahalanobis_distances
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> mahalanobis_distances(X)
    array([[0., 5.],
           [5., 0.]])
    >>> mahalanobis_distances(X, components=[[2.0, 0.0]], squared=True)
    array([[ 0., 36.],
           [36.,  0.]])
    """
    # NaN/inf in X and Y are found while the GEMM maps them (check_finite).
    X = check_points(X, "X", allow_nan=True)
    if Y is not None:
        Y = check_points(Y, "Y", allow_nan=True)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(
                f"X and Y must have the same number of features; got X with "
                f"{X.shape[1]} and Y with {Y.shape[1]}."
            )
        if Y.dtype != X.dtype:
            X = X.astype(np.float64)
            Y = Y.astype(np.float64)
    L = check_components(components, X.shape[1], X.dtype)
    chunk_size = check_chunk_size(chunk_size) or DEF_ROW_CHUNK
    n_rows_y = X.shape[0] if Y is None else Y.shape[0]
    n_threads = threads_for_work(effective_n_threads(n_jobs),
                                 X.shape[0] * (n_rows_y + L.shape[0]), 1 << 16)
    with single_threaded_blas():
        XL = _transform(X, L, chunk_size, n_threads, check_finite=True)
        YL = XL if Y is None else _transform(Y, L, chunk_size, n_threads,
                                             check_finite=True, name="Y")
        # Filled by every thread at once: see fastmetric._core.workspace.
        out = empty_aligned((X.shape[0], YL.shape[0]), X.dtype)
        _pairwise(XL, YL, out, Y is None, not squared, chunk_size, n_threads)
    return out


def paired_mahalanobis_distances(X, pairs, *, components=None, squared=False,
                                 chunk_size=None, n_jobs=None):
    """Mahalanobis distances of index pairs of rows of X.

    Computes ``d_p = ||L (x_{a_p} - x_{b_p})||`` for each pair
    ``(a_p, b_p) = pairs[p]`` without building the (n_pairs, n_features)
    array of differences.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float32 input stays float32; integers are converted to float64.
    pairs : array-like of int, shape (n_pairs, 2)
        Row indices into X, each in ``[0, n_samples)``.
    components : array-like of shape (n_components, n_features), default=None
        The linear map L; ``None`` is the identity (Euclidean distance).
    squared : bool, default=False
        Return squared distances.
    chunk_size : int, default=None
        Pairs per work unit (default 4096).
    n_jobs : int, default=None
        Number of OpenMP threads (see :func:`mahalanobis_distances`).

    Returns
    -------
    d : ndarray of shape (n_pairs,)
        In the dtype of X.

    Notes
    -----
    With at least as many pairs as rows, every row is mapped once,
    ``u = L x`` (one GEMM per chunk of rows, O(n k d)), and each pair costs
    O(k).  When the mapped rows outgrow the cache, the pairs are first
    bucketed by their first row (a stable counting sort), so that the first
    rows of consecutive pairs stay in cache and only the second row of each
    pair is read from memory at random.  With fewer pairs than rows, the differences of a chunk of pairs
    are gathered into a per-thread buffer and multiplied by ``L^T``
    (O(n_pairs k d), never touching unused rows).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import paired_mahalanobis_distances
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> paired_mahalanobis_distances(X, [[0, 1], [0, 2], [1, 1]])
    array([ 5., 10.,  0.])
    """
    # X's values are checked for NaN/inf by the kernel that reads them (the
    # GEMM of the mapped rows), or below for the direct path.
    X = check_points(X, "X", allow_nan=True)
    n_threads = effective_n_threads(n_jobs)
    a, b = check_index_pairs(pairs, X.shape[0], "pairs", allow_empty=True,
                             n_threads=n_threads)
    L = check_components(components, X.shape[1], X.dtype)
    chunk_size = check_chunk_size(chunk_size)
    n_threads = threads_for_work(n_threads, a.shape[0], 2048)
    transformed = a.shape[0] >= X.shape[0]
    if not transformed:
        check_points(X, "X")
    # Filled by every thread at once: see fastmetric._core.workspace.
    out = empty_aligned(a.shape[0], X.dtype)
    if a.shape[0] == 0:
        return out
    with single_threaded_blas():
        if transformed:
            # chunk_size counts pairs; rows are mapped in the usual blocks.
            XL = _transform(X, L, DEF_ROW_CHUNK, n_threads, check_finite=True)
            if XL.nbytes > DEF_SORT_ABOVE_BYTES:
                _paired_bucketed(XL, a, b, out, not squared,
                                 chunk_size or DEF_PAIR_CHUNK, n_threads)
            else:
                _paired_transformed(XL, a, b, out, not squared,
                                    chunk_size or DEF_PAIR_CHUNK, n_threads)
        else:
            _paired_direct(X, L, a, b, out, not squared,
                           chunk_size or DEF_ROW_CHUNK, n_threads)
    return out

"""Weighted scatter of pair differences.

For pairs p = (a_p, b_p) of rows of X with real weights w_p (any sign), the
kernel computes the d x d matrix::

    S = sum_p w_p (x_a - x_b)(x_a - x_b)^T.

Two ways, chosen by a cost model (or forced by ``method``):

* **Laplacian** (many pairs per point).  S = X^T Lap X with Lap the
  Laplacian of the graph whose edges are the pairs, weighted by w.  Row u of
  H = Lap X is ``sum_{p incident to u} w_p (x_u - x_other)``, computed from a
  per-point index of incident pairs (a counting sort in pair order), then
  S = X^T H is a GEMM over the points that occur in some pair.  Cost
  O(P d + U d^2) for U such points.  Since the columns of H sum to zero,
  S = (X - 1 c^T)^T H for any c: X is shifted by one of its occurring rows
  before the GEMM so that data far from the origin lose no precision.
* **Direct** (few pairs per point).  The differences D (P x d) and the
  weighted differences w * D are formed chunk by chunk, S = D^T (w * D).
  Cost O(P d^2) with no index.

In both, the rows (points or pairs) are processed in chunks of a size that
depends on d only; within a chunk the d x d output is split into tiles
(upper triangle only, as S is symmetric) and each tile is one GEMM owned by
one thread, accumulated chunk after chunk.  The result is therefore bitwise
the same for any number of threads, accumulated in float64 for float32 and
float64 data, and exactly symmetric (the lower triangle is mirrored from the
upper one, the diagonal tiles are averaged with their transpose).

BLAS must run single-threaded while this kernel's threads call it; the
Python wrapper :func:`weighted_pair_scatter` takes care of that.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset

from fastmetric.kernels.common cimport floating, parts_prefix_sum_ptr
from fastmetric.kernels.smallgemm cimport gemm_atb


cdef enum:
    METHOD_AUTO = 0
    METHOD_LAPLACIAN = 1
    METHOD_DIRECT = 2

# The ``method`` codes of pair_scatter, by name.
METHODS = {"auto": METHOD_AUTO, "laplacian": METHOD_LAPLACIAN, "direct": METHOD_DIRECT}

# Work-array budget per chunk: about 2^18 doubles (2 MB) for each of the two
# chunk matrices, at least MIN_CHUNK_ROWS rows.
cdef enum:
    CHUNK_DOUBLES = 262144
    MIN_CHUNK_ROWS = 256


cdef inline Py_ssize_t _tile_size(Py_ssize_t d) noexcept nogil:
    """Side of the output tiles: enough tiles to share between threads,
    large enough for an efficient GEMM.  Depends on d only."""
    if d <= 64:
        return 16
    if d <= 256:
        return 32
    return 64


cdef inline Py_ssize_t _chunk_rows(Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t r = CHUNK_DOUBLES // d
    return r if r > MIN_CHUNK_ROWS else MIN_CHUNK_ROWS


cdef extern from "fastmetric/kernels/include/fm_pair_scatter.h" nogil:
    void fm_laplacian_row_d(const double *X, Py_ssize_t ldx, const Py_ssize_t *other,
                            const double *w, Py_ssize_t e0, Py_ssize_t e1,
                            Py_ssize_t e_stop, const double *xu, double *h, Py_ssize_t d)
    void fm_laplacian_row_f(const float *X, Py_ssize_t ldx, const Py_ssize_t *other,
                            const double *w, Py_ssize_t e0, Py_ssize_t e1,
                            Py_ssize_t e_stop, const float *xu, double *h, Py_ssize_t d)


cdef inline void _fill_laplacian_row(
    const floating[:, ::1] X,
    const Py_ssize_t *rows,
    const Py_ssize_t *offsets,
    const Py_ssize_t *other,
    const double *weight,
    const double *center,
    Py_ssize_t u,
    double *A_row,
    double *H_row,
    Py_ssize_t d,
    Py_ssize_t e_stop,
) noexcept nogil:
    """A_row = x_u - center, H_row = sum_e w_e (x_u - x_other(e)).

    ``other`` holds rows of X; ``e_stop`` is the end of the chunk's entries
    (the entries of consecutive points are contiguous), up to which rows are
    prefetched.
    """
    cdef const floating *xu = &X[rows[u], 0]
    cdef Py_ssize_t j
    for j in range(d):
        A_row[j] = <double> xu[j] - center[j]
    if floating is float:
        fm_laplacian_row_f(&X[0, 0], d, other, weight, offsets[u], offsets[u + 1],
                           e_stop, xu, H_row, d)
    else:
        fm_laplacian_row_d(&X[0, 0], d, other, weight, offsets[u], offsets[u + 1],
                           e_stop, xu, H_row, d)


cdef inline void _fill_direct_row(
    const floating[:, ::1] X,
    Py_ssize_t ia,
    Py_ssize_t ib,
    double wp,
    double *D_row,
    double *WD_row,
    Py_ssize_t d,
) noexcept nogil:
    """D_row = x_a - x_b, WD_row = w_p D_row."""
    cdef const floating *xa = &X[ia, 0]
    cdef const floating *xb = &X[ib, 0]
    cdef Py_ssize_t j
    cdef double t
    for j in range(d):
        t = <double> xa[j] - <double> xb[j]
        D_row[j] = t
        WD_row[j] = wp * t


cdef inline void _tile_gemm(
    const double *A,
    const double *B,
    Py_ssize_t m,
    Py_ssize_t d,
    Py_ssize_t i0,
    Py_ssize_t j0,
    Py_ssize_t tile,
    double *out,
) noexcept nogil:
    """out[i0:i0+tile, j0:j0+tile] += A[:, i0:..]^T B[:, j0:..] (m rows)."""
    cdef Py_ssize_t mi = min(tile, d - i0), nj = min(tile, d - j0)
    gemm_atb(True, A + i0, d, B + j0, d, m, mi, nj, out + i0 * d + j0, d)


cdef inline bint _contributes(Py_ssize_t ia, Py_ssize_t ib, double wp) noexcept nogil:
    """Whether a pair adds to the Laplacian: not a point with itself, and a
    nonzero weight."""
    return ia != ib and wp != 0.0


cdef inline void _first_occurrences(
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    const double[::1] w,
    Py_ssize_t start,
    Py_ssize_t stop,
    unsigned char *seen,
    Py_ssize_t *found,
    Py_ssize_t *n_found,
    Py_ssize_t *n_entries,
) noexcept nogil:
    """The points of pairs start..stop-1, each listed once in ``found`` in
    order of first occurrence (a pair's first end before its second), and
    twice the number of pairs that contribute (``seen``: n zeroed bytes)."""
    cdef Py_ssize_t p, ia, ib, m = 0, entries = 0
    for p in range(start, stop):
        ia = a[p]
        ib = b[p]
        if not _contributes(ia, ib, w[p]):
            continue
        entries += 2
        if not seen[ia]:
            seen[ia] = 1
            found[m] = ia
            m += 1
        if not seen[ib]:
            seen[ib] = 1
            found[m] = ib
            m += 1
    n_found[0] = m
    n_entries[0] = entries


cdef inline void _index_part(
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    const double[::1] w,
    const Py_ssize_t *relabel,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t *cursor,
    bint fill,
    Py_ssize_t *other,
    double *weight,
) noexcept nogil:
    """One part's step of the counting sort of the incident pairs: count
    them per point (``fill`` false) or write them where ``cursor`` says."""
    cdef Py_ssize_t p, ia, ib, u, e
    for p in range(start, stop):
        ia = a[p]
        ib = b[p]
        if not _contributes(ia, ib, w[p]):
            continue
        if not fill:
            cursor[relabel[ia]] += 1
            cursor[relabel[ib]] += 1
            continue
        u = relabel[ia]
        e = cursor[u]
        cursor[u] = e + 1
        other[e] = ib
        weight[e] = w[p]
        u = relabel[ib]
        e = cursor[u]
        cursor[u] = e + 1
        other[e] = ia
        weight[e] = w[p]


cdef int pair_scatter_nogil(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    const double[::1] w,
    double[:, ::1] out,
    int method,
    int n_threads,
) noexcept nogil:
    """out = sum_p w[p] (X[a[p]] - X[b[p]])(X[a[p]] - X[b[p]])^T.

    ``out`` (d x d, C-contiguous) is overwritten.  ``method``: 0 chooses by
    cost, 1 forces the Laplacian form, 2 the direct form.  Indices must be
    valid rows of X (not checked here).  Returns 0, or -1 when a work array
    could not be allocated (``out`` is then undefined).
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_pairs = a.shape[0]
    cdef Py_ssize_t tile = _tile_size(d)
    cdef Py_ssize_t n_side = (d + tile - 1) // tile
    cdef Py_ssize_t n_tiles = n_side * (n_side + 1) // 2
    cdef Py_ssize_t chunk = _chunk_rows(d)
    cdef Py_ssize_t i, j, t, s, m, ia, n_used = 0, n_entries = 0
    cdef Py_ssize_t n_rows_total, ti_, tj_, q, n_parts = 1, part_size = 0
    cdef double lap_cost, direct_cost, v
    cdef Py_ssize_t *tile_i = NULL
    cdef Py_ssize_t *tile_j = NULL
    cdef Py_ssize_t *relabel = NULL
    cdef unsigned char *seen = NULL
    cdef Py_ssize_t *found = NULL
    cdef Py_ssize_t *part_found = NULL
    cdef Py_ssize_t *part_entries = NULL
    cdef Py_ssize_t *rows = NULL
    cdef Py_ssize_t *offsets = NULL
    cdef Py_ssize_t *cursor = NULL
    cdef Py_ssize_t *other = NULL
    cdef double *weight = NULL
    cdef double *center = NULL
    cdef double *A = NULL
    cdef double *B = NULL
    cdef double *outp = &out[0, 0]

    try:
        memset(outp, 0, d * d * sizeof(double))
        if n_pairs == 0 or d == 0:
            return 0

        # Cost model in units of a GEMM multiply-add; a scattered difference of
        # rows costs about 8 of those, building the index about 16 per pair.
        if method == METHOD_AUTO and d <= 8:
            method = METHOD_DIRECT
        if method != METHOD_DIRECT:
            # The pairs in n_parts contiguous ranges, one thread each; what
            # the parts find is merged in part order, so the points, their
            # labels and the index are those of one pass in pair order, for
            # any number of threads.
            n_parts = max(1, min(n_threads, 8, n_pairs // 65536))
            part_size = (n_pairs + n_parts - 1) // n_parts
            relabel = <Py_ssize_t *> malloc(n * sizeof(Py_ssize_t))
            rows = <Py_ssize_t *> malloc(min(n, 2 * n_pairs) * sizeof(Py_ssize_t))
            seen = <unsigned char *> calloc(n_parts * n, sizeof(unsigned char))
            found = <Py_ssize_t *> malloc(2 * n_pairs * sizeof(Py_ssize_t))
            part_found = <Py_ssize_t *> malloc(n_parts * sizeof(Py_ssize_t))
            part_entries = <Py_ssize_t *> malloc(n_parts * sizeof(Py_ssize_t))
            if (relabel == NULL or rows == NULL or seen == NULL or found == NULL
                    or part_found == NULL or part_entries == NULL):
                return -1
            for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
                _first_occurrences(a, b, w, t * part_size, min((t + 1) * part_size, n_pairs),
                                   seen + t * n, found + 2 * t * part_size,
                                   &part_found[t], &part_entries[t])
            # Points labelled in order of first occurrence; pairs that
            # contribute nothing are left out.
            for i in range(n):
                relabel[i] = -1
            for t in range(n_parts):
                n_entries += part_entries[t]
                for q in range(part_found[t]):
                    ia = found[2 * t * part_size + q]
                    if relabel[ia] < 0:
                        relabel[ia] = n_used
                        rows[n_used] = ia
                        n_used += 1
            if n_used == 0:
                return 0
            if method == METHOD_AUTO:
                lap_cost = <double> n_used * d * d + 8.0 * n_entries / 2 * d + 16.0 * n_pairs
                direct_cost = <double> n_pairs * d * d
                method = METHOD_LAPLACIAN if lap_cost < direct_cost else METHOD_DIRECT

        tile_i = <Py_ssize_t *> malloc(n_tiles * sizeof(Py_ssize_t))
        tile_j = <Py_ssize_t *> malloc(n_tiles * sizeof(Py_ssize_t))
        A = <double *> malloc(chunk * d * sizeof(double))
        B = <double *> malloc(chunk * d * sizeof(double))
        if tile_i == NULL or tile_j == NULL or A == NULL or B == NULL:
            return -1
        t = 0
        for i in range(n_side):
            for j in range(i, n_side):
                tile_i[t] = i * tile
                tile_j[t] = j * tile
                t += 1

        if method == METHOD_LAPLACIAN:
            # CSR index of incident pairs per point, in pair order: the
            # other end (a row of X) and the weight.
            offsets = <Py_ssize_t *> malloc((n_used + 1) * sizeof(Py_ssize_t))
            cursor = <Py_ssize_t *> calloc(n_parts * n_used, sizeof(Py_ssize_t))
            other = <Py_ssize_t *> malloc(n_entries * sizeof(Py_ssize_t))
            weight = <double *> malloc(n_entries * sizeof(double))
            center = <double *> malloc(d * sizeof(double))
            if offsets == NULL or cursor == NULL or other == NULL or weight == NULL or center == NULL:
                return -1
            for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
                _index_part(a, b, w, relabel, t * part_size, min((t + 1) * part_size, n_pairs),
                            cursor + t * n_used, False, NULL, NULL)
            parts_prefix_sum_ptr(cursor, n_parts, n_used, offsets)
            for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
                _index_part(a, b, w, relabel, t * part_size, min((t + 1) * part_size, n_pairs),
                            cursor + t * n_used, True, other, weight)
            for j in range(d):
                center[j] = <double> X[rows[0], j]
            n_rows_total = n_used
        else:
            n_rows_total = n_pairs

        s = 0
        while s < n_rows_total:
            m = min(chunk, n_rows_total - s)
            with parallel(num_threads=n_threads):
                for i in prange(m, schedule='dynamic', chunksize=16):
                    if method == METHOD_LAPLACIAN:
                        _fill_laplacian_row(X, rows, offsets, other, weight, center,
                                            s + i, A + i * d, B + i * d, d,
                                            offsets[s + m])
                    else:
                        _fill_direct_row(X, a[s + i], b[s + i], w[s + i],
                                         A + i * d, B + i * d, d)
                for t in prange(n_tiles, schedule='dynamic'):
                    _tile_gemm(A, B, m, d, tile_i[t], tile_j[t], tile, outp)
            s += m

        # Mirror the upper triangle; average the diagonal tiles with their
        # transpose (their lower half was computed too, with other rounding).
        for i in range(d):
            ti_ = i // tile
            for j in range(i + 1, d):
                tj_ = j // tile
                if ti_ == tj_:
                    v = 0.5 * (outp[i * d + j] + outp[j * d + i])
                    outp[i * d + j] = v
                    outp[j * d + i] = v
                else:
                    outp[j * d + i] = outp[i * d + j]
        return 0
    finally:
        free(tile_i)
        free(tile_j)
        free(relabel)
        free(seen)
        free(found)
        free(part_found)
        free(part_entries)
        free(rows)
        free(offsets)
        free(cursor)
        free(other)
        free(weight)
        free(center)
        free(A)
        free(B)


def pair_scatter(const floating[:, ::1] X, const Py_ssize_t[::1] a, const Py_ssize_t[::1] b,
                 const double[::1] w, double[:, ::1] out, int n_threads, int method=0):
    """Unchecked kernel: out = sum_p w_p (x_a - x_b)(x_a - x_b)^T.

    ``out`` is a C-contiguous float64 (d, d) array allocated by the caller;
    indices must be valid.  BLAS should be single-threaded around this call
    when ``n_threads > 1`` (see
    :func:`fastmetric._core.scatter.weighted_pair_scatter`).  ``method``: a
    code of METHODS (0 picks the cheaper of the Laplacian and the direct
    form).  Cost: see the module docstring.
    """
    cdef int status
    # O(1) checks that keep a wrong call from crashing the process (a
    # negative count reached OpenMP as an allocation of terabytes; an out
    # inside X was overwritten while being read).
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0; got {n_threads}.")
    if method not in METHODS.values():
        raise ValueError(f"method must be one of the codes {sorted(METHODS.values())} of "
                         f"METHODS; got {method}.")
    if X.shape[1] == 0:
        return np.asarray(out)
    if out.shape[0] != X.shape[1] or out.shape[1] != X.shape[1]:
        raise ValueError(f"out must have shape ({X.shape[1]}, {X.shape[1]}).")
    if a.shape[0] != b.shape[0] or w.shape[0] != a.shape[0]:
        raise ValueError("a, b and w must have the same length.")
    if np.may_share_memory(np.asarray(out), np.asarray(X)):
        raise ValueError("out must not share memory with X.")
    with nogil:
        status = pair_scatter_nogil(X, a, b, w, out, method, n_threads)
    if status != 0:
        raise MemoryError("pair_scatter could not allocate its work arrays.")
    return np.asarray(out)

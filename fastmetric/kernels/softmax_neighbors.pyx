"""Stochastic-neighbour objectives of NCA and MLKR and their gradients.

Both learners look at every point ``i`` through a softmax over the other
points in the embedded space ``z = L x``::

    D_ij = ||z_i - z_j||^2,     p_ij = exp(-D_ij) / sum_{l != i} exp(-D_il),   p_ii = 0.

* NCA (Goldberger et al., 2004) maximises the expected number of points
  whose stochastic neighbour has their class, ``sum_i p_i`` with
  ``p_i = sum_{j: y_j = y_i} p_ij``; we minimise ``f = -sum_i p_i``.
* MLKR (Weinberger & Tesauro, 2007) predicts a real target by kernel
  regression, ``yhat_i = sum_j p_ij y_j``, and minimises the leave-one-out
  squared error ``f = sum_i (yhat_i - y_i)^2``.

Gradient
--------
With ``dp_im / dD_ij = p_im (p_ij - [m = j])`` (softmax derivative, for
j != i), the derivative of ``f`` in ``D_ij`` is a weight ``W_ij``:

* NCA: ``d(sum_i p_i)/dD_ij = p_ij (p_i - [y_i = y_j])``, so
  ``W_ij = -p_ij (p_i - [y_i = y_j])`` for the minimised ``f``;
* MLKR: ``dyhat_i/dD_ij = p_ij (yhat_i - y_j)``, so
  ``W_ij = 2 (yhat_i - y_i) p_ij (yhat_i - y_j)``.

Since ``dD_ij/dL = 2 L d_ij d_ij^T`` with ``d_ij = x_i - x_j``,
``df/dL = 2 L sum_ij W_ij d_ij d_ij^T``.  Expanding the outer products,

    sum_ij W_ij d_ij d_ij^T = X^T (diag(r + c) - W - W^T) X = H,

with ``r`` and ``c`` the row and column sums of W.  Writing ``A = W X``
(n x d) and ``u = r + c``, ``H = X^T diag(u) X - X^T A - A^T X = M + M^T``
with ``M = X^T (diag(u / 2) X - A)``.  So the only products over pairs are
the rows of W and of ``A = W X``, both *row-local*: chunks of rows are
processed independently (a chunk x n buffer per thread, never n x n).  The
column sums ``c`` are the one quantity that crosses chunks; they are
accumulated per group of chunks (a number of groups fixed by n and the
chunk size only) and merged in group order.  ``M`` is a sum of per-block
GEMMs merged in block order.  So every result is bitwise the same for any
number of threads.  (``r_i = 0`` in exact arithmetic for both objectives,
since the p_ij of a row sum to 1; it is kept for the rounding.)

The window
----------
The softmax subtracts the row minimum ``m_i = min_{l != i} D_il`` (the
largest exponent is 0: no overflow, and the row sum is at least 1).  Terms
with ``D_ij > m_i + 50`` are not evaluated: each is below ``e^-50 ~ 2e-22``
of the largest term, so dropping them changes a row's sums by less than
``n 2e-22`` relatively, far below float64 rounding for any practical n.
Once the softmax is concentrated (as it soon is during learning) only a
few pairs per row are inside this window.

Finding the window: float32 screening, then exact distances
-----------------------------------------------------------
The distances are first approximated by a float32 GEMM (about twice as
fast as float64): with ``ZL = [-2 z, 1, ||z||^2]`` and ``ZR = [z, ||z||^2,
1]`` (n x (k + 2)), ``ZL_i . ZR_j = ||z_i - z_j||^2``, and the float32
result D32 satisfies ``|D32_ij - D_ij| <= err_ij = c u (||z_i||^2 +
||z_j||^2)``, u the float32 unit roundoff, ``c = 2 (k + 2) + 3`` (rounding
of the factors and a length-(k + 2) dot product of terms whose absolute
values sum to at most ``2 (||z_i||^2 + ||z_j||^2)``).  A pair is a
*candidate* when ``D32_ij <= t_i`` for a threshold ``t_i`` that provably
keeps the whole window (below); only candidates get their distance
computed, exactly, as ``||z_i - z_j||^2`` in float64 from Z (not from the
float32 values, nor from the GEMM expansion, which loses digits to
cancellation).  Then ``m_i`` is the minimum over the candidates (the
nearest point is one), the window is selected among them, and every sum
runs over the window in increasing j.  So the result does not depend on
which superset of the window the candidates are: the two strategies below
give bitwise the same numbers.

* Rows (:func:`scan_chunk_candidates`): for each chunk of rows, the chunk x n
  block of D32 by one GEMM, its row minimum m32_i, and ``t_i = m32_i + 50 +
  margin_i`` with ``margin_i = 2 c u (||z_i||^2 + max_j ||z_j||^2)`` (times
  1.5 for safety): since ``m_i <= m32_i + err``, every j of the window has
  ``D32_ij <= D_ij + err <= m_i + 50 + err <= t_i``.
* Tiles (:func:`tile_candidates`), used when a previous evaluation gave
  each point a nearest neighbour h_i: ``u_i = ||z_i - z_{h_i}||^2`` (exact)
  bounds ``m_i`` from above, so ``t_i = u_i + 50 + margin_i`` keeps the
  window without knowing any row minimum beforehand.  D32 is then needed
  for i < j only (it is symmetric up to the error bound): square tiles on
  and above the diagonal, half the GEMM work of the row strategy.  The
  candidates are gathered per thread and bucketed by row in a fixed tile
  order, which lists each row's in increasing j.  If they turn out too
  many (a poor neighbour hint after a long L-BFGS step), the evaluation
  falls back on the row strategy.

Implementation notes
--------------------
The hot loops over candidates (exact distances four points at a time, the
exponentials, the weighted sums of rows of X) are written with explicit
8-lane vectors and compiled, with GCC on x86-64 Linux, for AVX-512, AVX2
and the baseline, the best chosen at load time.  None uses fused
multiply-adds and every lane is independent, so all versions round alike.
The exponential is our own (Cody-Waite reduction, Taylor polynomial of
degree 13; within 1 ulp of libm's on [-50, 0] in our tests) because
libm's is a call per element.  Chunk groups and tiles go to the threads
dynamically; what a group or tile computes does not depend on the thread.
On a busy machine the groups can run on fm_team.h's team instead of
OpenMP's threads (``team_threads``): each group is computed into the
computing thread's own block (:func:`_carve` lays out its buffers and
outputs) and then copied to the outputs, so a group that the caller takes
over from a late helper gives the same values; the inputs a late helper
may still read are kept until the team releases the job.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.math cimport nextafterf, INFINITY
from libc.stdlib cimport malloc, realloc, free
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from fastmetric.kernels.common cimport (
    floating, fm_axpy, gemm_rowmajor, omp_get_thread_num, sq_dist, sq_norm,
)
from fastmetric.kernels.smallgemm cimport gemm_atb
from fastmetric.kernels.distances cimport transform_rows
from fastmetric.kernels.team cimport fm_team_job, team_run
from fastmetric.kernels.team import team_keep


# Terms with D_ij - min_l D_il beyond this are below e^-50 of the largest.
cdef double WINDOW = 50.0
# A chunk whose window holds at most 1/SPARSE_RATIO of its pairs gets its
# rows of A = W X from the window's weights; denser chunks use a GEMM.
cdef Py_ssize_t SPARSE_RATIO = 4
# Unit roundoff of float32.
cdef double FLOAT32_EPS = 5.9604644775390625e-08

# Bytes of the thread-local blocks (chunk x n entries) we aim for.
DEF_BUFFER_BYTES = 24 * 1024 * 1024
DEF_MAX_CHUNK = 64
# At most this many groups of chunks, each with its own column sums (n doubles).
DEF_MAX_GROUPS = 64
DEF_POINT_CHUNK = 256
# At most this many partial d x d products are kept for the final reduction.
DEF_MAX_PARTIALS = 128
# Side of the square tiles of the tile strategy.
DEF_TILE = 512
# The tile strategy is tried when the last window held at most n^2 / this
# many pairs, and gives up beyond n^2 / this many candidates.
DEF_TILE_RATIO = 32


cpdef double screening_margin_scale(Py_ssize_t k) noexcept nogil:
    """``1.5 * 2 c u`` with ``c = 2 (k + 2) + 3``: see the module docstring."""
    return 1.5 * 2.0 * (2 * (k + 2) + 3) * FLOAT32_EPS


# --------------------------------------------------------------------------
# small nogil helpers
# --------------------------------------------------------------------------
cdef inline float _row_min(const float *row, Py_ssize_t n) noexcept nogil:
    """min_j row[j], with four independent running minima (no branch)."""
    cdef float m0 = INFINITY, m1 = INFINITY, m2 = INFINITY, m3 = INFINITY, v
    cdef Py_ssize_t j = 0
    while j + 4 <= n:
        v = row[j]
        m0 = v if v < m0 else m0
        v = row[j + 1]
        m1 = v if v < m1 else m1
        v = row[j + 2]
        m2 = v if v < m2 else m2
        v = row[j + 3]
        m3 = v if v < m3 else m3
        j += 4
    while j < n:
        v = row[j]
        m0 = v if v < m0 else m0
        j += 1
    m0 = m0 if m0 < m1 else m1
    m2 = m2 if m2 < m3 else m3
    return m0 if m0 < m2 else m2


cdef inline Py_ssize_t _compact_below(const float *row, Py_ssize_t lo, Py_ssize_t hi,
                                      float lim, int *idx, Py_ssize_t cnt) noexcept nogil:
    """Append to idx the j in [lo, hi) with row[j] <= lim (branch-free)."""
    cdef Py_ssize_t j
    for j in range(lo, hi):
        idx[cnt] = <int> j
        cnt += row[j] <= lim
    return cnt


cdef inline float _float_at_least(double x) noexcept nogil:
    """The smallest float32 >= x (a threshold that rounding cannot lower)."""
    cdef float f = <float> x
    if f < x:
        f = nextafterf(f, INFINITY)
    return f


cdef extern from "fastmetric/kernels/include/fm_softmax_neighbors.h" nogil:
    void fm_exp_window(double *val, Py_ssize_t cnt, double m, double lim)
    void fm_sq_dist4_d(const double *a, const double *b0, const double *b1,
                       const double *b2, const double *b3, Py_ssize_t k, double *out)
    void fm_sq_dist4_f(const float *a, const float *b0, const float *b1,
                       const float *b2, const float *b3, Py_ssize_t k, double *out)
    void fm_axpy4_d(double *acc, const double *w, const double *x0, const double *x1,
                    const double *x2, const double *x3, Py_ssize_t d)
    void fm_axpy4_f(double *acc, const double *w, const float *x0, const float *x1,
                    const float *x2, const float *x3, Py_ssize_t d)
    void fm_axpy_f(double *acc, double w, const float *x, Py_ssize_t d)


cdef inline void _candidate_sq_dists(const floating *Z, Py_ssize_t k, Py_ssize_t i,
                                     const int *idx, Py_ssize_t cnt,
                                     double *out) noexcept nogil:
    """out[t] = ||z_i - z_{idx[t]}||^2 (Z: rows of k), four candidates at a time."""
    cdef Py_ssize_t t = 0
    cdef const floating *a = Z + i * k
    while t + 4 <= cnt:
        if floating is double:
            fm_sq_dist4_d(a, Z + idx[t] * k, Z + idx[t + 1] * k, Z + idx[t + 2] * k,
                          Z + idx[t + 3] * k, k, out + t)
        else:
            fm_sq_dist4_f(a, Z + idx[t] * k, Z + idx[t + 1] * k, Z + idx[t + 2] * k,
                          Z + idx[t + 3] * k, k, out + t)
        t += 4
    while t < cnt:
        out[t] = sq_dist(a, Z + idx[t] * k, k)
        t += 1


cdef inline void _weighted_row_sum(const floating *X, Py_ssize_t d, const int *idx,
                                   const double *w, Py_ssize_t cnt,
                                   double *acc) noexcept nogil:
    """acc = sum_t w[t] X[idx[t]] in float64 (X: rows of d), terms added in t order.

    The zero weights (pairs outside the window) are skipped; the others are
    taken four at a time.
    """
    cdef Py_ssize_t t, m = 0
    cdef double wb[4]
    cdef const floating *xb[4]
    memset(acc, 0, d * sizeof(double))
    for t in range(cnt):
        if w[t] != 0.0:
            wb[m] = w[t]
            xb[m] = X + idx[t] * d
            m += 1
            if m == 4:
                if floating is double:
                    fm_axpy4_d(acc, wb, xb[0], xb[1], xb[2], xb[3], d)
                else:
                    fm_axpy4_f(acc, wb, xb[0], xb[1], xb[2], xb[3], d)
                m = 0
    for t in range(m):
        if floating is double:
            fm_axpy(wb[t], xb[t], acc, d)
        else:
            fm_axpy_f(acc, wb[t], xb[t], d)


# --------------------------------------------------------------------------
# one row: softmax over the candidates, weights
# --------------------------------------------------------------------------
cdef inline double _row_softmax_weights(
    Py_ssize_t i,
    const int *idx,
    double *val,
    Py_ssize_t cnt,
    const Py_ssize_t *labels,
    const double *targets,
    bint regression,
    double *col_sums,
    double *row_sum,
    Py_ssize_t *n_window,
    Py_ssize_t *nearest,
) noexcept nogil:
    """:func:`row_softmax_weights` on raw pointers."""
    cdef Py_ssize_t t, j, nwin = 0, li = 0, arg = -1
    cdef double m = INFINITY, lim, e, s = 0.0, acc = 0.0, inv_s, p_i, pij, w
    cdef double rsum = 0.0, resid = 0.0
    for t in range(cnt):
        if val[t] < m:
            m = val[t]
            arg = idx[t]
    lim = m + WINDOW
    if not regression:
        li = labels[i]
    # exp(m - D) inside the window, where it lies in [e^-50, 1] (never 0,
    # so 0 marks "outside"), in one vectorised pass.
    fm_exp_window(val, cnt, m, lim)
    # Branch-free: the zeros outside the window add exactly nothing, so the
    # sums are those over the window in increasing j, whatever the
    # candidates around it.
    if regression:
        for t in range(cnt):
            e = val[t]
            s += e
            nwin += e != 0.0
            acc += e * targets[idx[t]]
    else:
        for t in range(cnt):
            e = val[t]
            s += e
            nwin += e != 0.0
            acc += e * (labels[idx[t]] == li)
    # s >= 1: the nearest point contributes exp(0).
    inv_s = 1.0 / s
    p_i = acc * inv_s              # NCA: p_i;  MLKR: yhat_i
    if regression:
        resid = p_i - targets[i]
        for t in range(cnt):
            if val[t] != 0.0:
                j = idx[t]
                pij = val[t] * inv_s
                # d (yhat_i - y_i)^2 / dD_ij = 2 (yhat_i - y_i) p_ij (yhat_i - y_j)
                w = 2.0 * resid * pij * (p_i - targets[j])
                val[t] = w
                rsum += w
                col_sums[j] += w
    else:
        for t in range(cnt):
            if val[t] != 0.0:
                j = idx[t]
                pij = val[t] * inv_s
                # d(-sum_l p_l)/dD_ij = -p_ij (p_i - [y_i = y_j])
                if labels[j] == li:
                    w = pij * (1.0 - p_i)
                else:
                    w = -pij * p_i
                val[t] = w
                rsum += w
                col_sums[j] += w
    row_sum[0] = rsum
    n_window[0] = nwin
    nearest[0] = arg
    return resid * resid if regression else p_i


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
) noexcept nogil:
    """Softmax of row i over its candidates and the weights W_ij.

    On entry ``val[t]`` is D_ij for j = idx[t] (j != i, increasing); the
    list holds every j with D_ij <= min_l D_il + WINDOW (it may hold more).
    On return ``val[t]`` is W_ij (0 outside the window); the weights are
    added to ``col_sums[j]``, their sum stored in ``row_sum[0]``, the
    window's size in ``n_window[0]`` and the nearest j in ``nearest[0]``.
    Returns the row's term of the objective: p_i (NCA) or (yhat_i - y_i)^2
    (MLKR).
    """
    return _row_softmax_weights(i, idx, val, cnt, &labels[0], &targets[0], regression,
                                col_sums, row_sum, n_window, nearest)


cdef void _rows_of_A(
    const floating *X,
    Py_ssize_t n,
    Py_ssize_t d,
    Py_ssize_t size,
    bint use_gemm,
    floating *dist_buf,
    const int **row_lists,
    const double *val_buf,
    const Py_ssize_t *row_cnt,
    double *row_acc,
    floating *A_rows,
) noexcept nogil:
    """Row r of ``A_rows`` (rows of d) = sum_t val[r, t] X[idx[r, t]] for
    the ``size`` rows of a chunk (X: n rows of d).

    Either from the lists (few weights), or by scattering the weights into
    the zeroed chunk x n block and one GEMM (many weights).
    """
    cdef Py_ssize_t r, t, q
    cdef const int *idx
    cdef const double *val
    cdef floating *row
    if use_gemm:
        for r in range(size):
            row = dist_buf + r * n
            idx = row_lists[r]
            val = val_buf + r * n
            memset(row, 0, n * sizeof(floating))
            for t in range(row_cnt[r]):
                row[idx[t]] = <floating> val[t]
        gemm_rowmajor(False, False, <int> size, <int> d, <int> n,
                      <floating> 1.0, dist_buf, <int> n,
                      X, <int> d,
                      <floating> 0.0, A_rows, <int> d)
        return
    for r in range(size):
        _weighted_row_sum(X, d, row_lists[r], val_buf + r * n, row_cnt[r], row_acc)
        for q in range(d):
            A_rows[r * d + q] = <floating> row_acc[q]


# --------------------------------------------------------------------------
# chunks of rows
# --------------------------------------------------------------------------
cdef void _scan_chunk_candidates(
    const float *ZL,
    const float *ZR,
    Py_ssize_t n,
    Py_ssize_t kk,
    const double *z_sq_norms,
    double margin_scale,
    double z_sq_max,
    double screen_scale,
    Py_ssize_t start,
    Py_ssize_t stop,
    float *screen_buf,
    int *index_buf,
    const int **row_lists,
    Py_ssize_t *row_cnt,
) noexcept nogil:
    """:func:`scan_chunk_candidates` on raw pointers (ZL, ZR: n rows of kk)."""
    cdef Py_ssize_t size = stop - start, r, i, cnt
    cdef float *row
    cdef float lim
    cdef double m
    gemm_rowmajor(False, True, <int> size, <int> n, <int> kk,
                  <float> 1.0, ZL + start * kk, <int> kk,
                  ZR, <int> kk,
                  <float> 0.0, screen_buf, <int> n)
    for r in range(size):
        i = start + r
        row = screen_buf + r * n
        row[i] = INFINITY          # p_ii = 0: the diagonal is never a candidate
        m = _row_min(row, n)
        lim = _float_at_least(m + screen_scale * (
            WINDOW + margin_scale * (z_sq_norms[i] + z_sq_max)))
        # (Two ranges: a threshold rounded up to infinity must not take i.)
        cnt = _compact_below(row, 0, i, lim, index_buf + r * n, 0)
        row_cnt[r] = _compact_below(row, i + 1, n, lim, index_buf + r * n, cnt)
        row_lists[r] = index_buf + r * n


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
) noexcept nogil:
    """Row strategy: candidates of rows start:stop from their full D32 rows.

    Row r's candidates go to ``index_buf + r * n`` (increasing j), their
    number to ``row_cnt[r]``; ``row_lists[r]`` points at them.  ``ZL . ZR``
    is ``screen_scale`` times the squared distances (a power of 2 that keeps
    float32 away from overflow and underflow); ``z_sq_norms`` and
    ``z_sq_max`` are unscaled.
    """
    _scan_chunk_candidates(&ZL[0, 0], &ZR[0, 0], ZL.shape[0], ZL.shape[1], &z_sq_norms[0],
                           margin_scale, z_sq_max, screen_scale, start, stop, screen_buf,
                           index_buf, row_lists, row_cnt)


cdef Py_ssize_t _chunk_from_candidates(
    const floating *Z,
    Py_ssize_t k,
    const floating *X,
    Py_ssize_t n,
    Py_ssize_t d,
    const Py_ssize_t *labels,
    const double *targets,
    bint regression,
    Py_ssize_t start,
    Py_ssize_t stop,
    const int **row_lists,
    const Py_ssize_t *row_cnt,
    double *val_buf,
    floating *dist_buf,
    double *row_acc,
    floating *A_rows,
    double *row_sums,
    double *col_sums,
    Py_ssize_t *nearest,
    double *loss_out,
) noexcept nogil:
    """:func:`chunk_from_candidates` on raw pointers: Z (n rows of k), X (n
    rows of d); ``A_rows``, ``row_sums`` and ``nearest`` point at the
    chunk's first row (the full arrays, or a team member's scratch)."""
    cdef Py_ssize_t size = stop - start, r, i, nwin = 0, total = 0
    cdef const int *idx
    cdef double *val
    cdef double loss = 0.0
    for r in range(size):
        i = start + r
        idx = row_lists[r]
        val = val_buf + r * n
        _candidate_sq_dists(Z, k, i, idx, row_cnt[r], val)
        loss += _row_softmax_weights(i, idx, val, row_cnt[r], labels, targets, regression,
                                     col_sums, &row_sums[r], &nwin, &nearest[r])
        total += nwin
    # The choice depends on the window (the data), not on the candidates.
    _rows_of_A(X, n, d, size, total * SPARSE_RATIO > size * n, dist_buf, row_lists,
               val_buf, row_cnt, row_acc, A_rows)
    loss_out[0] = loss
    return total


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
) noexcept nogil:
    """Exact distances, softmax, weights and rows of A of rows start:stop.

    ``row_lists[r]`` / ``row_cnt[r]``: the candidates of row start + r
    (increasing j); ``val_buf`` holds n doubles per row, ``dist_buf`` n
    entries of X's dtype per row (for the GEMM of A), ``row_acc`` d
    doubles.  Fills ``row_sums[start:stop]``, ``nearest[start:stop]`` and
    ``A[start:stop]``, adds the chunk's column sums into ``col_sums``,
    stores the chunk's sum of the row terms in ``loss_out[0]`` and returns
    the number of pairs inside the window.
    """
    return _chunk_from_candidates(&Z[0, 0], Z.shape[1], &X[0, 0], X.shape[0], X.shape[1],
                                  &labels[0], &targets[0], regression, start, stop,
                                  row_lists, row_cnt, val_buf, dist_buf, row_acc,
                                  &A[start, 0], &row_sums[start], col_sums, &nearest[start],
                                  loss_out)


# --------------------------------------------------------------------------
# groups of chunks: the pass, on OpenMP's threads or on the team
# --------------------------------------------------------------------------
cdef struct _SoftmaxPass:
    # One pass's inputs, outputs and sizes.  Arrays of X's dtype are behind
    # void pointers, so that one struct serves both dtypes (and can be copied
    # into a team job's context).
    const void *Z                   # n x k
    const void *X                   # n x d
    const float *ZL                 # n x kk (row strategy)
    const float *ZR
    const double *zn                # ||z_i||^2
    const Py_ssize_t *labels
    const double *targets
    const Py_ssize_t *cand_offsets  # CSR of the tile strategy's candidates
    const int *cand_index
    Py_ssize_t n
    Py_ssize_t d
    Py_ssize_t k
    Py_ssize_t kk
    Py_ssize_t chunk_size
    Py_ssize_t chunks_per_group
    Py_ssize_t n_chunks
    Py_ssize_t n_groups
    bint regression
    bint use_tiles
    double screen_scale
    double margin_scale
    double z_sq_max
    void *A                         # n x d, X's dtype
    double *row_sums                # n
    double *col_sums                # n_groups x n (zeroed by the caller)
    double *chunk_loss              # n_chunks
    Py_ssize_t *chunk_window        # n_chunks
    Py_ssize_t *nearest             # n


cdef struct _GroupBuffers:
    # One thread's work buffers for the chunks of a group.
    void *dist_buf                  # chunk_size x n, X's dtype
    double *val_buf                 # chunk_size x n
    float *screen_buf               # chunk_size x n (row strategy; else 1)
    int *index_buf                  # chunk_size x n (row strategy; else 1)
    const int **row_lists           # chunk_size
    Py_ssize_t *row_cnt             # chunk_size
    double *row_acc                 # d


cdef struct _GroupOutputs:
    # Where a group's results go, at its first row and chunk.
    void *A
    double *row_sums
    Py_ssize_t *nearest
    double *col_sums                # n
    double *chunk_loss
    Py_ssize_t *chunk_window


cdef inline size_t _segment(size_t *offset, size_t bytes) noexcept nogil:
    """Reserve ``bytes`` at ``offset[0]`` (64-byte aligned); its offset."""
    cdef size_t at = offset[0]
    offset[0] = at + ((bytes + 63) // 64) * 64
    return at


cdef size_t _carve(const _SoftmaxPass *sp, size_t itemsize, bint with_outputs, char *base,
                   _GroupBuffers *buf, _GroupOutputs *out) noexcept nogil:
    """Bytes of one thread's block: the work buffers and, ``with_outputs``
    (a team member, which publishes a finished group at once), the group's
    outputs.  With ``base``, points ``buf`` (and ``out``) into it.  The one
    place that lays the block out."""
    cdef size_t at = 0, rows = sp.chunks_per_group * sp.chunk_size
    cdef size_t block = sp.chunk_size * sp.n
    cdef size_t scan = 1 if sp.use_tiles else block
    cdef size_t o_val = _segment(&at, block * sizeof(double))
    cdef size_t o_acc = _segment(&at, sp.d * sizeof(double))
    cdef size_t o_cnt = _segment(&at, sp.chunk_size * sizeof(Py_ssize_t))
    cdef size_t o_lists = _segment(&at, sp.chunk_size * sizeof(int *))
    cdef size_t o_dist = _segment(&at, block * itemsize)
    cdef size_t o_index = _segment(&at, scan * sizeof(int))
    cdef size_t o_screen = _segment(&at, scan * sizeof(float))
    cdef size_t o_col = 0, o_rows = 0, o_loss = 0, o_near = 0, o_win = 0, o_A = 0
    if with_outputs:
        o_col = _segment(&at, sp.n * sizeof(double))
        o_rows = _segment(&at, rows * sizeof(double))
        o_loss = _segment(&at, sp.chunks_per_group * sizeof(double))
        o_near = _segment(&at, rows * sizeof(Py_ssize_t))
        o_win = _segment(&at, sp.chunks_per_group * sizeof(Py_ssize_t))
        o_A = _segment(&at, rows * sp.d * itemsize)
    if base != NULL:
        buf.val_buf = <double *> (base + o_val)
        buf.row_acc = <double *> (base + o_acc)
        buf.row_cnt = <Py_ssize_t *> (base + o_cnt)
        buf.row_lists = <const int **> (base + o_lists)
        buf.dist_buf = base + o_dist
        buf.index_buf = <int *> (base + o_index)
        buf.screen_buf = <float *> (base + o_screen)
        if with_outputs:
            out.col_sums = <double *> (base + o_col)
            out.row_sums = <double *> (base + o_rows)
            out.chunk_loss = <double *> (base + o_loss)
            out.nearest = <Py_ssize_t *> (base + o_near)
            out.chunk_window = <Py_ssize_t *> (base + o_win)
            out.A = base + o_A
    return at


cdef void _softmax_group(const _SoftmaxPass *sp, Py_ssize_t g, const _GroupBuffers *buf,
                         const _GroupOutputs *out, floating *dtype_tag) noexcept nogil:
    """The chunks of group g, in order: candidates, then
    :func:`_chunk_from_candidates`, into ``out`` (whose ``col_sums`` the
    chunks add to).  ``dtype_tag`` only selects X's dtype."""
    cdef Py_ssize_t c0 = g * sp.chunks_per_group
    cdef Py_ssize_t c_stop = min(c0 + sp.chunks_per_group, sp.n_chunks)
    cdef Py_ssize_t g0 = c0 * sp.chunk_size, c, r, start, stop
    for c in range(c0, c_stop):
        start = c * sp.chunk_size
        stop = min(start + sp.chunk_size, sp.n)
        if sp.use_tiles:
            for r in range(stop - start):
                buf.row_lists[r] = sp.cand_index + sp.cand_offsets[start + r]
                buf.row_cnt[r] = sp.cand_offsets[start + r + 1] - sp.cand_offsets[start + r]
        else:
            _scan_chunk_candidates(sp.ZL, sp.ZR, sp.n, sp.kk, sp.zn, sp.margin_scale,
                                   sp.z_sq_max, sp.screen_scale, start, stop,
                                   buf.screen_buf, buf.index_buf, buf.row_lists, buf.row_cnt)
        out.chunk_window[c - c0] = _chunk_from_candidates(
            <const floating *> sp.Z, sp.k, <const floating *> sp.X, sp.n, sp.d, sp.labels,
            sp.targets, sp.regression, start, stop, buf.row_lists, buf.row_cnt, buf.val_buf,
            <floating *> buf.dist_buf, buf.row_acc,
            <floating *> out.A + (start - g0) * sp.d, out.row_sums + (start - g0),
            out.col_sums, out.nearest + (start - g0), &out.chunk_loss[c - c0])


cdef void _omp_group(const _SoftmaxPass *sp, Py_ssize_t g, char *block,
                     floating *dtype_tag) noexcept nogil:
    """Group g on an OpenMP thread whose buffers are ``block``: straight
    into the pass's outputs."""
    cdef _GroupBuffers buf
    cdef _GroupOutputs out
    cdef Py_ssize_t c0 = g * sp.chunks_per_group, g0 = c0 * sp.chunk_size
    _carve(sp, sizeof(floating), False, block, &buf, &out)
    out.A = <floating *> sp.A + g0 * sp.d
    out.row_sums = sp.row_sums + g0
    out.nearest = sp.nearest + g0
    out.col_sums = sp.col_sums + g * sp.n
    out.chunk_loss = sp.chunk_loss + c0
    out.chunk_window = sp.chunk_window + c0
    _softmax_group(sp, g, &buf, &out, dtype_tag)


cdef int _softmax_pass_omp(const _SoftmaxPass *sp, int n_threads,
                           floating *dtype_tag) noexcept nogil:
    """Every group on OpenMP's threads (dynamically: a thread that the OS
    preempts holds up one group, not a fixed share); 0 on success."""
    cdef Py_ssize_t g
    cdef int failed = 0
    cdef char *block = NULL
    cdef size_t block_bytes = _carve(sp, sizeof(floating), False, NULL, NULL, NULL)
    with parallel(num_threads=n_threads):
        block = <char *> malloc(block_bytes)
        for g in prange(sp.n_groups, schedule='dynamic'):
            if block == NULL:
                failed += 1
            else:
                _omp_group(sp, g, block, dtype_tag)
        free(block)
    return -1 if failed else 0


cdef void _team_compute(const void *ctx, int64_t g, void *scratch,
                        floating *dtype_tag) noexcept nogil:
    """A team member's group: into its own scratch (see :func:`_carve`)."""
    cdef const _SoftmaxPass *sp = <const _SoftmaxPass *> ctx
    cdef _GroupBuffers buf
    cdef _GroupOutputs out
    _carve(sp, sizeof(floating), True, <char *> scratch, &buf, &out)
    memset(out.col_sums, 0, sp.n * sizeof(double))
    _softmax_group(sp, g, &buf, &out, dtype_tag)


cdef void _team_publish(const void *ctx, int64_t g, const void *scratch,
                        floating *dtype_tag) noexcept nogil:
    """Copy a finished group from the scratch to the pass's outputs."""
    cdef const _SoftmaxPass *sp = <const _SoftmaxPass *> ctx
    cdef _GroupBuffers buf
    cdef _GroupOutputs out
    cdef Py_ssize_t c0 = g * sp.chunks_per_group
    cdef Py_ssize_t n_c = min(c0 + sp.chunks_per_group, sp.n_chunks) - c0
    cdef Py_ssize_t g0 = c0 * sp.chunk_size
    cdef Py_ssize_t rows = min(g0 + sp.chunks_per_group * sp.chunk_size, sp.n) - g0
    _carve(sp, sizeof(floating), True, <char *> scratch, &buf, &out)
    memcpy(<floating *> sp.A + g0 * sp.d, out.A, rows * sp.d * sizeof(floating))
    memcpy(sp.row_sums + g0, out.row_sums, rows * sizeof(double))
    memcpy(sp.nearest + g0, out.nearest, rows * sizeof(Py_ssize_t))
    memcpy(sp.col_sums + g * sp.n, out.col_sums, sp.n * sizeof(double))
    memcpy(sp.chunk_loss + c0, out.chunk_loss, n_c * sizeof(double))
    memcpy(sp.chunk_window + c0, out.chunk_window, n_c * sizeof(Py_ssize_t))


cdef void _team_compute_f64(const void *ctx, int64_t g, void *scratch) noexcept nogil:
    _team_compute(ctx, g, scratch, <double *> NULL)


cdef void _team_compute_f32(const void *ctx, int64_t g, void *scratch) noexcept nogil:
    _team_compute(ctx, g, scratch, <float *> NULL)


cdef void _team_publish_f64(const void *ctx, int64_t g, const void *scratch) noexcept nogil:
    _team_publish(ctx, g, scratch, <double *> NULL)


cdef void _team_publish_f32(const void *ctx, int64_t g, const void *scratch) noexcept nogil:
    _team_publish(ctx, g, scratch, <float *> NULL)


cdef int64_t _softmax_pass_team(const _SoftmaxPass *sp, int team_threads,
                                floating *dtype_tag) noexcept nogil:
    """Every group on fm_team.h's team (busy machines: the caller takes
    over a late helper's group).  The job's generation (see team_run)."""
    cdef fm_team_job job
    job.compute = _team_compute_f32 if floating is float else _team_compute_f64
    job.publish = _team_publish_f32 if floating is float else _team_publish_f64
    job.ctx = sp
    job.ctx_bytes = sizeof(_SoftmaxPass)
    job.n_chunks = sp.n_groups
    job.scratch_bytes = _carve(sp, sizeof(floating), True, NULL, NULL, NULL)
    return team_run(&job, team_threads)


cdef _SoftmaxPass _softmax_pass(
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
) noexcept nogil:
    """The pass's struct from its arrays and options."""
    cdef _SoftmaxPass sp
    cdef Py_ssize_t i
    sp.Z = &Z[0, 0]
    sp.X = &X[0, 0]
    sp.ZL = &ZL[0, 0]
    sp.ZR = &ZR[0, 0]
    sp.zn = &z_sq_norms[0]
    sp.labels = &labels[0]
    sp.targets = &targets[0]
    sp.cand_offsets = &cand_offsets[0]
    sp.cand_index = &cand_index[0]
    sp.n = Z.shape[0]
    sp.d = X.shape[1]
    sp.k = Z.shape[1]
    sp.kk = ZL.shape[1]
    sp.chunk_size = opts.chunk_size
    sp.chunks_per_group = opts.chunks_per_group
    sp.n_chunks = (sp.n + sp.chunk_size - 1) // sp.chunk_size
    sp.n_groups = (sp.n_chunks + sp.chunks_per_group - 1) // sp.chunks_per_group
    sp.regression = opts.regression
    sp.use_tiles = opts.use_tiles
    sp.screen_scale = opts.screen_scale
    sp.margin_scale = screening_margin_scale(sp.k)
    sp.z_sq_max = 0.0
    for i in range(sp.n):
        if z_sq_norms[i] > sp.z_sq_max:
            sp.z_sq_max = z_sq_norms[i]
    sp.A = &A[0, 0]
    sp.row_sums = &row_sums[0]
    sp.col_sums = &col_sums[0, 0]
    sp.chunk_loss = &chunk_loss[0]
    sp.chunk_window = &chunk_window[0]
    sp.nearest = &nearest[0]
    return sp


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
) noexcept nogil:
    """All chunks of rows, groups of chunks in parallel; 0 on success.

    Group g handles chunks ``g * chunks_per_group`` to the next group's
    first, in order, adding its column sums into ``col_sums[g]`` (zeroed by
    the caller); the split depends on n and chunk_size only.  Groups go to
    the threads dynamically (a thread that the OS preempts holds up one
    group, not a fixed share): which thread does a group does not change
    its result.  The
    candidates come from the tile strategy (``use_tiles``: CSR arrays
    ``cand_offsets``, ``cand_index``) or are found chunk by chunk (row
    strategy, from ``ZL``, ``ZR``, ``screen_scale``).  The scalar settings
    are in ``opts`` (see SoftmaxPassOptions).  Returns -1 when a
    thread-local buffer cannot be allocated.
    """
    cdef _SoftmaxPass sp = _softmax_pass(Z, ZL, ZR, z_sq_norms, X, labels, targets, opts,
                                         cand_offsets, cand_index, A, row_sums, col_sums,
                                         chunk_loss, chunk_window, nearest)
    return _softmax_pass_omp(&sp, n_threads, <floating *> NULL)


# --------------------------------------------------------------------------
# tile strategy
# --------------------------------------------------------------------------
cdef inline int _reserve_pairs(int **buf, Py_ssize_t *capacity, Py_ssize_t needed) noexcept nogil:
    """Grow a thread-local pair buffer to hold ``needed`` pairs; 1 on failure."""
    cdef Py_ssize_t new_cap
    cdef int *grown
    if needed <= capacity[0]:
        return 0
    new_cap = max(needed, 2 * capacity[0])
    grown = <int *> realloc(buf[0], 2 * new_cap * sizeof(int))
    if grown == NULL:
        return 1
    buf[0] = grown
    capacity[0] = new_cap
    return 0


cdef inline Py_ssize_t _scan_tile(const float *tbuf, Py_ssize_t rows, Py_ssize_t cols,
                                  Py_ssize_t i0, Py_ssize_t j0, const float[::1] thresholds,
                                  int *out, Py_ssize_t cnt) noexcept nogil:
    """Append the candidate pairs of one tile of D32 to ``out`` (room given)."""
    cdef Py_ssize_t r, c, c0, i
    cdef const float *trow
    cdef const float *tcol = &thresholds[j0]
    cdef float v, ti
    for r in range(rows):
        i = i0 + r
        ti = thresholds[i]
        trow = tbuf + r * cols
        c0 = r + 1 if i0 == j0 else 0
        for c in range(c0, cols):
            v = trow[c]
            # Rarely true where tiles are used (a concentrated softmax).
            if v <= ti or v <= tcol[c]:
                out[2 * cnt] = <int> i
                out[2 * cnt + 1] = <int> (j0 + c)
                cnt += v <= ti
                out[2 * cnt] = <int> (j0 + c)
                out[2 * cnt + 1] = <int> i
                cnt += v <= tcol[c]
    return cnt


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
) noexcept nogil:
    """Pairs (i, j), i != j, with D32_ij <= thresholds[i], from tiles I <= J.

    Tile p covers rows ``tile_rows[p] * tile`` and columns ``tile_cols[p] *
    tile`` (tile_rows[p] <= tile_cols[p]); an entry above the diagonal gives
    the candidate (i, j) when ``D32_ij <= t_i`` and (j, i) when ``D32_ij <=
    t_j`` (D32 is symmetric up to its error bound, which the thresholds
    include).  Tile p's pairs go to the buffer of
    the thread that scans it, at ``[tile_start[p], tile_stop[p])`` of buffer
    ``tile_thread[p]`` (``bufs``, ``counts``, ``capacities`` per thread;
    the caller frees them).  A thread whose buffer passes
    ``limit_per_thread`` pairs sets ``overflow[tid]`` and stops.
    """
    cdef Py_ssize_t n = ZL.shape[0], kk = ZL.shape[1], n_tiles = tile_rows.shape[0]
    cdef Py_ssize_t p, i0, j0, rows, cols
    cdef int tid = 0
    cdef float *tbuf = NULL
    with parallel(num_threads=n_threads):
        tid = omp_get_thread_num()
        tbuf = <float *> malloc(tile * tile * sizeof(float))
        if tbuf == NULL:
            overflow[tid] = 1
        for p in prange(n_tiles, schedule='dynamic'):
            tile_thread[p] = tid
            tile_start[p] = counts[tid]
            tile_stop[p] = counts[tid]
            if overflow[tid] == 0:
                i0 = tile_rows[p] * tile
                j0 = tile_cols[p] * tile
                rows = min(tile, n - i0)
                cols = min(tile, n - j0)
                # Room for every pair of the tile, so the scan needs no check.
                if _reserve_pairs(&bufs[tid], &capacities[tid],
                                  counts[tid] + 2 * rows * cols):
                    overflow[tid] = 1
                else:
                    gemm_rowmajor(False, True, <int> rows, <int> cols, <int> kk,
                                  <float> 1.0, &ZL[i0, 0], <int> kk,
                                  &ZR[j0, 0], <int> kk,
                                  <float> 0.0, tbuf, <int> cols)
                    counts[tid] = _scan_tile(tbuf, rows, cols, i0, j0, thresholds,
                                             bufs[tid], counts[tid])
                    tile_stop[p] = counts[tid]
                    if counts[tid] > limit_per_thread:
                        overflow[tid] = 1
        free(tbuf)
    return 0


def _tile_candidates(const float[:, ::1] ZL, const float[:, ::1] ZR,
                     const float[::1] thresholds, Py_ssize_t tile, Py_ssize_t max_pairs,
                     int n_threads):
    """CSR (offsets, indices) of the tile strategy's candidates, or None.

    None when more than about ``max_pairs`` candidates were found (the
    caller then uses the row strategy).  The pairs of a row come from the
    tiles of its row and column block; taking the tiles in their upper
    triangular order (row block, then column block) and each tile's pairs
    in scan order lists every row's candidates in increasing j, whichever
    thread scanned which tile: no sort is needed and the result does not
    depend on the threads.
    """
    cdef Py_ssize_t n = ZL.shape[0]
    cdef Py_ssize_t n_blocks = (n + tile - 1) // tile
    rows_arr, cols_arr = np.triu_indices(n_blocks)
    cdef Py_ssize_t[::1] tile_rows = np.ascontiguousarray(rows_arr, dtype=np.intp)
    cdef Py_ssize_t[::1] tile_cols = np.ascontiguousarray(cols_arr, dtype=np.intp)
    cdef Py_ssize_t n_tiles = tile_rows.shape[0]
    cdef Py_ssize_t[::1] tile_thread = np.zeros(n_tiles, dtype=np.intp)
    cdef Py_ssize_t[::1] tile_start = np.zeros(n_tiles, dtype=np.intp)
    cdef Py_ssize_t[::1] tile_stop = np.zeros(n_tiles, dtype=np.intp)
    cdef int n_slots = max(1, n_threads)
    cdef Py_ssize_t limit = max_pairs // n_slots + 1
    cdef int **bufs = <int **> malloc(n_slots * sizeof(int *))
    cdef Py_ssize_t *counts = <Py_ssize_t *> malloc(n_slots * sizeof(Py_ssize_t))
    cdef Py_ssize_t *capacities = <Py_ssize_t *> malloc(n_slots * sizeof(Py_ssize_t))
    cdef int *overflow = <int *> malloc(n_slots * sizeof(int))
    cdef Py_ssize_t s, q, p, total = 0, row, pos, i
    cdef int *buf
    cdef bint failed = False
    cdef Py_ssize_t[::1] offsets
    cdef Py_ssize_t[::1] cursor
    cdef int[::1] index
    if bufs == NULL or counts == NULL or capacities == NULL or overflow == NULL:
        free(bufs)
        free(counts)
        free(capacities)
        free(overflow)
        return None
    for s in range(n_slots):
        bufs[s] = NULL
        counts[s] = 0
        capacities[s] = 0
        overflow[s] = 0
    try:
        with nogil:
            tile_candidates(ZL, ZR, thresholds, tile_rows, tile_cols, tile, limit, bufs,
                            counts, capacities, overflow, tile_thread, tile_start, tile_stop,
                            n_slots)
            for s in range(n_slots):
                if overflow[s]:
                    failed = True
                total += counts[s]
        if failed:
            return None
        offsets_arr = np.zeros(n + 1, dtype=np.intp)
        index_arr = np.empty(max(total, 1), dtype=np.int32)
        offsets = offsets_arr
        index = index_arr
        cursor = np.empty(n, dtype=np.intp)
        with nogil:
            # Bucket the pairs by row (a counting sort) in tile order.
            for s in range(n_slots):
                buf = bufs[s]
                for q in range(counts[s]):
                    offsets[buf[2 * q] + 1] += 1
            for i in range(n):
                offsets[i + 1] += offsets[i]
                cursor[i] = offsets[i]
            for p in range(n_tiles):
                buf = bufs[tile_thread[p]]
                for q in range(tile_start[p], tile_stop[p]):
                    row = buf[2 * q]
                    pos = cursor[row]
                    index[pos] = buf[2 * q + 1]
                    cursor[row] = pos + 1
        return offsets_arr, index_arr
    finally:
        for s in range(n_slots):
            free(bufs[s])
        free(bufs)
        free(counts)
        free(capacities)
        free(overflow)


def _hint_distances(const floating[:, ::1] Z, const Py_ssize_t[::1] hint, int n_threads):
    """u_i = ||z_i - z_{hint_i}||^2 (exact, as in the evaluation)."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    out_arr = np.empty(n, dtype=np.float64)
    cdef double[::1] out = out_arr
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads, nogil=True):
        out[i] = sq_dist(&Z[i, 0], &Z[hint[i], 0], k)
    return out_arr


# --------------------------------------------------------------------------
# gradient assembly
# --------------------------------------------------------------------------
cdef void _laplacian_rhs(
    const floating[:, ::1] X,
    const double[::1] row_sums,
    const double[:, ::1] col_sums,
    floating[:, ::1] A,
    int n_threads,
) noexcept nogil:
    """A <- diag(u / 2) X - A with u = r + c, c merged over groups in order."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_groups = col_sums.shape[0]
    cdef Py_ssize_t i, j, g
    cdef double u
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
        u = row_sums[i]
        for g in range(n_groups):
            u = u + col_sums[g, i]
        u = 0.5 * u
        for j in range(d):
            A[i, j] = <floating> (u * X[i, j] - A[i, j])


cdef void _gram_partials(
    const floating[:, ::1] X,
    const floating[:, ::1] B,
    floating[:, :, ::1] partials,
    Py_ssize_t block,
    int n_threads,
) noexcept nogil:
    """partials[b] = X[block b]^T @ B[block b]  (d x d each)."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t n_blocks = partials.shape[0], b, start, size
    with parallel(num_threads=n_threads):
        for b in prange(n_blocks, schedule='dynamic'):
            start = b * block
            size = min(block, n - start)
            gemm_atb(False, &X[start, 0], d, &B[start, 0], d, size, d, d,
                     &partials[b, 0, 0], d)


cdef void _row_sq_norms(const floating[:, ::1] Z, double[::1] out, int n_threads) noexcept nogil:
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
        out[i] = sq_norm(&Z[i, 0], k)


cdef void _fill_screening_points(
    const floating[:, ::1] Z,
    const double[::1] z_sq_norms,
    double s,
    float[:, ::1] ZL,
    float[:, ::1] ZR,
    int n_threads,
) noexcept nogil:
    """ZL = [-2 s z, 1, s^2 ||z||^2], ZR = [s z, s^2 ||z||^2, 1] in float32."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i, q
    cdef float v
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
        for q in range(k):
            v = <float> (s * Z[i, q])
            ZL[i, q] = -2.0 * v          # exact: a power of 2 times a float32
            ZR[i, q] = v
        v = <float> (s * s * z_sq_norms[i])
        ZL[i, k] = 1.0
        ZL[i, k + 1] = v
        ZR[i, k] = v
        ZR[i, k + 1] = 1.0


def _screening_scale(double z_sq_max):
    """``s`` (a power of 2) with ``s^2 max ||z||^2`` near 1, so that float32
    neither overflows on large maps nor underflows on tiny ones."""
    if not (z_sq_max > 0 and np.isfinite(z_sq_max)):
        return 1.0
    return float(np.ldexp(1.0, -int(np.round(0.5 * np.log2(z_sq_max)))))


def softmax_neighbors_evaluate(
        const floating[:, ::1] X, const Py_ssize_t[::1] labels,
        const double[::1] targets, bint regression, const floating[:, ::1] L,
        bint compute_gradient, Py_ssize_t[::1] nearest, bint try_tiles,
        Py_ssize_t tile, Py_ssize_t chunk_size, Py_ssize_t chunks_per_group,
        int n_threads, ws, int team_threads=0):
    """One evaluation of NCA's or MLKR's objective (see the module docstring:
    the math, the window and the two strategies); returns (loss, H or None,
    pairs in the window, tiles used), with the gradient in L being 2 L H.

    ``nearest`` holds each point's nearest neighbour from the previous
    evaluation (the hints of the tile strategy, tried when ``try_tiles``);
    it is overwritten with the current ones.  ``ws`` holds the work arrays
    (the attributes of fastmetric._core.objectives.softmax_neighbors'
    workspace).  ``team_threads > 1`` runs the main pass (the groups of
    chunks) on fm_team.h's team of that many threads instead of OpenMP's
    ``n_threads`` (busy machines; the same result).  Cost: O(n^2 k) for the
    distances (less with tiles), plus O(n d^2) for the gradient.  BLAS must
    be single-threaded around the call.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = L.shape[0]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef floating[:, ::1] Z = ws.Z
    cdef double[::1] zn = ws.zn
    cdef floating[:, ::1] A = ws.A
    cdef double[::1] row_sums = ws.row_sums
    cdef double[:, ::1] col_sums = ws.col_sums
    cdef double[::1] chunk_loss = ws.chunk_loss
    cdef Py_ssize_t[::1] chunk_window = ws.chunk_window
    cdef float[:, ::1] ZL = ws.ZL
    cdef float[:, ::1] ZR = ws.ZR
    cdef floating[:, :, ::1] partials = ws.partials
    cdef Py_ssize_t[::1] cand_offsets = ws.no_offsets
    cdef int[::1] cand_index = ws.no_index
    cdef Py_ssize_t c, b, i, j, block = ws.block, n_blocks = ws.partials.shape[0]
    cdef double loss = 0.0, s, screen_scale, z_sq_max = 0.0
    cdef int rc
    cdef bint use_tiles = False
    cdef Py_ssize_t point_chunk = DEF_POINT_CHUNK

    with nogil:
        transform_rows(X, L, Z, point_chunk, n_threads)
        _row_sq_norms(Z, zn, n_threads)
        for i in range(n):
            if zn[i] > z_sq_max:
                z_sq_max = zn[i]
    s = _screening_scale(z_sq_max)
    screen_scale = s * s
    with nogil:
        _fill_screening_points(Z, zn, s, ZL, ZR, n_threads)
        memset(&col_sums[0, 0], 0, col_sums.shape[0] * n * sizeof(double))
    found = None
    if try_tiles:
        # t_i = u_i + WINDOW + margin_i, u_i the distance to the hint (see
        # the module docstring), scaled like ZL . ZR and rounded up to float32.
        u = _hint_distances(Z, nearest, n_threads)
        t64 = screen_scale * (u + WINDOW + screening_margin_scale(k) * (ws.zn + z_sq_max))
        t32 = t64.astype(np.float32)
        low = t32.astype(np.float64) < t64
        t32[low] = np.nextafter(t32[low], np.float32(np.inf))
        found = _tile_candidates(ZL, ZR, t32, tile, (n * n) // DEF_TILE_RATIO + n, n_threads)
        if found is not None:
            cand_offsets, cand_index = found
            use_tiles = True
    cdef SoftmaxPassOptions opts
    opts.regression = regression
    opts.screen_scale = screen_scale
    opts.use_tiles = use_tiles
    opts.chunk_size = chunk_size
    opts.chunks_per_group = chunks_per_group
    cdef _SoftmaxPass sp
    cdef int64_t generation = 0
    with nogil:
        sp = _softmax_pass(Z, ZL, ZR, zn, X, labels, targets, &opts, cand_offsets,
                           cand_index, A, row_sums, col_sums, chunk_loss, chunk_window,
                           nearest)
        if team_threads > 1:
            generation = _softmax_pass_team(&sp, team_threads, <floating *> NULL)
            rc = -1 if generation < 0 else 0
        else:
            rc = _softmax_pass_omp(&sp, n_threads, <floating *> NULL)
    if rc != 0:
        raise MemoryError(
            f"could not allocate the thread-local buffers ({chunk_size} x {n} entries "
            "per thread); lower chunk_size or n_jobs."
        )
    if generation > 0:
        # A helper that was off its core may still read the pass's inputs.
        team_keep(generation, X, labels, targets, ws, found)
    for c in range(n_chunks):
        loss += chunk_loss[c]
    n_window = int(ws.chunk_window.sum())
    if not regression:
        loss = -loss
    if not compute_gradient:
        return loss, None, n_window, use_tiles

    H_arr = np.empty((d, d), dtype=np.float64)
    cdef double[:, ::1] H = H_arr
    with nogil:
        _laplacian_rhs(X, row_sums, col_sums, A, n_threads)
        _gram_partials(X, A, partials, block, n_threads)
        # M = sum of the partials in block order (float64); H = M + M^T.
        for i in range(d):
            for j in range(d):
                s = 0.0
                for b in range(n_blocks):
                    s += partials[b, i, j]
                H[i, j] = s
        for i in range(d):
            for j in range(i, d):
                s = H[i, j] + H[j, i]
                H[i, j] = s
                H[j, i] = s
    return loss, H_arr, n_window, use_tiles


def _exp_window(double[::1] val, double m, double lim):
    """Test hook: ``val <- where(val <= lim, exp(m - val), 0)`` in place."""
    if val.shape[0]:
        fm_exp_window(&val[0], val.shape[0], m, lim)

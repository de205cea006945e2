"""Kernels of LMNN: target neighbours, impostor search, loss and gradient.

Notation.  Points ``x_i`` (rows of X, sorted by class so that each class is
a contiguous range of rows), the map ``L`` (k x d), the embedded points
``z_i = L x_i`` (rows of ``Z = X L^T``) and squared distances
``D_ij = ||z_i - z_j||^2``.  Each point i has target neighbours ``T(i)``
(same class, fixed), margin radius ``r_i = 1 + max_{j in T(i)} D_ij``, and
the LMNN objective (Weinberger & Saul) with ``mu`` the push weight is

    f(L) = (1 - mu) sum_i sum_{j in T(i)} D_ij
           + mu sum_i sum_{j in T(i)} sum_{l: y_l != y_i} [1 + D_ij - D_il]_+ .

A triplet (i, j, l) can be active only if ``D_il < 1 + D_ij <= r_i``: the
impostors of i are the points of other classes inside its margin radius.
The kernels evaluate f over a set of *candidate pairs* {a, b} (of different
classes) that contains every impostor pair, found by :func:`_search` and
stored as per-point lists of the other ends (CSR, each list increasing; the
caller keeps the superset valid, see ``_lmnn.py``).  Each pair appears in
both ends' lists; each end computes the distance itself (the same value,
bit for bit) and handles its own direction, so every row is written by one
thread only.  When the impostor pairs are too many to store, the dense
kernel :func:`_dense_loss_grad` works on GEMM blocks instead.

Gradient.  With ``dD_ab/dL = 2 L (x_a - x_b)(x_a - x_b)^T`` the gradient is
``2 L sum_p w_p (x_a - x_b)(x_a - x_b)^T`` where, for a target pair (i, j),
``w = (1 - mu) + mu * #{l : (i, j, l) active}`` and, for a candidate pair
{a, b}, ``w = -mu * (#{j: (a, j, b) active} + #{j: (b, j, a) active})``.
The weighted sum of outer products is ``X^T Lap X``, Lap the Laplacian of
the weighted pair graph, hence

    grad = 2 L X^T Lap X = 2 (Lap Z)^T X,

where row u of ``G = Lap Z`` is ``sum_{pairs p at u} w_p (z_u - z_other)``:
O(P k) work over the per-point lists, then one GEMM of O(n k d), split into
blocks whose k x d products are summed in block order.
Per evaluation: O(n k d + P k + n K k) for n points, P candidate pairs and
K target neighbours, and no O(n^2) memory.

Determinism.  Every loop is over chunks of points or pairs with fixed
boundaries; sums are taken per chunk and merged in chunk order; the impostor
search fills one buffer per row block (scheduled dynamically, as the blocks
of the triangle have unequal work) and merges them in block order.
The results are therefore bitwise identical for any number of threads.
On a busy machine the impostor search can run on fm_team.h's team
(``team_threads``): each row block is searched into the computing
thread's fixed buffer and copied into the block's list (see _SearchJob),
so the lists are the same whoever searches a block.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.math cimport INFINITY
from libc.stdlib cimport malloc, free, realloc
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from libc.limits cimport INT_MAX

from fastmetric.kernels.common cimport (
    floating, gemm_rowmajor, fm_prefetch_block, FM_PREFETCH_AHEAD, insert_sorted, sq_dist, sq_norm,
)
from fastmetric.kernels.smallgemm cimport gemm_atb
from fastmetric.kernels.distances cimport transform_rows
from fastmetric.kernels.team cimport fm_team_job, team_run
from fastmetric.kernels.team import team_keep


cdef extern from "fastmetric/kernels/include/fm_lmnn.h" nogil:
    long long fm_lmnn_atomic_add(long long *p, long long v)


cdef enum:
    # Rows per work unit of the k-NN and impostor search, and columns per
    # GEMM block: a (128 x 1024) block of float64 products is 1 MB.
    DEF_ROW_BLOCK = 128
    DEF_COL_CHUNK = 1024
    # Points / pairs per work unit of the evaluation kernels.
    DEF_POINT_CHUNK = 256
    DEF_PAIR_CHUNK = 4096
    # At most this many partial k x d products are kept for the gradient.
    DEF_MAX_PARTIALS = 64


# ---------------------------------------------------------------------------
# Target neighbours: k nearest same-class points, chunked GEMM + exact check
# ---------------------------------------------------------------------------
cdef inline double _exact_sq_dist(const floating[:, ::1] Z, Py_ssize_t i,
                                  Py_ssize_t j) noexcept nogil:
    """||Z[i] - Z[j]||^2 from the differences, in float64 (symmetric in i, j
    bit for bit: see ``sq_dist`` in common.pxd)."""
    return sq_dist(&Z[i, 0], &Z[j, 0], Z.shape[1])


cdef inline double _expansion_tol(const floating[:, ::1] Z) noexcept nogil:
    """Relative error bound of the GEMM expansion of a squared distance
    between rows of Z, ``tol (|z_i|^2 + |z_j|^2)``: (k + 2) roundings of the
    working precision, doubled."""
    if floating is float:
        return 2.0 * (Z.shape[1] + 2) * 1.2e-7
    return 2.0 * (Z.shape[1] + 2) * 2.3e-16


cdef inline Py_ssize_t _minus_two_gram(const floating[:, ::1] Z, Py_ssize_t start,
                                       Py_ssize_t rows, Py_ssize_t c0, Py_ssize_t col_stop,
                                       Py_ssize_t col_chunk, floating *buf) noexcept nogil:
    """buf (rows x w) = -2 Z[start:start+rows] Z[c0:c0+w]^T for the column
    block of width ``w = min(col_chunk, col_stop - c0)``, which is returned:
    with the squared norms, the GEMM expansion |z_i|^2 + |z_j|^2 - 2 z_i.z_j
    of a block of squared distances."""
    cdef Py_ssize_t k = Z.shape[1], w = min(col_chunk, col_stop - c0)
    gemm_rowmajor(False, True, <int> rows, <int> w, <int> k,
                  <floating> -2.0, &Z[start, 0], <int> k, &Z[c0, 0], <int> k,
                  <floating> 0.0, buf, <int> w)
    return w


cdef inline void _knn_item(
    const floating[:, ::1] Z,
    const double[::1] sq_norms,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t col_start,
    Py_ssize_t col_stop,
    const int[::1] n_targets,
    int[:, ::1] targets,
    double[:, ::1] target_dist,
    Py_ssize_t col_chunk,
    double tol_rel,
    floating *buf,
) noexcept nogil:
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t i, j, c0, w, s
    cdef int kk
    cdef double g, worst, exact
    for i in range(start, stop):
        for s in range(n_targets[i]):
            target_dist[i, s] = INFINITY
            targets[i, s] = INT_MAX
    c0 = col_start
    while c0 < col_stop:
        # buf = -2 Z[rows] Z[cols]^T ; D = |z_i|^2 + |z_j|^2 + buf
        w = _minus_two_gram(Z, start, rows, c0, col_stop, col_chunk, buf)
        for i in range(start, stop):
            kk = n_targets[i]
            if kk == 0:
                continue
            for j in range(c0, c0 + w):
                if j == i:
                    continue
                worst = target_dist[i, kk - 1]
                g = <double> buf[(i - start) * w + (j - c0)] + sq_norms[i] + sq_norms[j]
                # The expansion is only a filter (it loses precision for close
                # points); the kept candidates are ranked by exact distances,
                # ties broken by the smaller index, so the result does not
                # depend on rounding nor on the blocking.
                if g > worst + tol_rel * (sq_norms[i] + sq_norms[j]):
                    continue
                exact = _exact_sq_dist(Z, i, j)
                if exact < worst or (exact == worst and j < targets[i, kk - 1]):
                    insert_sorted(&targets[i, 0], &target_dist[i, 0], kk, exact, <int> j)
        c0 += w


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
) noexcept nogil:
    """For each row i, its ``n_targets[i]`` nearest rows among the columns
    of its work item (its own class), sorted by (distance, index).

    Work item t covers rows ``item_start[t]:item_stop[t]`` (at most
    DEF_ROW_BLOCK rows of one class) against the class's rows
    ``item_col_start[t]:item_col_stop[t]``.
    """
    cdef Py_ssize_t n_items = item_start.shape[0], t, max_rows = 0
    cdef double tol_rel
    cdef floating *buf
    for t in range(n_items):
        max_rows = max(max_rows, item_stop[t] - item_start[t])
    tol_rel = _expansion_tol(Z)
    with parallel(num_threads=n_threads):
        buf = <floating *> malloc(max_rows * col_chunk * sizeof(floating))
        # Items write disjoint rows: any schedule gives the same result.
        for t in prange(n_items, schedule='dynamic'):
            _knn_item(Z, sq_norms, item_start[t], item_stop[t], item_col_start[t],
                      item_col_stop[t], n_targets, targets, target_dist, col_chunk,
                      tol_rel, buf)
        free(buf)


# ---------------------------------------------------------------------------
# Impostor (candidate pair) search
# ---------------------------------------------------------------------------
cdef enum:
    # What a row block of the impostor search ended with.
    SEARCH_DONE = 0
    SEARCH_OVER_BUDGET = 1        # the shared pair count passed the budget
    SEARCH_NO_MEMORY = 2
    SEARCH_BLOCK_FULL = 3         # a fixed buffer (a team member's) is full


cdef inline int _push_pair(PairBuffer *out, int a, int b, bint can_grow) noexcept nogil:
    """Append (a, b); grow the buffer when full if ``can_grow``.  0, or
    SEARCH_NO_MEMORY / SEARCH_BLOCK_FULL."""
    cdef Py_ssize_t cap
    cdef int *na
    cdef int *nb
    if out.size == out.capacity:
        if not can_grow:
            return SEARCH_BLOCK_FULL
        cap = 1024 if out.capacity == 0 else 2 * out.capacity
        na = <int *> realloc(out.a, cap * sizeof(int))
        if na == NULL:
            return SEARCH_NO_MEMORY
        out.a = na
        nb = <int *> realloc(out.b, cap * sizeof(int))
        if nb == NULL:
            return SEARCH_NO_MEMORY
        out.b = nb
        out.capacity = cap
    out.a[out.size] = a
    out.b[out.size] = b
    out.size += 1
    return 0


cdef int _search_rows(
    const floating *Z,
    Py_ssize_t n,
    Py_ssize_t k,
    const double *sq_norms,
    const Py_ssize_t *class_end,
    const double *rho,
    double tol_rel,
    double tol_thr,
    Py_ssize_t start,
    Py_ssize_t stop,
    Py_ssize_t col_chunk,
    floating *gemm_buf,
    PairBuffer *out,
    bint can_grow,
    long long *global_count,
    long long budget,
) noexcept nogil:
    """:func:`search_row_block` on raw pointers (Z: n rows of k); with
    ``can_grow`` false, ``out`` is a fixed buffer and a block with more pairs
    than it holds ends with SEARCH_BLOCK_FULL."""
    cdef Py_ssize_t rows = stop - start
    cdef Py_ssize_t c0, w, i, j, j0, counted = 0
    cdef double ri, ni, thr, g
    cdef floating *row
    cdef int st
    if class_end[start] >= n:
        return SEARCH_DONE
    c0 = class_end[start]
    while c0 < n:
        # gemm_buf (rows x w) = -2 Z[start:stop] Z[c0:c0 + w]^T: with the
        # squared norms, the GEMM expansion of the block's squared distances.
        w = min(col_chunk, n - c0)
        gemm_rowmajor(False, True, <int> rows, <int> w, <int> k,
                      <floating> -2.0, Z + start * k, <int> k, Z + c0 * k, <int> k,
                      <floating> 0.0, gemm_buf, <int> w)
        for i in range(start, stop):
            j0 = max(c0, class_end[i])
            ri = rho[i]
            ni = sq_norms[i]
            row = gemm_buf + (i - start) * w - c0
            for j in range(j0, c0 + w):
                thr = ri if ri > rho[j] else rho[j]
                if thr < 0:
                    continue
                g = <double> row[j] + ni + sq_norms[j]
                if g < thr * (1.0 + tol_thr) + tol_rel * (ni + sq_norms[j]):
                    st = _push_pair(out, <int> i, <int> j, can_grow)
                    if st:
                        return st
        if out.size > counted:
            # Shared running total: stop early once the budget is exceeded.
            # It exceeds the budget at some point iff the full search would,
            # so the outcome does not depend on the thread schedule.
            if fm_lmnn_atomic_add(global_count, out.size - counted) > budget:
                return SEARCH_OVER_BUDGET
            counted = out.size
        c0 += w
    return SEARCH_DONE


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
) noexcept nogil:
    """Append the pairs (i, l), i in [start, stop), l > i of a later class,
    with ``D_il < max(rho_i, rho_l)`` (squared radii; negative: none).

    The distances come from the GEMM expansion ``|z_i|^2 + |z_l|^2 -
    2 z_i.z_l``, whose error is below ``tol_rel (|z_i|^2 + |z_l|^2) +
    tol_thr D``; pairs within that tolerance of the threshold are kept, so
    every pair whose exact distance is below the threshold is found.

    Returns 0, 1 when the shared pair count exceeds ``budget`` (the search
    is abandoned), or 2 when memory runs out.
    """
    return _search_rows(&Z[0, 0], Z.shape[0], Z.shape[1], &sq_norms[0], &class_end[0],
                        &rho[0], tol_rel, tol_thr, start, stop, col_chunk, gemm_buf, out,
                        True, global_count, budget)


cdef inline int _search_block(
    const float[:, ::1] Z,
    const double[::1] sq_norms,
    const Py_ssize_t[::1] class_end,
    const double[::1] rho,
    double tol_rel,
    double tol_thr,
    Py_ssize_t r,
    float *gemm_buf,
    PairBuffer *out,
    long long *global_count,
    long long budget,
) noexcept nogil:
    """Row block ``r`` (rows ``r * DEF_ROW_BLOCK`` on) of the search into its
    growable buffer: the OpenMP threads' step, and the caller's for blocks
    that overflowed a team member's fixed buffer."""
    cdef Py_ssize_t start = r * DEF_ROW_BLOCK
    cdef Py_ssize_t stop = min(start + DEF_ROW_BLOCK, Z.shape[0])
    return search_row_block(Z, sq_norms, class_end, rho, tol_rel, tol_thr, start, stop,
                            DEF_COL_CHUNK, gemm_buf, out, global_count, budget)


# The search on fm_team.h's team (busy machines).  A team member computes a
# row block into its own scratch, a fixed buffer of ``capacity`` pairs (its
# length is known only at the end); publishing copies the pairs into the
# block's own PairBuffer.  A block with more pairs than that is searched
# again by the caller after the job, with a growable buffer.  The budget is
# counted per block in the team (the total is checked after the job, as on
# OpenMP's threads), since a late helper must not write to shared state.
cdef struct _SearchJob:
    const float *Z                  # n x k, float32
    Py_ssize_t n
    Py_ssize_t k
    const double *sq_norms
    const Py_ssize_t *class_end
    const double *rho
    double tol_rel
    double tol_thr
    long long budget
    Py_ssize_t capacity             # pairs a team member's scratch holds
    PairBuffer *bufs                # outputs: one per row block
    int *block_status


cdef struct _SearchScratch:
    PairBuffer pairs
    long long counted
    int status


cdef inline size_t _search_gemm_offset() noexcept nogil:
    return ((sizeof(_SearchScratch) + 63) // 64) * 64


cdef inline size_t _search_pairs_offset() noexcept nogil:
    return _search_gemm_offset() + DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(float)


cdef size_t _search_scratch_bytes(Py_ssize_t capacity) noexcept nogil:
    return _search_pairs_offset() + 2 * capacity * sizeof(int)


cdef void _search_compute(const void *ctx, int64_t r, void *scratch) noexcept nogil:
    cdef const _SearchJob *job = <const _SearchJob *> ctx
    cdef _SearchScratch *head = <_SearchScratch *> scratch
    cdef char *base = <char *> scratch
    cdef Py_ssize_t start = r * DEF_ROW_BLOCK
    cdef Py_ssize_t stop = min(start + DEF_ROW_BLOCK, job.n)
    head.pairs.a = <int *> (base + _search_pairs_offset())
    head.pairs.b = head.pairs.a + job.capacity
    head.pairs.size = 0
    head.pairs.capacity = job.capacity
    head.counted = 0
    head.status = _search_rows(job.Z, job.n, job.k, job.sq_norms, job.class_end, job.rho,
                               job.tol_rel, job.tol_thr, start, stop, DEF_COL_CHUNK,
                               <float *> (base + _search_gemm_offset()), &head.pairs, False,
                               &head.counted, job.budget)


cdef void _search_publish(const void *ctx, int64_t r, const void *scratch) noexcept nogil:
    cdef const _SearchJob *job = <const _SearchJob *> ctx
    cdef const _SearchScratch *head = <const _SearchScratch *> scratch
    cdef Py_ssize_t size = head.pairs.size
    cdef int status = head.status
    cdef int *a
    cdef int *b
    if status == SEARCH_DONE and size > 0:
        a = <int *> malloc(size * sizeof(int))
        b = <int *> malloc(size * sizeof(int))
        if a == NULL or b == NULL:
            free(a)
            free(b)
            status = SEARCH_NO_MEMORY
        else:
            memcpy(a, head.pairs.a, size * sizeof(int))
            memcpy(b, head.pairs.b, size * sizeof(int))
            job.bufs[r].a = a
            job.bufs[r].b = b
            job.bufs[r].size = size
            job.bufs[r].capacity = size
    job.block_status[r] = status


# ---------------------------------------------------------------------------
# Evaluation: distances, hinge terms, Laplacian, gradient
# ---------------------------------------------------------------------------
cdef void target_distances(
    const floating[:, ::1] Z,
    const int[:, ::1] targets,
    const int[::1] n_targets,
    double[:, ::1] Dt,
    double[::1] radius,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """Dt[i, s] = D(i, targets[i, s]); radius[i] = 1 + max_s Dt[i, s] (-1 if none)."""
    cdef Py_ssize_t n = Z.shape[0]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, i, s, start, stop
    cdef double dmax, dist
    for c in prange(n_chunks, schedule='dynamic', num_threads=n_threads):
        start = c * chunk_size
        stop = min(start + chunk_size, n)
        for i in range(start, stop):
            dmax = -2.0
            for s in range(n_targets[i]):
                dist = _exact_sq_dist(Z, i, targets[i, s])
                Dt[i, s] = dist
                if dist > dmax:
                    dmax = dist
            radius[i] = dmax + 1.0


cdef inline int _n_active(const double *Dt_row, int kk, double D) noexcept nogil:
    """#{s < kk : 1 + Dt_row[s] - D > 0}: the active triplets of one
    direction of a pair at squared distance D."""
    cdef int s, cnt = 0
    for s in range(kk):
        if 1.0 + Dt_row[s] - D > 0:
            cnt += 1
    return cnt


cdef inline void _target_terms(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    Py_ssize_t u,
    double *acc,
    double *wsum,
) noexcept nogil:
    """Add the target pairs at u to row u of Lap Z: ``acc -= w z_other`` and
    ``wsum += w`` for u's own targets, then for the points that have u as a
    target, with ``w = (1 - mu) + mu * (active triplets of the pair)``."""
    cdef Py_ssize_t s, t, e, o, k = Z.shape[1]
    cdef double w
    for s in range(graph.n_targets[u]):
        w = (1.0 - mu) + mu * graph.active[u * graph.active_stride + s]
        o = graph.targets[u * graph.targets_stride + s]
        wsum[0] += w
        for t in range(k):
            acc[t] -= w * Z[o, t]
    for e in range(graph.tin_offsets[u], graph.tin_offsets[u + 1]):
        o = graph.tin_source[e]
        w = (1.0 - mu) + mu * graph.active[o * graph.active_stride + graph.tin_slot[e]]
        wsum[0] += w
        for t in range(k):
            acc[t] -= w * Z[o, t]


cdef struct _HingeSums:
    # Running sums of a block of rows: target distances (the pull term),
    # active hinge terms, and the number of active triplets.
    double pull
    double hinge
    long long active


cdef inline void _pull_terms(const TargetGraph *graph, Py_ssize_t i,
                             _HingeSums *sums) noexcept nogil:
    """Add row i's target distances to the pull sum; its active counts
    start at 0."""
    cdef const double *Dt_row = graph.Dt + i * graph.Dt_stride
    cdef int *active_row = graph.active + i * graph.active_stride
    cdef int s
    for s in range(graph.n_targets[i]):
        sums.pull += Dt_row[s]
        active_row[s] = 0


cdef inline void _impostor_terms(const TargetGraph *graph, Py_ssize_t i, double D,
                                 _HingeSums *sums) noexcept nogil:
    """The hinge terms [1 + D_ij - D]_+ of row i against an impostor at
    squared distance D, counted per target pair."""
    cdef const double *Dt_row = graph.Dt + i * graph.Dt_stride
    cdef int *active_row = graph.active + i * graph.active_stride
    cdef int s
    cdef double h
    for s in range(graph.n_targets[i]):
        h = 1.0 + Dt_row[s] - D
        if h > 0:
            sums.hinge += h
            sums.active += 1
            active_row[s] += 1


cdef inline void _block_loss(const _HingeSums *sums, double mu, double *loss_out,
                             long long *active_out) noexcept nogil:
    loss_out[0] = (1.0 - mu) * sums.pull + mu * sums.hinge
    active_out[0] = sums.active


cdef inline void _hinge_rows(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    Py_ssize_t start,
    Py_ssize_t stop,
    double *loss_out,
    long long *active_out,
) noexcept nogil:
    cdef Py_ssize_t u, e, e_stop = graph.inc_offsets[stop], k = Z.shape[1]
    cdef double r, D
    cdef _HingeSums sums = _HingeSums(pull=0.0, hinge=0.0, active=0)
    for u in range(start, stop):
        r = graph.radius[u]
        _pull_terms(graph, u, &sums)
        for e in range(graph.inc_offsets[u], graph.inc_offsets[u + 1]):
            # The other ends are read at random: fetch a few rows ahead.
            if e + FM_PREFETCH_AHEAD < e_stop:
                fm_prefetch_block(&Z[graph.inc_other[e + FM_PREFETCH_AHEAD], 0],
                                  k * sizeof(floating))
            D = _exact_sq_dist(Z, u, graph.inc_other[e])
            # Direction u -> other: the other point is an impostor of u only
            # inside u's margin radius; then each target j of u with
            # D < 1 + D_uj gives an active triplet.
            if D < r:
                _impostor_terms(graph, u, D, &sums)
    _block_loss(&sums, mu, loss_out, active_out)


cdef void hinge_pass(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    double[::1] chunk_loss,
    long long[::1] chunk_active,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """Loss per chunk of points, and the number of active triplets of each
    target pair (written to ``graph.active``)."""
    cdef Py_ssize_t n = Z.shape[0]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, stop
    for c in prange(n_chunks, schedule='dynamic', num_threads=n_threads):
        start = c * chunk_size
        stop = min(start + chunk_size, n)
        _hinge_rows(Z, graph, mu, start, stop, &chunk_loss[c], &chunk_active[c])


cdef inline void _laplacian_row(const floating[:, ::1] Z, const TargetGraph *graph, double mu,
                                Py_ssize_t u, Py_ssize_t prefetch_stop, double *acc,
                                floating *G_row) noexcept nogil:
    """Row u of G = Lap Z, ``(sum of the weights at u) z_u - sum_p w_p
    z_other``; ``acc`` is a k-vector of scratch, candidates up to
    ``prefetch_stop`` may be prefetched."""
    cdef Py_ssize_t e, t, o, k = Z.shape[1]
    cdef int cnt
    cdef double w, D, wsum = 0.0, ru = graph.radius[u]
    memset(acc, 0, k * sizeof(double))
    _target_terms(Z, graph, mu, u, acc, &wsum)
    # Candidate pairs {u, o}: weight -mu times the active triplets of both
    # directions (u's targets against o, o's targets against u).  The
    # distance is recomputed (storing it would cost 8 bytes per entry);
    # computed from either end it is the same, bit for bit, as the
    # squared differences are equal and summed in the same order.
    for e in range(graph.inc_offsets[u], graph.inc_offsets[u + 1]):
        if e + FM_PREFETCH_AHEAD < prefetch_stop:
            fm_prefetch_block(&Z[graph.inc_other[e + FM_PREFETCH_AHEAD], 0],
                              k * sizeof(floating))
        o = graph.inc_other[e]
        D = _exact_sq_dist(Z, u, o)
        cnt = 0
        if D < ru:
            cnt = _n_active(graph.Dt + u * graph.Dt_stride, graph.n_targets[u], D)
        if D < graph.radius[o]:
            cnt = cnt + _n_active(graph.Dt + o * graph.Dt_stride, graph.n_targets[o], D)
        if cnt == 0:
            continue
        w = -mu * cnt
        wsum += w
        for t in range(k):
            acc[t] -= w * Z[o, t]
    for t in range(k):
        G_row[t] = <floating> (wsum * Z[u, t] + acc[t])


cdef void laplacian_embedded(
    const floating[:, ::1] Z,
    const TargetGraph *graph,
    double mu,
    floating[:, ::1] G,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """G = Lap Z, Lap the Laplacian of the weighted target + impostor graph."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1]
    cdef Py_ssize_t n_chunks = (n + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, u, start, stop
    cdef double *acc
    with parallel(num_threads=n_threads):
        acc = <double *> malloc(k * sizeof(double))
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            stop = min(start + chunk_size, n)
            for u in range(start, stop):
                _laplacian_row(Z, graph, mu, u, graph.inc_offsets[stop], acc, &G[u, 0])
        free(acc)


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
) noexcept:
    """The graph struct over these arrays (which must outlive its use);
    ``inc_offsets`` and ``inc_other`` may be None (the dense path)."""
    cdef TargetGraph graph
    graph.targets = &targets[0, 0] if targets.shape[0] * targets.shape[1] > 0 else NULL
    graph.targets_stride = targets.shape[1]
    graph.n_targets = &n_targets[0] if n_targets.shape[0] > 0 else NULL
    graph.Dt = &Dt[0, 0] if Dt.shape[0] * Dt.shape[1] > 0 else NULL
    graph.Dt_stride = Dt.shape[1]
    graph.radius = &radius[0] if radius.shape[0] > 0 else NULL
    graph.active = &active[0, 0] if active.shape[0] * active.shape[1] > 0 else NULL
    graph.active_stride = active.shape[1]
    graph.tin_offsets = &tin_offsets[0]
    graph.tin_source = &tin_source[0] if tin_source.shape[0] > 0 else NULL
    graph.tin_slot = &tin_slot[0] if tin_slot.shape[0] > 0 else NULL
    graph.inc_offsets = NULL
    graph.inc_other = NULL
    if inc_offsets is not None:
        graph.inc_offsets = &inc_offsets[0]
        graph.inc_other = &inc_other[0] if inc_other.shape[0] > 0 else NULL
    return graph


cdef void gradient_partials(
    const floating[:, ::1] G,
    const floating[:, ::1] X,
    floating[:, :, ::1] partials,
    Py_ssize_t block,
    int n_threads,
) noexcept nogil:
    """partials[r] = G[block r]^T @ X[block r]  (k x d each)."""
    cdef Py_ssize_t n = G.shape[0], k = G.shape[1], d = X.shape[1]
    cdef Py_ssize_t n_blocks = partials.shape[0], r, start, size
    with parallel(num_threads=n_threads):
        for r in prange(n_blocks, schedule='dynamic'):
            start = r * block
            size = min(block, n - start)
            gemm_atb(False, &G[start, 0], k, &X[start, 0], d, size, k, d,
                     &partials[r, 0, 0], d)


# ---------------------------------------------------------------------------
# Dense evaluation: no candidate set (when the impostor pairs are too many)
# ---------------------------------------------------------------------------
# Each row block computes its rows' distances to every point of another class
# by GEMM blocks, so nothing of size n x n is stored.  Phase 1 gives the loss
# and the active counts of the target pairs; phase 2 the rows of Lap Z.  In
# phase 2 row i handles both directions of each pair {i, l} (its own hinge
# terms and l's), so every row is written by one thread only, at the price
# of computing each distance twice.  Distances below the filter threshold
# are recomputed exactly from the embedded points: decisions use the same
# exact values as the sparse path and do not depend on the blocking.
cdef struct _DenseRows:
    # What the dense blocks know of the rows besides the graph: the squared
    # norms of the embedded rows (for the GEMM expansion), each row's class
    # range [class_start[i], class_end[i]) and the expansion's relative error
    # bound (rows sorted by class).
    const double *sq_norms
    const Py_ssize_t *class_start
    const Py_ssize_t *class_end
    double tol_rel


cdef inline bint _beyond(const _DenseRows *dense, floating minus_two_dot, Py_ssize_t i,
                         Py_ssize_t j, double threshold) noexcept nogil:
    """True when the expansion of D_ij exceeds ``threshold`` by more than its
    error bound: the pair cannot be within it, and its exact distance is not
    needed."""
    cdef double ni = dense.sq_norms[i], nj = dense.sq_norms[j]
    return <double> minus_two_dot + ni + nj >= threshold + dense.tol_rel * (ni + nj)


cdef inline void _dense_hinge_block(
    const floating[:, ::1] Z,
    const _DenseRows *dense,
    const TargetGraph *graph,
    double mu,
    Py_ssize_t start,
    Py_ssize_t stop,
    floating *buf,
    double *loss_out,
    long long *active_out,
) noexcept nogil:
    cdef Py_ssize_t n = Z.shape[0], rows = stop - start
    cdef Py_ssize_t c0, w, i, j
    cdef double r, D
    cdef _HingeSums sums = _HingeSums(pull=0.0, hinge=0.0, active=0)
    for i in range(start, stop):
        _pull_terms(graph, i, &sums)
    c0 = 0
    while c0 < n:
        w = _minus_two_gram(Z, start, rows, c0, n, DEF_COL_CHUNK, buf)
        for i in range(start, stop):
            r = graph.radius[i]
            if graph.n_targets[i] == 0:
                continue
            for j in range(c0, c0 + w):
                if j >= dense.class_start[i] and j < dense.class_end[i]:
                    continue
                if _beyond(dense, buf[(i - start) * w + (j - c0)], i, j, r):
                    continue
                D = _exact_sq_dist(Z, i, j)
                if D < r:
                    _impostor_terms(graph, i, D, &sums)
        c0 += w
    _block_loss(&sums, mu, loss_out, active_out)


cdef struct _DenseWork:
    # Thread-local buffers of one row block (rows x DEF_COL_CHUNK distances
    # and weights, rows x k product, accumulator and weight sums).  The
    # floating ones are void * (a struct cannot be fused): cast by the user.
    void *buf
    void *wbuf
    void *prod
    double *acc
    double *wsum


cdef inline void _dense_laplacian_block(
    const floating[:, ::1] Z,
    const _DenseRows *dense,
    const TargetGraph *graph,
    double mu,
    floating[:, ::1] G,
    Py_ssize_t start,
    Py_ssize_t stop,
    _DenseWork *work,
) noexcept nogil:
    """Rows [start, stop) of G = Lap Z without a candidate set: impostor
    weights of every other-class pair below the radii (filtered by the GEMM
    expansion, decided on exact distances), then the target pairs; O(rows n k)."""
    cdef floating *buf = <floating *> work.buf
    cdef floating *wbuf = <floating *> work.wbuf
    cdef floating *prod = <floating *> work.prod
    cdef double *acc = work.acc
    cdef double *wsum = work.wsum
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], rows = stop - start
    cdef Py_ssize_t c0, w, i, j, t
    cdef int cnt
    cdef double ri, rj, thr, D, wt
    memset(acc, 0, rows * k * sizeof(double))
    memset(wsum, 0, rows * sizeof(double))
    c0 = 0
    while c0 < n:
        w = _minus_two_gram(Z, start, rows, c0, n, DEF_COL_CHUNK, buf)
        for i in range(start, stop):
            ri = graph.radius[i]
            for j in range(c0, c0 + w):
                wbuf[(i - start) * w + (j - c0)] = 0
                if j >= dense.class_start[i] and j < dense.class_end[i]:
                    continue
                rj = graph.radius[j]
                thr = ri if ri > rj else rj
                if thr < 0:
                    continue
                if _beyond(dense, buf[(i - start) * w + (j - c0)], i, j, thr):
                    continue
                D = _exact_sq_dist(Z, i, j)
                cnt = 0
                if D < ri:
                    cnt = _n_active(graph.Dt + i * graph.Dt_stride, graph.n_targets[i], D)
                if D < rj:
                    cnt = cnt + _n_active(graph.Dt + j * graph.Dt_stride, graph.n_targets[j], D)
                if cnt:
                    wt = -mu * cnt
                    wbuf[(i - start) * w + (j - c0)] = <floating> wt
                    wsum[i - start] += wt
        # acc -= W Z[cols]: the impostor part of -sum_l w_il z_l.
        gemm_rowmajor(False, False, <int> rows, <int> k, <int> w,
                      <floating> 1.0, wbuf, <int> w, &Z[c0, 0], <int> k,
                      <floating> 0.0, prod, <int> k)
        for i in range(rows * k):
            acc[i] -= prod[i]
        c0 += w
    for i in range(start, stop):
        _target_terms(Z, graph, mu, i, &acc[(i - start) * k], &wsum[i - start])
        for t in range(k):
            G[i, t] = <floating> (wsum[i - start] * Z[i, t] + acc[(i - start) * k + t])


def _dense_loss_grad(const floating[:, ::1] X, const floating[:, ::1] Z_in,
                     const Py_ssize_t[::1] class_start, const Py_ssize_t[::1] class_end,
                     const int[:, ::1] targets, const int[::1] n_targets,
                     const double[:, ::1] Dt, const double[::1] radius,
                     const Py_ssize_t[::1] tin_offsets, const int[::1] tin_source,
                     const int[::1] tin_slot, double mu, bint compute_gradient,
                     int n_threads):
    """As :func:`_loss_grad`, without a candidate set: O(n^2 k) per call.

    The work is done on the centred embedding: distances do not change, and
    neither does Lap Z (the rows of a Laplacian sum to zero), but the GEMM
    expansion and the products W Z lose far less to cancellation.
    """
    dtype = np.float32 if floating is float else np.float64
    Zc = np.asarray(Z_in, dtype=np.float64)
    Zc = np.ascontiguousarray(Zc - Zc.mean(axis=0), dtype=dtype)
    cdef const floating[:, ::1] Z = Zc
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], K = targets.shape[1]
    cdef Py_ssize_t n_blocks = (n + DEF_ROW_BLOCK - 1) // DEF_ROW_BLOCK
    cdef Py_ssize_t r, start, stop
    cdef double tol_rel, loss = 0.0
    cdef long long n_active = 0
    cdef floating *buf
    cdef floating *wbuf
    cdef floating *prod
    cdef double *acc
    cdef double *wsum
    tol_rel = _expansion_tol(Z)
    sq = _sq_norms(Z, n_threads)
    cdef double[::1] sq_norms = sq
    cdef int[:, ::1] apt = np.empty((n, K), dtype=np.intc)
    cdef double[::1] block_loss = np.zeros(n_blocks, dtype=np.float64)
    cdef long long[::1] block_active = np.zeros(n_blocks, dtype=np.longlong)
    cdef TargetGraph graph = target_graph(targets, n_targets, Dt, radius, apt, tin_offsets,
                                          tin_source, tin_slot, None, None)
    cdef _DenseRows dense
    dense.sq_norms = &sq_norms[0] if n > 0 else NULL
    dense.class_start = &class_start[0] if n > 0 else NULL
    dense.class_end = &class_end[0] if n > 0 else NULL
    dense.tol_rel = tol_rel
    with nogil, parallel(num_threads=n_threads):
        buf = <floating *> malloc(DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(floating))
        for r in prange(n_blocks, schedule='dynamic'):
            start = r * DEF_ROW_BLOCK
            stop = min(start + DEF_ROW_BLOCK, n)
            _dense_hinge_block(Z, &dense, &graph, mu, start, stop, buf, &block_loss[r],
                               &block_active[r])
        free(buf)
    for r in range(n_blocks):
        loss += block_loss[r]
        n_active += block_active[r]
    if not compute_gradient:
        return loss, int(n_active), None
    cdef floating[:, ::1] G = np.empty((n, k), dtype=dtype)
    cdef _DenseWork work
    with nogil, parallel(num_threads=n_threads):
        # Thread-private buffers (assigned names in a parallel block are
        # private; so is the struct, assigned whole).
        buf = <floating *> malloc(DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(floating))
        wbuf = <floating *> malloc(DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(floating))
        prod = <floating *> malloc(DEF_ROW_BLOCK * k * sizeof(floating))
        acc = <double *> malloc(DEF_ROW_BLOCK * k * sizeof(double))
        wsum = <double *> malloc(DEF_ROW_BLOCK * sizeof(double))
        work = _DenseWork(buf=<void *> buf, wbuf=<void *> wbuf, prod=<void *> prod,
                          acc=acc, wsum=wsum)
        for r in prange(n_blocks, schedule='dynamic'):
            start = r * DEF_ROW_BLOCK
            stop = min(start + DEF_ROW_BLOCK, n)
            _dense_laplacian_block(Z, &dense, &graph, mu, G, start, stop, &work)
        free(buf)
        free(wbuf)
        free(prod)
        free(acc)
        free(wsum)
    return loss, int(n_active), _gradient_from_laplacian(G, X, n_threads)


# ---------------------------------------------------------------------------
# Python entry points (the caller validates; see fastmetric/_learners/lmnn.py)
# ---------------------------------------------------------------------------
def _sq_norms(const floating[:, ::1] Z, int n_threads):
    """Squared row norms of Z in float64."""
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], i
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] o = out
    for i in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads, nogil=True):
        o[i] = sq_norm(&Z[i, 0], k)
    return out


def _embed(const floating[:, ::1] X, const floating[:, ::1] L, floating[:, ::1] Z,
           Py_ssize_t chunk_size, int n_threads):
    """Z = X L^T (Z allocated by the caller)."""
    with nogil:
        transform_rows(X, L, Z, chunk_size, n_threads)


def _target_neighbors(const floating[:, ::1] Z, const Py_ssize_t[::1] class_ptr,
                      const int[::1] n_targets, int max_targets, int n_threads):
    """Nearest same-class rows of each row of Z (rows sorted by class).

    Returns ``targets`` (n, max_targets) int32 (slots past ``n_targets[i]``
    are -1) and their squared distances (inf past ``n_targets[i]``).
    """
    cdef Py_ssize_t n = Z.shape[0], n_classes = class_ptr.shape[0] - 1, c, s
    starts, stops, cstarts, cstops = [], [], [], []
    for c in range(n_classes):
        for s in range(class_ptr[c], class_ptr[c + 1], DEF_ROW_BLOCK):
            starts.append(s)
            stops.append(min(s + DEF_ROW_BLOCK, class_ptr[c + 1]))
            cstarts.append(class_ptr[c])
            cstops.append(class_ptr[c + 1])
    cdef Py_ssize_t[::1] it_start = np.asarray(starts, dtype=np.intp)
    cdef Py_ssize_t[::1] it_stop = np.asarray(stops, dtype=np.intp)
    cdef Py_ssize_t[::1] it_cstart = np.asarray(cstarts, dtype=np.intp)
    cdef Py_ssize_t[::1] it_cstop = np.asarray(cstops, dtype=np.intp)
    sq = _sq_norms(Z, n_threads)
    cdef double[::1] sq_norms = sq
    targets_arr = np.full((n, max(max_targets, 1)), -1, dtype=np.intc)
    dist_arr = np.full((n, max(max_targets, 1)), np.inf, dtype=np.float64)
    cdef int[:, ::1] targets = targets_arr
    cdef double[:, ::1] tdist = dist_arr
    with nogil:
        target_neighbors(Z, sq_norms, it_start, it_stop, it_cstart, it_cstop, n_targets,
                         targets, tdist, DEF_COL_CHUNK, n_threads)
    return targets_arr[:, :max_targets], dist_arr[:, :max_targets]


def _search(const float[:, ::1] Z, const Py_ssize_t[::1] class_end,
            const double[::1] rho, long long budget, int n_threads, int team_threads=0,
            Py_ssize_t team_capacity=0):
    """Candidate pairs {a, b} of different classes with D_ab < max(rho_a, rho_b).

    ``Z`` is the embedding, centred and rounded to float32 by the caller:
    the search only filters, and the float32 GEMM is twice as fast.  The
    tolerance covers both roundings (see below), so every pair whose exact
    squared distance is below the threshold is kept.

    Returns ``(offsets, other, status)``: the per-point lists of the other
    ends (CSR: the points paired with u are ``other[offsets[u]:offsets[u +
    1]]``, in increasing order), and status 0 (done), 1 (more than
    ``budget`` pairs: empty lists) or 2 (out of memory).  ``team_threads >
    1`` searches the row blocks on fm_team.h's team of that many threads
    instead of OpenMP's ``n_threads`` (busy machines; the same result);
    ``team_capacity`` (default 2^18) is the most pairs of a row block that a
    team member holds (a test hook: fuller blocks are searched again).
    """
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1]
    cdef Py_ssize_t n_blocks = (n + DEF_ROW_BLOCK - 1) // DEF_ROW_BLOCK
    cdef Py_ssize_t r, total = 0, p, u, e
    cdef double tol_rel, tol_thr
    cdef long long counter = 0
    cdef int status = 0, st, a, b
    cdef float *buf
    cdef Py_ssize_t[::1] offsets
    cdef int[::1] other
    # Rounding z to float32 (relative error u = 2^-24 per entry) moves D by
    # at most 2 u sqrt(D) (|z_a| + |z_b|) <= u (D + 2 (|z_a|^2 + |z_b|^2));
    # the float32 expansion adds at most about (k + 2) u (|z_a|^2 + |z_b|^2).
    # Twice their sum is the tolerance.
    tol_rel = 2.0 * (k + 4) * 6.0e-8
    tol_thr = 2.0 * 6.0e-8
    sq = _sq_norms(Z, n_threads)
    cdef double[::1] sq_norms = sq
    cdef PairBuffer *bufs = <PairBuffer *> malloc(max(n_blocks, 1) * sizeof(PairBuffer))
    if bufs == NULL:
        raise MemoryError("LMNN: cannot allocate the impostor search buffers.")
    cdef int[::1] block_status = np.zeros(max(n_blocks, 1), dtype=np.intc)
    memset(bufs, 0, max(n_blocks, 1) * sizeof(PairBuffer))
    cdef _SearchJob sjob
    cdef fm_team_job job
    cdef int64_t generation
    cdef float *serial_buf = NULL
    try:
        if team_threads > 1 and n_blocks > 1:
            sjob.Z = &Z[0, 0]
            sjob.n = n
            sjob.k = k
            sjob.sq_norms = &sq_norms[0]
            sjob.class_end = &class_end[0]
            sjob.rho = &rho[0]
            sjob.tol_rel = tol_rel
            sjob.tol_thr = tol_thr
            sjob.budget = budget
            # A block of rows pairs with at most every point; beyond 2^18
            # pairs (2 MB) the caller searches the block again itself.
            sjob.capacity = min(<Py_ssize_t> DEF_ROW_BLOCK * n,
                                team_capacity if team_capacity > 0 else <Py_ssize_t> 1 << 18)
            sjob.bufs = bufs
            sjob.block_status = &block_status[0]
            job.compute = _search_compute
            job.publish = _search_publish
            job.ctx = &sjob
            job.ctx_bytes = sizeof(_SearchJob)
            job.n_chunks = n_blocks
            job.scratch_bytes = _search_scratch_bytes(sjob.capacity)
            with nogil:
                generation = team_run(&job, team_threads)
            if generation < 0:
                raise MemoryError("LMNN: cannot allocate the team's search buffers.")
            # A helper that was off its core may still read the inputs.
            team_keep(generation, Z, sq, class_end, rho)
            with nogil:
                for r in range(n_blocks):
                    if block_status[r] != SEARCH_BLOCK_FULL:
                        continue
                    if serial_buf == NULL:
                        serial_buf = <float *> malloc(
                            DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(float))
                    if serial_buf == NULL:
                        block_status[r] = SEARCH_NO_MEMORY
                        continue
                    block_status[r] = _search_block(Z, sq_norms, class_end, rho, tol_rel,
                                                    tol_thr, r, serial_buf, &bufs[r],
                                                    &counter, budget)
                free(serial_buf)
        else:
            with nogil, parallel(num_threads=n_threads):
                buf = <float *> malloc(DEF_ROW_BLOCK * DEF_COL_CHUNK * sizeof(float))
                # Blocks of the triangle have unequal work: dynamic schedule.
                # Each block fills its own buffer, so the result does not
                # depend on it.
                for r in prange(n_blocks, schedule='dynamic'):
                    if buf == NULL:
                        block_status[r] = SEARCH_NO_MEMORY
                        continue
                    block_status[r] = _search_block(Z, sq_norms, class_end, rho, tol_rel,
                                                    tol_thr, r, buf, &bufs[r], &counter,
                                                    budget)
                free(buf)
        for r in range(n_blocks):
            st = block_status[r]
            if st > status:
                status = st
            total += bufs[r].size
        if status == 0 and total > budget:
            status = 1
        if status != 0:
            return np.zeros(n + 1, np.intp), np.empty(0, np.intc), status
        # Both ends' lists by a counting sort over the blocks in order.  For
        # each point the other ends come out increasing: pairs (a, u), a < u,
        # arrive by increasing a, before the pairs (u, b), b > u, which
        # arrive by increasing b.
        offsets_arr = np.zeros(n + 1, dtype=np.intp)
        other_arr = np.empty(2 * total, dtype=np.intc)
        offsets = offsets_arr
        other = other_arr
        with nogil:
            for r in range(n_blocks):
                for p in range(bufs[r].size):
                    offsets[bufs[r].a[p] + 1] += 1
                    offsets[bufs[r].b[p] + 1] += 1
            for u in range(n):
                offsets[u + 1] += offsets[u]
            # offsets[u] serves as u's fill cursor, then is shifted back.
            for r in range(n_blocks):
                for p in range(bufs[r].size):
                    a = bufs[r].a[p]
                    b = bufs[r].b[p]
                    e = offsets[a]
                    offsets[a] += 1
                    other[e] = b
                    e = offsets[b]
                    offsets[b] += 1
                    other[e] = a
                free(bufs[r].a)
                free(bufs[r].b)
                bufs[r].a = NULL
                bufs[r].b = NULL
            for u in range(n, 0, -1):
                offsets[u] = offsets[u - 1]
            offsets[0] = 0
        return offsets_arr, other_arr, 0
    finally:
        for r in range(n_blocks):
            free(bufs[r].a)
            free(bufs[r].b)
        free(bufs)


def _target_distances(const floating[:, ::1] Z, const int[:, ::1] targets,
                      const int[::1] n_targets, double[:, ::1] Dt, double[::1] radius,
                      int n_threads):
    """Dt[i, s] = ||z_i - z_{targets[i, s]}||^2 and radius[i] = 1 + max_s
    Dt[i, s] (-1 without targets), in place: O(n K k)."""
    with nogil:
        target_distances(Z, targets, n_targets, Dt, radius, DEF_POINT_CHUNK, n_threads)


def _loss_grad(const floating[:, ::1] X, const floating[:, ::1] Z,
               const int[:, ::1] targets, const int[::1] n_targets,
               const double[:, ::1] Dt, const double[::1] radius,
               const Py_ssize_t[::1] tin_offsets, const int[::1] tin_source,
               const int[::1] tin_slot,
               const Py_ssize_t[::1] inc_offsets, const int[::1] inc_other,
               double mu, bint compute_gradient, int n_threads):
    """LMNN objective at the embedding Z = X L^T, the number of active
    triplets, and (optionally) the gradient in L, (k, d) float64.

    The candidate lists (inc_offsets, inc_other) must contain every impostor
    pair of Z.  Inactive candidates add nothing
    and the active ones are visited in increasing order of the other end,
    so the result is the same, bit for bit, for any valid candidate set.
    """
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], K = targets.shape[1]
    cdef Py_ssize_t n_point_chunks = (n + DEF_POINT_CHUNK - 1) // DEF_POINT_CHUNK
    cdef int[:, ::1] apt = np.empty((n, K), dtype=np.intc)
    cdef double[::1] chunk_loss = np.zeros(n_point_chunks, dtype=np.float64)
    cdef long long[::1] chunk_active = np.zeros(n_point_chunks, dtype=np.longlong)
    cdef double loss = 0.0
    cdef long long n_active = 0
    cdef Py_ssize_t c
    cdef TargetGraph graph = target_graph(targets, n_targets, Dt, radius, apt, tin_offsets,
                                          tin_source, tin_slot, inc_offsets, inc_other)
    with nogil:
        hinge_pass(Z, &graph, mu, chunk_loss, chunk_active, DEF_POINT_CHUNK, n_threads)
        for c in range(n_point_chunks):
            loss += chunk_loss[c]
            n_active += chunk_active[c]
    if not compute_gradient:
        return loss, int(n_active), None
    cdef floating[:, ::1] G = np.empty((n, k), dtype=dtype)
    with nogil:
        laplacian_embedded(Z, &graph, mu, G, DEF_POINT_CHUNK, n_threads)
    return loss, int(n_active), _gradient_from_laplacian(G, X, n_threads)


def _gradient_from_laplacian(const floating[:, ::1] G, const floating[:, ::1] X,
                             int n_threads):
    """grad = 2 G^T X (k, d) float64, block products merged in block order."""
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t n = G.shape[0], k = G.shape[1], d = X.shape[1]
    cdef Py_ssize_t block, n_blocks, i, j, r
    cdef double s
    block = max(<Py_ssize_t> DEF_POINT_CHUNK, (n + DEF_MAX_PARTIALS - 1) // DEF_MAX_PARTIALS)
    n_blocks = (n + block - 1) // block
    cdef floating[:, :, ::1] partials = np.empty((n_blocks, k, d), dtype=dtype)
    grad_arr = np.empty((k, d), dtype=np.float64)
    cdef double[:, ::1] grad = grad_arr
    with nogil:
        gradient_partials(G, X, partials, block, n_threads)
        for i in range(k):
            for j in range(d):
                s = 0.0
                for r in range(n_blocks):
                    s = s + partials[r, i, j]
                grad[i, j] = 2.0 * s
    return grad_arr

"""Kernels of SCML: k-NN triplet generation, the stochastic update, the hinge loss.

Notation.  SCML (Shi, Bellet & Sha, 2014) learns ``M = sum_k w_k b_k b_k^T``
over a fixed set of basis vectors ``b_k`` (rows of B, K of them) with
weights ``w >= 0``.  A triplet ``(a, p, q)`` states ``d(a, p) < d(a, q)``;
with the projections ``z_u = B x_u`` (rows of ``Z = X B^T``, computed once
by one GEMM) its distance difference along basis k is

    dd_k = (z_a,k - z_p,k)^2 - (z_a,k - z_q,k)^2,

so the triplet's hinge term is ``[1 + sum_k w_k dd_k]_+`` and its
subgradient in w is ``dd`` when the term is positive.  Each update costs
O(|A|) per triplet for the margin (A: the bases of positive weight; the
weights are sparse) plus O(K) per *active* triplet for the gradient, read
from three rows of Z: nothing of size (n_triplets, K) is stored.

Kernels:

* :func:`_knn_triplet_neighbors`: for each point its nearest points of the
  same class (genuine) and of other classes (impostors), by chunked GEMM
  distance blocks and an exact check, in parallel over blocks of rows;
* :func:`_sgd_run`: a run of iterations of the regularised dual averaging
  update with AdaGrad scaling (sequential by nature, nogil, typed);
* :func:`_triplet_hinge` and :func:`_triplet_hinge_pairs`: the hinge
  loss of all triplets in an embedding (the latter from the distinct
  pairs, each distance computed once), in parallel over fixed chunks or
  entries, summed in a fixed order.

Every result is the same, bit for bit, for any number of threads: each row
of the k-NN search is owned by one work item, and sums are merged in a fixed
order.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.math cimport INFINITY, sqrt
from libc.stdlib cimport malloc, free, realloc
from libc.limits cimport INT_MAX

from fastmetric.kernels.common cimport (
    floating, gemm_rowmajor, fm_prefetch_block, insert_sorted, sq_dist,
)


cdef enum:
    # Rows per work unit of the k-NN search, and columns per GEMM block
    # (a 64 x 2048 block of float64 products is 1 MB).
    KNN_ROW_BLOCK = 64
    KNN_COL_CHUNK = 2048
    # Triplets per chunk of the hinge loss.
    HINGE_CHUNK = 4096


# ---------------------------------------------------------------------------
# k-NN triplet generation
# ---------------------------------------------------------------------------
cdef inline void _offer(const floating[:, ::1] X, Py_ssize_t i, Py_ssize_t j, double g,
                        double slack, int *idx, double *dist, int kk) noexcept nogil:
    """Offer candidate j to row i's list of the kk nearest (GEMM estimate g).

    The GEMM-expanded estimate only filters; a kept candidate is ranked by
    its exact distance, ties broken by the smaller index, so the result
    depends neither on rounding nor on the blocking.
    """
    cdef double worst = dist[kk - 1], exact
    if g > worst + slack:
        return
    exact = sq_dist(&X[i, 0], &X[j, 0], X.shape[1])
    if exact < worst or (exact == worst and j < idx[kk - 1]):
        insert_sorted(idx, dist, kk, exact, <int> j)


cdef void _knn_rows(
    const floating[:, ::1] X,
    const double[::1] sq_norms,
    const int[::1] labels,
    const int[::1] n_genuine,
    const int[::1] n_impostor,
    Py_ssize_t start,
    Py_ssize_t stop,
    int[:, ::1] gen_idx,
    double[:, ::1] gen_dist,
    int[:, ::1] imp_idx,
    double[:, ::1] imp_dist,
    double tol_rel,
    floating *buf,
) noexcept nogil:
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], rows = stop - start
    cdef Py_ssize_t i, j, c0, w, s
    cdef int kg, ki, li
    cdef double g, slack
    for i in range(start, stop):
        for s in range(n_genuine[i]):
            gen_dist[i, s] = INFINITY
            gen_idx[i, s] = INT_MAX
        for s in range(n_impostor[i]):
            imp_dist[i, s] = INFINITY
            imp_idx[i, s] = INT_MAX
    c0 = 0
    while c0 < n:
        w = min(<Py_ssize_t> KNN_COL_CHUNK, n - c0)
        # buf = -2 X[rows] X[cols]^T, so that ||x_i - x_j||^2 ~ |x_i|^2 + |x_j|^2 + buf.
        gemm_rowmajor(False, True, <int> rows, <int> w, <int> d,
                      <floating> -2.0, &X[start, 0], <int> d, &X[c0, 0], <int> d,
                      <floating> 0.0, buf, <int> w)
        for i in range(start, stop):
            kg = n_genuine[i]
            ki = n_impostor[i]
            li = labels[i]
            for j in range(c0, c0 + w):
                g = <double> buf[(i - start) * w + (j - c0)] + sq_norms[i] + sq_norms[j]
                slack = tol_rel * (sq_norms[i] + sq_norms[j])
                if labels[j] == li:
                    if kg > 0 and j != i:
                        _offer(X, i, j, g, slack, &gen_idx[i, 0], &gen_dist[i, 0], kg)
                elif ki > 0:
                    _offer(X, i, j, g, slack, &imp_idx[i, 0], &imp_dist[i, 0], ki)
        c0 += w


def _knn_triplet_neighbors(const floating[:, ::1] X, const int[::1] labels,
                           const int[::1] n_genuine, const int[::1] n_impostor,
                           int max_genuine, int max_impostor, int n_threads):
    """Nearest same-class and other-class points of every point.

    Parameters
    ----------
    X : (n, d) float32/float64, C-contiguous (best centred: the GEMM filter
        is then tighter).
    labels : (n,) int32 class codes.
    n_genuine, n_impostor : (n,) int32
        How many neighbours of each kind row i gets (at most the number
        available: the caller clips them).
    max_genuine, max_impostor : int
        Widths of the output arrays (>= every n_genuine / n_impostor).

    Returns
    -------
    genuine : (n, max_genuine) int32, impostors : (n, max_impostor) int32
        Row indices, nearest first (ties: smaller index first); -1 past
        each row's count.  Distances are exact squared Euclidean distances
        accumulated in float64.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t n_blocks = (n + KNN_ROW_BLOCK - 1) // KNN_ROW_BLOCK, blk, start, stop
    cdef double tol_rel
    cdef floating *buf = NULL
    cdef int failed = 0
    if labels.shape[0] != n or n_genuine.shape[0] != n or n_impostor.shape[0] != n:
        raise ValueError("labels and neighbour counts must have one entry per row of X.")
    if n and (np.max(n_genuine) > max_genuine or np.max(n_impostor) > max_impostor):
        raise ValueError("a neighbour count exceeds the output width.")
    kg_w, ki_w = max(max_genuine, 1), max(max_impostor, 1)
    gen_arr = np.full((n, kg_w), -1, dtype=np.intc)
    imp_arr = np.full((n, ki_w), -1, dtype=np.intc)
    gd_arr = np.full((n, kg_w), np.inf)
    id_arr = np.full((n, ki_w), np.inf)
    cdef int[:, ::1] gen_idx = gen_arr
    cdef int[:, ::1] imp_idx = imp_arr
    cdef double[:, ::1] gen_dist = gd_arr
    cdef double[:, ::1] imp_dist = id_arr
    sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    cdef double[::1] sq_norms = sq
    # Rounding error of the GEMM expansion, relative to |x_i|^2 + |x_j|^2,
    # with a factor 2 of safety.
    if floating is float:
        tol_rel = 2.0 * (d + 2) * 1.2e-7
    else:
        tol_rel = 2.0 * (d + 2) * 2.3e-16
    if n == 0:
        return gen_arr[:, :max_genuine], imp_arr[:, :max_impostor]
    with nogil, parallel(num_threads=n_threads):
        buf = <floating *> malloc(KNN_ROW_BLOCK * KNN_COL_CHUNK * sizeof(floating))
        # Each block owns its rows: any schedule gives the same result.
        for blk in prange(n_blocks, schedule='dynamic'):
            if buf == NULL:
                failed += 1
            else:
                start = blk * KNN_ROW_BLOCK
                stop = min(start + KNN_ROW_BLOCK, n)
                _knn_rows(X, sq_norms, labels, n_genuine, n_impostor, start, stop,
                          gen_idx, gen_dist, imp_idx, imp_dist, tol_rel, buf)
        free(buf)
    if failed:
        raise MemoryError("SCML: out of memory in the k-NN triplet search.")
    # Unused slots back to -1.
    gen_arr[gen_arr == INT_MAX] = -1
    imp_arr[imp_arr == INT_MAX] = -1
    return gen_arr[:, :max_genuine], imp_arr[:, :max_impostor]


# ---------------------------------------------------------------------------
# The stochastic update
# ---------------------------------------------------------------------------
cdef extern from "fastmetric/kernels/include/fm_scml.h" nogil:
    double fm_scml_wdd_d(const double *w, const double *a, const double *p,
                         const double *q, Py_ssize_t n)
    double fm_scml_wdd_f(const double *w, const float *a, const float *p,
                         const float *q, Py_ssize_t n)
    void fm_scml_dd_add_d(double *g, const double *a, const double *p, const double *q,
                          Py_ssize_t n)
    void fm_scml_dd_add_f(double *g, const float *a, const float *p, const float *q,
                          Py_ssize_t n)
    void fm_scml_dd_set_d(double *g, const double *a, const double *p, const double *q,
                          Py_ssize_t n)
    void fm_scml_dd_set_f(double *g, const float *a, const float *p, const float *q,
                          Py_ssize_t n)


cdef inline double _wdd(const double *w, const floating *a, const floating *p,
                        const floating *q, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fm_scml_wdd_f(w, a, p, q, n)
    else:
        return fm_scml_wdd_d(w, a, p, q, n)


cdef inline void _dd_into(double *g, const floating *a, const floating *p,
                          const floating *q, Py_ssize_t n, bint add) noexcept nogil:
    if floating is float:
        if add:
            fm_scml_dd_add_f(g, a, p, q, n)
        else:
            fm_scml_dd_set_f(g, a, p, q, n)
    else:
        if add:
            fm_scml_dd_add_d(g, a, p, q, n)
        else:
            fm_scml_dd_set_d(g, a, p, q, n)


cdef inline double _dd(floating a, floating p, floating q) noexcept nogil:
    """(a - p)^2 - (a - q)^2 in float64."""
    cdef double u = <double> a - <double> p, v = <double> a - <double> q
    return u * u - v * v


cdef struct _Compact:
    # A copy of some columns C of Z (a superset of the bases of positive
    # weight), so that the margins read contiguous memory.
    Py_ssize_t nc          # |C|
    Py_ssize_t ncap        # row stride of Zc (room to append columns)
    Py_ssize_t n_pos       # bases of C with a positive weight now
    int *cols              # C
    int *pos               # pos[k]: index of k in C, or -1
    double *wc             # wc[q] = w[cols[q]] (0 for a basis of zero weight)
    void *Zc               # (n, ncap) row-major, of Z's dtype; columns < nc used
    int *entered           # bases that got a positive weight outside C
    Py_ssize_t n_entered


cdef int _rebuild(_Compact *cp, const floating[:, ::1] Z, const double[::1] w) noexcept nogil:
    """C = the bases of positive weight; Zc = Z[:, C].  Returns -1 when out of memory."""
    cdef Py_ssize_t n = Z.shape[0], K = Z.shape[1], i, q, k, nc = 0, ncap
    cdef floating *dst
    cdef const floating *src
    cdef void *mem
    for k in range(K):
        cp.pos[k] = -1
        if w[k] > 0:
            cp.cols[nc] = <int> k
            cp.pos[k] = <int> nc
            cp.wc[nc] = w[k]
            nc += 1
    ncap = min(K, nc + max(<Py_ssize_t> 16, nc // 2))
    mem = realloc(cp.Zc, max(n * ncap, 1) * sizeof(floating))
    if mem == NULL:
        return -1
    cp.Zc = mem
    dst = <floating *> cp.Zc
    for i in range(n):
        src = &Z[i, 0]
        for q in range(nc):
            dst[i * ncap + q] = src[cp.cols[q]]
    cp.nc = nc
    cp.ncap = ncap
    cp.n_pos = nc
    cp.n_entered = 0
    return 0


cdef void _append(_Compact *cp, const floating[:, ::1] Z, const double[::1] w,
                  int k) noexcept nogil:
    """Add basis k (column k of Z) to the compact copy; needs nc < ncap."""
    cdef Py_ssize_t n = Z.shape[0], i, q = cp.nc, ncap = cp.ncap
    cdef floating *dst = <floating *> cp.Zc
    for i in range(n):
        dst[i * ncap + q] = Z[i, k]
    cp.cols[q] = k
    cp.pos[k] = <int> q
    cp.wc[q] = w[k]
    cp.nc = q + 1
    cp.n_pos += 1


def _sgd_run(const floating[:, ::1] Z, const Py_ssize_t[:, ::1] triplets,
             const Py_ssize_t[:, ::1] batches, double[::1] w, double[::1] grad_sum,
             double[::1] grad_sq, long long t0, double beta, double gamma, double delta):
    """Run ``batches.shape[0]`` iterations of SCML's stochastic update in place.

    At iteration t (global, 0-based, ``t0`` for the first row of
    ``batches``) with the batch of triplet indices ``batches[t - t0]`` of
    size m:

    * ``g = (1/m) sum_{triplets in batch with 1 + w . dd > 0} dd`` (the
      hinge subgradient, dd read from the rows of Z);
    * ``grad_sum += g`` and ``grad_sq += g**2`` (elementwise);
    * ``w = max(-(grad_sum + beta (t + 1)), 0) / (gamma (delta +
      sqrt(grad_sq)))``: the closed-form regularised dual averaging step
      with the l1 term ``beta ||w||_1``, the constraint ``w >= 0`` and the
      AdaGrad scaling (Xiao 2010; Duchi, Hazan & Singer 2011).

    Work per iteration.  The margins need only the bases of positive
    weight, which are few: they are read from a compact copy of those
    columns of Z (a basis that enters is appended to it; the copy is
    rebuilt when many enter at once or when most of it has zero weight).
    When no triplet of the batch is active, g = 0: grad_sum and grad_sq
    stay, the threshold ``beta (t + 1)`` grows, so no weight can become
    positive and only the positive ones are recomputed; otherwise the full
    O(n_basis) update runs.  The weights are those of the plain update (the
    same arithmetic per basis; only the order of the terms of a margin
    depends on the compact copy, which depends on the data and the
    iteration sequence only, never on threads).

    Returns the number of hinge-active triplets seen over the run.
    """
    cdef Py_ssize_t K = Z.shape[1], n_it = batches.shape[0]
    cdef Py_ssize_t m = batches.shape[1], total
    cdef Py_ssize_t it, s, k, q, o, tr, flat, nxt, a, p, c, nc, ncap
    cdef long long t, n_hinge = 0
    cdef double margin, inv_m, gk, num, thr
    cdef bint any_active
    cdef int status = 0
    cdef const floating *ca
    cdef const floating *cpp
    cdef const floating *cq
    cdef const Py_ssize_t *bflat
    cdef floating *Zc
    cdef double *g
    cdef double *den
    cdef _Compact cp
    if w.shape[0] != K or grad_sum.shape[0] != K or grad_sq.shape[0] != K:
        raise ValueError("w, grad_sum and grad_sq must have one entry per basis.")
    if n_it == 0:
        return 0
    if m == 0:
        raise ValueError("batches must hold at least one triplet per iteration.")
    g = <double *> malloc(K * sizeof(double))
    den = <double *> malloc(K * sizeof(double))
    cp.cols = <int *> malloc(K * sizeof(int))
    cp.pos = <int *> malloc(K * sizeof(int))
    cp.entered = <int *> malloc(K * sizeof(int))
    cp.wc = <double *> malloc(K * sizeof(double))
    cp.Zc = NULL
    if (g == NULL or den == NULL or cp.cols == NULL or cp.pos == NULL
            or cp.entered == NULL or cp.wc == NULL):
        status = -1
    inv_m = 1.0 / m
    bflat = &batches[0, 0]
    total = n_it * m
    with nogil:
        if status == 0:
            status = _rebuild(&cp, Z, w)
        if status == 0:
            for k in range(K):
                if w[k] > 0:
                    den[k] = gamma * (delta + sqrt(grad_sq[k]))
        for it in range(n_it):
            if status != 0:
                break
            t = t0 + it
            any_active = False
            nc = cp.nc
            ncap = cp.ncap
            Zc = <floating *> cp.Zc
            for s in range(m):
                flat = it * m + s
                tr = bflat[flat]
                a = triplets[tr, 0]
                p = triplets[tr, 1]
                c = triplets[tr, 2]
                # Triplets are read at random: fetch the indices of the one
                # after next, and the compact rows of the next one, now.
                if flat + 2 < total:
                    fm_prefetch_block(&triplets[bflat[flat + 2], 0], 3 * sizeof(Py_ssize_t))
                if flat + 1 < total:
                    nxt = bflat[flat + 1]
                    fm_prefetch_block(&Zc[triplets[nxt, 0] * ncap], nc * sizeof(floating))
                    fm_prefetch_block(&Zc[triplets[nxt, 1] * ncap], nc * sizeof(floating))
                    fm_prefetch_block(&Zc[triplets[nxt, 2] * ncap], nc * sizeof(floating))
                ca = &Zc[a * ncap]
                cpp = &Zc[p * ncap]
                cq = &Zc[c * ncap]
                margin = 1.0 + _wdd(cp.wc, ca, cpp, cq, nc)
                if margin > 0:
                    n_hinge += 1
                    _dd_into(g, &Z[a, 0], &Z[p, 0], &Z[c, 0], K, any_active)
                    any_active = True
            thr = beta * (t + 1)
            if any_active:
                cp.n_pos = 0
                cp.n_entered = 0
                for k in range(K):
                    gk = g[k] * inv_m
                    grad_sum[k] += gk
                    grad_sq[k] += gk * gk
                    num = -(grad_sum[k] + thr)
                    if num > 0:
                        den[k] = gamma * (delta + sqrt(grad_sq[k]))
                        w[k] = num / den[k]
                        if cp.pos[k] >= 0:
                            cp.wc[cp.pos[k]] = w[k]
                            cp.n_pos += 1
                        else:
                            cp.entered[cp.n_entered] = <int> k
                            cp.n_entered += 1
                    else:
                        w[k] = 0.0
                        if cp.pos[k] >= 0:
                            cp.wc[cp.pos[k]] = 0.0
                # Bases that entered: appended one column each (n reads),
                # or a rebuild (n rows of reads) when they are many, when
                # there is no room, or when most of the copy has zero weight.
                if cp.n_entered > 0 or 2 * cp.n_pos < cp.nc:
                    if (4 * cp.n_entered > cp.nc + 32 or cp.nc + cp.n_entered > cp.ncap
                            or (cp.nc > 32 and 2 * cp.n_pos < cp.nc)):
                        status = _rebuild(&cp, Z, w)
                    else:
                        for o in range(cp.n_entered):
                            _append(&cp, Z, w, cp.entered[o])
                        cp.n_entered = 0
            else:
                for q in range(nc):
                    if cp.wc[q] > 0:
                        k = cp.cols[q]
                        num = -(grad_sum[k] + thr)
                        if num > 0:
                            w[k] = num / den[k]
                        else:
                            w[k] = 0.0
                            cp.n_pos -= 1
                        cp.wc[q] = w[k]
    free(g)
    free(den)
    free(cp.cols)
    free(cp.pos)
    free(cp.entered)
    free(cp.wc)
    free(cp.Zc)
    if status != 0:
        raise MemoryError("SCML: out of memory in the stochastic update.")
    return n_hinge


# ---------------------------------------------------------------------------
# The hinge loss of all triplets in an embedding
# ---------------------------------------------------------------------------
def _triplet_hinge(const floating[:, ::1] Z, const Py_ssize_t[:, ::1] triplets,
                   int n_threads):
    """``(sum_t [1 + ||z_a - z_p||^2 - ||z_a - z_q||^2]_+, #positive terms)``.

    Z is the embedding ``X L^T`` with ``L^T L = M``.  Chunks of HINGE_CHUNK
    triplets are summed separately and merged in chunk order.
    """
    cdef Py_ssize_t n_t = triplets.shape[0], r = Z.shape[1]
    cdef Py_ssize_t n_chunks = (n_t + HINGE_CHUNK - 1) // HINGE_CHUNK, ch, t, start, stop
    cdef double h, total = 0.0
    cdef long long count = 0
    sums_arr = np.zeros(max(n_chunks, 1))
    counts_arr = np.zeros(max(n_chunks, 1), dtype=np.int64)
    cdef double[::1] sums = sums_arr
    cdef long long[::1] counts = counts_arr
    cdef double acc
    cdef long long cnt
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule='dynamic'):
            start = ch * HINGE_CHUNK
            stop = min(start + HINGE_CHUNK, n_t)
            acc = 0.0
            cnt = 0
            for t in range(start, stop):
                h = (1.0 + sq_dist(&Z[triplets[t, 0], 0], &Z[triplets[t, 1], 0], r)
                     - sq_dist(&Z[triplets[t, 0], 0], &Z[triplets[t, 2], 0], r))
                if h > 0:
                    acc = acc + h
                    cnt = cnt + 1
            sums[ch] = acc
            counts[ch] = cnt
        for ch in range(n_chunks):
            total += sums[ch]
            count += counts[ch]
    return total, count


def _triplet_hinge_pairs(const floating[:, ::1] Z, const Py_ssize_t[:, ::1] pairs,
                         const Py_ssize_t[::1] first, const Py_ssize_t[::1] second,
                         double[::1] pair_dist, int n_threads):
    """The same sums as :func:`_triplet_hinge`, from the distinct pairs.

    Triplet t has the pairs ``pairs[first[t]]`` (a, p) and
    ``pairs[second[t]]`` (a, q).  Triplets made from k-NN lists share many
    pairs (one anchor-neighbour pair serves ``k_impostor`` or ``k_genuine``
    triplets), so the squared distances are computed once per distinct pair
    (into ``pair_dist``, in parallel, each entry by one thread) and the
    hinge terms are then summed in triplet order.
    """
    cdef Py_ssize_t n_p = pairs.shape[0], n_t = first.shape[0], r = Z.shape[1], i, t
    cdef double h, total = 0.0
    cdef long long count = 0
    if pair_dist.shape[0] != n_p or second.shape[0] != n_t:
        raise ValueError("pair_dist must have one entry per pair, second one per triplet.")
    with nogil:
        for i in prange(n_p, num_threads=n_threads, schedule='dynamic', chunksize=256):
            pair_dist[i] = sq_dist(&Z[pairs[i, 0], 0], &Z[pairs[i, 1], 0], r)
        for t in range(n_t):
            h = 1.0 + pair_dist[first[t]] - pair_dist[second[t]]
            if h > 0:
                total += h
                count += 1
    return total, count

"""Exact nearest-neighbour search among mapped rows: k nearest, or all within a radius.

The rows are mapped once (``z = L x``, by the caller); the kernel then works
on query rows ``q`` (n_q x d) and database rows ``z`` (n x d) of one dtype.

Distances.  ``||q - z||^2 = ||q||^2 + ||z||^2 - 2 q.z``: the cross products
of a block of queries against a block of database rows are a small GEMM
(d is the inner dimension), and the selection reads each product right after
it is computed, while it is still in registers (AVX-512 path) or in the L2
cache (BLAS path), so the n_q x n matrix never exists.  The expansion is only
a filter: in working precision its error is below ``gamma_d (||q||^2 +
||z||^2)`` (the dot product's error bound, about d eps), so a candidate whose
estimate exceeds the current k-th best by more than ``tol (||q||^2 +
||z||^2)``, ``tol = 2 (d + 8) eps``, cannot enter the list.  A candidate
that passes is ranked by its exact squared distance ``sum_t (q_t - z_t)^2``
summed in float64 in a fixed order.  Hence

* the result does not depend on rounding of the expansion, on the blocking,
  on the number of threads nor on which path ran: the k nearest by (exact
  distance, index), ties broken by the lower index;
* the distances returned are these float64 sums (squared).

The filter compares ``(1 - tol) ||z||^2 - 2 q.z`` (per database row: the
norm term is precomputed) against a per-query threshold ``worst - (1 - tol)
||q||^2``, rounded up to the working precision; while a query's list is not
full its threshold is +inf.

Two paths compute the products:

* AVX-512F (where the CPU has it; the switch of smallgemm.pxd): the database
  is packed once into panels of W = 4 vectors of rows (64 float32 or 32
  float64 rows), stored transposed (d x W), so that a tile of 6 queries x W
  rows accumulates in 24 vector registers over the d coordinates, reading
  the panel from L1; the filter then runs on the registers (one fused
  multiply-add and one compare per vector) and only a tile with a candidate
  leaves the fast loop.  Each work item (a block of queries) sweeps all
  panels: a panel is read from memory once per block and reused by all its
  tiles.  Panels are padded with rows whose norm term is NaN, which never
  passes a comparison.
* BLAS elsewhere: ``-2 Q Z_c^T`` into a thread-local buffer (a block of
  queries x a chunk of rows, about 1 MB), then a scan of that buffer.

Work items are blocks of query rows, scheduled dynamically; each query's
list is owned by one item, so any thread count gives the same result.
BLAS must be single-threaded while the kernel runs (the caller's job; the
Python layer holds it with threadpoolctl).

Leave-one-out (the queries are the database rows, ``exclude_self``): query
row i never takes database row ``i + self_shift``.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.math cimport INFINITY, NAN
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastmetric.kernels.common cimport floating, gemm_rowmajor, sq_norm
from fastmetric.kernels.smallgemm cimport small_gemm_available


cdef extern from * nogil:
    """
    #include <math.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define FM_NN_AVX512_COMPILED 1
    #define FM_NN_AVX512 __attribute__((target("avx512f")))
    #define FM_NN_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))
    #else
    #define FM_NN_AVX512_COMPILED 0
    #endif

    /* Query rows per register tile of the AVX-512 path, and vectors per panel. */
    #define FM_NN_TILE_ROWS 6
    #define FM_NN_TILE_VECS 4

    /* One hit of a radius search: query row (in its block), database row,
       exact squared distance. */
    typedef struct { int64_t row; int64_t idx; double dist; } FmNNHit;

    /* A growable list of hits (one per work item). */
    typedef struct { FmNNHit *items; Py_ssize_t size; Py_ssize_t capacity; } FmNNHits;

    /* What one work item (a block of query rows) works with. */
    typedef struct {
        int mode;              /* 0: k nearest; 1: all within a radius */
        Py_ssize_t d, n, k;
        double tol1;           /* 1 - tol */
        double r2;             /* squared radius (mode 1) */
        int exclude_self;
        Py_ssize_t self_first; /* database row excluded for the block's row 0 */
        double *qn;            /* exact squared norms of the block's rows */
        double *thr;           /* per-row threshold of the filter (float64) */
        float *thrf;           /* the same rounded up to float32 */
        double *dist;          /* mode 0: rows x k, sorted by (dist, idx) */
        int64_t *idx;
        Py_ssize_t *filled;    /* mode 0: entries in each row's list */
        FmNNHits *hits;        /* mode 1 */
        int failed;            /* an allocation failed */
    } FmNNBlock;

    /* Exact squared distance of a contiguous q and a strided z (z[t * stride]),
       summed in float64 in one fixed order.  Never inlined and never
       contracted into fused multiply-adds, so that both paths (the panel
       path's callers are compiled for AVX-512, where FMA exists) run the
       same code and round the same. */
    #if defined(__GNUC__) && !defined(__clang__)
    #define FM_NN_EXACT_ATTR static __attribute__((noinline, optimize("fp-contract=off")))
    #elif defined(__clang__)
    #define FM_NN_EXACT_ATTR static __attribute__((noinline))
    #else
    #define FM_NN_EXACT_ATTR static
    #endif
    FM_NN_EXACT_ATTR double fm_nn_exact_f(const float *q, const float *z, Py_ssize_t stride,
                                       Py_ssize_t n) {
        FM_SQ_SUM_BODY(((double)q[jj] - (double)z[jj * stride]))
    }
    FM_NN_EXACT_ATTR double fm_nn_exact_d(const double *q, const double *z, Py_ssize_t stride,
                                       Py_ssize_t n) {
        FM_SQ_SUM_BODY((q[jj] - z[jj * stride]))
    }

    /* Set row r's filter threshold from the value its candidates must beat
       (the k-th best exact distance, or the squared radius). */
    static inline void fm_nn_set_threshold(FmNNBlock *b, Py_ssize_t r, double limit) {
        double t = limit - b->qn[r] * b->tol1;
        float tf = (float)t;
        if ((double)tf < t) tf = nextafterf(tf, INFINITY);
        b->thr[r] = t;
        b->thrf[r] = tf;
    }

    /* Offer database row j at exact squared distance e to block row r. */
    static void fm_nn_offer(FmNNBlock *b, Py_ssize_t r, double e, int64_t j) {
        if (b->mode == 1) {
            FmNNHits *h = b->hits;
            if (!(e <= b->r2)) return;
            if (h->size == h->capacity) {
                Py_ssize_t cap = h->capacity ? 2 * h->capacity : 256;
                FmNNHit *grown = (FmNNHit *)realloc(h->items, cap * sizeof(FmNNHit));
                if (grown == NULL) { b->failed = 1; return; }
                h->items = grown;
                h->capacity = cap;
            }
            h->items[h->size].row = r;
            h->items[h->size].idx = j;
            h->items[h->size].dist = e;
            h->size++;
            return;
        }
        const Py_ssize_t k = b->k;
        Py_ssize_t f = b->filled[r];
        double *dist = b->dist + r * k;
        int64_t *idx = b->idx + r * k;
        if (f == k) {
            if (e > dist[k - 1] || (e == dist[k - 1] && j > idx[k - 1])) return;
            f = k - 1;  /* the last one drops out */
        }
        /* First position whose (distance, index) is above (e, j). */
        Py_ssize_t lo = 0, hi = f;
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi) / 2;
            if (dist[mid] < e || (dist[mid] == e && idx[mid] < j)) lo = mid + 1;
            else hi = mid;
        }
        memmove(dist + lo + 1, dist + lo, (f - lo) * sizeof(double));
        memmove(idx + lo + 1, idx + lo, (f - lo) * sizeof(int64_t));
        dist[lo] = e;
        idx[lo] = j;
        b->filled[r] = f + 1;
        if (f + 1 == k) fm_nn_set_threshold(b, r, dist[k - 1]);
    }

    /* One candidate that passed a filter: check it again against the row's
       current threshold (which may have dropped since the filter ran), then
       rank it by its exact distance. */
    #define FM_NN_CANDIDATE(SFX, T, THR, b, r, j, est, q, z, stride)                  \\
        do {                                                                         \\
            if ((j) < (b)->n && !((b)->exclude_self && (j) == (b)->self_first + (r))   \\
                    && (est) <= (b)->THR[r])                                         \\
                fm_nn_offer((b), (r), fm_nn_exact_##SFX((q), (z), (stride), (b)->d), (j)); \\
        } while (0)

    /* BLAS path: the scan of buf (rows x w, -2 q.z) for database rows
       [c0, c0 + w) of a row-major Z. */
    #define FM_NN_SCAN(SFX, T, THR)                                                  \\
    static void fm_nn_scan_##SFX(FmNNBlock *b, const T *Q, Py_ssize_t rows,          \\
                                 const T *Z, const T *zlo, Py_ssize_t c0, Py_ssize_t w, \\
                                 const T *buf) {                                     \\
        const Py_ssize_t d = b->d;                                                   \\
        for (Py_ssize_t r = 0; r < rows; r++) {                                      \\
            const T *br = buf + r * w;                                               \\
            Py_ssize_t g = 0;                                                        \\
            while (g < w) {                                                          \\
                const Py_ssize_t ge = g + 64 < w ? g + 64 : w;                       \\
                const T t = (T)b->THR[r];                                            \\
                int hit = 0;                                                         \\
                for (Py_ssize_t jj = g; jj < ge; jj++)                               \\
                    hit |= (br[jj] + zlo[c0 + jj] <= t);                             \\
                if (hit) {                                                           \\
                    for (Py_ssize_t jj = g; jj < ge; jj++) {                         \\
                        const int64_t j = c0 + jj;                                   \\
                        const T est = br[jj] + zlo[j];                               \\
                        FM_NN_CANDIDATE(SFX, T, THR, b, r, j, est, Q + r * d, Z + j * d, 1); \\
                    }                                                                \\
                }                                                                    \\
                g = ge;                                                              \\
            }                                                                        \\
        }                                                                            \\
    }
    FM_NN_SCAN(f, float, thrf)
    FM_NN_SCAN(d, double, thr)

    #if FM_NN_AVX512_COMPILED
    /* AVX-512 path.  A panel holds W = FM_NN_TILE_VECS * LANES database rows
       transposed: panel[t * W + c] is coordinate t of row p W + c. */
    #define FM_NN_AVX512_KERNELS(SFX, T, V, M, LANES, S, THR)                         \\
                                                                                     \\
    /* The candidates of a tile row: vals (W estimates) and their masks. */          \\
    static FM_NN_AVX512 void fm_nn_tile_hits_##SFX(                                  \\
            FmNNBlock *b, const T *q, Py_ssize_t r, const T *panel, int64_t j0,      \\
            const T *vals, const unsigned *masks) {                                  \\
        const Py_ssize_t W = FM_NN_TILE_VECS * LANES;                                \\
        for (int v = 0; v < FM_NN_TILE_VECS; v++) {                                  \\
            unsigned m = masks[v];                                                   \\
            while (m) {                                                              \\
                const int c = v * LANES + __builtin_ctz(m);                          \\
                m &= m - 1;                                                          \\
                const int64_t j = j0 + c;                                            \\
                FM_NN_CANDIDATE(SFX, T, THR, b, r, j, vals[c], q, panel + c, W);     \\
            }                                                                        \\
        }                                                                            \\
    }                                                                                \\
                                                                                     \\
    /* Tile: block rows [r0, r0 + R) against one panel; the products sum  */        \\
    /* over the d coordinates in registers, then the filter reads them.   */        \\
    FM_NN_AVX512_INLINE void fm_nn_tile_##SFX(                                       \\
            FmNNBlock *b, const T *Q, Py_ssize_t r0, const int R, const T *panel,    \\
            const T *zlo, int64_t j0) {                                              \\
        const Py_ssize_t d = b->d;                                                   \\
        const Py_ssize_t W = FM_NN_TILE_VECS * LANES;                                \\
        const T *q = Q + r0 * d;                                                     \\
        V acc[FM_NN_TILE_ROWS][FM_NN_TILE_VECS];                                     \\
        for (int r = 0; r < R; r++)                                                  \\
            for (int v = 0; v < FM_NN_TILE_VECS; v++) acc[r][v] = _mm512_setzero_##S(); \\
        for (Py_ssize_t t = 0; t < d; t++) {                                         \\
            const T *pt = panel + t * W;                                             \\
            V p0 = _mm512_loadu_##S(pt), p1 = _mm512_loadu_##S(pt + LANES);          \\
            V p2 = _mm512_loadu_##S(pt + 2 * LANES), p3 = _mm512_loadu_##S(pt + 3 * LANES); \\
            for (int r = 0; r < R; r++) {                                            \\
                V s = _mm512_set1_##S(q[r * d + t]);                                 \\
                acc[r][0] = _mm512_fmadd_##S(s, p0, acc[r][0]);                      \\
                acc[r][1] = _mm512_fmadd_##S(s, p1, acc[r][1]);                      \\
                acc[r][2] = _mm512_fmadd_##S(s, p2, acc[r][2]);                      \\
                acc[r][3] = _mm512_fmadd_##S(s, p3, acc[r][3]);                      \\
            }                                                                        \\
        }                                                                            \\
        const V two = _mm512_set1_##S((T)2);                                         \\
        V z[FM_NN_TILE_VECS];                                                        \\
        for (int v = 0; v < FM_NN_TILE_VECS; v++) z[v] = _mm512_loadu_##S(zlo + v * LANES); \\
        for (int r = 0; r < R; r++) {                                                \\
            const V th = _mm512_set1_##S(b->THR[r0 + r]);                            \\
            V val[FM_NN_TILE_VECS];                                                  \\
            unsigned masks[FM_NN_TILE_VECS], any = 0;                                \\
            for (int v = 0; v < FM_NN_TILE_VECS; v++) {                             \\
                /* (1 - tol) ||z||^2 - 2 q.z <= threshold; NaN (padding) never. */   \\
                val[v] = _mm512_fnmadd_##S(two, acc[r][v], z[v]);                    \\
                masks[v] = (unsigned)_mm512_cmp_##S##_mask(val[v], th, _CMP_LE_OQ);  \\
                any |= masks[v];                                                     \\
            }                                                                        \\
            if (__builtin_expect(any != 0, 0)) {                                     \\
                T vals[FM_NN_TILE_VECS * LANES];                                     \\
                for (int v = 0; v < FM_NN_TILE_VECS; v++)                            \\
                    _mm512_storeu_##S(vals + v * LANES, val[v]);                     \\
                fm_nn_tile_hits_##SFX(b, q + r * d, r0 + r, panel, j0, vals, masks); \\
            }                                                                        \\
        }                                                                            \\
    }                                                                                \\
                                                                                     \\
    /* A block of query rows against every panel. */                                \\
    static FM_NN_AVX512 void fm_nn_panels_##SFX(                                     \\
            FmNNBlock *b, const T *Q, Py_ssize_t rows, const T *P, const T *zlo,     \\
            Py_ssize_t n_panels) {                                                   \\
        const Py_ssize_t W = FM_NN_TILE_VECS * LANES;                                \\
        for (Py_ssize_t p = 0; p < n_panels && !b->failed; p++) {                    \\
            const T *panel = P + p * b->d * W;                                       \\
            const T *zp = zlo + p * W;                                               \\
            for (Py_ssize_t r0 = 0; r0 < rows; r0 += FM_NN_TILE_ROWS) {              \\
                const int R = rows - r0 < FM_NN_TILE_ROWS ? (int)(rows - r0) : FM_NN_TILE_ROWS; \\
                /* Constant R in each call: the tile lives in registers. */          \\
                switch (R) {                                                         \\
                case 6: fm_nn_tile_##SFX(b, Q, r0, 6, panel, zp, p * W); break;      \\
                case 5: fm_nn_tile_##SFX(b, Q, r0, 5, panel, zp, p * W); break;      \\
                case 4: fm_nn_tile_##SFX(b, Q, r0, 4, panel, zp, p * W); break;      \\
                case 3: fm_nn_tile_##SFX(b, Q, r0, 3, panel, zp, p * W); break;      \\
                case 2: fm_nn_tile_##SFX(b, Q, r0, 2, panel, zp, p * W); break;      \\
                default: fm_nn_tile_##SFX(b, Q, r0, 1, panel, zp, p * W); break;     \\
                }                                                                    \\
            }                                                                        \\
        }                                                                            \\
    }
    FM_NN_AVX512_KERNELS(f, float, __m512, __mmask16, 16, ps, thrf)
    FM_NN_AVX512_KERNELS(d, double, __m512d, __mmask8, 8, pd, thr)
    #else  /* never called: the callers take the BLAS path */
    static void fm_nn_panels_f(FmNNBlock *b, const float *Q, Py_ssize_t rows, const float *P,
                               const float *zlo, Py_ssize_t n_panels) {}
    static void fm_nn_panels_d(FmNNBlock *b, const double *Q, Py_ssize_t rows, const double *P,
                               const double *zlo, Py_ssize_t n_panels) {}
    #endif

    /* Hits of a radius search ordered by (row, distance, index): unique keys,
       so the order is fully determined. */
    static int fm_nn_hit_cmp(const void *pa, const void *pb) {
        const FmNNHit *a = (const FmNNHit *)pa, *b = (const FmNNHit *)pb;
        if (a->row != b->row) return a->row < b->row ? -1 : 1;
        if (a->dist != b->dist) return a->dist < b->dist ? -1 : 1;
        if (a->idx != b->idx) return a->idx < b->idx ? -1 : 1;
        return 0;
    }
    static void fm_nn_sort_hits(FmNNHits *h) {
        if (h->size > 1) qsort(h->items, h->size, sizeof(FmNNHit), fm_nn_hit_cmp);
    }
    """
    ctypedef struct FmNNHit:
        int64_t row
        int64_t idx
        double dist

    ctypedef struct FmNNHits:
        FmNNHit *items
        Py_ssize_t size
        Py_ssize_t capacity

    ctypedef struct FmNNBlock:
        int mode
        Py_ssize_t d, n, k
        double tol1
        double r2
        int exclude_self
        Py_ssize_t self_first
        double *qn
        double *thr
        float *thrf
        double *dist
        int64_t *idx
        Py_ssize_t *filled
        FmNNHits *hits
        int failed

    int FM_NN_TILE_VECS
    void fm_nn_set_threshold(FmNNBlock *b, Py_ssize_t r, double limit)
    void fm_nn_scan_f(FmNNBlock *b, const float *Q, Py_ssize_t rows, const float *Z,
                      const float *zlo, Py_ssize_t c0, Py_ssize_t w, const float *buf)
    void fm_nn_scan_d(FmNNBlock *b, const double *Q, Py_ssize_t rows, const double *Z,
                      const double *zlo, Py_ssize_t c0, Py_ssize_t w, const double *buf)
    void fm_nn_panels_f(FmNNBlock *b, const float *Q, Py_ssize_t rows, const float *P,
                        const float *zlo, Py_ssize_t n_panels)
    void fm_nn_panels_d(FmNNBlock *b, const double *Q, Py_ssize_t rows, const double *P,
                        const double *zlo, Py_ssize_t n_panels)
    void fm_nn_sort_hits(FmNNHits *h)


cdef enum:
    # Query rows per work item: a multiple of the 6-row tile; 192 rows of 64
    # float32 coordinates (48 KB) stay in L1/L2 while the panels stream by,
    # and each panel read from memory serves 32 tiles.
    DEF_BLOCK_ROWS = 192
    # Database rows per BLAS product on the BLAS path: a 192 x 1024 float32
    # buffer (768 KB) stays in L2 between the GEMM and the scan.
    DEF_COL_CHUNK = 1024

# The same, for the Python layer.
BLOCK_ROWS = DEF_BLOCK_ROWS
COL_CHUNK = DEF_COL_CHUNK


cdef inline double filter_tolerance(floating dummy, Py_ssize_t d) noexcept nogil:
    """tol = 2 (d + 8) eps: twice the dot product's error bound (d eps) plus
    a few roundings of the norms and sums."""
    if floating is float:
        return 2.0 * (d + 8) * 1.1920928955078125e-07
    else:
        return 2.0 * (d + 8) * 2.220446049250313e-16


cdef inline Py_ssize_t panel_width(floating dummy) noexcept nogil:
    """Database rows per panel: 4 AVX-512 vectors."""
    if floating is float:
        return 64
    else:
        return 32


cdef bint panels_in_use() noexcept nogil:
    """Whether the AVX-512 panel path runs here (else BLAS)."""
    return small_gemm_available()


cdef void pack_database(
    const floating[:, ::1] Z,
    bint panels,
    floating *P,
    floating *zlo,
    int n_threads,
) noexcept nogil:
    """Prepare database rows for the search.

    ``zlo[j] = (1 - tol) ||z_j||^2`` for every row.  With ``panels`` (AVX-512
    path), ``P`` receives the panels (ceil(n / W) blocks of d x W, rows past
    n zero with ``zlo`` NaN, so ``zlo`` holds ceil(n / W) * W entries);
    without, ``P`` is unused (may be NULL) and the search reads Z itself.
    """
    cdef Py_ssize_t n = Z.shape[0], d = Z.shape[1], W = panel_width(<floating> 0)
    cdef Py_ssize_t n_panels = (n + W - 1) // W
    cdef Py_ssize_t p, c, j, t
    cdef double tol1 = 1.0 - filter_tolerance(<floating> 0, d)
    cdef floating *panel
    if not panels:
        for j in prange(n, schedule='dynamic', chunksize=256, num_threads=n_threads):
            zlo[j] = <floating> (sq_norm(&Z[j, 0], d) * tol1)
        return
    for p in prange(n_panels, schedule='dynamic', num_threads=n_threads):
        panel = P + p * d * W
        for c in range(W):
            j = p * W + c
            if j < n:
                zlo[j] = <floating> (sq_norm(&Z[j, 0], d) * tol1)
                for t in range(d):
                    panel[t * W + c] = Z[j, t]
            else:
                zlo[j] = <floating> NAN
                for t in range(d):
                    panel[t * W + c] = 0


cdef int search_blocks(
    int mode,
    const floating[:, ::1] Q,
    const floating *Z,
    const floating *P,
    const floating *zlo,
    Py_ssize_t n,
    Py_ssize_t k,
    double r2,
    bint exclude_self,
    Py_ssize_t self_shift,
    double *out_dist,
    int64_t *out_idx,
    FmNNHits *hits,
    Py_ssize_t block_rows,
    Py_ssize_t col_chunk,
    int n_threads,
) noexcept nogil:
    """The search proper (see the module docstring); 0, or -1 when memory
    ran out.

    mode 0: ``out_dist``/``out_idx`` (n_q x k) receive each query's k
    nearest (squared exact distances; -1 and +inf where fewer than k
    database rows qualify).  mode 1: ``hits[b]`` (one list per block of
    ``block_rows`` queries) receives the rows within squared radius ``r2``,
    block row numbers, sorted.  ``P`` non-NULL selects the panel path (P and
    zlo from pack_database), else Z (n x d, row-major) and BLAS.
    """
    cdef Py_ssize_t nq = Q.shape[0], d = Q.shape[1]
    cdef Py_ssize_t n_blocks = (nq + block_rows - 1) // block_rows
    cdef Py_ssize_t W = panel_width(<floating> 0)
    cdef Py_ssize_t n_panels = (n + W - 1) // W
    cdef Py_ssize_t blk, start, rows, r, c0, w
    cdef double tol1 = 1.0 - filter_tolerance(<floating> 0, d)
    cdef int failed = 0
    cdef bint ok
    cdef FmNNBlock *b
    cdef floating *buf
    with parallel(num_threads=n_threads):
        # Per-thread state: the block's struct, norms, thresholds, list sizes
        # and (BLAS path) the product buffer.
        b = <FmNNBlock *> malloc(sizeof(FmNNBlock))
        buf = NULL
        ok = b != NULL
        if ok:
            b.qn = <double *> malloc(block_rows * sizeof(double))
            b.thr = <double *> malloc(block_rows * sizeof(double))
            b.thrf = <float *> malloc(block_rows * sizeof(float))
            b.filled = <Py_ssize_t *> malloc(block_rows * sizeof(Py_ssize_t))
            if P == NULL:
                buf = <floating *> malloc(block_rows * col_chunk * sizeof(floating))
            ok = (b.qn != NULL and b.thr != NULL and b.thrf != NULL and b.filled != NULL
                  and (P != NULL or buf != NULL))
        for blk in prange(n_blocks, schedule='dynamic'):
            if not ok:
                failed += 1
                continue
            start = blk * block_rows
            rows = min(block_rows, nq - start)
            b.mode = mode
            b.d = d
            b.n = n
            b.k = k
            b.tol1 = tol1
            b.r2 = r2
            b.exclude_self = exclude_self
            b.self_first = start + self_shift
            b.failed = 0
            b.hits = NULL
            b.dist = NULL
            b.idx = NULL
            if mode == 0:
                b.dist = out_dist + start * k
                b.idx = out_idx + start * k
            else:
                b.hits = &hits[blk]
            for r in range(rows):
                b.qn[r] = sq_norm(&Q[start + r, 0], d)
                b.filled[r] = 0
                fm_nn_set_threshold(b, r, r2 if mode == 1 else INFINITY)
            if P != NULL:
                if floating is float:
                    fm_nn_panels_f(b, &Q[start, 0], rows, P, zlo, n_panels)
                else:
                    fm_nn_panels_d(b, &Q[start, 0], rows, P, zlo, n_panels)
            else:
                c0 = 0
                while c0 < n and not b.failed:
                    w = min(col_chunk, n - c0)
                    gemm_rowmajor(False, True, <int> rows, <int> w, <int> d,
                                  <floating> -2.0, &Q[start, 0], <int> d, Z + c0 * d, <int> d,
                                  <floating> 0.0, buf, <int> w)
                    if floating is float:
                        fm_nn_scan_f(b, &Q[start, 0], rows, Z, zlo, c0, w, buf)
                    else:
                        fm_nn_scan_d(b, &Q[start, 0], rows, Z, zlo, c0, w, buf)
                    c0 += w
            if mode == 0:
                # Rows with fewer than k qualifying database rows.
                for r in range(rows):
                    for c0 in range(b.filled[r], k):
                        out_dist[(start + r) * k + c0] = INFINITY
                        out_idx[(start + r) * k + c0] = -1
            else:
                fm_nn_sort_hits(b.hits)
            if b.failed:
                failed += 1
        if b != NULL:
            free(b.qn)
            free(b.thr)
            free(b.thrf)
            free(b.filled)
        free(b)
        free(buf)
    return -1 if failed else 0


cdef int knn_search(
    const floating[:, ::1] Q,
    const floating[:, ::1] Z,
    Py_ssize_t k,
    bint exclude_self,
    Py_ssize_t self_shift,
    double[:, ::1] out_dist,
    int64_t[:, ::1] out_idx,
    int n_threads,
) noexcept nogil:
    """k nearest rows of Z for each row of Q (both mapped already, one d).

    ``out_dist`` (n_q x k) receives squared exact distances (float64),
    ``out_idx`` the rows of Z, sorted by (distance, index); -1 and +inf fill
    a row when fewer than k rows qualify.  With ``exclude_self``, Q's row i
    never takes Z's row ``i + self_shift``.  Packs Z for this call.  BLAS
    must be single-threaded (the caller holds it so).  Returns 0, or -1
    when memory ran out.
    """
    cdef Py_ssize_t n = Z.shape[0], d = Z.shape[1], W = panel_width(<floating> 0)
    cdef Py_ssize_t n_pad = ((n + W - 1) // W) * W
    cdef bint panels = panels_in_use()
    cdef floating *P = NULL
    cdef floating *zlo
    cdef int status
    if Q.shape[0] == 0 or n == 0 or k <= 0:
        return 0
    zlo = <floating *> malloc(n_pad * sizeof(floating))
    if panels:
        P = <floating *> malloc(n_pad * d * sizeof(floating))
    if zlo == NULL or (panels and P == NULL):
        free(zlo)
        free(P)
        return -1
    pack_database(Z, panels, P, zlo, n_threads)
    status = search_blocks(0, Q, &Z[0, 0], P, zlo, n, k, 0.0, exclude_self, self_shift,
                           &out_dist[0, 0], &out_idx[0, 0], NULL, DEF_BLOCK_ROWS,
                           DEF_COL_CHUNK, n_threads)
    free(zlo)
    free(P)
    return status


# ---------------------------------------------------------------------------
# Python entry points (the Python layer validates; these check what would
# otherwise crash)
# ---------------------------------------------------------------------------
def _panels_in_use():
    """Whether this module's search uses the AVX-512 panel path."""
    return bool(panels_in_use())


class PackedDatabase:
    """Database rows prepared for repeated searches (see :func:`_pack`).

    Attributes: ``Z`` (n x d mapped rows, row-major), ``panels`` (the
    AVX-512 panels, flat, or None on the BLAS path), ``zlo`` (filter norm
    terms), ``n``, ``d``, ``dtype``.
    """

    def __init__(self, Z, panels, zlo):
        self.Z = Z
        self.panels = panels
        self.zlo = zlo
        self.n, self.d = Z.shape
        self.dtype = Z.dtype

    @property
    def nbytes(self):
        return self.Z.nbytes + self.zlo.nbytes + (0 if self.panels is None else self.panels.nbytes)


def _pack(Z, int n_threads):
    """Pack mapped database rows ``Z`` (C-contiguous float32/float64, n >= 1)
    for :func:`_kneighbors` and :func:`_radius`; the panels are built only
    where the AVX-512 path runs."""
    if Z.dtype not in (np.float32, np.float64) or Z.ndim != 2 or not Z.flags.c_contiguous:
        raise TypeError(f"Z must be a C-contiguous 2-D float32/float64 array; got {Z.dtype}, "
                        f"{Z.ndim} dimension(s).")
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        raise ValueError(f"the database is empty (shape {Z.shape}).")
    W = 64 if Z.dtype == np.float32 else 32
    n_pad = -(-Z.shape[0] // W) * W
    use_panels = panels_in_use()
    zlo = np.empty(n_pad, dtype=Z.dtype)
    panels = np.empty(n_pad * Z.shape[1] if use_panels else 0, dtype=Z.dtype)
    _pack_into(Z, panels, zlo, n_threads)
    return PackedDatabase(Z, panels if use_panels else None, zlo)


def _pack_into(const floating[:, ::1] Z, floating[::1] panels, floating[::1] zlo, int n_threads):
    """pack_database into preallocated arrays (``panels`` empty: BLAS path)."""
    cdef floating *P = &panels[0] if panels.shape[0] > 0 else NULL
    with nogil:
        pack_database(Z, P != NULL, P, &zlo[0], n_threads)


def _panels_or_empty(db):
    return db.panels if db.panels is not None else np.empty(0, dtype=db.dtype)


def _check_search(Q, db, Py_ssize_t block_rows, Py_ssize_t col_chunk):
    if not isinstance(db, PackedDatabase):
        raise TypeError(f"db must come from _pack; got {type(db).__name__}.")
    if Q.dtype != db.dtype or Q.ndim != 2 or not Q.flags.c_contiguous:
        raise TypeError(f"Q must be a C-contiguous 2-D array of the database's dtype "
                        f"{db.dtype}; got {Q.dtype} with {Q.ndim} dimension(s).")
    if Q.shape[1] != db.d:
        raise ValueError(f"Q has {Q.shape[1]} columns but the database rows have {db.d}.")
    if Q.shape[0] == 0:
        raise ValueError(f"there are no queries (Q has shape {Q.shape}).")
    if block_rows < 1 or col_chunk < 1:
        raise ValueError(f"block_rows and col_chunk must be >= 1; got {block_rows}, {col_chunk}.")


def _kneighbors(Q, db, Py_ssize_t k, bint exclude_self=False, Py_ssize_t self_shift=0,
                Py_ssize_t block_rows=DEF_BLOCK_ROWS, Py_ssize_t col_chunk=DEF_COL_CHUNK,
                int n_threads=1, bint strict=True):
    """The k nearest database rows of each query row.

    Returns ``(dist2, idx)``: (n_q, k) float64 squared exact distances and
    int64 row numbers, sorted by (distance, index).  With ``strict`` (the
    default) k must not exceed the rows available to every query; without,
    k may reach the database size and a row with fewer candidates is padded
    with +inf and -1 (for merging partial searches).
    """
    _check_search(Q, db, block_rows, col_chunk)
    available = db.n - (1 if exclude_self and strict else 0)
    if k < 1 or k > available:
        raise ValueError(f"n_neighbors must be in [1, {available}] (the database has {db.n} rows"
                         f"{', one of them the query itself' if exclude_self else ''}); got {k}.")
    dist = np.empty((Q.shape[0], k), dtype=np.float64)
    idx = np.empty((Q.shape[0], k), dtype=np.int64)
    status = _search(0, Q, db.Z, _panels_or_empty(db), db.zlo, k, 0.0, exclude_self, self_shift,
                     dist, idx, 0, block_rows, col_chunk, n_threads)
    if status != 0:
        raise MemoryError("the neighbour search could not allocate its work buffers.")
    return dist, idx


def _radius(Q, db, double radius, bint exclude_self=False, Py_ssize_t self_shift=0,
            Py_ssize_t block_rows=DEF_BLOCK_ROWS, Py_ssize_t col_chunk=DEF_COL_CHUNK,
            int n_threads=1):
    """The database rows within ``radius`` (distance <= radius) of each query.

    Returns ``(indptr, idx, dist2)`` in CSR form: row i's hits are
    ``idx[indptr[i]:indptr[i + 1]]`` sorted by (distance, index), with their
    float64 squared exact distances.
    """
    _check_search(Q, db, block_rows, col_chunk)
    if not (radius >= 0):
        raise ValueError(f"radius must be a non-negative number; got {radius}.")
    cdef Py_ssize_t nq = Q.shape[0]
    cdef Py_ssize_t n_blocks = (nq + block_rows - 1) // block_rows
    cdef FmNNHits *hits = <FmNNHits *> malloc(n_blocks * sizeof(FmNNHits))
    cdef Py_ssize_t blk, h, total = 0, pos = 0, start
    cdef int64_t[::1] indptr_v, idx_v
    cdef double[::1] dist_v
    if hits == NULL:
        raise MemoryError("the radius search could not allocate its result lists.")
    memset(hits, 0, n_blocks * sizeof(FmNNHits))
    try:
        status = _search(1, Q, db.Z, _panels_or_empty(db), db.zlo, 0, radius * radius,
                         exclude_self, self_shift, None, None, <size_t> hits, block_rows,
                         col_chunk, n_threads)
        if status != 0:
            raise MemoryError("the radius search ran out of memory for its results.")
        for blk in range(n_blocks):
            total += hits[blk].size
        indptr = np.zeros(nq + 1, dtype=np.int64)
        idx = np.empty(total, dtype=np.int64)
        dist = np.empty(total, dtype=np.float64)
        indptr_v, idx_v, dist_v = indptr, idx, dist
        # Blocks in order, each sorted by (row, distance, index).
        for blk in range(n_blocks):
            start = blk * block_rows
            for h in range(hits[blk].size):
                indptr_v[start + hits[blk].items[h].row + 1] += 1
                idx_v[pos] = hits[blk].items[h].idx
                dist_v[pos] = hits[blk].items[h].dist
                pos += 1
        np.cumsum(indptr, out=indptr)
        return indptr, idx, dist
    finally:
        for blk in range(n_blocks):
            free(hits[blk].items)
        free(hits)


def _search(int mode, const floating[:, ::1] Q, const floating[:, ::1] Z,
            const floating[::1] panels, const floating[::1] zlo, Py_ssize_t k, double r2,
            bint exclude_self, Py_ssize_t self_shift, double[:, ::1] dist,
            int64_t[:, ::1] idx, size_t hits_address, Py_ssize_t block_rows,
            Py_ssize_t col_chunk, int n_threads):
    """search_blocks on arrays: ``panels`` empty for the BLAS path; ``dist``
    and ``idx`` (mode 0) or ``hits_address`` (mode 1, an FmNNHits array)."""
    cdef FmNNHits *hits = <FmNNHits *> hits_address
    cdef const floating *P = &panels[0] if panels.shape[0] > 0 else NULL
    cdef double *dist_p = &dist[0, 0] if mode == 0 else NULL
    cdef int64_t *idx_p = &idx[0, 0] if mode == 0 else NULL
    cdef int status
    with nogil:
        status = search_blocks(mode, Q, &Z[0, 0], P, &zlo[0], Z.shape[0], k, r2, exclude_self,
                               self_shift, dist_p, idx_p, hits, block_rows, col_chunk, n_threads)
    return status

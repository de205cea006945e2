# Products with a small inner or outer dimension, the two that LDML and the
# distance kernels spend their GEMM time on:
#
# * fm_rowmap:  U = X @ Lt, X (m x d) row by row, Lt (d x k) small;
# * fm_atb_acc: C += A^T @ B, A (m x p) and B (m x q) two blocks of rows,
#   C (p x q) small.
#
# Why not BLAS: with d, k, p, q around 64, OpenBLAS reaches a third to a
# half of its large-matrix rate here (a third of its time goes to packing
# copies that only pay for large operands; see benchmarks/ldml_breakdown.py,
# which times both paths).  These kernels keep a tile of
# 6 rows x 4 vectors of the result in AVX-512 registers, read the small
# operand from L1, prefetch the streamed rows ahead and, for a large output
# that nobody reads soon, store it with non-temporal stores.  They are
# compiled for AVX-512F only (GCC/clang on x86-64) and used where the CPU
# has it; elsewhere fm_small_gemm_available() is 0 and the callers use BLAS.
#
# Each output element is one sum in a fixed order (over the inner index, in
# order), so results do not depend on how rows are split among threads.

from libc.stdlib cimport malloc
from libc.string cimport memset

from fastmetric.kernels.common cimport floating, gemm_rowmajor

cdef extern from * nogil:
    """
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define FM_SMALL_GEMM_COMPILED 1
    #define FM_AVX512 __attribute__((target("avx512f")))
    #define FM_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))
    #else
    #define FM_SMALL_GEMM_COMPILED 0
    #endif

    #include <stdlib.h>

    /* -1 until first read, then 1 (use the kernels where the CPU can) or 0
       (BLAS everywhere).  FASTMETRIC_SMALL_GEMM=0 in the environment starts
       it at 0; fm_small_gemm_set_enabled (the modules' _set_small_gemm)
       switches it for one module, for tests.  A race on the first read
       stores the same value twice. */
    static int fm_small_gemm_enabled = -1;

    static inline int fm_small_gemm_available(void) {
    #if FM_SMALL_GEMM_COMPILED
        if (fm_small_gemm_enabled < 0) {
            const char *v = getenv("FASTMETRIC_SMALL_GEMM");
            fm_small_gemm_enabled = !(v != NULL && v[0] == '0' && v[1] == '\\0');
        }
        return fm_small_gemm_enabled && __builtin_cpu_supports("avx512f");
    #else
        return 0;
    #endif
    }

    static inline void fm_small_gemm_set_enabled(int on) { fm_small_gemm_enabled = on; }

    #if FM_SMALL_GEMM_COMPILED
    /* Rows of the tile, and vectors (of LANES values) per tile row. */
    #define FM_TILE_ROWS 6
    #define FM_TILE_VECS 4

    /* acc[r][q] += s_r v[q] over the tile (R x NQ, the last vector masked
       by `last`): the NQ vectors of ROW are loaded once, then each tile row
       r broadcasts its scalar SCALAR (an expression in r). */
    #define FM_TILE_UPDATE(V, S, LANES, ROW, SCALAR) {                          \\
        V v_[FM_TILE_VECS];                                                        \\
        for (int q = 0; q < NQ - 1; q++) v_[q] = _mm512_loadu_##S((ROW) + q * LANES); \\
        v_[NQ - 1] = _mm512_maskz_loadu_##S(last, (ROW) + (NQ - 1) * LANES);       \\
        for (int r = 0; r < R; r++) {                                              \\
            V s_ = _mm512_set1_##S(SCALAR);                                        \\
            for (int q = 0; q < NQ; q++) acc[r][q] = _mm512_fmadd_##S(s_, v_[q], acc[r][q]); \\
        }                                                                          \\
    }

    /* The block of up to FM_TILE_VECS vectors of WIDTH remaining columns:
       NQ vectors, the last one masked by `last` when it is partial. */
    #define FM_COLUMN_BLOCK(M, LANES, WIDTH)                                       \\
        const Py_ssize_t w_ = (WIDTH) < block ? (WIDTH) : block;                   \\
        const int NQ = (int)((w_ + LANES - 1) / LANES);                            \\
        const int rem_ = (int)(w_ - (NQ - 1) * LANES);                             \\
        const M last = (M)(rem_ == LANES ? ~(M)0 : (((M)1 << rem_) - 1));

    /* One instantiation per precision: T the element type, V the vector
       type, M the mask type, LANES the values per vector, S the suffix of
       the intrinsics. */
    #define FM_SMALL_GEMM_KERNELS(SFX, T, V, M, LANES, S)                          \\
                                                                                   \\
    /* Tile of U = X Lt: rows [0, R) of x, vectors [0, NQ) of columns     */       \\
    /* starting at lt/u; the last vector is masked by `last`.             */       \\
    FM_AVX512_INLINE void fm_rowmap_tile_##SFX(                                    \\
            const T *x, Py_ssize_t ldx, Py_ssize_t d, const T *lt, Py_ssize_t k,   \\
            T *u, Py_ssize_t ldu, const int R, const int NQ, M last, int stream) { \\
        V acc[FM_TILE_ROWS][FM_TILE_VECS];                                         \\
        for (int r = 0; r < R; r++)                                                \\
            for (int q = 0; q < NQ; q++) acc[r][q] = _mm512_setzero_##S();         \\
        for (Py_ssize_t j = 0; j < d; j++) {                                       \\
            FM_TILE_UPDATE(V, S, LANES, lt + j * k, x[r * ldx + j])                \\
        }                                                                          \\
        for (int r = 0; r < R; r++) {                                              \\
            T *ur = u + r * ldu;                                                   \\
            for (int q = 0; q < NQ - 1; q++) {                                     \\
                if (stream) _mm512_stream_##S(ur + q * LANES, acc[r][q]);          \\
                else _mm512_storeu_##S(ur + q * LANES, acc[r][q]);                 \\
            }                                                                      \\
            if (stream) _mm512_stream_##S(ur + (NQ - 1) * LANES, acc[r][NQ - 1]);  \\
            else _mm512_mask_storeu_##S(ur + (NQ - 1) * LANES, last, acc[r][NQ - 1]); \\
        }                                                                          \\
    }                                                                              \\
                                                                                   \\
    /* U (m x k, row stride ldu) = X (m x d, row stride ldx) @ Lt (d x k, */       \\
    /* contiguous).  With `stream`, U and ldu * sizeof(T) must be         */       \\
    /* multiples of 64 bytes and k of LANES (callers check): the output   */       \\
    /* bypasses the cache.                                                */       \\
    static FM_AVX512 void fm_rowmap_##SFX(                                         \\
            const T *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,                \\
            const T *Lt, Py_ssize_t k, T *U, Py_ssize_t ldu, int stream) {         \\
        const Py_ssize_t block = FM_TILE_VECS * LANES;                             \\
        for (Py_ssize_t i = 0; i < m; i += FM_TILE_ROWS) {                         \\
            const int R = m - i < FM_TILE_ROWS ? (int)(m - i) : FM_TILE_ROWS;      \\
            /* The rows of the tile 4 tiles ahead: X streams from memory. */       \\
            if (i + 5 * FM_TILE_ROWS <= m) {                                       \\
                const char *p = (const char *)(X + (i + 4 * FM_TILE_ROWS) * ldx);  \\
                for (int r = 0; r < FM_TILE_ROWS; r++)                             \\
                    for (Py_ssize_t o = 0; o < d * (Py_ssize_t)sizeof(T); o += 64) \\
                        _mm_prefetch(p + r * ldx * (Py_ssize_t)sizeof(T) + o, _MM_HINT_T0); \\
            }                                                                      \\
            for (Py_ssize_t c = 0; c < k; c += block) {                            \\
                FM_COLUMN_BLOCK(M, LANES, k - c)                                   \\
                const T *x = X + i * ldx;                                          \\
                T *u = U + i * ldu + c;                                            \\
                /* Constant R and NQ in each call: the tile lives in registers. */ \\
                FM_TILE_SWITCH(FM_ROWMAP_CASES, SFX)                               \\
            }                                                                      \\
        }                                                                          \\
        if (stream) _mm_sfence();                                                  \\
    }                                                                              \\
                                                                                   \\
    /* Tile of C += A^T B: rows [a, a+R) of C (columns of A), vectors     */       \\
    /* [0, NQ) of C's columns starting at b/c (columns of B).             */       \\
    FM_AVX512_INLINE void fm_atb_tile_##SFX(                                       \\
            const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb, Py_ssize_t m,  \\
            T *c, Py_ssize_t ldc, const int R, const int NQ, M last,               \\
            Py_ssize_t pf_bytes) {                                                 \\
        V acc[FM_TILE_ROWS][FM_TILE_VECS];                                         \\
        for (int r = 0; r < R; r++) {                                              \\
            for (int q = 0; q < NQ - 1; q++)                                       \\
                acc[r][q] = _mm512_loadu_##S(c + r * ldc + q * LANES);             \\
            acc[r][NQ - 1] = _mm512_maskz_loadu_##S(last, c + r * ldc + (NQ - 1) * LANES); \\
        }                                                                          \\
        for (Py_ssize_t i = 0; i < m; i++) {                                       \\
            const T *bi = b + i * ldb;                                             \\
            /* First sweep: B's rows still come from memory; fetch ahead. */      \\
            if (pf_bytes && i + 8 < m)                                             \\
                for (Py_ssize_t o = 0; o < pf_bytes; o += 64)                      \\
                    _mm_prefetch((const char *)(bi + 8 * ldb) + o, _MM_HINT_T0);   \\
            FM_TILE_UPDATE(V, S, LANES, bi, a[i * lda + r])                        \\
        }                                                                          \\
        for (int r = 0; r < R; r++) {                                              \\
            for (int q = 0; q < NQ - 1; q++)                                       \\
                _mm512_storeu_##S(c + r * ldc + q * LANES, acc[r][q]);             \\
            _mm512_mask_storeu_##S(c + r * ldc + (NQ - 1) * LANES, last, acc[r][NQ - 1]); \\
        }                                                                          \\
    }                                                                              \\
                                                                                   \\
    /* C (p x q, row stride ldc) += A^T B with A (m x p, stride lda) and  */       \\
    /* B (m x q, stride ldb): both blocks are read once per tile of C, so */       \\
    /* they should be in cache (a chunk of a few hundred rows).           */       \\
    static FM_AVX512 void fm_atb_acc_##SFX(                                        \\
            const T *A, Py_ssize_t lda, const T *B, Py_ssize_t ldb, Py_ssize_t m,  \\
            Py_ssize_t p, Py_ssize_t q, T *C, Py_ssize_t ldc) {                    \\
        const Py_ssize_t block = FM_TILE_VECS * LANES;                             \\
        for (Py_ssize_t a0 = 0; a0 < p; a0 += FM_TILE_ROWS) {                      \\
            const int R = p - a0 < FM_TILE_ROWS ? (int)(p - a0) : FM_TILE_ROWS;    \\
            for (Py_ssize_t b0 = 0; b0 < q; b0 += block) {                         \\
                FM_COLUMN_BLOCK(M, LANES, q - b0)                                  \\
                const T *a = A + a0;                                               \\
                const T *b = B + b0;                                               \\
                T *c = C + a0 * ldc + b0;                                          \\
                const Py_ssize_t pf_bytes =                                        \\
                    (a0 == 0 && b0 == 0) ? q * (Py_ssize_t)sizeof(T) : 0;          \\
                FM_TILE_SWITCH(FM_ATB_CASES, SFX)                                  \\
            }                                                                      \\
        }                                                                          \\
    }

    /* Calls the tile function with the constant R and NQ of this tile. */
    #define FM_TILE_SWITCH(CASES, SFX)                                             \\
        switch (R * 8 + NQ) {                                                      \\
        CASES(SFX, 6) CASES(SFX, 5) CASES(SFX, 4)                                  \\
        CASES(SFX, 3) CASES(SFX, 2) CASES(SFX, 1)                                  \\
        }

    #define FM_ROWMAP_CASE(SFX, R, NQ)                                             \\
        case R * 8 + NQ:                                                           \\
            fm_rowmap_tile_##SFX(x, ldx, d, Lt + c, k, u, ldu, R, NQ, last, stream); \\
            break;
    #define FM_ROWMAP_CASES(SFX, R)                                                \\
        FM_ROWMAP_CASE(SFX, R, 1) FM_ROWMAP_CASE(SFX, R, 2)                        \\
        FM_ROWMAP_CASE(SFX, R, 3) FM_ROWMAP_CASE(SFX, R, 4)
    #define FM_ATB_CASE(SFX, R, NQ)                                                \\
        case R * 8 + NQ:                                                           \\
            fm_atb_tile_##SFX(a, lda, b, ldb, m, c, ldc, R, NQ, last, pf_bytes);   \\
            break;
    #define FM_ATB_CASES(SFX, R)                                                   \\
        FM_ATB_CASE(SFX, R, 1) FM_ATB_CASE(SFX, R, 2)                              \\
        FM_ATB_CASE(SFX, R, 3) FM_ATB_CASE(SFX, R, 4)

    FM_SMALL_GEMM_KERNELS(d, double, __m512d, __mmask8, 8, pd)
    FM_SMALL_GEMM_KERNELS(f, float, __m512, __mmask16, 16, ps)

    #else  /* not compiled: the callers never reach these (available() is 0) */
    static void fm_rowmap_d(const double *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                            const double *Lt, Py_ssize_t k, double *U, Py_ssize_t ldu,
                            int stream) {}
    static void fm_rowmap_f(const float *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                            const float *Lt, Py_ssize_t k, float *U, Py_ssize_t ldu,
                            int stream) {}
    static void fm_atb_acc_d(const double *A, Py_ssize_t lda, const double *B, Py_ssize_t ldb,
                             Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, double *C,
                             Py_ssize_t ldc) {}
    static void fm_atb_acc_f(const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
                             Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, float *C,
                             Py_ssize_t ldc) {}
    #endif
    """
    bint fm_small_gemm_available()
    void fm_small_gemm_set_enabled(int on)
    void fm_rowmap_d(const double *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                     const double *Lt, Py_ssize_t k, double *U, Py_ssize_t ldu, int stream)
    void fm_rowmap_f(const float *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                     const float *Lt, Py_ssize_t k, float *U, Py_ssize_t ldu, int stream)
    void fm_atb_acc_d(const double *A, Py_ssize_t lda, const double *B, Py_ssize_t ldb,
                      Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, double *C, Py_ssize_t ldc)
    void fm_atb_acc_f(const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
                      Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, float *C, Py_ssize_t ldc)


cdef inline void rowmap(const floating *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                        const floating *Lt, Py_ssize_t k, floating *U, Py_ssize_t ldu,
                        bint stream) noexcept nogil:
    """U = X @ Lt (see fm_rowmap); only where fm_small_gemm_available()."""
    if floating is float:
        fm_rowmap_f(X, ldx, m, d, Lt, k, U, ldu, stream)
    else:
        fm_rowmap_d(X, ldx, m, d, Lt, k, U, ldu, stream)


cdef inline void atb_acc(const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                         Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, floating *C,
                         Py_ssize_t ldc) noexcept nogil:
    """C += A^T @ B (see fm_atb_acc); only where fm_small_gemm_available()."""
    if floating is float:
        fm_atb_acc_f(A, lda, B, ldb, m, p, q, C, ldc)
    else:
        fm_atb_acc_d(A, lda, B, ldb, m, p, q, C, ldc)


cdef inline floating *transposed_for_rowmap(const floating[:, ::1] L) noexcept nogil:
    """L^T (d x k, contiguous, malloc'ed: the caller frees it), or NULL when
    the small-GEMM kernels are not available here (or memory is short): the
    caller then uses BLAS."""
    cdef Py_ssize_t k = L.shape[0], d = L.shape[1], a, j
    cdef floating *lt
    if not fm_small_gemm_available() or k == 0 or d == 0:
        return NULL
    lt = <floating *> malloc(k * d * sizeof(floating))
    if lt == NULL:
        return NULL
    for a in range(k):
        for j in range(d):
            lt[j * k + a] = L[a, j]
    return lt


cdef inline void gemm_atb(bint accumulate, const floating *A, Py_ssize_t lda,
                          const floating *B, Py_ssize_t ldb, Py_ssize_t m,
                          Py_ssize_t p, Py_ssize_t q, floating *C,
                          Py_ssize_t ldc) noexcept nogil:
    """C = A^T B, or C += A^T B with ``accumulate``: A (m x p) and B (m x q)
    row-major blocks of rows, C (p x q).

    By atb_acc where the CPU has AVX-512F, over sub-blocks of 256 rows so
    that both operands stay in L2 while the tiles of C sweep them; by one
    BLAS GEMM elsewhere.  Either way the result depends on the sizes only.
    """
    cdef Py_ssize_t s, i
    if m <= 0 or p <= 0 or q <= 0:
        if not accumulate:
            for i in range(p):
                memset(C + i * ldc, 0, q * sizeof(floating))
        return
    if not fm_small_gemm_available():
        gemm_rowmajor(True, False, <int> p, <int> q, <int> m, <floating> 1.0,
                      A, <int> lda, B, <int> ldb,
                      <floating> (1.0 if accumulate else 0.0), C, <int> ldc)
        return
    if not accumulate:
        for i in range(p):
            memset(C + i * ldc, 0, q * sizeof(floating))
    s = 0
    while s < m:
        atb_acc(A + s * lda, lda, B + s * ldb, ldb, min(<Py_ssize_t> 256, m - s), p, q, C, ldc)
        s += 256

/* fm_smallgemm.h -- AVX-512F kernels for products with a small dimension.

   Declared for Cython in fastmetric/kernels/smallgemm.pxd (which explains
   when and why they are used): fm_rowmap (U = X Lt, Lt small) and
   fm_atb_acc (C += A^T B, C small), a register tile of 6 rows x 4 vectors
   each, plus the inputs of the run-time switch (the environment variable
   FASTMETRIC_SMALL_GEMM and the CPU's features).  Without
   GCC/clang on x86-64 they compile to empty stubs that are never called. */
#ifndef FASTMETRIC_KERNELS_FM_SMALLGEMM_H
#define FASTMETRIC_KERNELS_FM_SMALLGEMM_H

#include "fm_common.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define FM_SMALL_GEMM_COMPILED 1
#define FM_AVX512 __attribute__((target("avx512f")))
#define FM_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))
#else
#define FM_SMALL_GEMM_COMPILED 0
#endif

#include <stdlib.h>

/* The switch itself (one flag for the whole package) lives in the
   extension module fastmetric.kernels.smallgemm; these are its inputs. */

/* 0 when FASTMETRIC_SMALL_GEMM=0 is set in the environment, else 1. */
static inline int fm_small_gemm_env_enabled(void) {
    const char *v = getenv("FASTMETRIC_SMALL_GEMM");
    return !(v != NULL && v[0] == '0' && v[1] == '\0');
}

/* 1 when the kernels are compiled in and the CPU has AVX-512F. */
static inline int fm_small_gemm_cpu_ok(void) {
#if FM_SMALL_GEMM_COMPILED
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#if FM_SMALL_GEMM_COMPILED
/* Rows of the tile, and vectors (of LANES values) per tile row. */
#define FM_TILE_ROWS 6
#define FM_TILE_VECS 4

/* acc[r][q] += s_r v[q] over the tile (R x NQ, the last vector masked
   by `last`): the NQ vectors of ROW are loaded once, then each tile row
   r broadcasts its scalar SCALAR (an expression in r). */
#define FM_TILE_UPDATE(V, S, LANES, ROW, SCALAR) {                          \
    V v_[FM_TILE_VECS];                                                        \
    for (int q = 0; q < NQ - 1; q++) v_[q] = _mm512_loadu_##S((ROW) + q * LANES); \
    v_[NQ - 1] = _mm512_maskz_loadu_##S(last, (ROW) + (NQ - 1) * LANES);       \
    for (int r = 0; r < R; r++) {                                              \
        V s_ = _mm512_set1_##S(SCALAR);                                        \
        for (int q = 0; q < NQ; q++) acc[r][q] = _mm512_fmadd_##S(s_, v_[q], acc[r][q]); \
    }                                                                          \
}

/* The block of up to FM_TILE_VECS vectors of WIDTH remaining columns:
   NQ vectors, the last one masked by `last` when it is partial. */
#define FM_COLUMN_BLOCK(M, LANES, WIDTH)                                       \
    const Py_ssize_t w_ = (WIDTH) < block ? (WIDTH) : block;                   \
    const int NQ = (int)((w_ + LANES - 1) / LANES);                            \
    const int rem_ = (int)(w_ - (NQ - 1) * LANES);                             \
    const M last = (M)(rem_ == LANES ? ~(M)0 : (((M)1 << rem_) - 1));

/* One instantiation per precision: T the element type, V the vector
   type, M the mask type, LANES the values per vector, S the suffix of
   the intrinsics. */
#define FM_SMALL_GEMM_KERNELS(SFX, T, V, M, LANES, S)                          \
                                                                               \
/* Tile of U = X Lt: rows [0, R) of x, vectors [0, NQ) of columns     */       \
/* starting at lt/u; the last vector is masked by `last`.             */       \
FM_AVX512_INLINE void fm_rowmap_tile_##SFX(                                    \
        const T *x, Py_ssize_t ldx, Py_ssize_t d, const T *lt, Py_ssize_t k,   \
        T *u, Py_ssize_t ldu, const int R, const int NQ, M last, int stream) { \
    V acc[FM_TILE_ROWS][FM_TILE_VECS];                                         \
    for (int r = 0; r < R; r++)                                                \
        for (int q = 0; q < NQ; q++) acc[r][q] = _mm512_setzero_##S();         \
    for (Py_ssize_t j = 0; j < d; j++) {                                       \
        FM_TILE_UPDATE(V, S, LANES, lt + j * k, x[r * ldx + j])                \
    }                                                                          \
    for (int r = 0; r < R; r++) {                                              \
        T *ur = u + r * ldu;                                                   \
        for (int q = 0; q < NQ - 1; q++) {                                     \
            if (stream) _mm512_stream_##S(ur + q * LANES, acc[r][q]);          \
            else _mm512_storeu_##S(ur + q * LANES, acc[r][q]);                 \
        }                                                                      \
        if (stream) _mm512_stream_##S(ur + (NQ - 1) * LANES, acc[r][NQ - 1]);  \
        else _mm512_mask_storeu_##S(ur + (NQ - 1) * LANES, last, acc[r][NQ - 1]); \
    }                                                                          \
}                                                                              \
                                                                               \
/* U (m x k, row stride ldu) = X (m x d, row stride ldx) @ Lt (d x k, */       \
/* contiguous).  With `stream`, U and ldu * sizeof(T) must be         */       \
/* multiples of 64 bytes and k of LANES (callers check): the output   */       \
/* bypasses the cache.                                                */       \
static FM_AVX512 void fm_rowmap_##SFX(                                         \
        const T *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,                \
        const T *Lt, Py_ssize_t k, T *U, Py_ssize_t ldu, int stream) {         \
    const Py_ssize_t block = FM_TILE_VECS * LANES;                             \
    for (Py_ssize_t i = 0; i < m; i += FM_TILE_ROWS) {                         \
        const int R = m - i < FM_TILE_ROWS ? (int)(m - i) : FM_TILE_ROWS;      \
        /* The rows of the tile 4 tiles ahead: X streams from memory. */       \
        if (i + 5 * FM_TILE_ROWS <= m) {                                       \
            const char *p = (const char *)(X + (i + 4 * FM_TILE_ROWS) * ldx);  \
            for (int r = 0; r < FM_TILE_ROWS; r++)                             \
                for (Py_ssize_t o = 0; o < d * (Py_ssize_t)sizeof(T); o += 64) \
                    _mm_prefetch(p + r * ldx * (Py_ssize_t)sizeof(T) + o, _MM_HINT_T0); \
        }                                                                      \
        for (Py_ssize_t c = 0; c < k; c += block) {                            \
            FM_COLUMN_BLOCK(M, LANES, k - c)                                   \
            const T *x = X + i * ldx;                                          \
            T *u = U + i * ldu + c;                                            \
            /* Constant R and NQ in each call: the tile lives in registers. */ \
            FM_TILE_SWITCH(FM_ROWMAP_CASES, SFX)                               \
        }                                                                      \
    }                                                                          \
    if (stream) _mm_sfence();                                                  \
}                                                                              \
                                                                               \
/* Tile of C += A^T B: rows [a, a+R) of C (columns of A), vectors     */       \
/* [0, NQ) of C's columns starting at b/c (columns of B).             */       \
FM_AVX512_INLINE void fm_atb_tile_##SFX(                                       \
        const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb, Py_ssize_t m,  \
        T *c, Py_ssize_t ldc, const int R, const int NQ, M last,               \
        Py_ssize_t pf_bytes) {                                                 \
    V acc[FM_TILE_ROWS][FM_TILE_VECS];                                         \
    for (int r = 0; r < R; r++) {                                              \
        for (int q = 0; q < NQ - 1; q++)                                       \
            acc[r][q] = _mm512_loadu_##S(c + r * ldc + q * LANES);             \
        acc[r][NQ - 1] = _mm512_maskz_loadu_##S(last, c + r * ldc + (NQ - 1) * LANES); \
    }                                                                          \
    for (Py_ssize_t i = 0; i < m; i++) {                                       \
        const T *bi = b + i * ldb;                                             \
        /* First sweep: B's rows still come from memory; fetch ahead. */      \
        if (pf_bytes && i + 8 < m)                                             \
            for (Py_ssize_t o = 0; o < pf_bytes; o += 64)                      \
                _mm_prefetch((const char *)(bi + 8 * ldb) + o, _MM_HINT_T0);   \
        FM_TILE_UPDATE(V, S, LANES, bi, a[i * lda + r])                        \
    }                                                                          \
    for (int r = 0; r < R; r++) {                                              \
        for (int q = 0; q < NQ - 1; q++)                                       \
            _mm512_storeu_##S(c + r * ldc + q * LANES, acc[r][q]);             \
        _mm512_mask_storeu_##S(c + r * ldc + (NQ - 1) * LANES, last, acc[r][NQ - 1]); \
    }                                                                          \
}                                                                              \
                                                                               \
/* C (p x q, row stride ldc) += A^T B with A (m x p, stride lda) and  */       \
/* B (m x q, stride ldb): both blocks are read once per tile of C, so */       \
/* they should be in cache (a chunk of a few hundred rows).           */       \
static FM_AVX512 void fm_atb_acc_##SFX(                                        \
        const T *A, Py_ssize_t lda, const T *B, Py_ssize_t ldb, Py_ssize_t m,  \
        Py_ssize_t p, Py_ssize_t q, T *C, Py_ssize_t ldc) {                    \
    const Py_ssize_t block = FM_TILE_VECS * LANES;                             \
    for (Py_ssize_t a0 = 0; a0 < p; a0 += FM_TILE_ROWS) {                      \
        const int R = p - a0 < FM_TILE_ROWS ? (int)(p - a0) : FM_TILE_ROWS;    \
        for (Py_ssize_t b0 = 0; b0 < q; b0 += block) {                         \
            FM_COLUMN_BLOCK(M, LANES, q - b0)                                  \
            const T *a = A + a0;                                               \
            const T *b = B + b0;                                               \
            T *c = C + a0 * ldc + b0;                                          \
            const Py_ssize_t pf_bytes =                                        \
                (a0 == 0 && b0 == 0) ? q * (Py_ssize_t)sizeof(T) : 0;          \
            FM_TILE_SWITCH(FM_ATB_CASES, SFX)                                  \
        }                                                                      \
    }                                                                          \
}

/* Calls the tile function with the constant R and NQ of this tile. */
#define FM_TILE_SWITCH(CASES, SFX)                                             \
    switch (R * 8 + NQ) {                                                      \
    CASES(SFX, 6) CASES(SFX, 5) CASES(SFX, 4)                                  \
    CASES(SFX, 3) CASES(SFX, 2) CASES(SFX, 1)                                  \
    }

#define FM_ROWMAP_CASE(SFX, R, NQ)                                             \
    case R * 8 + NQ:                                                           \
        fm_rowmap_tile_##SFX(x, ldx, d, Lt + c, k, u, ldu, R, NQ, last, stream); \
        break;
#define FM_ROWMAP_CASES(SFX, R)                                                \
    FM_ROWMAP_CASE(SFX, R, 1) FM_ROWMAP_CASE(SFX, R, 2)                        \
    FM_ROWMAP_CASE(SFX, R, 3) FM_ROWMAP_CASE(SFX, R, 4)
#define FM_ATB_CASE(SFX, R, NQ)                                                \
    case R * 8 + NQ:                                                           \
        fm_atb_tile_##SFX(a, lda, b, ldb, m, c, ldc, R, NQ, last, pf_bytes);   \
        break;
#define FM_ATB_CASES(SFX, R)                                                   \
    FM_ATB_CASE(SFX, R, 1) FM_ATB_CASE(SFX, R, 2)                              \
    FM_ATB_CASE(SFX, R, 3) FM_ATB_CASE(SFX, R, 4)

FM_SMALL_GEMM_KERNELS(d, double, __m512d, __mmask8, 8, pd)
FM_SMALL_GEMM_KERNELS(f, float, __m512, __mmask16, 16, ps)

#else  /* not compiled: the callers never reach these (cpu_ok() is 0) */
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

#endif  /* FASTMETRIC_KERNELS_FM_SMALLGEMM_H */

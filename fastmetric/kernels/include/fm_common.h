/* fm_common.h -- the C helpers every fastmetric kernel shares.

   Declared for Cython in fastmetric/kernels/common.pxd; included by the
   other fm_*.h headers.  It holds the OpenMP shim (serial stubs of the
   omp_* calls when compiled without OpenMP), the log-loss of a logit, the
   counter-based random generator (the n-th draw of a stream is a pure
   function of (seed, stream, n)), the fixed-order vector loops (squared
   distances and norms, axpy, finiteness tests) with their target-clone
   attributes, a vectorisable exp for non-positive arguments, and the
   prefetch helpers.  Meant to be included from Cython-generated C (or any
   C file that may include Python.h). */
#ifndef FASTMETRIC_KERNELS_FM_COMMON_H
#define FASTMETRIC_KERNELS_FM_COMMON_H

#include <Python.h>  /* Py_ssize_t */

#ifdef _OPENMP
#include <omp.h>
#define FM_OPENMP_ENABLED 1
#else
#define FM_OPENMP_ENABLED 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Log-loss of a logit z against a target t in [0, 1], and its
   derivative in z:  softplus(z) - t z  and  sigmoid(z) - t.
   One exp(-|z|) serves both: softplus(z) = max(z, 0) + log1p(e) and
   sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) otherwise. */
static inline double fm_logit_loss(double z, double t, double *dz) {
    double e = exp(-fabs(z));
    double inv = 1.0 / (1.0 + e);
    dz[0] = (z >= 0.0 ? inv : e * inv) - t;
    return (z > 0.0 ? z : 0.0) + log1p(e) - t * z;
}

/* Only the derivative in z of that loss: sigmoid(z) - t. */
static inline double fm_logit_loss_grad(double z, double t) {
    double e = exp(-fabs(z));
    double inv = 1.0 / (1.0 + e);
    return (z >= 0.0 ? inv : e * inv) - t;
}

/* SplitMix64 finaliser: a bijective 64-bit mixing function. */
static inline uint64_t fm_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Key of a random stream: depends on the seed and a stream id. */
static inline uint64_t fm_stream_key(uint64_t seed, uint64_t stream) {
    return fm_mix64(fm_mix64(seed) ^ fm_mix64(stream + 0x632BE59BD9B4E019ULL));
}

/* The counter-th 64-bit draw of the stream with this key. Two rounds of
   mixing of (key + counter * odd constant) decorrelate neighbouring
   counters. */
static inline uint64_t fm_random_u64(uint64_t key, uint64_t counter) {
    return fm_mix64(fm_mix64(key + counter * 0xD1B54A32D192ED03ULL) ^ key);
}

/* Uniform double in [0, 1) from the top 53 bits. */
static inline double fm_u64_to_unit(uint64_t x) {
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, m) by Lemire's multiply-shift (bias < m / 2^64). */
static inline uint64_t fm_u64_below(uint64_t x, uint64_t m) {
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)x * (unsigned __int128)m) >> 64);
#else
    return (uint64_t)(fm_u64_to_unit(x) * (double)m);
#endif
}

/* Squared Euclidean norms of short vectors.  A single running sum is a
   chain of dependent additions (one every 3-4 cycles); eight partial
   sums in a fixed order let the additions overlap and the compiler use
   SIMD, and the result does not depend on anything but the input. */
#define FM_SQ_SUM_BODY(EXPR_J)                                          \
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0; \
    Py_ssize_t j = 0;                                                   \
    for (; j + 8 <= n; j += 8) {                                        \
        double t0, t1, t2, t3, t4, t5, t6, t7;                          \
        { Py_ssize_t jj = j + 0; t0 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 1; t1 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 2; t2 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 3; t3 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 4; t4 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 5; t5 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 6; t6 = EXPR_J; }                         \
        { Py_ssize_t jj = j + 7; t7 = EXPR_J; }                         \
        s0 += t0 * t0; s1 += t1 * t1; s2 += t2 * t2; s3 += t3 * t3;     \
        s4 += t4 * t4; s5 += t5 * t5; s6 += t6 * t6; s7 += t7 * t7;     \
    }                                                                   \
    for (; j < n; j++) { Py_ssize_t jj = j; double t = EXPR_J; s0 += t * t; } \
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));

/* The per-pair vector loops below run once per pair and dominate the
   pair kernels.  On x86-64 Linux with GCC they are compiled for AVX2 and
   for the baseline, and the loader picks the version the CPU supports
   (an ifunc); elsewhere the baseline version is used.  FMA contraction
   is off in both versions, so they round identically. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FM_VECTOR_CLONES __attribute__((target_clones("avx2", "default"), optimize("fp-contract=off")))
/* The same, also letting GCC compute both sides of a select (it assumes
   no floating-point traps, which we never enable): needed to vectorise
   loops with selects. */
#define FM_VECTOR_CLONES_SELECT __attribute__((target_clones("avx2", "default"), optimize("fp-contract=off", "no-trapping-math")))
/* The same with an AVX-512 clone as well, for loops that hold a block
   of 32 doubles in registers across rows (4 of the 32 AVX-512
   registers, where AVX2's 16 would spill). */
#define FM_VECTOR_CLONES_WIDE __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#define FM_VECTOR_LINKAGE static __attribute__((unused))
#else
#define FM_VECTOR_CLONES
#define FM_VECTOR_CLONES_SELECT
#define FM_VECTOR_CLONES_WIDE
#define FM_VECTOR_LINKAGE static inline
#endif

/* ||a - b||^2, also storing a - b in diff (float64). */
FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_diff_sq_d(const double *a, const double *b,
                                  double *diff, Py_ssize_t n) {
    FM_SQ_SUM_BODY((diff[jj] = a[jj] - b[jj]))
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_diff_sq_f(const float *a, const float *b,
                                  double *diff, Py_ssize_t n) {
    FM_SQ_SUM_BODY((diff[jj] = (double)a[jj] - (double)b[jj]))
}
/* ||a - b||^2 */
FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_sqdist_d(const double *a, const double *b, Py_ssize_t n) {
    FM_SQ_SUM_BODY((a[jj] - b[jj]))
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_sqdist_f(const float *a, const float *b, Py_ssize_t n) {
    FM_SQ_SUM_BODY(((double)a[jj] - (double)b[jj]))
}
/* ||a||^2 */
static inline double fm_sqnorm_d(const double *a, Py_ssize_t n) {
    FM_SQ_SUM_BODY((a[jj]))
}
static inline double fm_sqnorm_f(const float *a, Py_ssize_t n) {
    FM_SQ_SUM_BODY(((double)a[jj]))
}
/* y += r * x */
FM_VECTOR_LINKAGE FM_VECTOR_CLONES void fm_axpy(double r, const double *x, double *y, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < n; j++) y[j] += r * x[j];
}
/* acc[j] += sum_i r[i] x[i k + j] over the m rows of x (row stride k),
   i in order, each term rounded as a product then a sum: the same
   result as fm_axpy row after row, but with a block of 32 of acc's
   entries held in registers across the rows instead of loaded and
   stored once per row. */
FM_VECTOR_LINKAGE FM_VECTOR_CLONES_WIDE void fm_axpy_rows(
        const double *r, const double *x, Py_ssize_t m, Py_ssize_t k, double *acc) {
    Py_ssize_t j0 = 0, i;
    for (; j0 + 32 <= k; j0 += 32) {
        double a[32];
        for (int jj = 0; jj < 32; jj++) a[jj] = acc[j0 + jj];
        for (i = 0; i < m; i++) {
            const double ri = r[i];
            const double *xi = x + i * k + j0;
            for (int jj = 0; jj < 32; jj++) a[jj] += ri * xi[jj];
        }
        for (int jj = 0; jj < 32; jj++) acc[j0 + jj] = a[jj];
    }
    for (; j0 < k; j0++) {
        double s = acc[j0];
        for (i = 0; i < m; i++) s += r[i] * x[i * k + j0];
        acc[j0] = s;
    }
}

/* OUT = exp(X) for a double X in [-708, 0], to about 2 ulp, in plain
   arithmetic so that a loop of them vectorises (libm's exp is a call
   per element).  X = k ln2 + r with k = round(X / ln2) (adding 1.5 2^52
   rounds to nearest and leaves k in the low bits) and |r| <= ln2 / 2,
   ln2 split in two parts (Cody & Waite) so that r is exact to about
   1e-19; e^r by its Taylor polynomial of degree 13 (the remainder is
   below 0.347^14 / 14! ~ 4e-18 relatively) and 2^k written into the
   exponent bits (the shift drops the high bits of the sum's pattern).
   A macro, not a function: it expands inside each caller's vector loop
   and takes the caller's options (no FMA contraction), so every caller
   and every clone rounds the same. */
#define FM_EXP_NONPOS(X, OUT) do {                                         \
    double fm_x_ = (X);                                                    \
    double fm_kd_ = fm_x_ * 1.4426950408889634 + 6755399441055744.0;       \
    uint64_t fm_kb_;                                                       \
    memcpy(&fm_kb_, &fm_kd_, sizeof fm_kb_);                               \
    fm_kd_ -= 6755399441055744.0;                                          \
    double fm_r_ = (fm_x_ - fm_kd_ * 6.93147180369123816490e-01)           \
                   - fm_kd_ * 1.90821492927058770002e-10;                  \
    double fm_p_ = 1.0 / 6227020800.0;                                     \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 479001600.0;                             \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 39916800.0;                              \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 3628800.0;                               \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 362880.0;                                \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 40320.0;                                 \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 5040.0;                                  \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 720.0;                                   \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 120.0;                                   \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 24.0;                                    \
    fm_p_ = fm_p_ * fm_r_ + 1.0 / 6.0;                                     \
    fm_p_ = fm_p_ * fm_r_ + 0.5;                                           \
    fm_p_ = fm_p_ * fm_r_ + 1.0;                                           \
    fm_p_ = fm_p_ * fm_r_ + 1.0;                                           \
    uint64_t fm_sb_ = (fm_kb_ + 1023u) << 52;                              \
    double fm_scale_;                                                      \
    memcpy(&fm_scale_, &fm_sb_, sizeof fm_scale_);                         \
    (OUT) = fm_p_ * fm_scale_;                                             \
} while (0)

/* The log-loss in the logit, for a batch: r[i] = sigmoid(z[i]) - t[i] and
   loss[i] = softplus(z[i]) - t[i] z[i], as fm_logit_loss, written without
   calls so that the loop vectorises (AVX2 clone).  e = exp(-|z|) by
   FM_EXP_NONPOS; below -|z| = -708 e is taken as exp(-708), far below
   what 1 + e can show.  log1p(e) = 2 atanh(s), s = e / (2 + e) in
   [0, 1/3], by 17 terms of its odd series (truncation < 1e-17
   relative), which stays accurate for tiny e. */
FM_VECTOR_LINKAGE FM_VECTOR_CLONES_SELECT void fm_logit_batch(
        const double *z, const double *t, double *r, double *loss, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        double zi = z[i];
        double x = -fabs(zi);
        double e;
        FM_EXP_NONPOS(x < -708.0 ? -708.0 : x, e);
        double inv = 1.0 / (1.0 + e);
        double einv = e * inv;
        /* selects between computed values (blends): no branch */
        double sig = zi >= 0.0 ? inv : einv;
        r[i] = sig - t[i];
        double s = e / (2.0 + e);
        double s2 = s * s;
        double a = 1.0 / 33.0;
        a = a * s2 + 1.0 / 31.0;
        a = a * s2 + 1.0 / 29.0;
        a = a * s2 + 1.0 / 27.0;
        a = a * s2 + 1.0 / 25.0;
        a = a * s2 + 1.0 / 23.0;
        a = a * s2 + 1.0 / 21.0;
        a = a * s2 + 1.0 / 19.0;
        a = a * s2 + 1.0 / 17.0;
        a = a * s2 + 1.0 / 15.0;
        a = a * s2 + 1.0 / 13.0;
        a = a * s2 + 1.0 / 11.0;
        a = a * s2 + 1.0 / 9.0;
        a = a * s2 + 1.0 / 7.0;
        a = a * s2 + 1.0 / 5.0;
        a = a * s2 + 1.0 / 3.0;
        a = a * s2 + 1.0;
        double zpos = zi > 0.0 ? zi : 0.0;
        loss[i] = zpos + 2.0 * s * a - t[i] * zi;
    }
}

/* 1 when every value is finite.  A double is NaN or infinite exactly
   when its 11 exponent bits are all ones (8 bits for a float); testing
   the bits (not the values) lets the compiler vectorise the loop without
   reordering floating-point operations. */
#define FM_ALL_FINITE_BODY(UINT, EXPONENT_MASK)                        \
    UINT bad = 0, bits;                                                 \
    for (Py_ssize_t i = 0; i < n; i++) {                                \
        memcpy(&bits, x + i, sizeof(bits));                             \
        bad |= (UINT)((bits & EXPONENT_MASK) == EXPONENT_MASK);         \
    }                                                                   \
    return bad == 0;
FM_VECTOR_LINKAGE FM_VECTOR_CLONES int fm_all_finite_d(const double *x, Py_ssize_t n) {
    FM_ALL_FINITE_BODY(uint64_t, 0x7FF0000000000000ULL)
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES int fm_all_finite_f(const float *x, Py_ssize_t n) {
    FM_ALL_FINITE_BODY(uint32_t, 0x7F800000U)
}

/* Hint the CPU to fetch a cache line we will read soon. */
#if defined(__GNUC__) || defined(__clang__)
#define fm_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
#else
#define fm_prefetch(p) ((void)0)
#endif

/* How many items (pairs, or incident entries of a point) ahead of the
   current one the kernels that read rows at random prefetch those rows
   (paired distances, LDML's point pass, LMNN's hinge and Laplacian
   passes, LSML's quadratic forms, the pair scatter).  The distance must
   cover the memory latency (~100 ns) with the work of the items in
   between (some tens of ns each for rows of 32-64 values), while the rows
   in flight stay in L1 (8 items x 1-4 rows of 256-512 bytes: 2-16 kB).
   The LDML point pass and the pair scatter used 16; timed at 8 against 16
   (the asv suites' problems, n = 100,000 or 20,000 points, d = k = 64,
   P = 400,000, one thread, min of 7 calls, runs alternated) they were no
   slower within the noise, so one value serves every kernel.  Prefetching
   never changes results. */
#define FM_PREFETCH_AHEAD 8

/* Prefetch every cache line of a block of memory (a row read at random:
   the hardware prefetcher cannot guess it, and one line is not enough). */
static inline void fm_prefetch_block(const void *p, size_t nbytes) {
    const char *c = (const char *)p;
    for (size_t off = 0; off < nbytes; off += 64) fm_prefetch(c + off);
}

#endif  /* FASTMETRIC_KERNELS_FM_COMMON_H */

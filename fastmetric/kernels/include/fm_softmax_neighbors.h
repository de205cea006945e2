/* fm_softmax_neighbors.h -- inner loops of the softmax-neighbours kernel.

   Declared for Cython in fastmetric/kernels/softmax_neighbors.pyx (NCA and
   MLKR): squared distances from one point to four candidates at once, the
   weighted row sums, and the windowed exp of the softmax, compiled for
   several x86-64 vector extensions with identical rounding. */
#ifndef FASTMETRIC_KERNELS_FM_SOFTMAX_NEIGHBORS_H
#define FASTMETRIC_KERNELS_FM_SOFTMAX_NEIGHBORS_H

#include "fm_common.h"

/* The innermost loops of the kernel, compiled for several x86-64
   vector extensions; the dynamic loader picks the widest the CPU has
   (GCC's target_clones, dispatching on CPU features).  Contraction of
   a * b + c into a fused multiply-add is switched off and every loop
   below has independent lanes, so each version rounds exactly like the
   portable one: results depend neither on the version nor on the
   thread count.  Other compilers and platforms: one portable version. */
#include <string.h>
#include <stdint.h>
#if defined(__GNUC__)
/* (The 64-byte vectors below are passed between static inline helpers
   only; GCC's note on their calling convention does not apply.) */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__linux__) && (__GNUC__ >= 8)
#define FM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#else
#define FM_CLONES
#endif

/* Eight doubles as one value: the vector code is explicit (GCC vector
   extensions), each lane an independent partial sum; a target without
   wide registers gets the same operations on narrower ones. */
typedef double fm_v8d __attribute__((vector_size(64)));
typedef float fm_v8f __attribute__((vector_size(32)));
static inline fm_v8d fm_load8_d(const double *p) {
    fm_v8d v; memcpy(&v, p, sizeof v); return v;
}
static inline fm_v8d fm_load8_f(const float *p) {
    fm_v8f v; memcpy(&v, p, sizeof v); return __builtin_convertvector(v, fm_v8d);
}
#define FM_SUM8(s) (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])))

/* ||a - b_c||^2 for four points b_c at once, in double, each with eight
   partial sums (one per lane; a single accumulator would chain every
   addition on the previous one).  Four points give four independent
   chains and read a only once.  Per point the operations and their
   order are those of fm_common.h's sq_dist (FM_SQ_SUM_BODY: lane j
   sums coordinates j, j + 8, ..., the tail goes to lane 0, and the
   lanes are added as a fixed tree), which serves the remaining points:
   a distance does not depend on whether it came in a group of four. */
#define FM_SQ_DIST4_BODY(LOAD)                                           \
    fm_v8d v0 = {0}, v1 = {0}, v2 = {0}, v3 = {0};                        \
    Py_ssize_t q = 0;                                                     \
    for (; q + 8 <= k; q += 8) {                                          \
        fm_v8d x = LOAD(a + q);                                           \
        fm_v8d t0 = x - LOAD(b0 + q), t1 = x - LOAD(b1 + q);              \
        fm_v8d t2 = x - LOAD(b2 + q), t3 = x - LOAD(b3 + q);              \
        v0 += t0 * t0; v1 += t1 * t1; v2 += t2 * t2; v3 += t3 * t3;       \
    }                                                                     \
    double s0[8], s1[8], s2[8], s3[8];                                    \
    memcpy(s0, &v0, sizeof s0); memcpy(s1, &v1, sizeof s1);               \
    memcpy(s2, &v2, sizeof s2); memcpy(s3, &v3, sizeof s3);               \
    for (; q < k; q++) {                                                  \
        double t0 = (double)a[q] - (double)b0[q];                         \
        double t1 = (double)a[q] - (double)b1[q];                         \
        double t2 = (double)a[q] - (double)b2[q];                         \
        double t3 = (double)a[q] - (double)b3[q];                         \
        s0[0] += t0 * t0; s1[0] += t1 * t1;                               \
        s2[0] += t2 * t2; s3[0] += t3 * t3;                               \
    }                                                                     \
    out[0] = FM_SUM8(s0); out[1] = FM_SUM8(s1);                           \
    out[2] = FM_SUM8(s2); out[3] = FM_SUM8(s3);

FM_CLONES static void fm_sq_dist4_d(const double *a, const double *b0, const double *b1,
                                    const double *b2, const double *b3, Py_ssize_t k,
                                    double *out) { FM_SQ_DIST4_BODY(fm_load8_d) }
FM_CLONES static void fm_sq_dist4_f(const float *a, const float *b0, const float *b1,
                                    const float *b2, const float *b3, Py_ssize_t k,
                                    double *out) { FM_SQ_DIST4_BODY(fm_load8_f) }

/* acc[0:d] += w0 x0 + w1 x1 + w2 x2 + w3 x3, added one term after the
   other (the rounding of four successive single updates) in one pass
   over acc. */
#define FM_AXPY4_BODY(T)                                                  \
    for (Py_ssize_t q = 0; q < d; q++) {                                  \
        double v = acc[q];                                                \
        v += w[0] * (double)x0[q];                                        \
        v += w[1] * (double)x1[q];                                        \
        v += w[2] * (double)x2[q];                                        \
        v += w[3] * (double)x3[q];                                        \
        acc[q] = v;                                                       \
    }
FM_CLONES static void fm_axpy4_d(double *acc, const double *w, const double *x0,
                                 const double *x1, const double *x2, const double *x3,
                                 Py_ssize_t d) { FM_AXPY4_BODY(double) }
FM_CLONES static void fm_axpy4_f(double *acc, const double *w, const float *x0,
                                 const float *x1, const float *x2, const float *x3,
                                 Py_ssize_t d) { FM_AXPY4_BODY(float) }
FM_CLONES static void fm_axpy_f(double *acc, double w, const float *x, Py_ssize_t d) {
    for (Py_ssize_t q = 0; q < d; q++) acc[q] += w * (double)x[q];
}

/* val[t] <- exp(m - val[t]) when val[t] <= lim (the softmax window,
   m <= val[t] <= m + 50), else 0. */
FM_CLONES static void fm_exp_window(double *val, Py_ssize_t cnt, double m, double lim) {
    for (Py_ssize_t t = 0; t < cnt; t++) {
        double v = val[t];
        double x = m - v;
        double e;
        /* exp by fm_common.h's FM_EXP_NONPOS (x >= -700 here). */
        FM_EXP_NONPOS(x < -700.0 ? -700.0 : x, e);
        val[t] = v <= lim ? e : 0.0;
    }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__linux__) && (__GNUC__ >= 8)
#pragma GCC pop_options
#endif

#endif  /* FASTMETRIC_KERNELS_FM_SOFTMAX_NEIGHBORS_H */

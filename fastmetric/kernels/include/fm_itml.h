/* fm_itml.h -- ITML's Bregman projections in C.

   Declared for Cython in fastmetric/kernels/itml.pyx (whose header comment
   states the update and its cost): the fused row pass that applies the
   pending rank-1 update of A and computes A v for the next constraint,
   one projection step, the convergence test and the whole nogil run of
   sweeps (fm_itml_run). */
#ifndef FASTMETRIC_KERNELS_FM_ITML_H
#define FASTMETRIC_KERNELS_FM_ITML_H

#include "fm_common.h"

#include <math.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FM_ITML_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=off")))
#define FM_ITML_LINKAGE static __attribute__((unused))
#elif defined(__GNUC__) && !defined(__clang__)
#define FM_ITML_CLONES __attribute__((optimize("fp-contract=off")))
#define FM_ITML_LINKAGE static
#else
#define FM_ITML_CLONES
#define FM_ITML_LINKAGE static
#endif
/* No fused multiply-add contraction in the row pass: every path (four
   rows or one, vector or scalar columns) then rounds each entry the same
   way, which keeps A bitwise symmetric and the result independent of
   how rows are split among threads.  (clang does not contract across
   statements by default.) */

/* Blocks of 8 doubles (GCC/clang vector extension): one SIMD register
   with AVX-512, two with AVX2, four with SSE2 -- the same arithmetic in
   every case.  The unaligned, may_alias type is for loads and stores. */
#if defined(__GNUC__) || defined(__clang__)
#define FM_ITML_VEC 1
typedef double fm_v8d __attribute__((vector_size(64)));
typedef double fm_v8du __attribute__((vector_size(64), aligned(8), may_alias));
#define FM_LD(p) (*(const fm_v8du *)(p))
#define FM_ST(p, x) (*(fm_v8du *)(p) = (x))
static inline double fm_hsum8(fm_v8d x) {
    return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
}
#else
#define FM_ITML_VEC 0
#endif

/* Rows [i0, i1) of the fused pass.  When has_pending, first apply the
   pending update A += s u u^T to the row; then w[i] = A[i, :] . v.
   The summation order of a row is fixed (for a given d), whichever way
   rows are grouped: columns j with j mod 16 in [0, 8) go to the 8-wide
   partial sum c0, those in [8, 16) to c1, a last block of 8 to c0, the
   remaining columns one by one to a scalar; w = hsum(c0 + c1) + scalar.
   Rows are processed four at a time (u and v are loaded once for the
   four), then one at a time. */
#if FM_ITML_VEC
#define FM_ITML_ROWS_BODY(R)                                                  \
    {                                                                         \
        double *rw[R];                                                        \
        double ti[R], tail[R];                                                \
        fm_v8d c0[R], c1[R];                                                  \
        for (int r = 0; r < R; r++) {                                         \
            rw[r] = A + (i + r) * d;                                          \
            ti[r] = has_pending ? s * u[i + r] : 0.0;  /* +-u_i: exact */     \
            tail[r] = 0.0;                                                    \
            c0[r] = (fm_v8d){0}; c1[r] = (fm_v8d){0};                         \
        }                                                                     \
        Py_ssize_t j = 0;                                                     \
        if (has_pending) {                                                    \
            for (; j + 16 <= d; j += 16) {                                    \
                fm_v8d u0 = FM_LD(u + j), u1 = FM_LD(u + j + 8);              \
                fm_v8d v0 = FM_LD(v + j), v1 = FM_LD(v + j + 8);              \
                for (int r = 0; r < R; r++) {                                 \
                    fm_v8d x0 = FM_LD(rw[r] + j) + ti[r] * u0;                \
                    fm_v8d x1 = FM_LD(rw[r] + j + 8) + ti[r] * u1;            \
                    FM_ST(rw[r] + j, x0); FM_ST(rw[r] + j + 8, x1);           \
                    c0[r] += x0 * v0; c1[r] += x1 * v1;                       \
                }                                                             \
            }                                                                 \
            if (j + 8 <= d) {                                                 \
                fm_v8d u0 = FM_LD(u + j), v0 = FM_LD(v + j);                  \
                for (int r = 0; r < R; r++) {                                 \
                    fm_v8d x0 = FM_LD(rw[r] + j) + ti[r] * u0;                \
                    FM_ST(rw[r] + j, x0);                                     \
                    c0[r] += x0 * v0;                                         \
                }                                                             \
                j += 8;                                                       \
            }                                                                 \
            for (; j < d; j++) {                                              \
                for (int r = 0; r < R; r++) {                                 \
                    double x = rw[r][j] + ti[r] * u[j];                       \
                    rw[r][j] = x;                                             \
                    tail[r] += x * v[j];                                      \
                }                                                             \
            }                                                                 \
        } else {                                                              \
            for (; j + 16 <= d; j += 16) {                                    \
                fm_v8d v0 = FM_LD(v + j), v1 = FM_LD(v + j + 8);              \
                for (int r = 0; r < R; r++) {                                 \
                    c0[r] += FM_LD(rw[r] + j) * v0;                           \
                    c1[r] += FM_LD(rw[r] + j + 8) * v1;                       \
                }                                                             \
            }                                                                 \
            if (j + 8 <= d) {                                                 \
                fm_v8d v0 = FM_LD(v + j);                                     \
                for (int r = 0; r < R; r++) c0[r] += FM_LD(rw[r] + j) * v0;   \
                j += 8;                                                       \
            }                                                                 \
            for (; j < d; j++)                                                \
                for (int r = 0; r < R; r++) tail[r] += rw[r][j] * v[j];       \
        }                                                                     \
        for (int r = 0; r < R; r++) w[i + r] = fm_hsum8(c0[r] + c1[r]) + tail[r]; \
    }
FM_ITML_LINKAGE FM_ITML_CLONES void fm_itml_rows(
        double *A, Py_ssize_t d, Py_ssize_t i0, Py_ssize_t i1, int has_pending,
        double s, const double *u, const double *v, double *w) {
    Py_ssize_t i = i0;
    for (; i + 4 <= i1; i += 4) FM_ITML_ROWS_BODY(4)
    for (; i < i1; i++) FM_ITML_ROWS_BODY(1)
}
#else
static void fm_itml_rows(
        double *A, Py_ssize_t d, Py_ssize_t i0, Py_ssize_t i1, int has_pending,
        double s, const double *u, const double *v, double *w) {
    for (Py_ssize_t i = i0; i < i1; i++) {
        double *row = A + i * d;
        double tail = 0.0;
        if (has_pending) {
            const double ti = s * u[i];
            for (Py_ssize_t j = 0; j < d; j++) {
                double x = row[j] + ti * u[j];
                row[j] = x;
                tail += x * v[j];
            }
        } else {
            for (Py_ssize_t j = 0; j < d; j++) tail += row[j] * v[j];
        }
        w[i] = tail;
    }
}
#endif

/* Rows [i0, i1): A += s u u^T only (the last pending update of a run). */
FM_ITML_LINKAGE FM_ITML_CLONES void fm_itml_flush(
        double *A, Py_ssize_t d, Py_ssize_t i0, Py_ssize_t i1, double s,
        const double *u) {
    for (Py_ssize_t i = i0; i < i1; i++) {
        double *row = A + i * d;
        const double ti = s * u[i];
        for (Py_ssize_t j = 0; j < d; j++) row[j] = row[j] + ti * u[j];
    }
}

static inline double fm_itml_dot(const double *x, const double *y, Py_ssize_t d) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    Py_ssize_t j = 0;
    for (; j + 4 <= d; j += 4) {
        a0 += x[j] * y[j]; a1 += x[j + 1] * y[j + 1];
        a2 += x[j + 2] * y[j + 2]; a3 += x[j + 3] * y[j + 3];
    }
    for (; j < d; j++) a0 += x[j] * y[j];
    return (a0 + a1) + (a2 + a3);
}

/* v = X[a] - X[b] in float64. */
static inline void fm_itml_diff(const void *X, int x_is_float, Py_ssize_t d,
                                Py_ssize_t a, Py_ssize_t b, double *v) {
    if (x_is_float) {
        const float *xa = (const float *)X + a * d, *xb = (const float *)X + b * d;
        for (Py_ssize_t j = 0; j < d; j++) v[j] = (double)xa[j] - (double)xb[j];
    } else {
        const double *xa = (const double *)X + a * d, *xb = (const double *)X + b * d;
        for (Py_ssize_t j = 0; j < d; j++) v[j] = xa[j] - xb[j];
    }
}

/* The scalar part of the projection on constraint c, given w = A v.
   Updates lam[c], xi[c]; when A must change, sets u = sqrt|beta| w and
   *s = sign(beta) (the pending update) and returns 1; else returns 0.
   A projection is skipped (returns 0, no state change) when p = v^T A v
   is not a positive finite number (v = 0: a pair of equal points) or
   when the rounded step would not keep A positive definite. */
static inline int fm_itml_step(Py_ssize_t c, const double *v, const double *w,
                               Py_ssize_t d, const double *delta, double *xi,
                               double *lam, double gamma, double gproj,
                               double *s, double *u) {
    double p = fm_itml_dot(v, w, d);
    if (!(p > 0.0) || !isfinite(p)) return 0;
    double dl = delta[c];
    double alpha = gproj * dl * (1.0 / p - 1.0 / xi[c]);
    if (lam[c] < alpha) alpha = lam[c];
    if (alpha == 0.0 || !isfinite(alpha)) return 0;
    double denom = 1.0 - dl * alpha * p;
    if (!(denom > 0.0)) return 0;
    double beta = dl * alpha / denom;
    if (!isfinite(beta)) return 0;
    if (isfinite(gamma)) {
        double inv = 1.0 / xi[c] + dl * alpha / gamma;
        if (!(inv > 0.0)) return 0;
        xi[c] = 1.0 / inv;
    }
    lam[c] -= alpha;
    *s = beta > 0.0 ? 1.0 : -1.0;
    double r = sqrt(fabs(beta));
    for (Py_ssize_t j = 0; j < d; j++) u[j] = r * w[j];
    return 1;
}

/* Convergence test after a sweep (the relative change of the duals).
   Returns 1 to stop.  Copies lam into lam_old when going on. */
static inline int fm_itml_converged(double *lam, double *lam_old, Py_ssize_t m,
                                    double tol, double *conv) {
    double n1 = 0.0, n0 = 0.0, diff = 0.0;
    for (Py_ssize_t c = 0; c < m; c++) {
        n1 += lam[c] * lam[c];
        n0 += lam_old[c] * lam_old[c];
        diff += fabs(lam_old[c] - lam[c]);
    }
    double normsum = sqrt(n1) + sqrt(n0);
    if (normsum == 0.0) {      /* every constraint satisfied, none ever active */
        *conv = INFINITY;
        return 1;
    }
    *conv = diff / normsum;
    if (*conv < tol) return 1;
    memcpy(lam_old, lam, (size_t)m * sizeof(double));
    return 0;
}

/* Run up to max_sweeps sweeps over the m constraints (in order).
   work: 3 d doubles.  conv_out[k]: convergence measure after sweep k.
   Returns the number of sweeps done; *stopped = 1 when the test passed. */
static Py_ssize_t fm_itml_run(
        const void *X, int x_is_float, Py_ssize_t d,
        const Py_ssize_t *ia, const Py_ssize_t *ib, const double *delta,
        Py_ssize_t m, double *xi, double *lam, double *lam_old, double *A,
        double gamma, double tol, Py_ssize_t max_sweeps,
        double *conv_out, double *work, int *stopped) {
    double *v = work, *w = work + d, *u = work + 2 * d;
    const double gproj = isfinite(gamma) ? gamma / (gamma + 1.0) : 1.0;
    double s = 0.0;
    int pending = 0, stop = 0;
    Py_ssize_t sweeps = 0;
    *stopped = 0;
    if (m == 0 || max_sweeps <= 0) return 0;
    for (Py_ssize_t sweep = 0; sweep < max_sweeps; sweep++) {
        for (Py_ssize_t c = 0; c < m; c++) {
            fm_itml_diff(X, x_is_float, d, ia[c], ib[c], v);
            fm_itml_rows(A, d, 0, d, pending, s, u, v, w);
            pending = fm_itml_step(c, v, w, d, delta, xi, lam, gamma, gproj, &s, u);
        }
        sweeps = sweep + 1;
        if (fm_itml_converged(lam, lam_old, m, tol, &conv_out[sweep])) {
            stop = 1;
            break;
        }
    }
    if (pending) fm_itml_flush(A, d, 0, d, s, u);
    *stopped = stop;
    return sweeps;
}

#endif  /* FASTMETRIC_KERNELS_FM_ITML_H */

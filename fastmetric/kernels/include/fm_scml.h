/* fm_scml.h -- the per-triplet vector loops of SCML's stochastic update.

   Declared for Cython in fastmetric/kernels/scml.pyx: the weighted margin
   sum_j w_j ((a_j - p_j)^2 - (a_j - q_j)^2) over the compact bases and the
   per-basis differences (a_j - p_j)^2 - (a_j - q_j)^2, compiled like
   fm_common.h's vector loops. */
#ifndef FASTMETRIC_KERNELS_FM_SCML_H
#define FASTMETRIC_KERNELS_FM_SCML_H

#include "fm_common.h"

/* sum_j w[j] ((a[j] - p[j])^2 - (a[j] - q[j])^2): the margin part of a
   triplet over the compact bases.  Eight partial sums in a fixed order
   break the chain of dependent additions (and let the compiler use
   SIMD lanes); the result depends on the input only.  Compiled like
   fm_common.h's vector loops, with its FM_VECTOR_CLONES (AVX2 clone where available, no FMA
   contraction). */
#define FM_SCML_WDD_BODY(T)                                                \
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                \
    Py_ssize_t j = 0;                                                      \
    for (; j + 8 <= n; j += 8) {                                           \
        for (int l = 0; l < 8; l++) {                                      \
            double u = (double)a[j + l] - (double)p[j + l];                \
            double v = (double)a[j + l] - (double)q[j + l];                \
            s[l] += w[j + l] * (u * u - v * v);                            \
        }                                                                  \
    }                                                                      \
    for (; j < n; j++) {                                                   \
        double u = (double)a[j] - (double)p[j];                            \
        double v = (double)a[j] - (double)q[j];                            \
        s[0] += w[j] * (u * u - v * v);                                    \
    }                                                                      \
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));

FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_scml_wdd_d(
        const double *w, const double *a, const double *p, const double *q, Py_ssize_t n) {
    FM_SCML_WDD_BODY(double)
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES double fm_scml_wdd_f(
        const double *w, const float *a, const float *p, const float *q, Py_ssize_t n) {
    FM_SCML_WDD_BODY(float)
}

/* g[j] (+)= (a[j] - p[j])^2 - (a[j] - q[j])^2 */
#define FM_SCML_DD_BODY(OP)                                                \
    for (Py_ssize_t j = 0; j < n; j++) {                                   \
        double u = (double)a[j] - (double)p[j];                            \
        double v = (double)a[j] - (double)q[j];                            \
        g[j] OP (u * u - v * v);                                           \
    }
FM_VECTOR_LINKAGE FM_VECTOR_CLONES void fm_scml_dd_add_d(
        double *g, const double *a, const double *p, const double *q, Py_ssize_t n) {
    FM_SCML_DD_BODY(+=)
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES void fm_scml_dd_add_f(
        double *g, const float *a, const float *p, const float *q, Py_ssize_t n) {
    FM_SCML_DD_BODY(+=)
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES void fm_scml_dd_set_d(
        double *g, const double *a, const double *p, const double *q, Py_ssize_t n) {
    FM_SCML_DD_BODY(=)
}
FM_VECTOR_LINKAGE FM_VECTOR_CLONES void fm_scml_dd_set_f(
        double *g, const float *a, const float *p, const float *q, Py_ssize_t n) {
    FM_SCML_DD_BODY(=)
}

#endif  /* FASTMETRIC_KERNELS_FM_SCML_H */

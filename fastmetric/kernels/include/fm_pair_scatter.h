/* fm_pair_scatter.h -- the row kernel of the pair scatter's Laplacian path.

   Declared for Cython in fastmetric/kernels/pair_scatter.pyx:
   fm_laplacian_row_{d,f} sum the weighted differences of one point's
   incident pairs, prefetching the rows read at random. */
#ifndef FASTMETRIC_KERNELS_FM_PAIR_SCATTER_H
#define FASTMETRIC_KERNELS_FM_PAIR_SCATTER_H

#include "fm_common.h"

/* h = sum_{e0 <= e < e1} w[e] (x_u - X[other[e]]) in float64, each term
   rounded as (x_u - x_v) times w, then added, in entry order.  Blocks of
   32 columns of h stay in registers across the entries; the rows of the
   entries FM_PREFETCH_AHEAD further on (up to e_stop) are prefetched, as
   they are read at random.  One body for float and double rows. */
/* Fetch the row of entry e + FM_PREFETCH_AHEAD. */
#define FM_LAP_PREFETCH(T, e)                                                   \
    do {                                                                        \
        if ((e) + FM_PREFETCH_AHEAD < e_stop)                                   \
            fm_prefetch_block(X + other[(e) + FM_PREFETCH_AHEAD] * ldx, d * sizeof(T)); \
    } while (0)
#define FM_LAPLACIAN_ROW(T, SFX)                                                 \
static FM_VECTOR_CLONES_WIDE void fm_laplacian_row_##SFX(                       \
        const T *X, Py_ssize_t ldx, const Py_ssize_t *other, const double *w,   \
        Py_ssize_t e0, Py_ssize_t e1, Py_ssize_t e_stop, const T *xu,          \
        double *h, Py_ssize_t d) {                                              \
    Py_ssize_t j0 = 0, e;                                                       \
    for (; j0 + 32 <= d; j0 += 32) {                                            \
        double acc[32], u[32];                                                  \
        for (int jj = 0; jj < 32; jj++) { acc[jj] = 0.0; u[jj] = (double)xu[j0 + jj]; } \
        for (e = e0; e < e1; e++) {                                             \
            if (j0 == 0) FM_LAP_PREFETCH(T, e);                                 \
            const T *xv = X + other[e] * ldx + j0;                              \
            const double we = w[e];                                             \
            for (int jj = 0; jj < 32; jj++)                                     \
                acc[jj] += we * (u[jj] - (double)xv[jj]);                       \
        }                                                                       \
        for (int jj = 0; jj < 32; jj++) h[j0 + jj] = acc[jj];                   \
    }                                                                           \
    for (; j0 < d; j0++) {                                                      \
        double acc = 0.0, u = (double)xu[j0];                                   \
        for (e = e0; e < e1; e++) {                                             \
            if (j0 == 0) FM_LAP_PREFETCH(T, e);                                 \
            acc += w[e] * (u - (double)X[other[e] * ldx + j0]);                 \
        }                                                                       \
        h[j0] = acc;                                                            \
    }                                                                           \
}
FM_LAPLACIAN_ROW(double, d)
FM_LAPLACIAN_ROW(float, f)

#endif  /* FASTMETRIC_KERNELS_FM_PAIR_SCATTER_H */

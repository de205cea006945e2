/* fm_lmnn.h -- the atomic counter of LMNN's impostor search.

   Declared for Cython in fastmetric/kernels/lmnn.pyx. */
#ifndef FASTMETRIC_KERNELS_FM_LMNN_H
#define FASTMETRIC_KERNELS_FM_LMNN_H

#include "fm_common.h"

/* Add v to *p atomically and return the new value.  Under OpenMP this is
   an atomic capture; in a serial build a plain addition. */
static inline long long fm_lmnn_atomic_add(long long *p, long long v) {
    long long result;
#ifdef _OPENMP
    #pragma omp atomic capture
    result = *p += v;
#else
    result = *p += v;
#endif
    return result;
}

#endif  /* FASTMETRIC_KERNELS_FM_LMNN_H */

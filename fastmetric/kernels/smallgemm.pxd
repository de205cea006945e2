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
# has it; elsewhere small_gemm_available() is false and the callers use BLAS.
#
# The switch is one flag for the whole package, held by the extension
# module built from smallgemm.pyx; every module that cimports this file
# reads it through small_gemm_available() (imported from that module when
# the cimporting module loads), so FASTMETRIC_SMALL_GEMM=0 and
# fastmetric.kernels.smallgemm._set_small_gemm act on every kernel at once.
#
# Each output element is one sum in a fixed order (over the inner index, in
# order), so results do not depend on how rows are split among threads.

from libc.stdlib cimport malloc
from libc.string cimport memset

from fastmetric.kernels.common cimport floating, gemm_rowmajor

cdef extern from "fastmetric/kernels/include/fm_smallgemm.h" nogil:
    bint fm_small_gemm_env_enabled()
    bint fm_small_gemm_cpu_ok()
    void fm_rowmap_d(const double *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                     const double *Lt, Py_ssize_t k, double *U, Py_ssize_t ldu, int stream)
    void fm_rowmap_f(const float *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                     const float *Lt, Py_ssize_t k, float *U, Py_ssize_t ldu, int stream)
    void fm_atb_acc_d(const double *A, Py_ssize_t lda, const double *B, Py_ssize_t ldb,
                      Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, double *C, Py_ssize_t ldc)
    void fm_atb_acc_f(const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
                      Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, float *C, Py_ssize_t ldc)


cdef bint small_gemm_available() noexcept nogil
cdef void set_small_gemm_enabled(bint on) noexcept nogil


cdef inline void rowmap(const floating *X, Py_ssize_t ldx, Py_ssize_t m, Py_ssize_t d,
                        const floating *Lt, Py_ssize_t k, floating *U, Py_ssize_t ldu,
                        bint stream) noexcept nogil:
    """U = X @ Lt (see fm_rowmap); only where small_gemm_available()."""
    if floating is float:
        fm_rowmap_f(X, ldx, m, d, Lt, k, U, ldu, stream)
    else:
        fm_rowmap_d(X, ldx, m, d, Lt, k, U, ldu, stream)


cdef inline void atb_acc(const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                         Py_ssize_t m, Py_ssize_t p, Py_ssize_t q, floating *C,
                         Py_ssize_t ldc) noexcept nogil:
    """C += A^T @ B (see fm_atb_acc); only where small_gemm_available()."""
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
    if not small_gemm_available() or k == 0 or d == 0:
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
    if not small_gemm_available():
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

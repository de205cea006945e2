"""Kernels of LSML: pair quadratic forms and the squared-residual loss.

LSML (Liu et al., 2012) works on the Mahalanobis matrix ``M`` and on
quadruplets ``q = (a, b, c, d)`` stating ``d_M(a, b) < d_M(c, d)``.  With
``D_ab = (x_a - x_b)^T M (x_a - x_b)`` its data term is

    sum_q w_q [D_ab > D_cd] (sqrt(D_ab) - sqrt(D_cd))^2,

whose gradient in ``M`` is ``sum_p c_p (x_a - x_b)(x_a - x_b)^T`` over the
two pairs of every violated quadruplet, with (for the pair (a, b), and
symmetrically for (c, d))

    c_ab = w_q (1 - sqrt(D_cd / D_ab)),   c_cd = w_q (1 - sqrt(D_ab / D_cd)).

This module gives

* :func:`pair_quadratic_forms`: ``(x_a - x_b)^T S (x_a - x_b)`` for many
  index pairs and any symmetric ``S`` (not only PSD ones: the solver also
  evaluates it at its search direction).  ``Y = X S`` is formed by row
  blocks (one GEMM per block, blocks shared between threads), then each pair
  costs O(d): ``(y_a - y_b) . (x_a - x_b)``.  Every output is written by one
  thread, so the result does not depend on the number of threads.
* :func:`residual_loss` and :func:`residual_loss_coefficients`: the data
  term and the pair coefficients ``c`` above, in one sequential O(n_q)
  pass (fixed summation order).

The outer-product sum itself is :func:`fastmetric.kernels.pair_scatter.pair_scatter`.
"""
import numpy as np

from cython.parallel cimport parallel, prange
from libc.math cimport sqrt

from fastmetric.kernels.common cimport floating, fm_prefetch_block, FM_PREFETCH_AHEAD, gemm_rowmajor


cdef enum:
    ROW_BLOCK = 128


cdef void quadratic_forms_nogil(
    const floating[:, ::1] X,
    const floating[:, ::1] S,
    const Py_ssize_t[::1] a,
    const Py_ssize_t[::1] b,
    floating[:, ::1] Y,
    double[::1] out,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], n_pairs = a.shape[0]
    cdef Py_ssize_t n_blocks = (n + ROW_BLOCK - 1) // ROW_BLOCK
    cdef Py_ssize_t blk, start, m, p, j, ia, ib
    cdef double acc
    cdef floating one = 1.0, zero = 0.0
    # One parallel region (one fork/join per call): Y = X S by row blocks
    # (S is symmetric, so X S = X S^T), then, after prange's barrier, the
    # pairs.
    with parallel(num_threads=n_threads):
        for blk in prange(n_blocks, schedule='dynamic'):
            start = blk * ROW_BLOCK
            m = n - start
            if m > ROW_BLOCK:
                m = ROW_BLOCK
            gemm_rowmajor(False, False, <int> m, <int> d, <int> d, one, &X[start, 0],
                          <int> d, &S[0, 0], <int> d, zero, &Y[start, 0], <int> d)
        for p in prange(n_pairs, schedule='dynamic', chunksize=256):
            # The four rows are read at random: fetch those of a pair a few
            # pairs ahead (a prefetch past this thread's range is harmless).
            if p + FM_PREFETCH_AHEAD < n_pairs:
                fm_prefetch_block(&X[a[p + FM_PREFETCH_AHEAD], 0], d * sizeof(floating))
                fm_prefetch_block(&X[b[p + FM_PREFETCH_AHEAD], 0], d * sizeof(floating))
                fm_prefetch_block(&Y[a[p + FM_PREFETCH_AHEAD], 0], d * sizeof(floating))
                fm_prefetch_block(&Y[b[p + FM_PREFETCH_AHEAD], 0], d * sizeof(floating))
            ia = a[p]
            ib = b[p]
            acc = 0.0
            for j in range(d):
                acc = acc + (<double> Y[ia, j] - <double> Y[ib, j]) * (
                    <double> X[ia, j] - <double> X[ib, j])
            out[p] = acc


def quadratic_forms(const floating[:, ::1] X, S, const Py_ssize_t[::1] a,
                    const Py_ssize_t[::1] b, double[::1] out, int n_threads=1):
    """Unchecked kernel: ``out[p] = (x_a - x_b)^T S (x_a - x_b)``, computed as
    ``sum_j (Y_aj - Y_bj)(X_aj - X_bj)`` with ``Y = X S`` (one GEMM by row
    blocks, then one pass over the pairs):
    O(n d^2 + n_pairs d), on exactly ``n_threads`` threads.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    S : ndarray of shape (n_features, n_features)
        Symmetric (not checked); cast to X's dtype.
    a, b : ndarray of intp, shape (n_pairs,)
        Valid row indices (not checked).
    out : ndarray of shape (n_pairs,), float64
        Written in place, and returned.
    n_threads : int
        OpenMP threads; BLAS must be single-threaded around the call when
        it is above 1.

    Returns
    -------
    out : ndarray of shape (n_pairs,)
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0; got {n_threads}.")
    if a.shape[0] != b.shape[0] or out.shape[0] != a.shape[0]:
        raise ValueError("a, b and out must have the same length.")
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] S_ = np.ascontiguousarray(S, dtype=dtype)
    if S_.shape[0] != d or S_.shape[1] != d:
        raise ValueError(f"S must have shape ({d}, {d}).")
    cdef floating[:, ::1] Y = np.empty((n, d), dtype=dtype)
    if n > 0 and d > 0:
        with nogil:
            quadratic_forms_nogil(X, S_, a, b, Y, out, n_threads)
    elif d == 0:
        out[:] = 0.0  # no feature: every form is 0
    return np.asarray(out)


cdef double residual_loss_nogil(const double[::1] dab, const double[::1] dcd,
                                const double[::1] w, double *cab, double *ccd,
                                Py_ssize_t *n_violated) noexcept nogil:
    cdef Py_ssize_t q, n_q = dab.shape[0], count = 0
    cdef double loss = 0.0, u, v, su, sv, r
    for q in range(n_q):
        u = dab[q]
        v = dcd[q]
        if u < 0.0:  # round-off of a zero distance
            u = 0.0
        if v < 0.0:
            v = 0.0
        if u > v:
            su = sqrt(u)
            sv = sqrt(v)
            r = su - sv
            loss += w[q] * r * r
            count += 1
            if cab != NULL:
                # d/dM (su - sv)^2 = (r / su) vab vab^T - (r / sv) vcd vcd^T;
                # u > v >= 0 so su > 0.  With v = 0 the second pair's
                # difference is 0 (M is definite), so its term is dropped.
                cab[q] = w[q] * (r / su)
                ccd[q] = -w[q] * (r / sv) if sv > 0.0 else 0.0
        elif cab != NULL:
            cab[q] = 0.0
            ccd[q] = 0.0
    n_violated[0] = count
    return loss


def residual_loss(const double[::1] dab, const double[::1] dcd, const double[::1] w):
    """Data term ``sum_q w_q [D_ab > D_cd] (sqrt(D_ab) - sqrt(D_cd))^2``.

    Negative inputs (round-off of zero distances) count as 0.

    Returns
    -------
    loss : float
    n_violated : int
    """
    if dcd.shape[0] != dab.shape[0] or w.shape[0] != dab.shape[0]:
        raise ValueError("dab, dcd and w must have the same length.")
    cdef Py_ssize_t count = 0
    cdef double loss
    with nogil:
        loss = residual_loss_nogil(dab, dcd, w, NULL, NULL, &count)
    return loss, int(count)


def residual_loss_coefficients(const double[::1] dab, const double[::1] dcd,
                               const double[::1] w, double[::1] cab, double[::1] ccd):
    """The data term (as :func:`residual_loss`) and its pair coefficients.

    ``cab[q] = w_q (1 - sqrt(D_cd / D_ab))`` and ``ccd[q] = w_q (1 -
    sqrt(D_ab / D_cd))`` for violated quadruplets (``D_ab > D_cd``), 0
    otherwise; ``ccd[q] = 0`` when ``D_cd = 0``.  The gradient of the data
    term in ``M`` is ``sum_q cab_q v_ab v_ab^T + ccd_q v_cd v_cd^T``.

    Returns
    -------
    loss : float
    n_violated : int
    """
    cdef Py_ssize_t n_q = dab.shape[0]
    if dcd.shape[0] != n_q or w.shape[0] != n_q or cab.shape[0] != n_q or ccd.shape[0] != n_q:
        raise ValueError("dab, dcd, w, cab and ccd must have the same length.")
    cdef Py_ssize_t count = 0
    cdef double loss
    if n_q == 0:
        return 0.0, 0
    with nogil:
        loss = residual_loss_nogil(dab, dcd, w, &cab[0], &ccd[0], &count)
    return loss, int(count)

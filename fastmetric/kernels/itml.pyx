# Bregman projections of ITML (Davis, Kulis, Jain, Sra & Dhillon, 2007).
#
# ITML keeps a symmetric positive definite matrix A (d x d) and visits the
# pair constraints in turn; constraint c, with difference vector
# v = x_a - x_b, sign delta (+1: similar, d_A <= xi; -1: dissimilar,
# d_A >= xi), slack target xi_c and dual variable lambda_c >= 0, is
# projected on with
#
#     p      = v^T A v                                  (d_A of the pair)
#     alpha  = min(lambda_c, delta g (1/p - 1/xi_c)),   g = gamma / (gamma + 1)
#     beta   = delta alpha / (1 - delta alpha p)
#     xi_c  <- 1 / (1/xi_c + delta alpha / gamma)
#     lambda_c <- lambda_c - alpha
#     A     <- A + beta (A v)(A v)^T .
#
# (g = 1 and xi fixed when gamma is infinite: hard constraints.)  In exact
# arithmetic A stays positive definite: v^T A' v = p / (1 - delta alpha p)
# and 1 - delta alpha p > 0 by the choice of alpha.
#
# Cost.  One projection is one pass over A: the rank-1 update of the
# previous projection is applied row by row while the same rows give
# w = A v for the current one (the update is "pending" between the two), so
# A is read and written once per constraint: O(d^2) work, no allocation, no
# Python.  A whole run of sweeps over the constraints, with the convergence
# test between sweeps, is one nogil call.
#
# Exact symmetry.  The update is stored as A += s u u^T with u = sqrt|beta| w
# and s = sign(beta): entry (i, j) gets (s u_i) u_j and entry (j, i) gets
# (s u_j) u_i, the same rounded product, so A stays bitwise symmetric.
#
# Threads.  The projections are sequential by nature (each one needs the A
# left by the previous one), and for the sizes ITML is used at a projection
# is a few microseconds of work: splitting its rows among OpenMP threads
# needs two barriers per projection, which cost more than the pass itself,
# and on a machine whose cores are shared with other processes a barrier
# can wait for a whole scheduler time slice (measured here: 20 ms per
# projection with 2 threads against 0.03-4 ms serial for d = 384-2048).  The
# kernel is therefore serial; the learners use threads for the pair
# sampling and the pairwise distances of the default bounds.
#
# Rounding.  The row pass is compiled without fused multiply-add
# contraction, and all its variants (four rows or one, the SIMD width the
# CPU offers) perform the same operations in the same order, so the result
# does not depend on which variant runs.

import numpy as np

from fastmetric.kernels.common cimport floating


cdef extern from "fastmetric/kernels/include/fm_itml.h" nogil:
    Py_ssize_t fm_itml_run(
        const void *X, int x_is_float, Py_ssize_t d,
        const Py_ssize_t *ia, const Py_ssize_t *ib, const double *delta,
        Py_ssize_t m, double *xi, double *lam, double *lam_old, double *A,
        double gamma, double tol, Py_ssize_t max_sweeps,
        double *conv_out, double *work, int *stopped)


def itml_run(const floating[:, ::1] X, const Py_ssize_t[::1] a, const Py_ssize_t[::1] b,
             const double[::1] delta, double[::1] xi, double[::1] lam, double[::1] lam_old,
             double[:, ::1] A, double gamma, double tol, Py_ssize_t max_sweeps,
             double[::1] conv_out):
    """Up to ``max_sweeps`` sweeps of the Bregman projections over the m >= 1
    constraints (X[a[c]], X[b[c]]) with signs ``delta``, updating ``xi``,
    ``lam``, ``lam_old`` and A in place (see the module comment for the
    update), serial and nogil: O(d^2) per projection.  ``conv_out``
    (max_sweeps) receives the convergence measure after each sweep.  Returns
    ``(n_sweeps, converged)``.  Arguments validated by
    fastmetric._core.objectives.itml.itml_projections."""
    cdef Py_ssize_t d = X.shape[1]
    cdef Py_ssize_t m = a.shape[0]
    cdef double[::1] work = np.zeros(3 * max(d, 1), dtype=np.float64)
    cdef int stopped = 0
    cdef Py_ssize_t sweeps = 0
    cdef int x_is_float = floating is float
    with nogil:
        sweeps = fm_itml_run(&X[0, 0], x_is_float, d, &a[0], &b[0], &delta[0], m,
                             &xi[0], &lam[0], &lam_old[0], &A[0, 0], gamma, tol,
                             max_sweeps, &conv_out[0], &work[0], &stopped)
    return int(sweeps), bool(stopped)

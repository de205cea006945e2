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


def _run(const floating[:, ::1] X, const Py_ssize_t[::1] a, const Py_ssize_t[::1] b,
         const double[::1] delta, double[::1] xi, double[::1] lam, double[::1] lam_old,
         double[:, ::1] A, double gamma, double tol, Py_ssize_t max_sweeps,
         double[::1] conv_out):
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


def _check_state(arr, shape, name):
    if (not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.shape != shape
            or not arr.flags.c_contiguous or not arr.flags.writeable):
        raise ValueError(
            f"{name} is updated in place: it must be a writeable C-contiguous float64 "
            f"ndarray of shape {shape}; got "
            f"{getattr(arr, 'dtype', type(arr).__name__)} of shape {np.shape(arr)}."
        )
    return arr


def _check_arguments(X, a, b, delta, xi, lam, lam_old, A):
    from fastmetric._core.validation import check_index_pairs, check_points

    X = check_points(X, name="X")
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.shape != a.shape:
        raise ValueError(
            f"a and b must be 1-D index arrays of the same length; got shapes {a.shape} "
            f"and {b.shape}."
        )
    a, b = check_index_pairs(np.column_stack((a, b)), X.shape[0], name="(a, b)",
                             allow_empty=True)
    m, d = a.shape[0], X.shape[1]
    delta = np.ascontiguousarray(delta, dtype=np.float64)
    if delta.shape != (m,) or not np.all(np.abs(delta) == 1):
        raise ValueError(f"delta must hold +1 or -1 for each of the {m} constraints.")
    xi = _check_state(xi, (m,), "xi")
    if not np.all(np.isfinite(xi) & (xi > 0)):
        raise ValueError("xi (the bounds) must be finite and positive.")
    lam = _check_state(lam, (m,), "lam")
    lam_old = _check_state(lam_old, (m,), "lam_old")
    A = _check_state(A, (d, d), "A")
    if not np.isfinite(A).all():
        raise ValueError("A contains NaN or infinity.")
    return X, a, b, delta, xi, lam, lam_old, A


def itml_projections(X, a, b, delta, xi, lam, lam_old, A, *, gamma=1.0, tol=1e-3,
                     max_sweeps=1):
    """Sweeps of ITML's Bregman projections over pair constraints, in place.

    Constraint ``c`` is the pair ``(X[a[c]], X[b[c]])`` with sign
    ``delta[c]`` (+1: similar, ``d_A <= xi``; -1: dissimilar, ``d_A >= xi``),
    where ``d_A(x, x') = (x - x')^T A (x - x')``.  Each sweep visits the
    constraints in order; after each sweep the relative change of the dual
    variables ``conv = sum|lam_old - lam| / (||lam|| + ||lam_old||)`` is
    compared with ``tol`` (when both norms are 0, every constraint holds and
    none was ever active: the run stops with ``conv = inf``).

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features), float32 or float64, C-contiguous
    a, b : ndarray of shape (n_constraints,), intp
        Row indices into X (validated by the caller: no bounds checks here).
    delta : ndarray of shape (n_constraints,), float64
        +1.0 or -1.0.
    xi : ndarray of shape (n_constraints,), float64, > 0
        Bounds (slack targets), updated in place.
    lam, lam_old : ndarray of shape (n_constraints,), float64
        Dual variables now and after the previous sweep, updated in place
        (both zero at the start of a fit).
    A : ndarray of shape (n_features, n_features), float64, C-contiguous
        Symmetric positive definite; updated in place.
    gamma : float > 0 or inf
        Slack trade-off (inf: hard constraints).
    tol : float
        Convergence tolerance.
    max_sweeps : int
        Maximum number of sweeps of this call.

    Returns
    -------
    n_sweeps : int
        Sweeps done.
    converged : bool
        Whether the convergence test passed.
    conv : ndarray of shape (n_sweeps,)
        The convergence measure after each sweep.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.kernels.itml import itml_projections
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> a, b = np.array([0, 0]), np.array([1, 2])
    >>> delta = np.array([1.0, -1.0])  # (0, 1) similar, (0, 2) dissimilar
    >>> xi = np.array([0.5, 2.0])      # want d_A(0, 1) <= 0.5, d_A(0, 2) >= 2
    >>> A, lam, lam_old = np.eye(2), np.zeros(2), np.zeros(2)
    >>> n, converged, conv = itml_projections(X, a, b, delta, xi, lam, lam_old, A,
    ...                                       gamma=np.inf, tol=1e-9, max_sweeps=100)
    >>> converged, np.round(np.diag(A), 6).tolist()
    (True, [0.5, 2.0])
    """
    X, a, b, delta, xi, lam, lam_old, A = _check_arguments(
        X, a, b, delta, xi, lam, lam_old, A)
    gamma = float(gamma)
    if not gamma > 0:
        raise ValueError(f"gamma must be positive (or inf); got {gamma}.")
    conv = np.full(max(int(max_sweeps), 1), np.nan)
    if a.shape[0] == 0 or max_sweeps <= 0:
        return 0, False, conv[:0]
    n_sweeps, converged = _run(X, a, b, delta, xi, lam, lam_old, A, float(gamma),
                               float(tol), int(max_sweeps), conv)
    return n_sweeps, converged, conv[:n_sweeps]

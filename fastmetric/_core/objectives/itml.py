"""ITML's Bregman projections with their checks: :func:`itml_projections`
validates the constraints and the state arrays, then runs the nogil kernel
:func:`fastmetric.kernels.itml.itml_run` (whose module comment states the
update, its cost and why it is serial).
"""
import numpy as np

from fastmetric._core.validation import check_index_pairs, check_points
from fastmetric.kernels.itml import itml_run

__all__ = ["itml_projections"]


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
    >>> from fastmetric._core.objectives.itml import itml_projections
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
    n_sweeps, converged = itml_run(X, a, b, delta, xi, lam, lam_old, A, float(gamma),
                                   float(tol), int(max_sweeps), conv)
    return n_sweeps, converged, conv[:n_sweeps]

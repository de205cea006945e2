"""The validated weighted scatter of pair differences,
:func:`weighted_pair_scatter`, over the kernel
:func:`fastmetric.kernels.pair_scatter.pair_scatter` (whose module docstring
gives the two algorithms and their cost).  Re-exported by
:mod:`fastmetric.pairwise`.
"""
import numpy as np

from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.validation import (
    check_finite_result,
    check_index_range,
    check_pair_vector,
    check_points,
)
from fastmetric.kernels.pair_scatter import METHODS, pair_scatter

__all__ = ["weighted_pair_scatter"]


def _check_index_vector(v, name, n_samples):
    arr = np.asarray(v)
    if arr.size == 0 and arr.dtype.kind == "f":  # [] is float64 for numpy
        arr = arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer row indices; got dtype {arr.dtype}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one row index per pair); got shape {arr.shape}.")
    check_index_range(arr, n_samples, name, ("position",), "X")
    return np.ascontiguousarray(arr, dtype=np.intp)


def weighted_pair_scatter(X, a, b, weights=None, n_jobs=None, method="auto"):
    """Weighted scatter of pair differences, ``sum_p w_p d_p d_p^T``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Points (float32 or float64 kept, integers converted to float64).
    a, b : array-like of int, shape (n_pairs,)
        Row indices of the pairs' two ends; ``d_p = X[a[p]] - X[b[p]]``.
    weights : array-like of shape (n_pairs,), default=None
        Finite real weights of any sign; ``None`` weighs every pair 1.
    n_jobs : int, default=None
        Threads (see :func:`fastmetric._core.threads.effective_n_threads`); the
        result does not depend on it.
    method : {'auto', 'laplacian', 'direct'}, default='auto'
        Force one of the two algorithms (for tests); 'auto' picks the
        cheaper one.

    Returns
    -------
    S : ndarray of shape (n_features, n_features), float64
        Exactly symmetric.  Zero when there are no pairs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import weighted_pair_scatter
    >>> X = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]])
    >>> weighted_pair_scatter(X, [0, 1], [1, 2], [1.0, -0.5])
    array([[-1. ,  3. ],
           [ 3. ,  3.5]])
    """
    X = check_points(X, name="X")
    n, d = X.shape
    a = _check_index_vector(a, "a", n)
    b = _check_index_vector(b, "b", n)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must have the same length; got {a.shape[0]} and {b.shape[0]}."
        )
    n_pairs = a.shape[0]
    if weights is None:
        w = np.ones(n_pairs, dtype=np.float64)
    else:
        w = check_pair_vector(weights, n_pairs, "weights", np.float64)
    if method not in METHODS:
        raise ValueError(
            f"method must be one of {sorted(METHODS)}; got {method!r}."
        )
    # At least ~2^20 multiply-adds per thread to be worth a team.
    work = n_pairs * d * min(d, 64)
    n_threads = threads_for_work(effective_n_threads(n_jobs, work=work), work, 1 << 20)
    out = np.empty((d, d), dtype=np.float64)
    # The tiles' GEMMs are small: BLAS threads would only oversubscribe
    # (and could change the rounding), whatever n_threads is.
    with single_threaded_blas():
        pair_scatter(X, a, b, w, out, n_threads, METHODS[method])
    check_finite_result(out, X, what="the pair scatter")
    return out

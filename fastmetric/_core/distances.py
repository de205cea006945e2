"""Validated Mahalanobis distances and the row mapping, over the kernels of
:mod:`fastmetric.kernels.distances`.

The functions here check their inputs, choose the thread count and allocate
the outputs and work arrays (aligned, on huge pages: see
:mod:`fastmetric._core.workspace`); the kernels only compute.  The public
ones are re-exported by :mod:`fastmetric.pairwise`.
"""
import numpy as np

from fastmetric._core.threads import (
    effective_n_threads,
    single_threaded_blas,
    team_threads,
    threads_for_work,
)
from fastmetric._core.validation import (
    check_bool,
    check_chunk_size,
    check_components,
    check_finite_result,
    check_index_pairs,
    check_points,
    raise_nonfinite,
)
from fastmetric._core.workspace import empty_aligned
from fastmetric.kernels.distances import (
    DEF_PAIR_CHUNK,
    DEF_ROW_CHUNK,
    DEF_SORT_ABOVE_BYTES,
    _paired_bucketed,
    _paired_direct,
    _paired_transformed,
    _pairwise,
    _transform_f32,
    _transform_f64,
    bucket_plan,
)

__all__ = ["mahalanobis_distances", "paired_mahalanobis_distances", "transform_rows"]


# Pairs per thread of fm_team.h's team below which the paired distances keep
# to OpenMP's threads.  The helpers sleep between calls and waking them
# costs tens of microseconds: beside one busy process on 2 cores (helpers
# asleep), 5,000 pairs (k = 30) took 1.11x as long on the team as on one
# thread, and with k = 64 100,000 pairs 0.97x, 200,000 0.97x and 400,000
# 0.66x.
_TEAM_MIN_PAIRS = 65_536

def transform_rows(X, L, chunk_size, n_threads, check_finite=False, name="X"):
    """``X @ L.T`` into a new aligned array, by the kernels' row mapping.

    X and L are validated float32/float64 arrays of one dtype, C-contiguous.
    With ``check_finite``, X's values are checked during the GEMM (X was
    validated with ``allow_nan=True``) and a NaN or infinity raises the
    ValueError of :func:`~fastmetric._core.validation.check_points`.
    """
    # Aligned rows on huge pages: the paired kernel reads them at random (see
    # fastmetric._core.workspace), and the threads filling them do not queue
    # on page faults.
    XL = empty_aligned((X.shape[0], L.shape[0]), X.dtype)
    if X.dtype == np.float32:
        finite = _transform_f32(X, L, XL, chunk_size, n_threads, check_finite)
    else:
        finite = _transform_f64(X, L, XL, chunk_size, n_threads, check_finite)
    if not finite:
        raise_nonfinite(X, name)
    return XL


def _paired_bucketed_into(XL, a, b, out, take_sqrt, chunk_size, n_threads):
    """The bucketed paired kernel with its work arrays (see ``bucket_plan``)."""
    n_pairs = a.shape[0]
    bucket_rows, n_buckets, n_parts = bucket_plan(XL.shape[0], XL.shape[1] * XL.itemsize,
                                                  n_pairs, n_threads)
    cursor = np.zeros((n_parts, n_buckets), dtype=np.intp)
    sa, sb, sp = (empty_aligned(n_pairs, np.intp) for _ in range(3))
    _paired_bucketed(XL, a, b, out, take_sqrt, chunk_size, n_threads, bucket_rows,
                     cursor, sa, sb, sp)


def mahalanobis_distances(X, Y=None, *, components=None, squared=False,
                          chunk_size=None, n_jobs=None):
    """Mahalanobis distances between the rows of X and the rows of Y.

    Computes ``D[i, j] = ||L x_i - L y_j||`` (``M = L^T L``), in parallel over
    chunks of rows of X, with no intermediate larger than the output plus
    the transformed rows (no n x m x d temporaries).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        float32 input stays float32; integers are converted to float64.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` computes the distances among the rows of X (the diagonal is
        then exactly zero).
    components : array-like of shape (n_components, n_features), default=None
        The linear map L. ``None`` means the identity (Euclidean distance).
        ``n_components < n_features`` (a low-rank metric) is allowed.
    squared : bool, default=False
        Return squared distances.
    chunk_size : int, default=None
        Rows of X per work unit (default 256).
    n_jobs : int, default=None
        Number of OpenMP threads: ``None`` as many as OpenMP and threadpoolctl
        allow, ``-1`` all CPUs, ``k > 0`` exactly k.

    Returns
    -------
    D : ndarray of shape (n_samples_X, n_samples_Y)
        In the dtype of X (float64 if X and Y do not share a float dtype).

    Notes
    -----
    The squared distance is expanded as ``||u||^2 + ||v||^2 - 2 u.v`` with
    ``u = L x``, ``v = L y``, which turns the work into matrix products.  The
    expansion loses relative precision for points much closer to each other
    than to the origin (about ``eps * ||u||^2`` absolute error, eps the
    machine precision of the dtype); negative rounding results are clipped
    to zero.  Use :func:`paired_mahalanobis_distances` when only some pairs
    are needed: it computes differences directly.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import mahalanobis_distances
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> mahalanobis_distances(X)
    array([[0., 5.],
           [5., 0.]])
    >>> mahalanobis_distances(X, components=[[2.0, 0.0]], squared=True)
    array([[ 0., 36.],
           [36.,  0.]])
    """
    squared = check_bool(squared, "squared")
    # NaN/inf in X and Y are found while the GEMM maps them (check_finite).
    X = check_points(X, "X", allow_nan=True)
    if Y is not None:
        Y = check_points(Y, "Y", allow_nan=True)
        if Y.shape[1] != X.shape[1]:
            raise ValueError(
                f"X and Y must have the same number of features; got X with "
                f"{X.shape[1]} and Y with {Y.shape[1]}."
            )
        if Y.dtype != X.dtype:
            X = X.astype(np.float64)
            Y = Y.astype(np.float64)
    L = check_components(components, X.shape[1], X.dtype)
    chunk_size = check_chunk_size(chunk_size) or DEF_ROW_CHUNK
    n_rows_y = X.shape[0] if Y is None else Y.shape[0]
    n_items = X.shape[0] * (n_rows_y + L.shape[0])
    n_threads = threads_for_work(effective_n_threads(n_jobs, work=n_items * L.shape[0]),
                                 n_items, 1 << 16)
    with single_threaded_blas():
        XL = transform_rows(X, L, chunk_size, n_threads, check_finite=True)
        YL = XL if Y is None else transform_rows(Y, L, chunk_size, n_threads,
                                             check_finite=True, name="Y")
        if XL.dtype == np.float32:
            _centre_embedded_rows(XL, YL)
        # Filled by every thread at once: see fastmetric._core.workspace.
        out = empty_aligned((X.shape[0], YL.shape[0]), X.dtype)
        norms_bound = _pairwise(XL, YL, out, Y is None, not squared, chunk_size, n_threads)
        # Squared norms below 2^(minexp + nmant) leave the squares in the
        # subnormals: float64 distances under about 1e-146 came out 0 or
        # rounded to a few bits.  The embedded rows are then brought to norms
        # near one by a power of two (exact) and the result scaled back (the
        # squared distances of such points may still be subnormal: they are).
        # Huge rows stay an overflow error, as in every other function.
        if norms_bound < _SUBNORMAL_SQUARES[out.dtype]:
            exponent = _rescale_rows(XL, YL)
            norms_bound = _pairwise(XL, YL, out, Y is None, not squared, chunk_size, n_threads)
            _scale_back(out, exponent, squared)
    # Below this bound no entry can have overflowed (see _pairwise): the
    # scan of the n x m result (about 9 ms for 20 million) is only needed
    # near the dtype's range.
    if not norms_bound < float(np.finfo(out.dtype).max) / 4:
        check_finite_result(out, X, Y, components=L)
    return out


def _centre_embedded_rows(XL, YL):
    """Shift XL and YL (YL may be XL) in place by their common mean row when
    it is farther from the origin than the rows are from it.

    The kernel takes ``||a||^2 + ||b||^2 - 2 a.b`` in the rows' dtype, whose
    rounding grows with the rows' norms, not with their distance: float32
    rows about 1000 from the origin with unit spread had distances wrong by
    up to 1.4 (a point 1.4 from itself).  Distances do not move when every
    row moves by the same vector; about their mean the norms are those of
    the spread.  Rows already about the origin (standardised data) are left
    as they are, bit for bit; float64, whose rounding there is 1e-13, too.
    """
    rows = [XL] if YL is XL else [XL, YL]
    count = max(sum(r.shape[0] for r in rows), 1)
    centre = sum(r.sum(axis=0, dtype=np.float64) for r in rows) / count
    mean_square = sum(float(np.einsum("ij,ij->", r, r, dtype=np.float64)) for r in rows) / count
    offset = float(centre @ centre)
    if not offset > mean_square - offset:  # the spread about the mean
        return
    centre = centre.astype(XL.dtype)
    for r in rows:
        r -= centre


# Squared norms below these put squared distances among the subnormals.
_SUBNORMAL_SQUARES = {np.dtype(t): float(np.ldexp(1.0, np.finfo(t).minexp + np.finfo(t).nmant))
                      for t in (np.float32, np.float64)}


def _rescale_rows(XL, YL):
    """Divide XL and YL (YL may be XL) in place by the power of two ``2^e``
    that brings their largest magnitude to [0.5, 1); returns ``e``."""
    top = max(float(np.max(np.abs(XL), initial=0.0)), float(np.max(np.abs(YL), initial=0.0)))
    exponent = int(np.frexp(top)[1]) if top > 0 else 0
    with np.errstate(under="ignore"):
        np.ldexp(XL, -exponent, out=XL)
        if YL is not XL:
            np.ldexp(YL, -exponent, out=YL)
    return exponent


def _scale_back(out, exponent, squared):
    """Undo :func:`_rescale_rows` on distances (squared: twice the exponent), in place."""
    with np.errstate(under="ignore"):
        np.ldexp(out, exponent if not squared else 2 * exponent, out=out)


def _leading_size(a, default=0):
    """``len(a)`` for the thread count's work estimate, before ``a`` is
    checked: ``default`` when it is None or has no length."""
    try:
        return default if a is None else len(a)
    except TypeError:
        return default


def paired_mahalanobis_distances(X, pairs, *, components=None, squared=False,
                                 chunk_size=None, n_jobs=None):
    """Mahalanobis distances of index pairs of rows of X.

    Computes ``d_p = ||L (x_{a_p} - x_{b_p})||`` for each pair
    ``(a_p, b_p) = pairs[p]`` without building the (n_pairs, n_features)
    array of differences.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float32 input stays float32; integers are converted to float64.
    pairs : array-like of int, shape (n_pairs, 2)
        Row indices into X, each in ``[0, n_samples)``.
    components : array-like of shape (n_components, n_features), default=None
        The linear map L; ``None`` is the identity (Euclidean distance).
    squared : bool, default=False
        Return squared distances.
    chunk_size : int, default=None
        Pairs per work unit (default 4096).
    n_jobs : int, default=None
        Number of OpenMP threads (see :func:`mahalanobis_distances`).

    Returns
    -------
    d : ndarray of shape (n_pairs,)
        In the dtype of X.

    Notes
    -----
    With at least as many pairs as rows, every row is mapped once,
    ``u = L x`` (one GEMM per chunk of rows, O(n k d)), and each pair costs
    O(k).  When the mapped rows outgrow the cache, the pairs are first
    bucketed by their first row (a stable counting sort), so that the first
    rows of consecutive pairs stay in cache and only the second row of each
    pair is read from memory at random.  With fewer pairs than rows, the differences of a chunk of pairs
    are gathered into a per-thread buffer and multiplied by ``L^T``
    (O(n_pairs k d), never touching unused rows).  The squares are summed
    in double.  When every squared distance is below float64's smallest
    normal number (float64 points or maps of about 1e-154 and less), the
    pairs are computed again on rows scaled by a power of two, and the
    distances scaled back.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import paired_mahalanobis_distances
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> paired_mahalanobis_distances(X, [[0, 1], [0, 2], [1, 1]])
    array([ 5., 10.,  0.])
    """
    squared = check_bool(squared, "squared")
    # X's values are checked for NaN/inf by the kernel that reads them (the
    # GEMM of the mapped rows), or below for the direct path.
    X = check_points(X, "X", allow_nan=True)
    # The rows' map (n d k), then k per pair (the inputs' shapes are checked below).
    n_pairs, k = _leading_size(pairs), _leading_size(components, X.shape[1])
    n_threads = effective_n_threads(n_jobs, work=(X.shape[0] * X.shape[1] + n_pairs) * k)
    a, b = check_index_pairs(pairs, X.shape[0], "pairs", allow_empty=True,
                             n_threads=n_threads)
    L = check_components(components, X.shape[1], X.dtype)
    chunk_size = check_chunk_size(chunk_size)
    n_threads = threads_for_work(n_threads, a.shape[0], 2048)
    transformed = a.shape[0] >= X.shape[0]
    if not transformed:
        check_points(X, "X")
    # Filled by every thread at once: see fastmetric._core.workspace.
    out = empty_aligned(a.shape[0], X.dtype)
    if a.shape[0] == 0:
        return out
    with single_threaded_blas():
        if transformed:
            # chunk_size counts pairs; rows are mapped in the usual blocks.
            XL = transform_rows(X, L, DEF_ROW_CHUNK, n_threads, check_finite=True)
            if XL.nbytes > DEF_SORT_ABOVE_BYTES:
                _paired_bucketed_into(XL, a, b, out, not squared,
                                      chunk_size or DEF_PAIR_CHUNK, n_threads)
            else:
                # Under load the pairs' chunks run on the team (the same
                # result), when each of its threads gets enough pairs to pay
                # for waking it (_TEAM_MIN_PAIRS).
                team = team_threads(n_jobs)
                team = threads_for_work(team, a.shape[0], _TEAM_MIN_PAIRS) if team else 0
                _paired_transformed(XL, a, b, out, not squared,
                                    chunk_size or DEF_PAIR_CHUNK, n_threads,
                                    team if team > 1 else 0)
        else:
            _paired_direct(X, L, a, b, out, not squared,
                           chunk_size or DEF_ROW_CHUNK, n_threads)
        # One pass over the distances (non-negative) gives their largest: NaN
        # or infinity there (overflow) is reported below, and when every
        # squared distance is below float64's 2^(minexp + nmant) some may have
        # fallen among the subnormals or to 0 (differences under about
        # 1e-154), as in mahalanobis_distances: the rows are then brought near
        # one by a power of two and the pairs computed again.
        top = float(np.max(out))
        if _all_squares_subnormal(top, squared):
            _recompute_tiny_pairs(X, XL if transformed else None, L, a, b, out, squared,
                                  chunk_size, n_threads)
    if not np.isfinite(top):
        check_finite_result(out, X, components=L)
    return out


def _all_squares_subnormal(top, squared):
    """Whether the largest distance ``top`` (squared distance if ``squared``)
    squares below the smallest normal square of float64 (NaN: False).

    The paired kernels sum the squares in double for both dtypes (float32
    rows of at least 1e-45 give squares of at least 1e-90), so only float64
    rows underflow there.
    """
    return (top if squared else top * top) < _SUBNORMAL_SQUARES[np.dtype(np.float64)]


def _recompute_tiny_pairs(X, XL, L, a, b, out, squared, chunk_size, n_threads):
    """The paired distances of tiny points again, on rows scaled by a power
    of two, into ``out`` (scaled back; exact but for the final rounding).

    ``XL``: the mapped rows (the transformed path), rescaled in place; else
    the direct path, whose rows of the pairs and L are scaled separately (a
    tiny map is as likely as tiny data).  Nothing is redone when the rows are
    not small: the distances are then tiny because the points nearly
    coincide, and no scaling separates them further.
    """
    if XL is not None:
        exponent = _rescale_rows(XL, XL)
        if exponent >= 0:
            return
        _paired_transformed(XL, a, b, out, not squared, chunk_size or DEF_PAIR_CHUNK,
                            n_threads, 0)
    else:
        used, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        rows = np.ascontiguousarray(X[used])
        L = np.array(L, order="C")  # scaled in place: never the caller's array
        rows_exponent, map_exponent = _rescale_rows(rows, rows), _rescale_rows(L, L)
        exponent = rows_exponent + map_exponent
        if exponent >= 0:
            return
        inverse = inverse.astype(np.intp, copy=False)
        _paired_direct(rows, L, inverse[:a.shape[0]], inverse[a.shape[0]:], out,
                       not squared, chunk_size or DEF_ROW_CHUNK, n_threads)
    _scale_back(out, exponent, squared)

"""Input validation shared by the public kernel functions and the learners.

Every check raises a ``ValueError`` or ``TypeError`` whose message names the
argument and the offending value, so that bad input never reaches a kernel
(where it could crash or silently give NaN).
"""
import numbers
import sys

import numpy as np

from fastmetric._core.threads import effective_n_threads
from fastmetric._core.workspace import empty_aligned
from fastmetric.kernels.pair_index import split_index_pairs

FLOAT_DTYPES = (np.float64, np.float32)


def _describe(value):
    return f"{type(value).__name__}" + (
        f" with dtype {value.dtype} and shape {value.shape}" if hasattr(value, "dtype") else ""
    )


def check_points(X, name="X", dtype=None, min_rows=1, allow_nan=False):
    """Validate a 2-D array of points; return it C-contiguous float32/float64.

    Integer and boolean input is converted to float64, float32 and float64
    keep their precision (unless ``dtype`` asks for a given one), any other
    dtype is a TypeError.  Non-contiguous input is copied.
    """
    if hasattr(X, "dask") or hasattr(X, "toarray"):
        raise TypeError(
            f"{name} must be a dense in-memory array; got {type(X).__name__}. "
            "Sparse matrices are not supported by this kernel."
        )
    arr = np.asarray(X)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f" or arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind == "f":  # float16 / longdouble: compute in float64
            arr = arr.astype(np.float64)
        else:
            raise TypeError(
                f"{name} must hold real numbers (float32, float64 or integers); "
                f"got dtype {arr.dtype}."
            )
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got "
            f"{arr.ndim} dimension(s) with shape {arr.shape}."
        )
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"{name} is empty: it has {arr.shape[0]} row(s) (shape {arr.shape}); "
            f"at least {min_rows} required."
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has 0 features (shape {arr.shape}); at least 1 required.")
    if not allow_nan:
        _check_all_finite(arr, name)
    return np.ascontiguousarray(arr)


def _check_all_finite(arr, name):
    # A NaN or infinity makes the sum non-finite, and a sum is one cheap
    # pass without a boolean temporary; only when the sum is not finite
    # (a bad value, or finite values overflowing) look element by element.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(arr, axis=None)
    if np.isfinite(total):
        return
    if not np.isfinite(arr).all():
        raise_nonfinite(arr, name)


def raise_nonfinite(arr, name):
    """Raise the ValueError that names the first NaN or infinity of ``arr``.

    Kernels that check their input's values while they read it (instead of
    a separate pass) call this once they have found one.
    """
    bad_mask = ~np.isfinite(arr)
    if not bad_mask.any():  # pragma: no cover - callers found a bad value
        raise ValueError(f"{name} contains NaN or infinity.")
    bad = np.argwhere(bad_mask)[0]
    where = ", ".join(str(i) for i in bad)
    raise ValueError(
        f"{name} contains NaN or infinity (first at index ({where}): "
        f"{arr[tuple(bad)]})."
    )


def check_squared_scale(X, name, dtype=None, top=None):
    """ValueError when squared distances of the rows of ``X`` would overflow.

    Code that works on squared distances with no rescaling (SCML: the
    distances between points and their projections on unit basis vectors;
    the neighbour search: the mapped rows) needs ``(2 max|x| sqrt(d))^2``
    below the largest float of ``dtype`` (default X's): this checks
    ``max|x| < sqrt(max float) / (4 d)``, with a factor 2 to spare, and names
    the data's largest magnitude when it fails (``top``: that magnitude,
    when the caller has it already).
    """
    dtype = np.dtype(X.dtype if dtype is None else dtype)
    if top is None:
        top = float(np.abs(X).max()) if X.size else 0.0
    limit = float(np.sqrt(float(np.finfo(dtype).max))) / (4.0 * max(X.shape[1], 1))
    if not top < limit:  # (NaN too: rows mapped from overflowing data)
        raise ValueError(
            f"{name}: the data reach {top:.3g}, so their squared distances overflow "
            f"{dtype} (the limit is about {limit:.3g}); rescale the data (e.g. "
            "StandardScaler)."
        )


def check_finite_result(out, *data, what="the squared distances", **inputs):
    """ValueError when a result computed from finite input is not finite.

    With the data and L validated finite, a NaN or infinity in a distance,
    loss or gradient can only come from overflow (``||L x||^2`` beyond the
    float range, then ``inf - inf``): the result would be wrong, so the
    caller is told to rescale instead.  ``out`` is an array or a tuple of
    arrays and numbers; one summing pass each (no boolean temporary) in the
    usual finite case.  ``inputs`` (e.g. ``components=L, bias=b``) are the
    other values the result scales with: the message gives their magnitude
    too, since a huge map overflows as surely as huge data.
    """
    for part in (out if isinstance(out, tuple) else (out,)):
        if part is None:  # a gradient that was not asked for
            continue
        arr = np.asarray(part)
        if not arr.size:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(arr, axis=None)
        if np.isfinite(total) or np.isfinite(arr).all():
            continue
        def reach(values):
            return max((float(np.abs(x).max()) for x in values
                        if x is not None and np.size(x)), default=0.0)

        sizes = [f"the data reach {reach(data):.3g}"] + [
            f"the {name} {reach([value]):.3g}" for name, value in inputs.items()]
        culprits = " or ".join(["the data", *(f"the {name}" for name in inputs)])
        raise ValueError(
            f"{what} overflow {arr.dtype} ({', '.join(sizes)}); rescale {culprits} "
            "(e.g. StandardScaler for the data)."
        )


def check_components(L, n_features, dtype, name="components"):
    """Validate a linear map L of shape (n_components, n_features)."""
    if L is None:
        return np.eye(n_features, dtype=dtype)
    arr = np.asarray(L)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}.")
    if arr.ndim != 2 or arr.shape[1] != n_features or arr.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (n_components, n_features) = (k, {n_features}) "
            f"with k >= 1; got shape {arr.shape}."
        )
    _check_all_finite(arr, name)
    return np.ascontiguousarray(arr, dtype=dtype)


def check_index_range(arr, n_samples, name, where=("row", "column"), rows_of="X"):
    """ValueError naming the first index of ``arr`` outside [0, n_samples).

    ``where`` names the axes of ``arr`` in the message (e.g. pair / column
    for a 2-D array, position for a 1-D one), and ``rows_of`` what the
    indices point into.
    """
    if not arr.size:
        return
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= n_samples:
        bad = lo if lo < 0 else hi
        pos = np.argwhere(arr == bad)[0]
        at = ", ".join(f"{axis} {i}" for axis, i in zip(where, pos))
        raise ValueError(
            f"{name} holds index {bad} at {at}, "
            f"outside the valid range [0, {n_samples}) of rows of {rows_of}."
        )


def check_index_pairs(pairs, n_samples, name="pairs", allow_empty=False, n_threads=None):
    """Validate index pairs of shape (n_pairs, 2) into ``n_samples`` rows.

    Returns two C-contiguous ``intp`` arrays ``a`` and ``b``.  ``n_threads``
    (default: as many as OpenMP allows) split large int32/int64 arrays.
    """
    arr = np.asarray(pairs)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold integer indices; got booleans.")
        if arr.size == 0 and arr.dtype.kind == "f":
            arr = arr.astype(np.intp)
        else:
            raise TypeError(
                f"{name} must hold integer row indices; got dtype {arr.dtype}."
            )
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (n_pairs, 2) (one row of two indices per "
            f"pair); got shape {arr.shape}."
        )
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: at least one pair is required.")
    if not (arr.dtype in (np.int32, np.int64) and arr.flags.c_contiguous):
        # Other integer types: check the values as given (a large unsigned
        # index must not wrap around), then convert.
        check_index_range(arr, n_samples, name, ("pair", "column"), "X")
        arr = np.ascontiguousarray(arr, dtype=np.intp)
    # One parallel pass splits the columns and finds the range.
    # The columns are written by every thread at once: huge pages spare them
    # most of their page faults (see fastmetric._core.workspace).
    a, b, lo, hi = split_index_pairs(
        arr, effective_n_threads(None) if n_threads is None else n_threads,
        empty_aligned(arr.shape[0], np.intp), empty_aligned(arr.shape[0], np.intp),
    )
    if lo < 0 or hi >= n_samples:
        check_index_range(arr, n_samples, name, ("pair", "column"), "X")
    return a, b


def check_pair_vector(v, n_pairs, name, dtype, lo=None, hi=None, nonneg=False):
    """Validate a per-pair vector (targets or weights) of length n_pairs."""
    arr = np.asarray(v)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {arr.dtype}.")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.ndim != 1 or arr.shape[0] != n_pairs:
        raise ValueError(
            f"{name} must have shape (n_pairs,) = ({n_pairs},); got shape {arr.shape}."
        )
    if not arr.size:
        return arr
    # Two passes over the data: NaN propagates into min and max, and an
    # infinity is one of them.
    low, high = arr.min(), arr.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinity.")
    if lo is not None and (low < lo or high > hi):
        bad = low if low < lo else high
        raise ValueError(f"{name} must lie in [{lo}, {hi}]; got a value {bad}.")
    if nonneg and low < 0:
        raise ValueError(f"{name} must be non-negative; got a value {low}.")
    return arr


# Weights whose largest entry lies outside [2^-WEIGHT_EXPONENT_RANGE,
# 2^WEIGHT_EXPONENT_RANGE] are rescaled by a power of two (exact) so that
# their sum and the weighted sums stay in the float range.
WEIGHT_EXPONENT_RANGE = 500

# Points whose largest magnitude lies beyond 2^+-EXTREME_EXPONENT are worked
# on at a scale of one (multiplied by a power of two, exact) by the code whose
# squared distances have no rescaling of their own (k-means): their squares
# underflow or overflow float64 near 2^+-510.
EXTREME_EXPONENT = 100


def extreme_exponent(values):
    """The power of two to divide ``values`` by (0: none needed): the
    exponent of their largest magnitude when it lies beyond
    ``2^+-EXTREME_EXPONENT``.

    >>> extreme_exponent(np.array([[3e-200, 1e-201]]))
    -662
    >>> extreme_exponent(np.array([[3.0, -1.0]]))
    0
    """
    top = float(np.max(np.abs(values), initial=0.0))
    exponent = int(np.frexp(top)[1]) if top > 0 and np.isfinite(top) else 0
    return exponent if abs(exponent) > EXTREME_EXPONENT else 0


def check_weights(v, n, name="sample_weight", unit="pair"):
    """Validated non-negative weights, one per ``unit`` (``n`` of them).

    The learners and losses divide by the total weight, so only the ratios
    of the weights matter: weights whose largest entry is beyond
    ``2^±WEIGHT_EXPONENT_RANGE`` (``1e308`` each, or subnormal ones) are
    multiplied by a power of two that brings it to 1, which is exact and
    leaves the result unchanged; other weights are returned as given.

    Raises
    ------
    TypeError, ValueError
        Not real numbers, the wrong shape, NaN or infinity, a negative
        weight, or a zero sum.
    """
    w = check_pair_vector(v, n, name, np.float64, nonneg=True)
    top = float(w.max()) if w.size else 0.0
    if not top > 0:
        verb = "sum" if name.endswith("s") else "sums"  # weights sum, sample_weight sums
        raise ValueError(f"{name} {verb} to 0; at least one {unit} needs a positive weight.")
    exponent = np.frexp(top)[1]
    if abs(exponent) > WEIGHT_EXPONENT_RANGE:
        w = np.ldexp(w, -exponent)
    return w


def caller_stacklevel():
    """``stacklevel`` for a ``warnings.warn`` in the calling function that
    names the user's line: the first frame outside fastmetric and
    scikit-learn (whose ``fit`` wrapper sits between), however deep the
    warning is raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
            "fastmetric", "sklearn"):
        frame, level = frame.f_back, level + 1
    return level


def check_bool(value, name):
    """``value`` as a bool; a TypeError for anything else (a string such as
    ``'no'`` is truthy, and would silently mean True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_scalar_finite(x, name):
    real = (not isinstance(x, (bool, np.bool_))
            and isinstance(x, (numbers.Real, np.floating, np.integer)))
    # A 0-d array of numbers counts as a number too.
    if not real and not (hasattr(x, "shape") and np.shape(x) == ()
                         and np.asarray(x).dtype.kind in "iuf"):
        raise TypeError(f"{name} must be a real number; got {x!r}.")
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite; got {x}.")
    return x


def check_chunk_size(chunk_size, name="chunk_size"):
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise TypeError(f"{name} must be None or a positive integer; got {chunk_size!r}.")
    if chunk_size < 1:
        raise ValueError(f"{name} must be a positive integer; got {chunk_size}.")
    return int(chunk_size)


"""Input checks for pairs, tuples, pair targets and the preprocessor.

* :func:`check_tuples` (pairs, triplets, quadruplets) and :func:`check_pairs`
  (its case of pairs): a 3-D array of points, or a 2-D array of row indices
  into a preprocessor, becomes one point array and index tuples into it, so
  that kernels work on indices and never on rows gathered tuple by tuple;
* :func:`check_pair_targets`: pair labels (-1/+1, 0/1, soft) as targets in
  [0, 1];
* :func:`points_from_indices`: a 1-D array of row indices (or, for a
  callable preprocessor, any identifiers) as the rows it names;
  :func:`validate_points` adds scikit-learn's ``validate_data`` to it, for a
  learner's points and labels;
* :func:`encode_pair_labels`: class labels that must give both kinds of
  pairs.
"""
import numpy as np
from sklearn.utils.validation import validate_data

from fastmetric._core.validation import check_index_range, check_points

__all__ = [
    "check_pair_targets",
    "check_pairs",
    "check_tuples",
    "encode_classes",
    "encode_pair_labels",
    "one_per_row",
    "points_from_indices",
    "rows_in_use",
    "validate_points",
]


# --------------------------------------------------------------------------
# Class labels that must give both kinds of pairs
# --------------------------------------------------------------------------
def encode_classes(y, learner, why):
    """``(classes, codes, counts)`` of class labels ``y`` (codes in 0..C-1).

    At least 2 classes are needed: the ValueError names ``learner`` and
    says ``why`` it needs them.  A regression target (float labels that
    are not all integers) is refused with scikit-learn's message: each of
    its values would be a class of its own.  (scikit-learn's
    ``check_classification_targets`` says the same at about 200 us per call
    on 1,800 labels; this test costs a microsecond.)
    """
    values = np.asarray(y)
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise ValueError(
            f"Unknown label type: continuous. {learner} learns from class labels, and y "
            "holds non-integer values (a regression target?); pass integer class labels.")
    try:
        classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    except TypeError as exc:  # object labels numpy cannot order: 'a', 1, None
        kinds = sorted({type(label).__name__ for label in np.asarray(y, dtype=object).ravel()})
        raise TypeError(
            f"{learner}: the class labels in y mix types that cannot be ordered "
            f"({', '.join(kinds)}); use labels of one type."
        ) from exc
    if len(classes) < 2:
        raise ValueError(
            f"{learner} needs at least 2 classes in y {why}; y has 1 class ({classes[0]!r})."
        )
    return classes, codes.reshape(-1), counts


def encode_pair_labels(y, learner):
    """:func:`encode_classes` for the learners that draw pairs from labels.

    The _Supervised learners draw similar pairs inside classes and
    dissimilar pairs across them: a ValueError naming ``learner`` says so
    when ``y`` has a single class, or when no class has 2 samples.
    """
    classes, labels, counts = encode_classes(y, learner, "to form dissimilar pairs")
    if counts.max() < 2:
        raise ValueError(
            f"{learner} needs a class with at least 2 samples to form similar pairs; "
            "every class of y has a single sample."
        )
    return classes, labels, counts


# --------------------------------------------------------------------------
# Pair input
# --------------------------------------------------------------------------
def _rows_from_preprocessor(preprocessor, indices, n_features=None):
    """Rows for ``indices`` from a callable preprocessor, validated."""
    rows = preprocessor(indices)
    rows = check_points(rows, name="the rows returned by the preprocessor")
    if rows.shape[0] != indices.shape[0]:
        raise ValueError(
            f"the preprocessor returned {rows.shape[0]} row(s) for {indices.shape[0]} "
            "indices; it must return one row per index."
        )
    if n_features is not None and rows.shape[1] != n_features:
        raise ValueError(
            f"the preprocessor returned points with {rows.shape[1]} features; "
            f"{n_features} expected."
        )
    return rows


def _is_loader(preprocessor):
    """True for a callable preprocessor (a loader), False for an array of rows."""
    return callable(preprocessor) and not hasattr(preprocessor, "shape")


def points_from_indices(preprocessor, X, n_features=None):
    """With a preprocessor set, a 1-D ``X`` holds identifiers of its rows.

    With an array preprocessor the identifiers are integer row indices;
    with a callable one (a loader) they are anything it accepts (integer
    ids, file names, string keys: metric-learn's rule; not floats or
    booleans, which are a cast gone wrong), and the callable receives them
    as one 1-D array.

    Returns the rows (validated), or ``X`` itself, unchanged, when there
    is no preprocessor or ``X`` is not such a 1-D identifier array.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.inputs import points_from_indices
    >>> rows = {"a": [0.0, 1.0], "b": [2.0, 3.0]}
    >>> points_from_indices(lambda ids: np.array([rows[i] for i in ids]), ["b", "a"])
    array([[2., 3.],
           [0., 1.]])
    """
    if preprocessor is None or hasattr(X, "iloc") or hasattr(X, "toarray"):
        return X
    arr = np.asarray(X)
    if arr.ndim == 1 and arr.dtype.kind in "fcb":
        # not points (those are 2-D) and not identifiers: a cast gone wrong
        raise ValueError(
            f"with a preprocessor set, a 1-D X holds row identifiers (integer indices"
            f"{', or keys its loader accepts' if _is_loader(preprocessor) else ''}); got "
            f"{arr.shape[0]} values of dtype {arr.dtype}: cast row indices to int, or pass "
            "the points as a 2-D array.")
    if _is_loader(preprocessor):
        # Any identifiers but numbers that are not integers (see check_tuples).
        if arr.ndim != 1:
            return X
        return _rows_from_preprocessor(preprocessor, arr, n_features)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        return X
    P = check_points(preprocessor, name="preprocessor")
    check_index_range(arr, P.shape[0], "X", ("position",), "the preprocessor")
    return P[arr]


def validate_points(learner, X, y="no_validation", **check_params):
    """A learner's points (and labels) as scikit-learn validates them.

    ``X`` may be identifiers of rows of ``learner.preprocessor`` (see
    :func:`points_from_indices`); the rows then go through scikit-learn's
    ``validate_data`` as float64 or float32 in C order (other dtypes become
    float64), which records or checks ``n_features_in_``.
    ``check_params`` are passed on (``reset``, ``ensure_min_samples``,
    ``y_numeric``).  Returns ``X``, or ``(X, y)`` when ``y`` is given
    (scikit-learn's convention: without ``y`` the labels are not looked at).

    Examples
    --------
    >>> from sklearn.base import BaseEstimator
    >>> from fastmetric._core.inputs import validate_points
    >>> learner = BaseEstimator()
    >>> learner.preprocessor = [[0, 1], [2, 3], [4, 5]]
    >>> validate_points(learner, [2, 0], [1, 0])
    (array([[4., 5.],
           [0., 1.]]), array([1, 0]))
    >>> learner.n_features_in_
    2
    """
    X = points_from_indices(learner.preprocessor, X)
    return validate_data(learner, X, y, dtype=[np.float64, np.float32], order="C",
                         **check_params)


_KIND = {2: "pairs", 3: "triplets", 4: "quadruplets"}


def _tuple_shape_text(tuple_size, what="n_features"):
    kind = _KIND.get(tuple_size, "tuples")
    return f"(n_{kind}, {tuple_size}, {what})"


def _check_index_tuples(arr, n_samples, tuple_size, name):
    """Validate an integer array (n_tuples, tuple_size) of row indices < n_samples."""
    kind = _KIND.get(tuple_size, "tuples")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold integer row indices; got booleans.")
        if arr.dtype.kind == "f" and arr.size and np.isfinite(arr).all() and np.all(
            arr == np.round(arr)
        ):
            raise TypeError(
                f"{name} must hold integer row indices; got dtype {arr.dtype} (cast "
                "it with .astype(int) if these are indices)."
            )
        raise TypeError(f"{name} must hold integer row indices; got dtype {arr.dtype}.")
    if arr.shape[1] != tuple_size:
        raise ValueError(
            f"{name} given as indices must have shape (n_{kind}, {tuple_size}); got shape "
            f"{arr.shape} ({arr.shape[1]} indices per tuple, not {tuple_size})."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one {kind[:-1]} is required.")
    check_index_range(arr, n_samples, name, (kind[:-1], "position"), "the preprocessor")
    return np.ascontiguousarray(arr, dtype=np.intp)


def check_tuples(tuples, tuple_size, preprocessor=None, *, n_features=None, dedupe=False,
                 name=None):
    """Validate tuples of points; return a point array and index tuples into it.

    Two forms are accepted, as in metric-learn:

    * a 3-D array of shape ``(n_tuples, tuple_size, n_features)``: the
      points themselves;
    * a 2-D array of shape ``(n_tuples, tuple_size)``: integer row indices
      into ``preprocessor`` (an array ``(n_samples, n_features)``), or
      identifiers of any kind (integers, file names, keys) for a callable
      ``preprocessor`` mapping a 1-D array of identifiers to the 2-D array
      of the corresponding points.

    With an array preprocessor the returned point array *is* that array
    (validated; not copied when it is already C-contiguous float32/float64);
    a callable preprocessor is called once, on the distinct indices.

    Parameters
    ----------
    tuples : array-like
        The tuples, in one of the two forms above.
    tuple_size : int
        Points per tuple: 3 for triplets, 4 for quadruplets (2 also works).
    preprocessor : array-like, callable or None
        Needed for the index form.
    n_features : int, optional
        When given, the points must have this many features (the number
        seen in ``fit``).
    dedupe : bool, default=False
        For the 3-D form: keep one copy of each distinct point, so that a
        point shared by many tuples is projected once by the kernels.
        Without it the point array is ``tuples`` reshaped to
        ``(n_tuples * tuple_size, n_features)`` (a view when possible).
    name : str, optional
        Name used in error messages (default ``'triplets'`` /
        ``'quadruplets'``).

    Returns
    -------
    X : ndarray of shape (n_points, n_features), float32 or float64
        C-contiguous points; integer input becomes float64.
    index_tuples : ndarray of shape (n_tuples, tuple_size), intp
        Row indices into ``X``.

    Raises
    ------
    TypeError
        Sparse input, non-numeric points, non-integer indices.
    ValueError
        Wrong number of dimensions or points per tuple, empty input, NaN or
        infinity, indices out of range, a feature count different from
        ``n_features``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.inputs import check_tuples
    >>> X = np.arange(8.0).reshape(4, 2)
    >>> P, idx = check_tuples([[0, 1, 3]], 3, preprocessor=X)
    >>> P is X, idx.tolist()
    (True, [[0, 1, 3]])
    >>> P, idx = check_tuples(X[[[0, 1, 3], [1, 0, 0]]], 3, dedupe=True)
    >>> P.shape, idx.tolist()
    ((3, 2), [[0, 1, 2], [1, 0, 0]])
    """
    t = int(tuple_size)
    if t < 2:
        raise ValueError(f"tuple_size must be at least 2; got {tuple_size!r}.")
    kind = _KIND.get(t, "tuples")
    if name is None:
        name = kind
    if hasattr(tuples, "toarray") or hasattr(tuples, "dask"):
        what = "a sparse " if hasattr(tuples, "toarray") else ""
        raise TypeError(
            f"{name} must be a dense in-memory array; got {what}{type(tuples).__name__}."
        )
    if tuples is None:
        raise ValueError(
            f"{name} is None: a 3-D array {_tuple_shape_text(t)} or a 2-D array of "
            f"indices (n_{kind}, {t}) with a preprocessor is required."
        )
    arr = np.asarray(tuples)
    if arr.dtype == object:
        raise TypeError(
            f"{name} must be a numeric array; got an object array of shape {arr.shape} "
            "(ragged nested lists?)."
        )

    if arr.ndim == 3:
        n, size, d = arr.shape
        if size != t:
            raise ValueError(
                f"{name} given as a 3-D array must have shape {_tuple_shape_text(t)}; "
                f"got shape {arr.shape} (axis 1 has {size} points, not {t})."
            )
        if n == 0:
            raise ValueError(f"{name} is empty: at least one {kind[:-1]} is required.")
        if d == 0:
            raise ValueError(f"{name} has 0 features (shape {arr.shape}).")
        if n_features is not None and d != n_features:
            raise ValueError(
                f"{name} has {d} features per point, but the estimator was fitted with "
                f"{n_features} features."
            )
        flat = check_points(arr.reshape(n * t, d), name=name)
        if dedupe:
            # Distinct rows through a byte view (one sort of n t keys); -0.0
            # and 0.0 stay distinct, which only costs a duplicate row.
            keys = flat.view(np.dtype((np.void, flat.dtype.itemsize * d))).ravel()
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            X = np.ascontiguousarray(flat[first])
            idx = np.ascontiguousarray(inverse.reshape(n, t), dtype=np.intp)
        else:
            X = flat
            idx = np.arange(n * t, dtype=np.intp).reshape(n, t)
        return X, idx

    if arr.ndim == 2 and preprocessor is not None:
        if _is_loader(preprocessor):
            # A loader takes identifiers of any kind (integer ids, file
            # names, keys), as in metric-learn; only the shape is ours to
            # check.  Integers are checked as indices, and floats and
            # booleans refused there: they are a cast gone wrong, not ids.
            if arr.dtype.kind in "iufcb":
                arr = _check_index_tuples(arr, np.iinfo(np.intp).max, t, name)
            elif arr.shape[1] != t or arr.shape[0] == 0:
                raise ValueError(
                    f"{name} given as identifiers must have shape (n_{kind}, {t}) with at "
                    f"least one row; got shape {arr.shape}."
                )
            uniq, inverse = np.unique(arr, return_inverse=True)
            X = _rows_from_preprocessor(preprocessor, uniq, n_features)
            return X, np.ascontiguousarray(inverse.reshape(arr.shape), dtype=np.intp)
        X = check_points(preprocessor, name="preprocessor")
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(
                f"preprocessor has {X.shape[1]} features, but the estimator was fitted "
                f"with {n_features} features."
            )
        return X, _check_index_tuples(arr, X.shape[0], t, name)

    if arr.ndim == 2:
        raise ValueError(
            f"{name} of shape {arr.shape} is 2-D: {kind} must be a 3-D array of shape "
            f"{_tuple_shape_text(t)}, or a 2-D array of indices (n_{kind}, {t}) together "
            "with a preprocessor (set preprocessor=X on the estimator)."
        )
    raise ValueError(
        f"{name} must be a 3-D array of shape {_tuple_shape_text(t)}, or a 2-D array of "
        f"indices (n_{kind}, {t}) with a preprocessor; got {arr.ndim} dimension(s) with "
        f"shape {arr.shape}."
    )


def check_pairs(pairs, preprocessor=None, *, n_features=None, dedupe=False, name="pairs"):
    """Validate pairs of points; return a point array and index pairs into it.

    Two forms are accepted, as in metric-learn:

    * a 3-D array of shape ``(n_pairs, 2, n_features)``: the points
      themselves;
    * a 2-D integer array of shape ``(n_pairs, 2)``: row indices into
      ``preprocessor`` (an array ``(n_samples, n_features)``, or a callable
      mapping a 1-D array of indices to the corresponding 2-D array of
      points).

    Rows are never gathered pair by pair: with an array preprocessor the
    result *is* that array (validated, not copied when already C-contiguous
    float), so kernels index into it.

    Parameters
    ----------
    pairs : array-like
        The pairs, in one of the two forms above.
    preprocessor : array-like, callable or None
        Needed for the index form.
    n_features : int, optional
        When given, the points must have this many features.
    dedupe : bool, default=False
        For the 3-D form: stack only the distinct rows (one copy per
        distinct point), so that a kernel projecting the points first does
        no repeated work.  Without it the point array is a view of
        ``pairs`` reshaped to ``(2 n_pairs, n_features)``.
    name : str
        Name used in error messages.

    Returns
    -------
    X : ndarray of shape (n_points, n_features), float32 or float64
        C-contiguous points.
    index_pairs : ndarray of shape (n_pairs, 2), intp
        Row indices into ``X``.
    """
    return check_tuples(pairs, 2, preprocessor, n_features=n_features, dedupe=dedupe,
                        name=name)


def rows_in_use(X, idx):
    """``X`` cut to the rows the index tuples ``idx`` use, and ``idx`` renumbered.

    With an array preprocessor X may hold rows no tuple uses; the learners
    whose prior or start is computed from the points (a covariance, a PCA)
    take the tuples' points only, as when the tuples come as points.  ``X``
    and ``idx`` are returned as they are when every row is used.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> Xu, idx = rows_in_use(X, np.array([[3, 1]]))
    >>> Xu.ravel().tolist(), idx.tolist()
    ([1.0, 3.0], [[1, 0]])
    """
    used, inverse = np.unique(idx, return_inverse=True)
    if used.shape[0] == X.shape[0]:
        return X, idx
    return np.asarray(X[used]), inverse.reshape(idx.shape)


def one_per_row(arr, n, name, rows="n_samples", each="value per sample"):
    """``arr`` as a 1-D array of ``n`` entries (an ``(n, 1)`` column is read as
    one); a ValueError naming ``name`` and the shape otherwise."""
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({rows},) = ({n},), one {each}; got shape {arr.shape}."
        )
    return arr


def check_pair_targets(y, n_pairs, name="y"):
    """Map pair labels to targets in [0, 1] (1 = similar, 0 = dissimilar).

    Accepted conventions: ``{-1, +1}`` (metric-learn's), ``{0, 1}``, booleans,
    or soft targets in ``[0, 1]``.  The rule: when a value is negative, every
    value must be -1 or +1 and they map to 0 and 1; otherwise all values
    must lie in [0, 1] and are kept.  (A vector of only +1 is the same in
    both conventions.)

    Returns
    -------
    targets : ndarray of shape (n_pairs,), float64
    """
    if y is None:
        raise ValueError(f"{name} is None: pair labels (one per pair) are required.")
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold numbers (-1/+1, 0/1 or soft targets in [0, 1]); "
            f"got dtype {arr.dtype}."
        )
    arr = one_per_row(arr.astype(np.float64), n_pairs, name, "n_pairs", "label per pair")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    if arr.size and arr.min() < 0:
        bad = arr[(arr != -1) & (arr != 1)]
        if bad.size:
            raise ValueError(
                f"{name} has negative values, so it is read as -1/+1 labels, but it also "
                f"holds {bad[0]!r}; use -1/+1, 0/1 or soft targets in [0, 1]."
            )
        return np.ascontiguousarray((arr + 1.0) * 0.5)
    if arr.size and arr.max() > 1:
        raise ValueError(
            f"{name} must hold -1/+1, 0/1 or soft targets in [0, 1]; got a value "
            f"{arr.max()!r}."
        )
    return np.ascontiguousarray(arr)

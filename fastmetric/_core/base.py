"""The base shared by every Mahalanobis metric learner of fastmetric.

A Mahalanobis learner holds a linear map ``L`` (``components_``, of shape
``(n_components, n_features)``) and measures

    d_M(x, x')^2 = (x - x')^T M (x - x') = ||L x - L x'||^2,   M = L^T L.

This module gives, in one place:

* :class:`MahalanobisMixin`: ``transform``, ``pair_distance``/``pair_score``,
  ``get_metric``, ``get_mahalanobis_matrix``, feature names, the optional
  L2 normalisation of the points (cosine geometry);
* :class:`PairsClassifierMixin`: ``decision_function``/``predict``/
  ``predict_proba``/``score`` on pairs and the threshold calibration;
* :func:`initialize_components`: the initial ``L`` from a named strategy,
  an array, or a fitted learner;
* :func:`check_tuples` (pairs, triplets, quadruplets), :func:`check_pairs`
  (its case of pairs) and :func:`check_pair_targets`: validation of pair
  input (3-D arrays of points or index pairs into a preprocessor) and of pair
  labels.

The public names follow metric-learn's API (``components_``,
``get_mahalanobis_matrix``, ``pair_distance``, ``pair_score``, ``get_metric``,
``preprocessor``, ``threshold_``, ``calibrate_threshold``) so that code
written against metric-learn runs unchanged.
"""
import functools
import numbers
import warnings

import numpy as np
import scipy.linalg
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.metrics import roc_auc_score
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.threads import single_threaded_blas
from fastmetric._core.validation import check_components, check_index_pairs, check_index_range, check_points

__all__ = [
    "MahalanobisMixin",
    "PairsClassifierMixin",
    "initialize_components",
    "check_pairs",
    "check_pair_targets",
    "encode_pair_labels",
    "evenly_spaced",
    "l2_normalize_rows",
    "points_from_indices",
]

_INIT_NAMES = ("auto", "identity", "pca", "lda", "covariance", "random")


# --------------------------------------------------------------------------
# Points: normalisation
# --------------------------------------------------------------------------
def l2_normalize_rows(X):
    """Return a copy of ``X`` whose rows have unit Euclidean norm.

    Rows of norm zero stay zero (there is no direction to keep).  The dtype
    of ``X`` is kept.  With normalised rows, ``||x/|x| - y/|y|||^2 =
    2 - 2 cos(x, y)``: the learned metric then works on directions only.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms == 0] = 1
    return np.ascontiguousarray(X / norms[:, None], dtype=X.dtype)


def evenly_spaced(n, max_count):
    """At most ``max_count`` evenly spaced indices of ``range(n)`` (all of them
    when ``n <= max_count``): a deterministic subset, so that a start-up
    computation on a sample does not depend on a seed."""
    if n <= max_count:
        return np.arange(n)
    return np.linspace(0, n - 1, max_count).astype(np.intp)


# --------------------------------------------------------------------------
# Class labels that must give both kinds of pairs
# --------------------------------------------------------------------------
def encode_pair_labels(y, learner):
    """``(classes, labels, counts)`` of class labels ``y`` (labels in 0..C-1).

    The _Supervised learners draw similar pairs inside classes and
    dissimilar pairs across them: a ValueError naming ``learner`` says so
    when ``y`` has a single class, or when no class has 2 samples.
    """
    classes, labels, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"{learner} needs at least 2 classes in y to form dissimilar pairs; y has 1 "
            f"class ({classes[0]!r})."
        )
    if counts.max() < 2:
        raise ValueError(
            f"{learner} needs a class with at least 2 samples to form similar pairs; "
            "every class of y has a single sample."
        )
    return classes, labels.reshape(-1), counts


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


def points_from_indices(preprocessor, X, n_features=None):
    """With a preprocessor set, a 1-D integer ``X`` holds row indices into it.

    Returns those rows (validated), or ``X`` itself, unchanged, when there
    is no preprocessor or ``X`` is not such an index array.
    """
    if preprocessor is None or hasattr(X, "iloc") or hasattr(X, "toarray"):
        return X
    arr = np.asarray(X)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        return X
    if callable(preprocessor) and not hasattr(preprocessor, "shape"):
        return _rows_from_preprocessor(preprocessor, arr, n_features)
    P = check_points(preprocessor, name="preprocessor")
    check_index_range(arr, P.shape[0], "X", ("position",), "the preprocessor")
    return P[arr]


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
    * a 2-D integer array of shape ``(n_tuples, tuple_size)``: row indices
      into ``preprocessor`` (an array ``(n_samples, n_features)``, or a
      callable mapping a 1-D array of indices to the 2-D array of the
      corresponding points).

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
    >>> from fastmetric._core.tuples import check_tuples
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
        if callable(preprocessor) and not hasattr(preprocessor, "shape"):
            idx = _check_index_tuples(arr, np.iinfo(np.intp).max, t, name)
            uniq, inverse = np.unique(idx, return_inverse=True)
            X = _rows_from_preprocessor(preprocessor, uniq, n_features)
            return X, np.ascontiguousarray(inverse.reshape(idx.shape), dtype=np.intp)
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
    arr = arr.astype(np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n_pairs:
        raise ValueError(
            f"{name} must have shape (n_pairs,) = ({n_pairs},), one label per pair; "
            f"got shape {arr.shape}."
        )
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


# --------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------
def _complete_rows(L, n_rows, scale=1.0):
    """Add orthonormal rows (times ``scale``) spanning the complement of L's rows.

    Used when a strategy yields fewer directions than asked (PCA with fewer
    samples than components, a rank-deficient LDA): the missing rows are
    directions the strategy had no information about, so we keep them
    orthogonal to the found ones rather than dropping dimensions.
    """
    d = L.shape[1]
    missing = n_rows - L.shape[0]
    if missing <= 0:
        return L[:n_rows]
    if L.shape[0] == 0:
        extra = np.eye(d)[:missing]
    else:
        extra = scipy.linalg.null_space(L).T[:missing]
        if extra.shape[0] < missing:  # L's rows are dependent: fill with identity rows
            extra = np.vstack([extra, np.eye(d)[: missing - extra.shape[0]]])
    return np.vstack([L, scale * extra])


def _resolve_n_components(n_components, n_features, what="n_components"):
    if n_components is None:
        return n_features
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
        raise TypeError(f"{what} must be None or a positive integer; got {n_components!r}.")
    if not 1 <= n_components <= n_features:
        raise ValueError(
            f"{what}={n_components} is invalid: it must lie in [1, n_features] = "
            f"[1, {n_features}]."
        )
    return int(n_components)


def initialize_components(init, X, y=None, n_components=None, random_state=None):
    """Initial linear map ``L`` of shape ``(n_components, n_features)``.

    Parameters
    ----------
    init : str, array-like or fitted learner
        * ``'auto'``: ``'lda'`` when ``y`` has at least 2 classes and
          ``n_components <= min(n_classes - 1, n_features)``; else ``'pca'``
          when ``n_components < n_features``; else ``'identity'``.
        * ``'identity'``: the first ``n_components`` rows of the identity.
        * ``'pca'``: the leading principal axes of ``X`` (orthonormal rows,
          no whitening: distances within the kept subspace are unchanged).
          When ``X`` has fewer samples than ``n_components`` the remaining
          rows complete an orthonormal basis.
        * ``'lda'``: the scalings of scikit-learn's
          ``LinearDiscriminantAnalysis`` (needs class labels ``y``).
        * ``'covariance'``: whitening, ``L = C^{-1/2}`` for the regularised
          covariance ``C = cov(X) + r I`` with ``r = 1e-3 trace(cov(X)) /
          n_features``; the ridge keeps singular covariances (constant
          features, ``n_features > n_samples``) invertible.  For
          ``n_components < n_features`` the whitened top principal axes
          ``diag(w)^{-1/2} V^T``.
        * ``'random'``: entries drawn from the standard normal distribution.
        * an array ``(n_components, n_features)``: used as is.
        * a fitted fastmetric (or metric-learn) learner: its ``components_``.
    X : array-like of shape (n_samples, n_features)
        The points (after any normalisation the learner applies).
    y : array-like of shape (n_samples,), optional
        Class labels, for ``'lda'`` and ``'auto'``.
    n_components : int, optional
        Number of rows of ``L``; default ``n_features`` (or the rows of an
        array / learner ``init``).
    random_state : int, RandomState instance or None
        For ``'random'`` and randomised PCA solvers.

    Returns
    -------
    L : ndarray of shape (n_components, n_features), float64

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.base import initialize_components
    >>> X = np.random.RandomState(0).randn(20, 3)
    >>> initialize_components("identity", X, n_components=2)
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    # Arrays and fitted learners first: they fix n_components, and need
    # only the number of features of X (no O(n d) scan of the data, which
    # matters when a learner refines a metric many times on a large X).
    if hasattr(init, "components_") or (not isinstance(init, str) and hasattr(init, "fit")):
        if not hasattr(init, "components_"):
            raise ValueError(
                f"init is an estimator ({type(init).__name__}) that is not fitted: it has "
                "no components_. Fit it first, or pass an array."
            )
        init = init.components_
    if not isinstance(init, str):
        shape = np.shape(X)
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(
                f"X must be a 2-D array (n_samples, n_features); got shape {shape}."
            )
        d = shape[1]
        L = check_components(init, d, np.float64, name="init")
        if n_components is not None:
            k = _resolve_n_components(n_components, d)
            if k != L.shape[0]:
                raise ValueError(
                    f"init has {L.shape[0]} rows but n_components={n_components}; "
                    "they must agree (or leave n_components=None)."
                )
        elif L.shape[0] > d:
            raise ValueError(
                f"init has {L.shape[0]} rows, more than n_features={d}."
            )
        return L.copy()

    X = check_points(X, name="X")
    n_samples, d = X.shape
    if init not in _INIT_NAMES:
        raise ValueError(
            f"init={init!r} is not a known strategy; use one of {_INIT_NAMES}, an array of "
            "shape (n_components, n_features) or a fitted learner."
        )
    k = _resolve_n_components(n_components, d)

    classes = None
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != n_samples:
            raise ValueError(
                f"y has {y.shape[0]} labels but X has {n_samples} rows."
            )
        classes, y_enc = np.unique(y, return_inverse=True)

    if init == "auto":
        if classes is not None and len(classes) >= 2 and k <= min(len(classes) - 1, d):
            init = "lda"
        elif k < d:
            init = "pca"
        else:
            init = "identity"

    with single_threaded_blas():  # identical results for any BLAS thread count
        if init == "identity":
            return np.eye(k, d)
        if init == "random":
            rng = check_random_state(random_state)
            return rng.standard_normal((k, d))
        if init == "pca":
            return _init_pca(X, k, random_state)
        if init == "lda":
            if classes is None:
                raise ValueError(
                    "init='lda' needs class labels y; none are available (for pair "
                    "constraints use 'pca', 'identity', 'covariance' or an array)."
                )
            if len(classes) < 2:
                raise ValueError(
                    f"init='lda' needs at least 2 classes in y; got 1 class ({classes[0]!r})."
                )
            if k > min(len(classes) - 1, d):
                raise ValueError(
                    f"init='lda' gives at most min(n_classes - 1, n_features) = "
                    f"{min(len(classes) - 1, d)} components; n_components={k} asked. "
                    "Use init='pca' or a smaller n_components."
                )
            return _init_lda(X, y_enc, k)
        return _init_covariance(X, k)


def _init_pca(X, k, random_state):
    from sklearn.decomposition import PCA

    n_samples, d = X.shape
    m = min(k, n_samples, d)
    if n_samples < 2 or m < 1:
        return np.eye(k, d)
    pca = PCA(n_components=m, random_state=random_state)
    with warnings.catch_warnings():
        # Constant data: PCA divides zero variance by zero for the ratios we
        # do not use.
        warnings.simplefilter("ignore", RuntimeWarning)
        pca.fit(X)
    L = np.asarray(pca.components_, dtype=np.float64)
    return np.ascontiguousarray(_complete_rows(L, k))


def _init_lda(X, y_enc, k):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n_samples, d = X.shape
    if not np.ptp(X, axis=0).max() > 0:
        # Every point is the same: no direction discriminates (and sklearn's
        # svd solver fails on the empty spectrum).
        return np.eye(k, d)
    lda = LinearDiscriminantAnalysis(n_components=k, solver="svd")
    with warnings.catch_warnings():
        # "Variables are collinear" for constant or duplicated features:
        # expected on degenerate data, the svd solver handles it.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            lda.fit(X.astype(np.float64, copy=False), y_enc)
        except IndexError:
            # sklearn's svd solver finds no within-class direction above its
            # tolerance (data of tiny magnitude, e.g. 1e-300, whose variances
            # underflow): as for identical points, no direction discriminates.
            return np.eye(k, d)
    L = np.asarray(lda.scalings_, dtype=np.float64).T[:k]
    if not np.isfinite(L).all():
        raise ValueError("init='lda' failed: the discriminant scalings are not finite.")
    if L.shape[0] < k:  # rank-deficient within/between-class scatter
        scale = np.sqrt(np.mean(np.sum(L**2, axis=1))) if L.shape[0] else 1.0
        L = _complete_rows(L, k, scale=scale if scale > 0 else 1.0)
    return np.ascontiguousarray(L)


def _init_covariance(X, k):
    n_samples, d = X.shape
    if n_samples < 2:
        return np.eye(k, d)
    C = np.cov(X.astype(np.float64, copy=False), rowvar=False).reshape(d, d)
    trace = np.trace(C)
    if not trace > 0:  # every feature is constant: nothing to whiten
        return np.eye(k, d)
    w, V = scipy.linalg.eigh(C)
    # C is PSD; clip round-off negatives, then add the ridge r I.
    w = np.maximum(w, 0.0) + 1e-3 * trace / d
    inv_sqrt = 1.0 / np.sqrt(w)
    if k == d:
        # Symmetric inverse square root V diag(w^-1/2) V^T (ZCA whitening).
        L = (V * inv_sqrt) @ V.T
    else:
        top = np.argsort(w)[::-1][:k]  # eigh gives ascending eigenvalues
        L = inv_sqrt[top, None] * V[:, top].T
    return np.ascontiguousarray(L)


# --------------------------------------------------------------------------
# The metric as a picklable callable
# --------------------------------------------------------------------------
def _embed_rows(X, L, n_jobs=None):
    """``X L^T`` for validated float32/float64 rows, in their dtype, by the
    kernels' row mapping: the AVX-512 small-product kernel where the CPU has
    it (about 1.7x faster than BLAS for a few dozen components), BLAS chunk
    by chunk elsewhere; ``n_jobs`` threads, the same result for any number."""
    from fastmetric.kernels.distances import DEF_ROW_CHUNK, _transform
    from fastmetric._core.threads import effective_n_threads, threads_for_work

    X = np.ascontiguousarray(X)  # rows are validated float32/float64 already
    L = np.ascontiguousarray(L, dtype=X.dtype)
    n_threads = threads_for_work(effective_n_threads(n_jobs), X.shape[0], DEF_ROW_CHUNK)
    with single_threaded_blas():
        return _transform(X, L, DEF_ROW_CHUNK, n_threads)


def _embed_block(L, normalize, block):
    """One row block of a dask transform: ``block L^T`` (after normalising)."""
    block = l2_normalize_rows(block) if normalize else block
    # One thread per block: dask runs blocks side by side on the cores.
    return _embed_rows(block, L, n_jobs=1)


def _pair_sq_block(L, normalize, first, second):
    """Squared learned distances between matching rows of two blocks."""
    if normalize:
        first, second = l2_normalize_rows(first), l2_normalize_rows(second)
    diff = (first - second) @ L.T
    return np.einsum("ij,ij->i", diff, diff).astype(np.float64)


class _MahalanobisMetric:
    """``f(u, v, squared=False)``: the learned distance between two points.

    A module-level class (not a closure) so that it pickles, which joblib
    needs when a KNeighborsClassifier or DBSCAN using it runs in parallel.
    """

    def __init__(self, components, normalize=False):
        self.components = np.asarray(components, dtype=np.float64)
        self.normalize = bool(normalize)

    def __call__(self, u, v, squared=False):
        u = np.asarray(u, dtype=np.float64).ravel()
        v = np.asarray(v, dtype=np.float64).ravel()
        d = self.components.shape[1]
        if u.shape[0] != d or v.shape[0] != d:
            raise ValueError(
                f"the metric takes two points of {d} features; got {u.shape[0]} and "
                f"{v.shape[0]}."
            )
        if self.normalize:
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            u = u / nu if nu > 0 else u
            v = v / nv if nv > 0 else v
        z = self.components @ (u - v)
        sq = float(z @ z)
        return sq if squared else float(np.sqrt(sq))

    def __repr__(self):
        k, d = self.components.shape
        return f"<Mahalanobis metric, components {k}x{d}, normalize={self.normalize}>"


# --------------------------------------------------------------------------
# The base of every Mahalanobis learner
# --------------------------------------------------------------------------
class MahalanobisMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base of the Mahalanobis learners: the map ``L`` and what follows from it.

    Subclasses set, in ``fit``, ``components_`` (``L``, shape
    ``(n_components, n_features)``, float64) and ``n_features_in_``.  They
    may have parameters ``normalize`` (L2-normalise points first),
    ``preprocessor`` (array or callable, for index input) and ``n_jobs``.

    The learned (pseudo-)distance is ``d(x, x') = ||L x - L x'||``; with
    ``normalize=True`` it applies to ``x/||x||`` and ``x'/||x'||``.
    """

    # -- helpers -----------------------------------------------------------
    def _check_fitted(self):
        check_is_fitted(self, "components_")

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def _normalize_points(self, X):
        return l2_normalize_rows(X) if getattr(self, "normalize", False) else X

    def _pairs_points(self, pairs):
        """Validated (normalised) points and index pairs for prediction."""
        self._check_fitted()
        X, idx = check_pairs(
            pairs, getattr(self, "preprocessor", None), n_features=self.n_features_in_
        )
        return self._normalize_points(X), idx

    def _pair_sq_distances(self, pairs):
        from fastmetric.kernels.distances import paired_mahalanobis_distances

        if is_dask_array(pairs) or is_dask_array(getattr(self, "preprocessor", None)):
            self._check_fitted()
            return self._pair_sq_distances_dask(pairs)

        X, idx = self._pairs_points(pairs)
        return paired_mahalanobis_distances(
            X,
            idx,
            components=self.components_.astype(X.dtype),
            squared=True,
            n_jobs=getattr(self, "n_jobs", None),
        ).astype(np.float64, copy=False)

    # -- public API --------------------------------------------------------
    def get_mahalanobis_matrix(self):
        """The learned Mahalanobis matrix ``M = L^T L``.

        Returns
        -------
        M : ndarray of shape (n_features, n_features)
            Symmetric positive semi-definite.
        """
        self._check_fitted()
        L = self.components_
        return L.T @ L

    def transform(self, X):
        """Embed points: ``X_embedded = X L^T`` (after normalisation if set).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points; with a preprocessor set, a 1-D integer array of row
            indices into it is also accepted.

        Returns
        -------
        X_embedded : ndarray of shape (n_samples, n_components)
            Of X's dtype when it is float32 or float64.
        """
        self._check_fitted()
        if is_dask_array(X):
            return self._transform_dask(X)
        rows = points_from_indices(getattr(self, "preprocessor", None), X,
                                   self.n_features_in_)
        if rows is X:
            X = validate_data(
                self, X, reset=False, dtype=[np.float64, np.float32], order="C"
            )
        else:
            X = rows
        return _embed_rows(self._normalize_points(X), self.components_,
                           getattr(self, "n_jobs", None))

    # -- dask arrays: lazy, block by block -----------------------------------
    def _transform_dask(self, X):
        from fastmetric._core.dask_support import check_dask_points, map_rows

        X = check_dask_points(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        L = self.components_.astype(X.dtype)
        normalize = getattr(self, "normalize", False)
        return map_rows(X, functools.partial(_embed_block, L, normalize), L.shape[0], X.dtype)

    def _pair_sq_distances_dask(self, pairs):
        """Lazy squared distances of dask pairs, or of index pairs into a dask
        preprocessor."""
        from fastmetric._core.dask_support import check_dask_points

        preprocessor = getattr(self, "preprocessor", None)
        if is_dask_array(pairs):
            if pairs.ndim != 3 or pairs.shape[1] != 2 or pairs.shape[2] != self.n_features_in_:
                raise ValueError(
                    f"pairs must be a dask array of shape (n_pairs, 2, "
                    f"{self.n_features_in_}); got shape {pairs.shape}.")
            first, second = pairs[:, 0, :], pairs[:, 1, :]
        else:
            P = check_dask_points(preprocessor, name="preprocessor")
            a, b = check_index_pairs(np.asarray(pairs), P.shape[0], name="pairs")
            first, second = P[a], P[b]
        first = check_dask_points(first, "pairs")
        second = check_dask_points(second, "pairs").rechunk({0: first.chunks[0]})
        L = self.components_.astype(first.dtype)
        normalize = getattr(self, "normalize", False)
        return first.map_blocks(functools.partial(_pair_sq_block, L, normalize), second,
                                dtype=np.float64, drop_axis=1)

    def pair_distance(self, pairs):
        """Learned distance ``||L x - L x'||`` of each pair.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or index pairs into ``preprocessor``.

        Returns
        -------
        distances : ndarray of shape (n_pairs,), float64
        """
        return np.sqrt(self._pair_sq_distances(pairs))

    def pair_score(self, pairs):
        """Similarity of each pair: the opposite of :meth:`pair_distance`.

        Higher means more similar, as scikit-learn scorers expect.

        Returns
        -------
        scores : ndarray of shape (n_pairs,), float64
        """
        return -self.pair_distance(pairs)

    def score_pairs(self, pairs):
        """Deprecated alias of :meth:`pair_distance` (metric-learn < 0.7 name)."""
        warnings.warn(
            "score_pairs is deprecated (as in metric-learn 0.7): use pair_distance for "
            "distances or pair_score for similarities.",
            FutureWarning,
            stacklevel=2,
        )
        return self.pair_distance(pairs)

    def get_metric(self):
        """A picklable function ``f(u, v, squared=False)`` of two 1-D points.

        Usable as ``metric=`` of scikit-learn's neighbours estimators or
        DBSCAN.  It holds a copy of ``components_``, so later refits do not
        change it.

        Returns
        -------
        metric : callable
        """
        self._check_fitted()
        return _MahalanobisMetric(self.components_.copy(), getattr(self, "normalize", False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# --------------------------------------------------------------------------
# Pairs classifier
# --------------------------------------------------------------------------
_STRATEGIES = ("accuracy", "f_beta", "max_tpr", "max_tnr")


def _has_pair_probability(estimator):
    return hasattr(estimator, "_pair_probability")


class PairsClassifierMixin(ClassifierMixin):
    """Classify pairs as similar (+1) or dissimilar (-1) with the learned metric.

    The decision function is :meth:`pair_score` (minus the distance); a
    pair is predicted similar when its score is above ``threshold_``.
    ``classes_`` is ``[-1, 1]``.  Learners with a probabilistic pair model
    (LDML) define ``_pair_probability(squared_distances)`` and get
    :meth:`predict_proba`.
    """

    def decision_function(self, pairs):
        """Score of each pair, higher for more similar pairs (``-distance``).

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
        """
        return self.pair_score(pairs)

    def predict(self, pairs):
        """+1 (similar) when ``decision_function > threshold_``, else -1.

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,), int
        """
        self._check_fitted()
        if not hasattr(self, "threshold_"):
            raise AttributeError(
                "no threshold is set: call set_threshold or calibrate_threshold first."
            )
        return np.where(self.decision_function(pairs) > self.threshold_, 1, -1)

    @available_if(_has_pair_probability)
    def predict_proba(self, pairs):
        """Probability of each class, columns ``[P(dissimilar), P(similar)]``.

        Returns
        -------
        proba : ndarray of shape (n_pairs, 2), float64
        """
        sq = self._pair_sq_distances(pairs)
        p_similar = self._pair_probability(sq)
        if is_dask_array(p_similar):
            import dask.array as da

            return da.stack([1.0 - p_similar, p_similar], axis=1)
        return np.column_stack((1.0 - p_similar, p_similar))

    def score(self, pairs, y):
        """ROC AUC of :meth:`decision_function` against the pair labels ``y``.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
        y : array-like of shape (n_pairs,)
            Labels in {-1, +1} or {0, 1} (both classes present).

        Returns
        -------
        auc : float
        """
        scores = self.decision_function(pairs)
        t = check_pair_targets(y, scores.shape[0])
        return float(roc_auc_score(self._binary_targets(t, "score"), scores))

    def set_threshold(self, threshold):
        """Set ``threshold_`` (in the units of :meth:`decision_function`).

        Returns
        -------
        self
        """
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"threshold must be a real number; got {threshold!r}.")
        if np.isnan(threshold):
            raise ValueError("threshold must not be NaN.")
        self.threshold_ = float(threshold)
        return self

    @staticmethod
    def _binary_targets(t, what):
        if not np.all((t == 0) | (t == 1)):
            raise ValueError(f"{what} needs hard labels (-1/+1 or 0/1), not soft targets.")
        if t.min() == t.max():
            raise ValueError(
                f"{what} needs both similar and dissimilar pairs; y has only one class."
            )
        return t.astype(np.int8)

    def calibrate_threshold(self, pairs, y, strategy="accuracy", min_rate=None, beta=1.0):
        """Choose ``threshold_`` on labelled pairs.

        Candidate thresholds lie half-way between consecutive distinct
        scores (and just outside their range), so each candidate realises
        one distinct split of the pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
        y : array-like of shape (n_pairs,)
            -1/+1 or 0/1 labels, both classes present.
        strategy : {'accuracy', 'f_beta', 'max_tpr', 'max_tnr'}
            * ``'accuracy'``: maximise the accuracy;
            * ``'f_beta'``: maximise the F-beta score (``beta``);
            * ``'max_tpr'``: maximise the true positive rate among the
              thresholds whose true negative rate is at least ``min_rate``;
            * ``'max_tnr'``: maximise the true negative rate among the
              thresholds whose true positive rate is at least ``min_rate``.
        min_rate : float in [0, 1], optional
            Required by ``'max_tpr'`` and ``'max_tnr'``.
        beta : float > 0, default=1.0
            Weight of recall in ``'f_beta'``.

        Returns
        -------
        self
        """
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is not one of {_STRATEGIES}.")
        if strategy in ("max_tpr", "max_tnr"):
            if min_rate is None:
                raise ValueError(f"strategy={strategy!r} needs min_rate (a float in [0, 1]).")
            if (
                isinstance(min_rate, bool)
                or not isinstance(min_rate, numbers.Real)
                or not 0 <= min_rate <= 1
            ):
                raise ValueError(f"min_rate must be a number in [0, 1]; got {min_rate!r}.")
        if strategy == "f_beta" and (
            isinstance(beta, bool)
            or not isinstance(beta, numbers.Real)
            or not np.isfinite(beta)
            or beta <= 0
        ):
            raise ValueError(f"beta must be a positive number; got {beta!r}.")

        scores = self.decision_function(pairs)
        t = self._binary_targets(check_pair_targets(y, scores.shape[0]), "calibrate_threshold")

        # Distinct scores in decreasing order; predicting the top j groups
        # positive (j = 0..m) is every split a threshold can make.
        uniq, inv = np.unique(scores, return_inverse=True)
        uniq, inv = uniq[::-1], (len(uniq) - 1 - inv)
        m = len(uniq)
        pos_in_group = np.bincount(inv, weights=t, minlength=m)
        all_in_group = np.bincount(inv, minlength=m).astype(np.float64)
        tp = np.concatenate([[0.0], np.cumsum(pos_in_group)])
        fp = np.concatenate([[0.0], np.cumsum(all_in_group - pos_in_group)])
        n_pos, n_neg = tp[-1], fp[-1]
        tn, fn = n_neg - fp, n_pos - tp
        tpr, tnr = tp / n_pos, tn / n_neg

        if strategy == "accuracy":
            j = int(np.argmax(tp + tn))
        elif strategy == "f_beta":
            b2 = float(beta) ** 2
            denom = (1 + b2) * tp + b2 * fn + fp
            f = np.divide((1 + b2) * tp, denom, out=np.zeros_like(tp), where=denom > 0)
            j = int(np.argmax(f))
        elif strategy == "max_tpr":
            feasible = np.flatnonzero(tnr >= min_rate)  # tnr falls with j: j = 0 qualifies
            j = int(feasible[-1])
        else:
            feasible = np.flatnonzero(tpr >= min_rate)  # tpr rises with j: j = m qualifies
            j = int(feasible[0])

        # Threshold realising "top j groups positive" with predict's rule
        # score > threshold.
        if j == 0:
            thr = uniq[0]
        elif j == m:
            gap = uniq[-2] - uniq[-1] if m > 1 else 1.0
            thr = uniq[-1] - 0.5 * gap
            if not thr < uniq[-1]:  # gap below float resolution
                thr = np.nextafter(uniq[-1], -np.inf)
        else:
            thr = 0.5 * (uniq[j - 1] + uniq[j])
            if not uniq[j] <= thr < uniq[j - 1]:  # midpoint rounded onto a score
                thr = uniq[j]
        self.threshold_ = float(thr)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

"""Triplet and quadruplet input, and the classifier mixins of tuple learners.

Some learners take relative comparisons rather than labelled pairs:

* a *triplet* ``(a, b, c)`` states that ``a`` is closer to ``b`` than to
  ``c``: ``d(a, b) < d(a, c)``;
* a *quadruplet* ``(a, b, c, d)`` states that the pair ``(a, b)`` is closer
  than the pair ``(c, d)``: ``d(a, b) < d(c, d)``.

This module gives

* :func:`check_tuples`: validation of tuple input, as a 3-D array of points
  ``(n_tuples, tuple_size, n_features)`` or a 2-D array of row indices
  ``(n_tuples, tuple_size)`` into a preprocessor.  It returns a point array
  and an index array into it, so that kernels work on indices and never on
  copies of rows gathered tuple by tuple;
* :class:`TripletsClassifierMixin` and :class:`QuadrupletsClassifierMixin`:
  ``decision_function``, ``predict`` and ``score`` on tuples with
  metric-learn's conventions (the decision value is the learned distance of
  the second pair minus that of the first pair; a tuple is predicted +1
  when that difference is positive; the score is the accuracy).
"""
import numpy as np
from sklearn.base import ClassifierMixin

from ._base import _rows_from_preprocessor
from ._validation import check_index_range, check_points

__all__ = ["check_tuples", "TripletsClassifierMixin", "QuadrupletsClassifierMixin"]

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
        raise ValueError(f"{name} is empty: at least one tuple is required.")
    check_index_range(arr, n_samples, name, ("tuple", "position"), "the preprocessor")
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
    >>> from fastmetric._tuples import check_tuples
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
        raise TypeError(f"{name} must be a dense in-memory array; got {type(tuples).__name__}.")
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
            raise ValueError(f"{name} is empty: at least one tuple is required.")
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


class _TuplesClassifierMixin(ClassifierMixin):
    """Shared part of the triplets and quadruplets mixins.

    Subclasses set ``_tuple_size`` and ``_pair_positions``: the positions,
    inside a tuple, of the first (expected closer) pair and of the second
    pair.  Learners combine the mixin with
    :class:`fastmetric._base.MahalanobisMixin` (mixin first).
    """

    _tuple_size = None
    _pair_positions = None
    # predict gives -1 (wrong order) or +1 (right order).
    classes_ = np.array([-1, 1])

    def _tuples_points(self, tuples, dedupe=False):
        """Validated (normalised) points and index tuples for prediction."""
        self._check_fitted()
        X, idx = check_tuples(
            tuples, self._tuple_size, getattr(self, "preprocessor", None),
            n_features=self.n_features_in_, dedupe=dedupe,
        )
        return self._normalize_points(X), idx

    def _tuple_pair_distances(self, tuples):
        """Learned distances of the first and the second pair of each tuple."""
        from ._distances import paired_mahalanobis_distances

        X, idx = self._tuples_points(tuples)
        (i, j), (k, m) = self._pair_positions
        pairs = np.concatenate([idx[:, [i, j]], idx[:, [k, m]]])
        dist = paired_mahalanobis_distances(
            X, pairs, components=self.components_.astype(X.dtype), squared=False,
            n_jobs=getattr(self, "n_jobs", None),
        ).astype(np.float64, copy=False)
        n = idx.shape[0]
        return dist[:n], dist[n:]

    def decision_function(self, tuples):
        """Distance of the second pair minus distance of the first pair.

        Positive when the tuple's statement holds under the learned metric
        (its first pair is the closer one); the larger, the more confident.

        Parameters
        ----------
        tuples : array-like of shape (n_tuples, tuple_size, n_features) or \
                (n_tuples, tuple_size)
            Tuples of points, or index tuples into ``preprocessor``.

        Returns
        -------
        scores : ndarray of shape (n_tuples,), float64
        """
        first, second = self._tuple_pair_distances(tuples)
        return second - first

    def predict(self, tuples):
        """+1 when the first pair is strictly closer than the second, else -1.

        Parameters
        ----------
        tuples : array-like of shape (n_tuples, tuple_size, n_features) or \
                (n_tuples, tuple_size)

        Returns
        -------
        y_pred : ndarray of shape (n_tuples,), int
        """
        return np.where(self.decision_function(tuples) > 0, 1, -1)

    def score(self, tuples, y=None):
        """Accuracy of :meth:`predict`.

        Parameters
        ----------
        tuples : array-like of shape (n_tuples, tuple_size, n_features) or \
                (n_tuples, tuple_size)
            Tuples, by default all stated in the right order (metric-learn's
            convention: the score is then the share of tuples the metric
            orders as stated).
        y : array-like of shape (n_tuples,), optional
            Expected order of each tuple, -1 or +1; default all +1.

        Returns
        -------
        accuracy : float
        """
        pred = self.predict(tuples)
        if y is None:
            return float(np.mean(pred == 1))
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"y must hold -1/+1 labels; got dtype {y.dtype}.")
        if y.ndim != 1 or y.shape[0] != pred.shape[0]:
            raise ValueError(
                f"y must have shape (n_tuples,) = ({pred.shape[0]},); got shape {y.shape}."
            )
        if not np.all((y == 1) | (y == -1)):
            raise ValueError("y must hold only -1 and +1 (the expected order of each tuple).")
        return float(np.mean(pred == y))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.target_tags.required = False
        return tags


class TripletsClassifierMixin(_TuplesClassifierMixin):
    """Classify triplets ``(a, b, c)`` with the learned metric.

    A triplet states that ``a`` is closer to ``b`` than to ``c``.
    ``decision_function`` is ``d(a, c) - d(a, b)`` (learned distances, not
    squared), ``predict`` is +1 when it is positive and -1 otherwise, and
    ``score`` the accuracy of ``predict`` (by default against all +1).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._base import MahalanobisMixin
    >>> from fastmetric._tuples import TripletsClassifierMixin
    >>> class Fixed(TripletsClassifierMixin, MahalanobisMixin):
    ...     def fit(self, triplets, y=None):
    ...         self.components_, self.n_features_in_ = np.diag([1.0, 0.0]), 2
    ...         return self
    >>> triplets = np.array([[[0, 0], [1, 5], [2, 0]], [[0, 0], [3, 0], [0, 9]]])
    >>> est = Fixed().fit(triplets)
    >>> est.decision_function(triplets)
    array([ 1., -3.])
    >>> est.predict(triplets), est.score(triplets)
    (array([ 1, -1]), 0.5)
    """

    _tuple_size = 3
    _pair_positions = ((0, 1), (0, 2))


class QuadrupletsClassifierMixin(_TuplesClassifierMixin):
    """Classify quadruplets ``(a, b, c, d)`` with the learned metric.

    A quadruplet states that the pair ``(a, b)`` is closer than ``(c, d)``.
    ``decision_function`` is ``d(c, d) - d(a, b)`` (learned distances, not
    squared), ``predict`` is +1 when it is positive and -1 otherwise, and
    ``score`` the accuracy of ``predict`` (by default against all +1).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._base import MahalanobisMixin
    >>> from fastmetric._tuples import QuadrupletsClassifierMixin
    >>> class Fixed(QuadrupletsClassifierMixin, MahalanobisMixin):
    ...     def fit(self, quadruplets, y=None):
    ...         self.components_, self.n_features_in_ = np.eye(2), 2
    ...         return self
    >>> quadruplets = np.array([[[0, 0], [1, 0], [0, 0], [0, 3]]])
    >>> est = Fixed().fit(quadruplets)
    >>> est.decision_function(quadruplets), est.predict(quadruplets)
    (array([2.]), array([1]))
    """

    _tuple_size = 4
    _pair_positions = ((0, 1), (2, 3))

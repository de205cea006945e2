"""Triplet and quadruplet input, and the classifier mixins of tuple learners.

Some learners take relative comparisons rather than labelled pairs:

* a *triplet* ``(a, b, c)`` states that ``a`` is closer to ``b`` than to
  ``c``: ``d(a, b) < d(a, c)``;
* a *quadruplet* ``(a, b, c, d)`` states that the pair ``(a, b)`` is closer
  than the pair ``(c, d)``: ``d(a, b) < d(c, d)``.

This module gives

* :func:`check_tuples` (defined in :mod:`fastmetric._core.inputs` beside
  ``check_pairs``, which is its case of 2-tuples): validation of tuple input, as a 3-D array of points
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

# The tuple check lives beside check_pairs (pairs are tuples of 2).
from fastmetric._core.inputs import check_tuples

__all__ = ["check_tuples", "TripletsClassifierMixin", "QuadrupletsClassifierMixin"]

class _TuplesClassifierMixin(ClassifierMixin):
    """Shared part of the triplets and quadruplets mixins.

    Subclasses set ``_tuple_size`` and ``_pair_positions``: the positions,
    inside a tuple, of the first (expected closer) pair and of the second
    pair.  Learners combine the mixin with
    :class:`fastmetric._core.base.MahalanobisMixin` (mixin first).
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
        from fastmetric._core.distances import paired_mahalanobis_distances

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
    >>> from fastmetric._core.base import MahalanobisMixin
    >>> from fastmetric._core.tuples import TripletsClassifierMixin
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
    LSML is such a learner; here the quadruplets are index tuples into the
    rows of ``preprocessor``:

    >>> import numpy as np
    >>> from fastmetric import LSML
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [4.0, 4.0]])
    >>> quadruplets = np.array([[0, 1, 0, 2], [0, 1, 0, 3], [1, 2, 0, 3]])
    >>> lsml = LSML(preprocessor=X, random_state=0).fit(quadruplets)
    >>> lsml.predict(quadruplets), lsml.score(quadruplets)
    (array([1, 1, 1]), 1.0)
    """

    _tuple_size = 4
    _pair_positions = ((0, 1), (2, 3))

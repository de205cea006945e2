"""Classifying pairs as similar or dissimilar with a learned metric.

:class:`PairsClassifierMixin` gives the pair learners (LDML, ITML, MMC,
SDML) ``decision_function``/``predict``/``predict_proba``/``score`` on pairs
and the calibration of ``threshold_`` (metric-learn's API), with
``classes_`` and ``predict`` in the label encoding of ``fit`` (-1/+1, as
metric-learn, or 0/1).
"""
import numbers

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.metaestimators import available_if

from fastmetric._core.constraints import estimator_pairs
from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.docs import shared_docs
from fastmetric._core.inputs import (
    check_pair_targets,
    check_pairs,
    rows_in_use,
    validate_points,
)
from fastmetric._core.params import fit_context, renamed_value

__all__ = ["PairsClassifierMixin", "PairsFromLabelsMixin", "ThresholdTypeError",
           "pair_label_classes"]


_STRATEGIES = ("accuracy", "f_beta", "max_tpr", "max_tnr")


class ThresholdTypeError(TypeError, ValueError):
    """A threshold that is not a real number.

    Both a TypeError (the natural class) and a ValueError (what
    metric-learn raises, so that code catching it keeps working).
    """


def _has_pair_probability(estimator):
    return hasattr(estimator, "_pair_probability")


def _metric_learn_classes():
    """``[-1, 1]``: metric-learn's pair labels (dissimilar, similar)."""
    return np.array([-1, 1])


# The classes_ of a model without one of its own (a pickle or a
# fastmetric.save file that lacks it): metric-learn's [-1, 1], what predict
# answered whatever the labels before classes_ followed fit's encoding, so
# such a model predicts as it did.  Read-only: every such model shares it.
_LEGACY_CLASSES = _metric_learn_classes()
_LEGACY_CLASSES.flags.writeable = False


def pair_label_classes(y, targets):
    """``classes_`` of a pair classifier fitted on the pair labels ``y``.

    Parameters
    ----------
    y : ndarray
        The labels as given (already accepted by
        :func:`~fastmetric._core.inputs.check_pair_targets`).
    targets : ndarray of shape (n_pairs,)
        ``y`` as targets in [0, 1] (``check_pair_targets(y)``).

    Returns
    -------
    classes : ndarray of shape (2,), int
        ``[-1, 1]`` when ``y`` holds -1 (metric-learn's encoding), and also
        when every label is +1, which reads the same in both encodings
        (metric-learn's is then kept, as before); ``[0, 1]`` otherwise: 0/1
        labels, booleans, and soft targets in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.inputs import check_pair_targets
    >>> for y in ([-1, 1, 1], [0, 1, 1], [True, False], [0.2, 0.9], [1, 1]):
    ...     y = np.asarray(y)
    ...     print(pair_label_classes(y, check_pair_targets(y, len(y))))
    [-1  1]
    [0 1]
    [0 1]
    [0 1]
    [-1  1]
    """
    if targets.size == 0 or np.min(y) < 0 or np.all(targets == 1.0):
        return _metric_learn_classes()
    return np.array([0, 1])


@shared_docs
class PairsClassifierMixin(ClassifierMixin):
    """Classify pairs as similar or dissimilar with the learned metric.

    ``threshold_`` is a *distance*, as in metric-learn: a pair is predicted
    similar when its learned distance is at most ``threshold_``.  The
    decision function is :meth:`pair_score` (minus the distance), so that
    higher means more similar as scikit-learn's scorers expect; ``predict``
    is ``classes_[1]`` (similar) exactly when ``decision_function >=
    -threshold_``, else ``classes_[0]`` (dissimilar).

    ``classes_`` is the label encoding of ``fit``'s ``y``, as for any
    scikit-learn classifier, so that scorers comparing ``predict`` with
    ``y`` (accuracy, F1) are right: ``[-1, 1]`` for -1/+1 labels
    (metric-learn's, and for labels that are all +1), ``[0, 1]`` for 0/1
    labels, booleans and LDML's soft targets (see
    :func:`pair_label_classes`).  Models fitted before ``classes_``
    followed the encoding stored ``[-1, 1]`` and, once unpickled or
    loaded, keep predicting -1/+1; a model without a ``classes_`` of its
    own reads this class's ``[-1, 1]`` and predicts -1/+1 too.  Learners with a
    probabilistic pair model (LDML) define
    ``_pair_probability(squared_distances)`` and get :meth:`predict_proba`,
    whose columns follow ``classes_``.
    """

    classes_ = _LEGACY_CLASSES

    @staticmethod
    def _pair_targets_and_classes(y, n_pairs):
        """``(targets, classes)`` of fit's pair labels ``y``: the targets in
        [0, 1] (:func:`~fastmetric._core.inputs.check_pair_targets`) and the
        ``classes_`` of their encoding (:func:`pair_label_classes`)."""
        # One conversion, so that a dask or pandas y is read once; None is
        # passed on for check_pair_targets' own message.
        arr = None if y is None else np.asarray(y)
        targets = check_pair_targets(arr, n_pairs)
        return targets, pair_label_classes(arr, targets)

    def decision_function(self, pairs):
        """Score of each pair, higher for more similar pairs (``-distance``).

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
        """
        return self.pair_score(pairs)

    def predict(self, pairs):
        """Similar when the pair's distance is at most ``threshold_``, else dissimilar.

        The labels are those of ``fit``: ``classes_[1]`` for similar,
        ``classes_[0]`` for dissimilar (+1/-1 after a fit on -1/+1 labels,
        1/0 after one on 0/1 labels).

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,), int
        """
        self._check_fitted()
        if "threshold_" not in vars(self):
            raise AttributeError(
                "A threshold for this estimator has not been set, call its set_threshold "
                "or calibrate_threshold method."
            )
        classes = self.classes_
        return np.where(self.pair_distance(pairs) <= self.threshold_, classes[1], classes[0])

    @available_if(_has_pair_probability)
    def predict_proba(self, pairs):
        """Probability of each class, columns ``[P(dissimilar), P(similar)]``.

        The columns are in the order of ``classes_``.

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
            Labels in {-1, +1} or {0, 1} (both classes present), whatever
            the encoding of ``fit``: the AUC does not depend on it.

        Returns
        -------
        auc : float
        """
        scores = self.decision_function(pairs)
        t = check_pair_targets(y, scores.shape[0])
        return float(roc_auc_score(self._binary_targets(t, "score"), scores))

    def set_threshold(self, threshold):
        """Set ``threshold_``: the largest distance of a pair predicted similar.

        Parameters
        ----------
        threshold : float
            A distance (the units of :meth:`pair_distance`); a bool counts
            as 0 or 1, as in metric-learn.

        {returns_self}

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        ThresholdTypeError
            (a ValueError and a TypeError) ``threshold`` is not a real
            number.
        ValueError
            ``threshold`` is NaN.
        """
        self._check_fitted()
        if not isinstance(threshold, numbers.Real):
            raise ThresholdTypeError(
                f"Parameter threshold must be a real number. Got {type(threshold)} instead."
            )
        if np.isnan(threshold):
            raise ValueError("threshold must not be NaN.")
        self.threshold_ = float(threshold)
        return self

    def _fit_hard_pairs(self, pairs, y, calibration_params, *, both_kinds=True):
        """``fit(pairs, y)`` of a learner with hard pair labels: validate,
        ``self._fit_pairs(X, a, b, similar)``, then the threshold: calibrated
        on the training pairs, or their median distance when all are of one
        kind (allowed only without ``both_kinds``).  ``classes_`` follows
        ``y``'s encoding (:func:`pair_label_classes`)."""
        calibration_params = self._fit_calibration_params(calibration_params)
        X, a, b, similar, classes = self._hard_labelled_pairs(pairs, y, both_kinds=both_kinds)
        self._fit_pairs(X, a, b, similar)
        self.classes_ = classes
        if similar.min() != similar.max():
            self.calibrate_threshold(pairs, y, **calibration_params)
        else:
            self.threshold_ = float(np.median(self.pair_distance(pairs)))
        return self

    def _hard_labelled_pairs(self, pairs, y, *, both_kinds=True):
        """Pairs with hard labels, validated: ``(X, a, b, similar, classes)``.

        ``X`` is the point array, ``a`` and ``b`` the C-contiguous index
        pairs into it (duplicate points merged), ``similar`` a boolean per
        pair, ``classes`` the ``classes_`` of ``y``'s label encoding.
        Raises ValueError for soft targets and, with ``both_kinds``, when
        ``y`` holds one kind of pair only.
        """
        X, idx = check_pairs(pairs, self.preprocessor, dedupe=True)
        targets, classes = self._pair_targets_and_classes(y, idx.shape[0])
        t = self._binary_targets(targets, type(self).__name__, both_kinds=both_kinds)
        X, idx = rows_in_use(X, idx)  # the prior or start from the pairs' points
        return (X, np.ascontiguousarray(idx[:, 0]), np.ascontiguousarray(idx[:, 1]), t == 1,
                classes)

    @staticmethod
    def _binary_targets(t, what, both_kinds=True):
        """Pair targets in {0, 1} as int8; ValueError for soft targets and,
        with ``both_kinds``, for targets of one kind only."""
        if not np.all((t == 0) | (t == 1)):
            raise ValueError(f"{what} needs hard pair labels (+1/-1 or 1/0), not soft targets.")
        if both_kinds and t.min() == t.max():
            raise ValueError(
                f"{what} needs both similar and dissimilar pairs; y has only one class."
            )
        return t.astype(np.int8)

    @staticmethod
    def _check_calibration_params(strategy, min_rate, beta):
        """Check ``calibrate_threshold``'s options before any data is read.

        The messages are metric-learn's, word for word, because code written
        for metric-learn (and its test suite) compares them.
        """
        if not isinstance(strategy, str) or strategy not in _STRATEGIES:
            raise ValueError(
                'Strategy can either be "accuracy", "f_beta" or "max_tpr" or "max_tnr". '
                f'Got "{strategy}" instead.'
            )
        if strategy in ("max_tpr", "max_tnr") and (
            isinstance(min_rate, bool)
            or not isinstance(min_rate, numbers.Real)
            or not 0 <= min_rate <= 1
        ):
            raise ValueError(f"Parameter min_rate must be a number in[0, 1]. Got {min_rate} instead.")
        if strategy == "f_beta" and (
            isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not np.isfinite(beta)
        ):
            raise ValueError(f"Parameter beta must be a real number. Got {type(beta)} instead.")

    @classmethod
    def _fit_calibration_params(cls, calibration_params):
        """``fit``'s ``calibration_params`` checked before any work: a dict.

        Checked first thing in ``fit`` (as metric-learn does), so that a bad
        strategy fails before a long fit rather than after it.

        Parameters
        ----------
        calibration_params : dict or None
            Keyword arguments of :meth:`calibrate_threshold`: ``strategy``,
            ``min_rate``, ``beta``.

        Returns
        -------
        params : dict
            A copy (empty for None).
        """
        if calibration_params is None:
            return {}
        if not isinstance(calibration_params, dict):
            raise TypeError(
                f"calibration_params must be a dict or None; got {calibration_params!r}.")
        unknown = sorted(set(calibration_params) - {"strategy", "min_rate", "beta"})
        if unknown:
            raise ValueError(
                f"calibration_params has unknown key(s) {unknown}; allowed: "
                "['strategy', 'min_rate', 'beta']."
            )
        params = dict(calibration_params)
        cls._check_calibration_params(params.get("strategy", "accuracy"),
                                      params.get("min_rate"), params.get("beta", 1.0))
        return params

    def calibrate_threshold(self, pairs, y, strategy="accuracy", min_rate=None, beta=1.0):
        """Choose ``threshold_`` (a distance) on labelled pairs.

        Candidate thresholds lie half-way between consecutive distinct
        distances (and half a gap outside their range), so each candidate
        realises one distinct split "distance <= threshold is similar", and
        rounding in a later recomputation of the same distances cannot move
        a pair across it.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
        y : array-like of shape (n_pairs,)
            -1/+1 or 0/1 labels, both classes present.  Either encoding is
            accepted, whatever the encoding of ``fit``: only ``threshold_``
            changes, never ``classes_``, so :meth:`predict` keeps answering
            in ``fit``'s labels (1/0 after a fit on 0/1 labels, even when
            calibrated on -1/+1 ones).
        strategy : {'accuracy', 'f_beta', 'max_tpr', 'max_tnr'}
            * ``'accuracy'``: maximise the accuracy;
            * ``'f_beta'``: maximise the F-beta score (``beta``);
            * ``'max_tpr'``: maximise the true positive rate among the
              thresholds whose true negative rate is at least ``min_rate``;
            * ``'max_tnr'``: maximise the true negative rate among the
              thresholds whose true positive rate is at least ``min_rate``.
        min_rate : float in [0, 1], optional
            Required by ``'max_tpr'`` and ``'max_tnr'``.
        beta : float, default=1.0
            Weight of recall in ``'f_beta'``; only ``beta ** 2`` matters,
            and ``beta=0`` maximises the precision.

        {returns_self}
        """
        self._check_calibration_params(strategy, min_rate, beta)
        dist = self.pair_distance(pairs)
        t = self._binary_targets(check_pair_targets(y, dist.shape[0]), "calibrate_threshold")

        # Distinct distances in increasing order; predicting the first j
        # groups similar (j = 0..m) is every split a threshold can make.
        uniq, inv = np.unique(dist, return_inverse=True)
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

        # Threshold realising "first j groups similar" with predict's rule
        # distance <= threshold: uniq[j-1] <= thr < uniq[j].
        if j == 0:
            thr = uniq[0] - 0.5 * (uniq[1] - uniq[0] if m > 1 else 1.0)
            if not thr < uniq[0]:  # gap below float resolution
                thr = np.nextafter(uniq[0], -np.inf)
        elif j == m:
            thr = uniq[-1] + 0.5 * (uniq[-1] - uniq[-2] if m > 1 else 1.0)
        else:
            thr = 0.5 * (uniq[j - 1] + uniq[j])
            if not uniq[j - 1] <= thr < uniq[j]:  # midpoint rounded onto a distance
                thr = uniq[j - 1]
        self.threshold_ = float(thr)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


@shared_docs
class PairsFromLabelsMixin:
    """``fit(X, y)`` of a pair learner's ``_Supervised`` form.

    Draws ``n_constraints`` similar and as many dissimilar pairs from the
    class labels (:func:`fastmetric._core.constraints.estimator_pairs`; with
    ``_grow_pair_count`` the default count grows with the data) and hands
    them to the learner's ``_fit_pairs(X, a, b, similar)``.
    """

    _grow_pair_count = False

    @fit_context
    def fit(self, X, y):
        """Draw pairs from the class labels and learn the metric from them.

        {fit_labelled_points}
            At least 2 classes, one with at least 2 samples.

        {returns_self}
        """
        X, y = validate_points(self, X, y)
        n_constraints = renamed_value(self, "num_constraints", "n_constraints")
        a, b, similar = estimator_pairs(self, y, n_constraints, grow=self._grow_pair_count)
        return self._fit_pairs(X, a, b, similar)

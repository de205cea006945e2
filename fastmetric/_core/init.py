"""The initial linear map and the prior metric of every learner.

* :func:`initialize_components`: the initial ``L`` (``init=``) from a named
  strategy, an array, or a fitted learner;
* :func:`prior_matrix`: a prior Mahalanobis matrix ``M0`` (``prior=``) given
  as ``'identity'``, an array or a fitted learner, checked once for every
  learner (one symmetry tolerance, one definiteness rule, one set of
  messages);
* :func:`resolve_n_components`: the checked number of rows of ``L``;
* :func:`unsaturated_start`: ``L`` shrunk so that a softmax over the
  embedded points is not saturated (NCA's start);
* :func:`feature_scales`: per-feature scales for features in different
  units (NCA's and MLKR's start and search).
"""
import numbers
import warnings

import numpy as np
import scipy.linalg
from sklearn.utils import check_random_state

from fastmetric._core.rows import evenly_spaced
from fastmetric._core.threads import single_threaded_blas
from fastmetric._core.validation import check_components, check_points

__all__ = [
    "FEATURE_RANGE_RATIO",
    "INIT_NAMES",
    "PRIOR_NAMES",
    "feature_scales",
    "initialize_components",
    "prior_matrix",
    "rescaled_start",
    "resolve_n_components",
    "unsaturated_start",
]

INIT_NAMES = ("auto", "identity", "pca", "lda", "covariance", "random")
# The named priors of the LogDet learners (ITML, LSML, SDML).  'identity' is
# resolved here; 'covariance' and 'random' depend on the data and on each
# learner's model (which of M0 and M0^{-1} the paper regularises), so each
# learner computes those two itself and hands everything else to
# prior_matrix.
PRIOR_NAMES = ("identity", "covariance", "random")
# Largest asymmetry accepted in a prior array, relative to its largest entry:
# above what rounding leaves in a matrix computed as a product (L^T L, a
# covariance), also after a round trip through float32 or 7 printed digits,
# and below any asymmetry a user means.
_SYMMETRY_RTOL = 1e-7


# --------------------------------------------------------------------------
# Fitted learners as init or prior
# --------------------------------------------------------------------------
def _is_learner(obj):
    """True for an estimator (fitted or not) given where a map or metric is expected."""
    return hasattr(obj, "components_") or (not isinstance(obj, str) and hasattr(obj, "fit"))


def _probe_transform(estimator, d, what):
    """The affine map of a fitted transformer: ``transform(x) = c + L x``.

    ``L``'s columns are ``transform(e_i) - transform(0)`` (exact for an
    affine transform, whatever the attribute that holds its map and
    whatever it applies on top of it: PCA's whitening, LDA's truncation to
    its ``n_components``).  Two further points check that the transform is
    affine; a non-linear one (NMF, a kernel method, a scaler followed by a
    non-linear step) is refused.
    """
    probes = np.vstack([np.zeros((1, d)), np.eye(d)])
    rng = np.random.RandomState(0)
    checks = rng.standard_normal((2, d))
    try:
        out = np.asarray(estimator.transform(np.vstack([probes, checks])), dtype=np.float64)
    except Exception as exc:  # unfitted, or a transformer that cannot take these points
        raise ValueError(
            f"{what} is a transformer ({type(estimator).__name__}) whose transform failed on "
            f"points of {d} features: {exc}. Fit it first (on data with n_features={d}), or "
            "pass an array."
        ) from exc
    if out.ndim != 2 or out.shape[0] != d + 3 or not np.isfinite(out).all():
        raise ValueError(
            f"{what}: {type(estimator).__name__}.transform did not return a finite 2-D array "
            "of one row per point; a linear map cannot be read from it."
        )
    offset = out[0]
    L = (out[1:d + 1] - offset).T
    predicted = offset + checks @ L.T
    scale = max(float(np.abs(out).max()), 1e-300)
    if not np.allclose(predicted, out[d + 1:], rtol=1e-6, atol=1e-9 * scale):
        raise ValueError(
            f"{what} is a transformer ({type(estimator).__name__}) whose transform is not "
            "linear (affine): it has no linear map to start from. Pass a linear transformer "
            "(PCA, LinearDiscriminantAnalysis, a fitted metric learner), a linear model "
            "(coef_) or an array."
        )
    return L


def _fitted_components(learner, what, n_features=None):
    """The linear map ``L`` (float64) of a fitted estimator given as init or prior.

    The one rule for every ``init`` and ``prior``: a fitted estimator stands
    for its linear map ``L`` (and, as a prior, for its metric ``M = L^T L``):

    * a metric learner (fastmetric or metric-learn, i.e. one with
      ``get_mahalanobis_matrix``): its ``components_``;
    * any other fitted transformer whose ``transform`` is linear (affine):
      the linear part of that transform, read by probing it (with
      ``n_features``), so that ``components_`` (PCA, FastICA,
      TruncatedSVD), ``scalings_`` (LinearDiscriminantAnalysis) and whatever
      the transform applies on top of them (PCA's ``whiten``, LDA's
      ``n_components``) come out as the estimator applies them; the offset
      (centring) is dropped, as distances do not see it;
    * a fitted linear model without ``transform`` (``coef_``: linear
      regression, logistic regression, linear SVM): the rows of ``coef_``,
      the directions its decision function reads.

    An unfitted estimator, or one without a linear map, is a ValueError
    naming ``what``.
    """
    name = type(learner).__name__
    if hasattr(learner, "get_mahalanobis_matrix") or (
            hasattr(learner, "components_") and not hasattr(learner, "transform")):
        if not hasattr(learner, "components_"):
            raise ValueError(
                f"{what} is an estimator ({name}) that is not fitted: it has no components_. "
                "Fit it first, or pass an array."
            )
        return np.asarray(learner.components_, dtype=np.float64)
    if hasattr(learner, "transform"):
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(learner)
        except NotFittedError:
            raise ValueError(
                f"{what} is an estimator ({name}) that is not fitted. Fit it first, or pass "
                "an array."
            ) from None
        d = getattr(learner, "n_features_in_", n_features)
        if d is None:
            raise ValueError(f"{what}: the number of features of {name} is unknown.")
        return _probe_transform(learner, int(d), what)
    if hasattr(learner, "coef_"):
        coef = np.atleast_2d(np.asarray(learner.coef_, dtype=np.float64))
        if coef.ndim != 2:
            raise ValueError(f"{what}: coef_ of {name} is not a matrix; got shape {coef.shape}.")
        return coef
    raise ValueError(
        f"{what} is an estimator ({name}) with no linear map: it is not fitted, or it has "
        "neither components_, a linear transform nor coef_. Fit it first, or pass an array."
    )


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


def resolve_n_components(n_components, n_features, what="n_components"):
    """``n_components`` checked against ``[1, n_features]`` (None: ``n_features``)."""
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
        * ``'auto'``: ``'lda'`` when ``y`` has at least 2 classes, fewer
          classes than samples (LDA needs a within-class scatter) and
          ``n_components <= min(n_classes - 1, n_features)``; else ``'pca'``
          when ``n_components < min(n_features, n_samples)``; else
          ``'identity'`` (metric-learn's rule).
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
        * a fitted fastmetric (or metric-learn) learner: its ``components_``;
          any other fitted estimator with a linear map: a transformer whose
          ``transform`` is linear (PCA, LinearDiscriminantAnalysis, FastICA,
          ...: the linear part of that transform, so PCA's ``whiten`` and
          LDA's ``n_components`` apply) or a linear model (its ``coef_``).
          The map is applied to the points the learner sees, i.e. after its
          own L2 normalisation when ``normalize=True``.
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
    >>> from fastmetric._core.init import initialize_components
    >>> X = np.random.RandomState(0).randn(20, 3)
    >>> initialize_components("identity", X, n_components=2)
    array([[1., 0., 0.],
           [0., 1., 0.]])
    """
    # Arrays and fitted learners first: they fix n_components, and need
    # only the number of features of X (no O(n d) scan of the data, which
    # matters when a learner refines a metric many times on a large X).
    if _is_learner(init):
        shape = np.shape(X)
        init = _fitted_components(init, "init", shape[1] if len(shape) == 2 else None)
    if not isinstance(init, str):
        shape = np.shape(X)
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(
                f"X must be a 2-D array (n_samples, n_features); got shape {shape}."
            )
        d = shape[1]
        L = check_components(init, d, np.float64, name="init")
        if n_components is not None:
            k = resolve_n_components(n_components, d)
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
    if init not in INIT_NAMES:
        raise ValueError(
            f"init={init!r} is not a known strategy; use one of {INIT_NAMES}, an array of "
            "shape (n_components, n_features) or a fitted learner."
        )
    k = resolve_n_components(n_components, d)

    classes = None
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != n_samples:
            raise ValueError(
                f"y has {y.shape[0]} labels but X has {n_samples} rows."
            )
        classes, y_enc = np.unique(y, return_inverse=True)

    if init == "auto":
        if (classes is not None and 2 <= len(classes) < n_samples
                and k <= min(len(classes) - 1, d)):
            # (With every point its own class LDA has no within-class
            # scatter, and scikit-learn's LDA refuses such data.)
            init = "lda"
        elif k < min(d, n_samples):
            # PCA finds at most min(n_samples, n_features) axes: with fewer
            # samples than components it would be completed by arbitrary
            # directions, so identity is the better start (metric-learn's rule).
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


# Points whose nearest-neighbour distance :func:`unsaturated_start` measures
# (evenly spaced rows: no random draw, so the learner's random_state is not
# consumed).
_SATURATION_SAMPLE = 500
_SATURATION_COLUMNS = 2048


def _typical_nearest_distance(L, X):
    """The median over (at most 500 evenly spaced) points of the squared
    distance to the nearest distinct neighbour in the embedding of L (0 when
    there is none)."""
    L = np.asarray(L, dtype=np.float64)
    n = X.shape[0]
    if n < 2:
        return 0.0
    mean = X.mean(axis=0, dtype=np.float64)
    step = _SATURATION_COLUMNS

    def embedded(cols):
        # Rows of the centred embedding, recomputed per block of rows: no
        # n x k copy (the stochastic fits call this on 100,000 rows, and
        # their peak memory is meant to stay near the data's).
        return (X[cols] - mean) @ L.T

    with single_threaded_blas():  # the same scalar for any BLAS thread count
        rows = evenly_spaced(n, _SATURATION_SAMPLE)
        sq = np.concatenate([np.einsum("ij,ij->i", Z, Z) for Z in
                             (embedded(slice(s, s + step)) for s in range(0, n, step))])
        Z_rows = embedded(rows)
        # Duplicates (and each row itself) are at distance 0: the nearest
        # distinct neighbour is the smallest distance above rounding.
        zero = 1e-12 * max(float(sq.max()), 1e-300)
        nearest = np.full(rows.shape[0], np.inf)
        # Column blocks keep the distances at 500 x _SATURATION_COLUMNS
        # whatever n; the minimum over the blocks is the minimum over all.
        for s in range(0, n, step):
            cols = slice(s, s + step)
            D = sq[rows, None] + sq[None, cols] - 2.0 * (Z_rows @ embedded(cols).T)
            D[D <= zero] = np.inf
            np.minimum(nearest, D.min(axis=1), out=nearest)
    nearest = nearest[np.isfinite(nearest)]
    return float(np.median(nearest)) if nearest.size else 0.0


def unsaturated_start(L, X, *, return_shrink=False):
    """``L`` shrunk, if needed, so that a softmax over the points is not saturated.

    The softmax learners (NCA) weigh the neighbours of a point by
    ``exp(-||L x_i - L x_j||^2)``.  When the squared distances between near
    points are large (raw pixel values 0..16 put the nearest neighbours of a
    digit hundreds of units apart) each point gives all its weight to its
    nearest neighbour, the gradient vanishes, and L-BFGS stops at once at the
    initial map.  Here ``L`` is scaled down, when needed, so that the median
    over points of the squared distance to the nearest (distinct) neighbour
    is 1: near neighbours then differ by fractions of a unit in the
    exponent.  A start that is not saturated (features scaled to [0, 1] or
    standardised, with few features) is returned unchanged; only the scale
    of ``L`` changes, not the directions it weighs.

    The median is taken over at most 500 evenly spaced rows (each against
    all rows, in blocks of columns): ``O(500 n k)`` after two ``O(n d k)``
    projections (the embedding is recomputed per block instead of stored).

    Parameters
    ----------
    L : ndarray of shape (n_components, n_features)
    X : ndarray of shape (n_samples, n_features)
    return_shrink : bool, default=False
        Also return the factor ``L`` was multiplied by.  NCA's stochastic
        solvers scale their step size by it (its square for SGD), so that
        features scaled by ``s`` give the same embedding: the step is then
        as large, relative to the start, as on data that need no shrinking.

    Returns
    -------
    start : ndarray of shape (n_components, n_features), float64
        ``L / sqrt(m)`` for the median squared nearest distance ``m`` when
        ``m > 1``, else ``L``.
    shrink : float
        ``1 / sqrt(m)`` when ``m > 1``, else 1 (only with ``return_shrink``).

    Examples
    --------
    >>> from fastmetric._core.init import unsaturated_start
    >>> import numpy as np
    >>> X = np.array([[0.0], [10.0], [30.0]])
    >>> unsaturated_start(np.eye(1), X)  # nearest squared distances 100, 100, 400
    array([[0.1]])
    >>> unsaturated_start(np.eye(1), X / 100)  # already below 1: unchanged
    array([[1.]])
    >>> unsaturated_start(np.eye(1), X, return_shrink=True)[1]
    0.1
    """
    L = np.asarray(L, dtype=np.float64)
    typical = _typical_nearest_distance(L, X)
    start, shrink = (L / np.sqrt(typical), float(1.0 / np.sqrt(typical))) if typical > 1.0 \
        else (L, 1.0)
    return (start, shrink) if return_shrink else start


# Non-constant columns whose ranges span more than this factor are taken to
# be in different units (feature_scales, scaling="auto"): the smallest then
# carries less than 1e-4 of the squared distance between typical points.
# Data in one unit keep their geometry: min-max or standardised columns
# (ratios 1 to about 5), raw pixels (digits: 1 to 16).
FEATURE_RANGE_RATIO = 100.0
# A column whose half-range is at most this fraction of its largest
# magnitude holds rounding noise around a constant and is not rescaled.
_CONSTANT_RELATIVE_RANGE = 1e-12
# Data in one unit whose largest range lies outside this window are brought
# to a range of about one by a common power of two (feature_scales, "auto").
# The learners' absolute tolerances, starts and default bounds are meant for
# data of moderate size: the loss's gradient scales with the squared
# distances, so below the window L-BFGS meets its gradient tolerance at the
# start (on min-max wine SDML from a range of 2^-4, LDML from 2^-6, NCA,
# MMC and LSML at 2^-10) and SCML's basis learns nothing (2^-8); above it,
# MMC stops at its start from 2^30 and MLKR at 2^40.  Inside the window the
# data are used as given, bit for bit: min-max and standardised columns,
# raw pixels (16 or 255), counts and measurements up to about a million (raw
# ring, ranges near 15,000, scores better for LSML and SCML there than at a
# range of one, and so stays as given).
COMMON_RANGE_WINDOW = (2.0 ** -3, 2.0 ** 20)


def feature_scales(X, scaling="auto", common_scale=True):
    """Per-feature scales that bring X's columns to a common range, or None.

    The softmax learners (NCA, MLKR) weigh neighbours by
    ``exp(-||L x_i - L x_j||^2)`` and are fitted by gradient steps on ``L``.
    From a start in the data's own units, columns of small range (1e-3 next
    to 1e3) carry no part of the distances, hence no gradient, and the fit
    stops with them unused: L-BFGS is not invariant to the scales of the
    features, although the metric family is.  The learners therefore
    compute a named start on ``X / scales`` and search over
    ``A = L * scales`` (column-wise): in those coordinates every feature
    spans about one unit.

    Each scale is the power of two nearest the column's range (``max -
    min``), or for data in one unit far from a range of one, the power of
    two nearest the largest range, so dividing by it is exact; constant
    columns (and columns that vary only by rounding around a constant) get
    1.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    scaling : {'auto', 'range'} or None, default='auto'
        ``'range'`` always returns the scales; ``'auto'`` when the
        ranges of the non-constant columns span more than a factor of
        ``FEATURE_RANGE_RATIO`` (100): features in different units, and,
        for data in one unit, one common scale (the power of two nearest
        the largest range) when that range lies outside
        ``COMMON_RANGE_WINDOW`` (1/8 to 2^20, about a million); ``None``
        never.
    common_scale : bool, default=True
        False: ``'auto'`` leaves data in one unit alone at any scale (for
        learners whose computation does not depend on it, as LFDA's).

    Returns
    -------
    scales : ndarray of shape (n_features,), float64, or None
        None where no column would change (every scale 1) or where the
        scaling is not wanted.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.init import feature_scales
    >>> X = np.array([[0.0, 0.0, 5.0], [1000.0, 0.001, 5.0], [500.0, 0.002, 5.0]])
    >>> feature_scales(X).tolist()  # ranges 1000 and 0.002, a constant column
    [1024.0, 0.001953125, 1.0]
    >>> print(feature_scales(X[:, :1]))  # one varying column: nothing to balance
    None
    >>> feature_scales(X[:, 1:] / 1000).tolist()  # one unit, tiny: a common scale
    [1.9073486328125e-06, 1.0]
    """
    if scaling is None or X.shape[0] < 2:
        return None
    top = np.max(X, axis=0).astype(np.float64)
    bottom = np.min(X, axis=0).astype(np.float64)
    half_range = 0.5 * top - 0.5 * bottom  # cannot overflow, unlike top - bottom
    magnitude = np.maximum(np.abs(top), np.abs(bottom))
    varying = half_range > _CONSTANT_RELATIVE_RANGE * magnitude
    if not np.any(varying):
        return None
    spans = half_range[varying]
    largest = float(spans.max())
    if scaling == "auto" and (
            np.count_nonzero(varying) < 2 or largest / FEATURE_RANGE_RATIO <= spans.min()):
        # one unit: keep the geometry, only bring a tiny or huge range to one
        low, high = COMMON_RANGE_WINDOW
        if not common_scale or low <= 2.0 * largest <= high:
            return None
        spans = largest
    # constant columns keep 1: a constant 3.0 beside a column spanning
    # 1e-300 would otherwise become 3e300
    scales = np.ones(X.shape[1])
    scales[varying] = _nearest_power_of_two_of_range(spans, X.dtype)
    return None if np.all(scales == 1.0) else scales


def _nearest_power_of_two_of_range(half_range, dtype):
    """The power of two nearest ``2 * half_range``, a normal number of
    ``dtype`` (float32 data are divided by ``scales.astype(float32)``).

    Clipped to ``[2^(minexp + 1), 2^(maxexp - 1)]`` of the dtype (float64:
    ``[2^-1021, 2^1023]``): dividing by a normal power of two is exact, also
    for subnormal data.
    """
    exponents = np.rint(np.log2(half_range)).astype(int) + 1
    info = np.finfo(dtype if np.dtype(dtype) == np.float32 else np.float64)
    return np.ldexp(1.0, np.clip(exponents, info.minexp + 1, info.maxexp - 1))


# A start whose embedding spreads (per component, root mean square) beyond
# 2^(+-START_SCALE_EXPONENT) is brought near 1 by rescaled_start.
START_SCALE_EXPONENT = 30


def rescaled_start(L, X, *, return_factor=False):
    """``L`` times a power of two, when the data's scale is extreme.

    LMNN's margin is one unit of squared distance, so its objective is not
    indifferent to the scale of the start: from the identity, features of
    1e25 (every margin negligible) left L-BFGS at its start, and features of
    1e-25 (every triplet violating its margin) drove the map to zero.  When
    the root mean square of the centred embedding ``(X - mean) L^T`` is
    outside ``[2^-30, 2^30]``, ``L`` is multiplied by the power of two that
    brings it into ``[1/2, 1)``: exact, and only the scale changes.  Data of
    ordinary scale (standardised, min-max, raw pixels) keep their start.

    Parameters
    ----------
    L : ndarray of shape (n_components, n_features)
    X : ndarray of shape (n_samples, n_features)
    return_factor : bool, default=False
        Also return the power of two ``L`` was multiplied by (1 when it was
        not): the stochastic solvers scale their step size by it.

    Returns
    -------
    start : ndarray of shape (n_components, n_features), float64
    factor : float
        Only with ``return_factor``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.init import rescaled_start
    >>> X = np.array([[0.0], [1e20], [3e20]])
    >>> float(rescaled_start(np.eye(1), X)[0, 0]) < 1e-19
    True
    >>> rescaled_start(np.eye(1), X / 1e20)  # ordinary scale: unchanged
    array([[1.]])
    """
    L = np.asarray(L, dtype=np.float64)
    exponent = 0
    if X.shape[0] >= 2 and L.size:
        with single_threaded_blas():
            Z = (X - X.mean(axis=0, dtype=np.float64)) @ L.T
        top = float(np.max(np.abs(Z)))
        if np.isfinite(top) and top > 0:
            rms = top * float(np.sqrt(np.mean((Z / top) ** 2)))
            if not 2.0 ** -START_SCALE_EXPONENT <= rms <= 2.0 ** START_SCALE_EXPONENT:
                exponent = -int(np.frexp(rms)[1])
    start = np.ldexp(L, exponent) if exponent else L
    return (start, float(2.0 ** exponent)) if return_factor else start


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

    d = X.shape[1]
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
# Prior metric
# --------------------------------------------------------------------------
def prior_matrix(prior, n_features, learner, names=PRIOR_NAMES, *, what="prior", definite=True):
    """The prior Mahalanobis matrix ``M0`` given by the user, checked.

    One rule for every learner with a ``prior`` (ITML, LSML, SDML): the
    same accepted forms, the same symmetry tolerance, the same test of
    definiteness and the same messages.

    Parameters
    ----------
    prior : 'identity', array-like of shape (n_features, n_features) or \
fitted learner
        * ``'identity'``: ``M0 = I``;
        * an array: a symmetric positive definite matrix; an asymmetry up
          to ``1e-7`` times its largest entry (rounding) is accepted and
          removed (``M0 = (A + A^T) / 2``);
        * a fitted fastmetric (or metric-learn) learner, or any fitted
          estimator with a linear map (see :func:`initialize_components`):
          its Mahalanobis matrix ``L^T L``, which must be positive definite (a learner with
          fewer components than features gives a singular matrix).

        The data-driven names (``'covariance'``, ``'random'``) are computed
        by each learner before it calls this function.
    n_features : int
        The number of features of the data.
    learner : str
        Name of the learner, for the messages.
    names : tuple of str, default=PRIOR_NAMES
        The names the learner accepts, listed in the messages.
    what : str, default='prior'
        The parameter's name, for the messages (MMC reads a square
        ``init`` as a starting metric).
    definite : bool, default=True
        Require a positive definite matrix (the LogDet learners); with
        False only symmetry is required (MMC projects its start onto the
        PSD cone itself).

    Returns
    -------
    M0 : ndarray of shape (n_features, n_features), float64
        Symmetric (exactly) and positive definite: its smallest eigenvalue
        exceeds ``n_features * eps`` times its largest.

    Raises
    ------
    TypeError
        ``prior`` is neither a name, a real array nor a learner.
    ValueError
        An unknown name, an unfitted learner, a wrong shape, NaN or
        infinity, an asymmetric matrix.
    numpy.linalg.LinAlgError
        (a ValueError) A matrix that is not positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.init import prior_matrix
    >>> prior_matrix([[2.0, 1.0], [1.0, 2.0]], 2, "ITML")
    array([[2., 1.],
           [1., 2.]])
    """
    d = int(n_features)
    if isinstance(prior, str):
        if prior == "identity":
            return np.eye(d)
        raise ValueError(
            f"{what}={prior!r} is not one of {names}, an array of shape (n_features, "
            f"n_features) = ({d}, {d}) or a fitted learner."
        )
    if _is_learner(prior):
        L = _fitted_components(prior, what, d)
        arr = L.T @ L
    else:
        arr = None if prior is None else np.asarray(prior)
        if arr is None or arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{what} must be one of {names}, a real array of shape (n_features, "
                f"n_features) or a fitted learner; got {type(prior).__name__}"
                + ("." if arr is None else f" with dtype {arr.dtype}.")
            )
        arr = arr.astype(np.float64)
    if arr.shape != (d, d):
        raise ValueError(
            f"{what} must have shape (n_features, n_features) = ({d}, {d}); got shape "
            f"{arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinity.")
    scale = float(np.abs(arr).max())
    asymmetry = float(np.abs(arr - arr.T).max())
    if asymmetry > _SYMMETRY_RTOL * scale:
        raise ValueError(
            f"{what} is not symmetric: its largest asymmetry |M - M^T| is {asymmetry:.3g}, "
            f"more than {_SYMMETRY_RTOL:g} times its largest entry ({scale:.3g})."
        )
    M0 = 0.5 * (arr + arr.T)
    if not definite:
        return M0
    with single_threaded_blas():
        w = scipy.linalg.eigvalsh(M0)
    floor = d * np.finfo(np.float64).eps * max(float(np.max(np.abs(w))), 1e-300)
    if not w[0] > floor:
        raise np.linalg.LinAlgError(
            f"{what} must be strictly positive definite ({learner}'s LogDet divergence needs "
            f"an invertible prior); its smallest eigenvalue is {w[0]:.3g}."
        )
    return np.ascontiguousarray(M0)

"""The base shared by every Mahalanobis metric learner of fastmetric.

A Mahalanobis learner holds a linear map ``L`` (``components_``, of shape
``(n_components, n_features)``) and measures

    d_M(x, x')^2 = (x - x')^T M (x - x') = ||L x - L x'||^2,   M = L^T L.

:class:`MahalanobisMixin` gives ``transform``, ``pair_distance``/
``pair_score``, ``get_metric`` (a picklable callable), ``get_mahalanobis_matrix``,
feature names and the optional L2 normalisation of the points (cosine
geometry).  The pairs classifier is in :mod:`fastmetric._core.pairs`, the
input checks in :mod:`fastmetric._core.inputs`, the initial map and the prior
in :mod:`fastmetric._core.init`.

The public names follow metric-learn's API (``components_``,
``get_mahalanobis_matrix``, ``pair_distance``, ``pair_score``, ``get_metric``,
``preprocessor``) so that code written against metric-learn runs unchanged.
"""
import functools
import warnings

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.inputs import check_pairs, points_from_indices
from fastmetric._core.rows import l2_normalize_rows
from fastmetric._core.threads import single_threaded_blas
from fastmetric._core.validation import check_index_pairs

__all__ = ["MahalanobisMixin", "SCORE_PAIRS_DEPRECATION"]

# metric-learn's exact warning text (its tests and users' warning filters
# match it), including its name "pair_distances" for pair_distance.
SCORE_PAIRS_DEPRECATION = (
    "score_pairs will be deprecated in release 0.7.0. Use pair_score to compute "
    "similarity scores, or pair_distances to compute distances."
)


# --------------------------------------------------------------------------
# The metric as a picklable callable
# --------------------------------------------------------------------------
def _embed_rows(X, L, n_jobs=None):
    """``X L^T`` for validated float32/float64 rows, in their dtype, by the
    kernels' row mapping: the AVX-512 small-product kernel where the CPU has
    it (about 1.7x faster than BLAS for a few dozen components), BLAS chunk
    by chunk elsewhere; ``n_jobs`` threads, the same result for any number."""
    from fastmetric._core.distances import DEF_ROW_CHUNK
    from fastmetric._core.distances import transform_rows as _transform
    from fastmetric._core.threads import effective_n_threads, threads_for_work

    X = np.ascontiguousarray(X)  # rows are validated float32/float64 already
    L = np.ascontiguousarray(L, dtype=X.dtype)
    n_threads = threads_for_work(effective_n_threads(n_jobs), X.shape[0], DEF_ROW_CHUNK)
    with single_threaded_blas():
        return _transform(X, L, DEF_ROW_CHUNK, n_threads)


def _float32_overflows(X, L, power=1):
    """Whether ``(X L^T)**power`` can overflow float32 for float32 rows X.

    A model fitted on tiny data can have ``components_`` near 1e300 (finite
    in float64, inf once cast to float32): its float32 arithmetic would give
    inf - inf = NaN.  The bound ``(d max|x| max|L|)^power`` is checked
    against float32's largest value; the callers then compute in float64.
    """
    if X.dtype != np.float32 or not X.size or not np.size(L):
        return False
    if not _float32_holds(L):  # L itself is inf in float32 (and 0 * inf is NaN)
        return True
    bound = float(X.shape[1]) * float(np.abs(X).max()) * float(np.abs(L).max())
    return not bound < (float(np.finfo(np.float32).max) / 4) ** (1.0 / power)


def _float32_holds(L):
    """Whether every entry of ``L`` (a map, or values mapped by one) is
    within float32's range (NaN: no)."""
    return float(np.abs(L).max(initial=0.0)) < float(np.finfo(np.float32).max)


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
        # A 1-D map (``components_ = np.array([3.1])``, set by hand for one
        # feature) is one row, as metric-learn reads it.
        self.components = np.atleast_2d(np.asarray(components, dtype=np.float64))
        self.normalize = bool(normalize)

    def __call__(self, u, v, squared=False):
        u0, v0 = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        d = self.components.shape[1]
        # One point each: shape (d,), or (1, d) as a row of a 2-D array.
        if u0.size != d or v0.size != d or max(u0.ndim, v0.ndim) > 2 \
                or (u0.ndim == 2 and u0.shape[0] != 1) or (v0.ndim == 2 and v0.shape[0] != 1):
            raise ValueError(
                f"the metric takes two points of {d} features (shape ({d},)); got arrays of "
                f"shapes {u0.shape} and {v0.shape}."
            )
        u, v = u0.ravel(), v0.ravel()
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
        from fastmetric._core.distances import paired_mahalanobis_distances

        if is_dask_array(pairs) or is_dask_array(getattr(self, "preprocessor", None)):
            self._check_fitted()
            return self._pair_sq_distances_dask(pairs)

        X, idx = self._pairs_points(pairs)
        if _float32_overflows(X, self.components_, power=2):
            X = X.astype(np.float64)  # the result is float64 anyway
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

        Raises
        ------
        ValueError
            When an entry of ``M`` is beyond the float range: features of
            a tiny scale (e.g. 1e-160) give a map ``L`` of the inverse scale,
            whose square overflows.  The embedding and the distances, which
            apply ``L`` to the points, are still exact.
        """
        self._check_fitted()
        L = self.components_
        with np.errstate(over="ignore", invalid="ignore"):
            M = L.T @ L
        if not np.all(np.isfinite(M)):
            raise ValueError(
                f"M = L^T L overflows {M.dtype}: components_ reach "
                f"{float(np.abs(L).max()):.3g} (learned on features of about the inverse "
                "scale). transform() and the distances apply L and are exact; to get M, "
                "rescale the data (e.g. StandardScaler) and fit again."
            )
        return M

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
        X = self._normalize_points(X)
        if _float32_overflows(X, self.components_):
            # float64 arithmetic, then float32 where the values fit; values
            # beyond float32 would come back as infinity (and NaN distances
            # downstream): said instead.
            Z = _embed_rows(X.astype(np.float64), self.components_, getattr(self, "n_jobs", None))
            if not _float32_holds(Z):
                raise ValueError(
                    f"the transformed values of this float32 X reach "
                    f"{float(np.abs(Z).max()):.3g}, beyond float32's range "
                    f"({float(np.finfo(np.float32).max):.3g}; components_ reach "
                    f"{float(np.abs(self.components_).max()):.3g}); transform "
                    "X.astype(np.float64) instead.")
            return Z.astype(np.float32)
        return _embed_rows(X, self.components_, getattr(self, "n_jobs", None))

    # -- dask arrays: lazy, block by block -----------------------------------
    def _transform_dask(self, X):
        from fastmetric._core.dask_support import check_dask_points, map_rows

        X = check_dask_points(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        if X.dtype == np.float32 and not _float32_holds(self.components_):
            # Cast to float32 the map would hold infinity (NaN products).
            raise ValueError(
                f"components_ reach {float(np.abs(self.components_).max()):.3g}, beyond "
                "float32's range: transform X.astype(np.float64) instead of this float32 "
                "dask array.")
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
        """Deprecated: the learned distance of each pair, as :meth:`pair_distance`.

        metric-learn 0.7 deprecated ``score_pairs`` in favour of
        :meth:`pair_distance` (distances) and :meth:`pair_score`
        (similarities); it is kept, with metric-learn's FutureWarning text,
        so that code filtering that warning keeps working.  Takes and
        returns what :meth:`pair_distance` does.
        """
        warnings.warn(SCORE_PAIRS_DEPRECATION, FutureWarning, stacklevel=2)
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

"""Nearest neighbours in a learned metric: exact search on the Cython core.

The metric is ``d(x, y) = ||L x - L y||`` for a map ``L`` given as a fitted
fastmetric learner (its ``transform``, normalisation included), an array, or
nothing (Euclidean).  Rows are mapped once; the search kernel
(:mod:`fastmetric.kernels.neighbors`) then finds, for each query, its k
nearest database rows or all rows within a radius, exactly: distances are
float64 sums of squared differences of the mapped rows, ties are broken by
the lower index, and the result is the same for any number of threads.

* :func:`kneighbors` and :func:`radius_neighbors`: one call, no estimator.
* :class:`MahalanobisNeighbors`: scikit-learn's ``NearestNeighbors``
  interface (``fit``, ``kneighbors``, ``radius_neighbors``,
  ``kneighbors_graph``, ``radius_neighbors_graph``).
* :class:`MahalanobisKNeighborsTransformer` and
  :class:`MahalanobisRadiusNeighborsTransformer`: sparse distance graphs for
  estimators that take ``metric='precomputed'`` (KNeighborsClassifier,
  Isomap, SpectralEmbedding, DBSCAN, ...).

``algorithm='hnsw'`` answers k-nearest queries approximately with hnswlib
(``pip install 'fastmetric[ann]'``); radius queries stay exact.  Dask arrays
are accepted as queries (searched block by block) and as the fitted data
(each row block searched on its own, the per-block k nearest merged
exactly).
"""
import numbers
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.docs import shared_docs
from fastmetric._core.params import integers, reals, shared, store_params
from fastmetric._core.search import (
    ALGORITHMS,
    Embedding,
    _is_fitted,
    check_n_neighbors,
    check_radius,
    dask_kneighbors,
    make_index,
)

__all__ = [
    "MahalanobisKNeighborsTransformer",
    "MahalanobisNeighbors",
    "MahalanobisRadiusNeighborsTransformer",
    "kneighbors",
    "radius_neighbors",
]


def kneighbors(X, X_db=None, n_neighbors=5, *, metric=None, return_distance=True,
               algorithm="auto", n_jobs=None):
    """The k nearest database rows of each query in the learned metric.

    Parameters
    ----------
    X : array-like of shape (n_queries, n_features)
        Query points.
    X_db : array-like of shape (n_db, n_features) or None
        Database points.  ``None``: the queries themselves, each point's own
        row left out (leave-one-out).
    n_neighbors : int, default=5
    metric : None, array of shape (k, n_features), or a fitted fastmetric learner
        The map L (see :class:`MahalanobisNeighbors`).  There are no labels
        here to fit a learner on: fit it first, or use
        ``MahalanobisNeighbors(metric=learner).fit(X_db, y)``.
    return_distance : bool, default=True
    algorithm : {'auto', 'brute', 'hnsw'}, default='auto'
        'auto' and 'brute' are exact; 'hnsw' approximate (hnswlib).
    n_jobs : int or None
        Threads (None: as OpenMP allows; -1: all CPUs).

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float64
        Only when ``return_distance``.  Sorted increasing.
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Rows of ``X_db`` (or of X).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``metric`` is an unfitted learner.
    """
    _check_fitted_metric(metric, "kneighbors")
    nn = MahalanobisNeighbors(n_neighbors=n_neighbors, metric=metric, algorithm=algorithm,
                              n_jobs=n_jobs)
    if X_db is None:
        return nn.fit(X).kneighbors(None, return_distance=return_distance)
    return nn.fit(X_db).kneighbors(X, return_distance=return_distance)


def radius_neighbors(X, X_db=None, radius=1.0, *, metric=None, return_distance=True,
                     n_jobs=None):
    """The database rows within ``radius`` of each query (distance <= radius).

    Parameters are those of :func:`kneighbors`; the search is always exact.

    Returns
    -------
    distances : ndarray of shape (n_queries,) of float64 arrays
        Only when ``return_distance``; each sorted increasing (ties: index).
    indices : ndarray of shape (n_queries,) of int64 arrays

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If ``metric`` is an unfitted learner.
    """
    _check_fitted_metric(metric, "radius_neighbors")
    nn = MahalanobisNeighbors(radius=radius, metric=metric, n_jobs=n_jobs)
    if X_db is None:
        return nn.fit(X).radius_neighbors(None, return_distance=return_distance)
    return nn.fit(X_db).radius_neighbors(X, return_distance=return_distance)


def _check_fitted_metric(metric, function):
    """The function forms have no labels: an unfitted learner is an error
    (rather than a fit without y deep inside)."""
    if hasattr(metric, "transform") and not _is_fitted(metric):
        name = type(metric).__name__
        raise NotFittedError(
            f"metric={name}(...) is not fitted: {function}() takes a fitted learner and has no "
            f"labels to fit one on.  Fit it first (metric={name}(...).fit(X, y)), or use "
            f"MahalanobisNeighbors(metric={name}(...)).fit(X_db, y), which fits a clone.")


# hnswlib's parameters and their least valid value: hnswlib takes them as
# unsigned integers (a negative one is a TypeError of its bindings), and a
# graph degree M below 2 breaks its level sampling (M=1 fails to allocate,
# M=0 crashes the interpreter).
_HNSW_MINIMUM = {"M": 2, "ef_construction": 1, "ef": 1, "random_state": 0}


def _check_algorithm_params(algorithm, params):
    """Check the values of the hnsw parameters here, where the error can
    name ``algorithm_params``; unknown names are reported by the index."""
    if algorithm != "hnsw" or not params:
        return
    for name, low in _HNSW_MINIMUM.items():
        if name not in params:
            continue
        value = params[name]
        if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)
                or value < low):
            raise ValueError(f"algorithm_params[{name!r}] must be an integer >= {low} for "
                             f"algorithm='hnsw'; got {value!r}.")


def _validated(estimator, X, reset):
    """X checked and converted as scikit-learn does (float64/float32,
    C-contiguous, n_features_in_ set or compared), except dask arrays and the
    index input of a learner that has a preprocessor (the learner checks
    those itself)."""
    metric = getattr(estimator, "metric", None)
    if is_dask_array(X) or getattr(metric, "preprocessor", None) is not None:
        return X
    return validate_data(estimator, X, dtype=[np.float64, np.float32], order="C", reset=reset)


# The constructor parameters of the three estimators (scikit-learn's
# mechanism, checked once per fit, as for the learners).
_CONSTRAINTS = {
    "n_neighbors": [integers(1)],
    "radius": [reals(0)],
    # Euclidean, a map L, or a (fitted or unfitted) learner or pipeline.
    "metric": [None, "array-like", HasMethods("transform")],
    "algorithm": [StrOptions(set(ALGORITHMS))],
    "algorithm_params": [None, dict],
    "mode": [StrOptions({"connectivity", "distance"})],
    **shared("n_jobs"),
}


def _constraints(*names):
    return {name: _CONSTRAINTS[name] for name in names}


def _object_rows(indptr, values):
    out = np.empty(len(indptr) - 1, dtype=object)
    for i in range(len(indptr) - 1):
        out[i] = values[indptr[i]:indptr[i + 1]]
    return out


@shared_docs
class MahalanobisNeighbors(BaseEstimator):
    """Unsupervised nearest neighbours in a learned Mahalanobis metric.

    scikit-learn's ``NearestNeighbors`` interface, on fastmetric's exact
    search kernel.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours returned by :meth:`kneighbors` when not given there.
    radius : float, default=1.0
        Radius of :meth:`radius_neighbors` when not given there.
    metric : None, array-like of shape (k, n_features), or a fastmetric learner
        ``None``: Euclidean.  An array ``L``: ``d(x, y) = ||L x - L y||``.
        A fitted learner (or a fitted pipeline ending with one): its
        ``transform`` maps the rows.  An unfitted learner is cloned and
        fitted on ``fit(X, y)`` (so that the estimator can be cloned and
        cross-validated).
    algorithm : {'auto', 'brute', 'hnsw'}, default='auto'
        'auto' and 'brute': exact search.  'hnsw': approximate k-nearest
        search with hnswlib (optional dependency); radius search stays exact.
    algorithm_params : dict or None
        For 'hnsw', integers: ``M`` (graph degree, at least 2),
        ``ef_construction`` and ``ef`` (at least 1), ``random_state`` (at
        least 0).
    n_jobs : int or None
        Threads of the search (None: as OpenMP allows; -1: all CPUs).

    Attributes
    ----------
    metric_ : the fitted learner, the map L as float64, or None
    n_features_in_ : int
    n_samples_fit_ : int
    effective_metric_ : str
        'mahalanobis' (or 'euclidean' when ``metric`` is None).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.neighbors import MahalanobisNeighbors
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    >>> nn = MahalanobisNeighbors(n_neighbors=1, metric=np.diag([2.0, 1.0])).fit(X)
    >>> dist, ind = nn.kneighbors([[0.8, 0.0]])
    >>> ind.tolist(), dist.round(3).tolist()
    ([[1]], [[0.4]])
    """

    _parameter_constraints: ClassVar[dict] = _constraints(
        "n_neighbors", "radius", "metric", "algorithm", "algorithm_params", "n_jobs")

    def __init__(self, n_neighbors=5, radius=1.0, metric=None, algorithm="auto",
                 algorithm_params=None, n_jobs=None):
        store_params(self, locals())

    # -- fitting -------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Index the rows of X (mapped once through the metric).

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None
            Only used to fit an unfitted learner given as ``metric``.

        {returns_self}
        """
        X = _validated(self, X, reset=True)
        _check_algorithm_params(self.algorithm, self.algorithm_params)
        self._embedding = Embedding(self.metric).fit(X, y)
        self.metric_ = (self._embedding.learner_ if self._embedding.kind_ == "learner"
                        else self._embedding.L_)
        self.effective_metric_ = "euclidean" if self.metric is None else "mahalanobis"
        if is_dask_array(X):
            Z = self._embedding.transform_dask(X, name="X")
            self._Z_dask = Z
            self._index = None
            self._Z = None
            self.n_features_in_ = X.shape[1]
        else:
            self._Z_dask = None
            Z = self._embedding.transform(X, name="X", n_jobs=self.n_jobs)
            self._Z = Z
            self._index = make_index(Z, self.algorithm, self.algorithm_params, n_jobs=self.n_jobs)
            self.n_features_in_ = np.shape(X)[1]
        self.n_samples_fit_ = Z.shape[0]
        return self

    def _check_fitted(self):
        check_is_fitted(self, "n_samples_fit_")

    def _exact_index(self):
        """The exact index (built on demand when the main one is approximate)."""
        from fastmetric._core.search import ExactIndex

        if self._Z_dask is not None:
            raise ValueError("radius queries against a dask database are not supported; fit on "
                             "an in-memory array.")
        if self.algorithm != "hnsw":
            return self._index
        if getattr(self, "_exact", None) is None:
            self._exact = ExactIndex(self._Z, n_jobs=self.n_jobs)
        return self._exact

    def _map_queries(self, X):
        if is_dask_array(X):
            return self._embedding.transform_dask(X, name="X")
        X = _validated(self, X, reset=False)
        Z = self._embedding.transform(X, name="X", n_jobs=self.n_jobs)
        if Z.shape[0] == 0:
            raise ValueError("X is empty: there are no queries.")
        if self._embedding.kind_ == "identity" and Z.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Z.shape[1]} features, but the fitted data has "
                             f"{self.n_features_in_}.")
        return Z

    # -- k nearest -----------------------------------------------------------
    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The k nearest fitted rows of each query.

        Parameters
        ----------
        X : array-like or dask array of shape (n_queries, n_features), or None
            ``None``: the fitted rows, each one's own row left out.
        n_neighbors : int or None
            Default: the ``n_neighbors`` parameter.
        return_distance : bool, default=True

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors), float64
            Learned distances, increasing (only with ``return_distance``).
        neigh_ind : ndarray of shape (n_queries, n_neighbors), int64
            Ties are broken by the lower index.  Lazy dask arrays when X or
            the fitted data is a dask array.
        """
        self._check_fitted()
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        exclude_self = X is None
        if exclude_self and self.n_samples_fit_ < 2:
            raise ValueError(
                f"kneighbors(X=None) leaves each point's own row out, and the fitted data has "
                f"only {self.n_samples_fit_} row: there are not enough other points to return "
                "any neighbour.  Fit at least 2 rows, or pass query points X.")
        k = check_n_neighbors(k, self.n_samples_fit_ - (1 if exclude_self else 0), exclude_self)
        if exclude_self:
            Zq = self._Z if self._Z_dask is None else self._Z_dask
        else:
            Zq = self._map_queries(X)
        if self._Z_dask is not None or is_dask_array(Zq):
            db = self._Z_dask if self._Z_dask is not None else self._index
            dist, idx = dask_kneighbors(Zq, db, k, exclude_self=exclude_self,
                                        algorithm=self.algorithm, params=self.algorithm_params)
        else:
            dist, idx = self._index.kneighbors(Zq, k, exclude_self=exclude_self, squared=False)
        return (dist, idx) if return_distance else idx

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of the k nearest neighbours (CSR).

        Parameters
        ----------
        X, n_neighbors : as :meth:`kneighbors`
        mode : {'connectivity', 'distance'}, default='connectivity'

        Returns
        -------
        A : scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit)
            Row i holds its k neighbours in increasing distance order.
        """
        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode must be 'connectivity' or 'distance'; got {mode!r}.")
        dist, idx = self.kneighbors(X, n_neighbors, return_distance=True)
        if is_dask_array(idx):
            from fastmetric._core.dask_support import _compute

            dist, idx = _compute(dist, idx)
        nq, k = idx.shape
        data = dist.ravel() if mode == "distance" else np.ones(nq * k)
        return sp.csr_matrix((data, idx.ravel(), np.arange(0, nq * k + 1, k)),
                             shape=(nq, self.n_samples_fit_))

    # -- radius ----------------------------------------------------------------
    def _radius_csr(self, X, radius):
        self._check_fitted()
        r = check_radius(self.radius if radius is None else radius)
        index = self._exact_index()
        if X is None:
            return index.radius(self._Z, r, exclude_self=True, squared=False)
        Zq = self._map_queries(X)
        if is_dask_array(Zq):
            from fastmetric._core.dask_support import _compute

            (Zq,) = _compute(Zq)
        return index.radius(Zq, r, squared=False)

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=True):
        """The fitted rows within ``radius`` of each query (distance <= radius).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or None
            ``None``: the fitted rows, each one's own row left out.
        radius : float or None
            Default: the ``radius`` parameter.
        return_distance : bool, default=True
        sort_results : bool, default=True
            Results are always sorted by (distance, index); accepted for
            scikit-learn compatibility.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,) of float64 arrays
        neigh_ind : ndarray of shape (n_queries,) of int64 arrays
            A query with no row within the radius gets empty arrays.
        """
        indptr, idx, dist = self._radius_csr(X, radius)
        ind = _object_rows(indptr, idx)
        if not return_distance:
            return ind
        return _object_rows(indptr, dist), ind

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity",
                               sort_results=True):
        """Sparse graph of the neighbours within ``radius`` (CSR).

        Returns
        -------
        A : scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit)
        """
        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode must be 'connectivity' or 'distance'; got {mode!r}.")
        indptr, idx, dist = self._radius_csr(X, radius)
        data = dist if mode == "distance" else np.ones(idx.shape[0])
        return sp.csr_matrix((data, idx, indptr), shape=(len(indptr) - 1, self.n_samples_fit_))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


# The attributes of both graph transformers (a numpydoc fragment).
_GRAPH_ATTRIBUTES = """\
neighbors_ : MahalanobisNeighbors
    The fitted index of the rows.
n_features_in_, n_samples_fit_ : int
    The number of features and of rows seen in ``fit``."""


class _GraphTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The graph transformers' shared ``fit``, and ``get_feature_names_out``
    as scikit-learn's ``KNeighborsTransformer`` has it: one output feature
    per fitted row, named by the lowercased class name and the row's index
    (``mahalanobiskneighborstransformer0``, ...).
    """

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Index the rows of X (see :meth:`MahalanobisNeighbors.fit`)."""
        X = _validated(self, X, reset=True)
        self.neighbors_ = self._make_neighbors().fit(X, y)
        self.n_samples_fit_ = self.neighbors_.n_samples_fit_
        # The graph's columns are the fitted rows: ClassNamePrefixFeaturesOutMixin
        # names that many output features (as KNeighborsTransformer.fit sets it).
        self._n_features_out = self.n_samples_fit_
        return self

    def fit_transform(self, X, y=None):
        """``fit(X, y).transform(X)``."""
        return self.fit(X, y).transform(X)


@shared_docs(graph_attributes=_GRAPH_ATTRIBUTES)
class MahalanobisKNeighborsTransformer(_GraphTransformer):
    """The k-nearest-neighbours graph in a learned metric, as a transformer.

    ``transform(X)`` gives the sparse graph of X's rows against the fitted
    rows, as scikit-learn's ``KNeighborsTransformer``: in 'distance' mode
    each row has ``n_neighbors + 1`` entries (a fitted point is its own
    nearest neighbour), so that estimators given ``metric='precomputed'``
    (KNeighborsClassifier, Isomap, DBSCAN, SpectralEmbedding, TSNE) can use
    ``n_neighbors`` others.

    Parameters
    ----------
    mode : {'distance', 'connectivity'}, default='distance'
    n_neighbors : int, default=5
    metric, algorithm, algorithm_params, n_jobs :
        As :class:`MahalanobisNeighbors`.

    Attributes
    ----------
    {graph_attributes}

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastmetric.neighbors import MahalanobisKNeighborsTransformer
    >>> X, y = np.array([[0.0], [0.2], [3.0], [3.1]]), [0, 0, 1, 1]
    >>> clf = make_pipeline(MahalanobisKNeighborsTransformer(n_neighbors=1),
    ...                     KNeighborsClassifier(n_neighbors=1, metric="precomputed"))
    >>> clf.fit(X, y).predict([[0.1], [2.9]]).tolist()
    [0, 1]
    """

    _parameter_constraints: ClassVar[dict] = _constraints(
        "mode", "n_neighbors", "metric", "algorithm", "algorithm_params", "n_jobs")

    def __init__(self, *, mode="distance", n_neighbors=5, metric=None, algorithm="auto",
                 algorithm_params=None, n_jobs=None):
        store_params(self, locals())

    def _make_neighbors(self):
        return MahalanobisNeighbors(n_neighbors=self.n_neighbors, metric=self.metric,
                                    algorithm=self.algorithm,
                                    algorithm_params=self.algorithm_params, n_jobs=self.n_jobs)

    def transform(self, X):
        """Sparse (n_queries, n_samples_fit) graph of X against the fitted rows.

        Returns
        -------
        Xt : scipy.sparse.csr_matrix
        """
        check_is_fitted(self, "neighbors_")
        X = _validated(self, X, reset=False)
        add_one = self.mode == "distance"
        k = min(self.n_neighbors + add_one, self.n_samples_fit_)
        return self.neighbors_.kneighbors_graph(X, n_neighbors=k, mode=self.mode)


@shared_docs(graph_attributes=_GRAPH_ATTRIBUTES)
class MahalanobisRadiusNeighborsTransformer(_GraphTransformer):
    """The graph of neighbours within a radius in a learned metric, as a
    transformer (scikit-learn's ``RadiusNeighborsTransformer``), e.g. for
    ``DBSCAN(metric='precomputed')``.

    Parameters
    ----------
    mode : {'distance', 'connectivity'}, default='distance'
    radius : float, default=1.0
    metric, n_jobs : as :class:`MahalanobisNeighbors`

    Attributes
    ----------
    {graph_attributes}

    Examples
    --------
    Two groups of points within 0.5 of each other, and a lone point (noise, -1):

    >>> from sklearn.cluster import DBSCAN
    >>> from fastmetric.neighbors import MahalanobisRadiusNeighborsTransformer
    >>> X = [[0.0], [0.2], [3.0], [3.1], [9.0]]
    >>> G = MahalanobisRadiusNeighborsTransformer(radius=0.5).fit_transform(X)
    >>> DBSCAN(eps=0.5, min_samples=2, metric="precomputed").fit_predict(G).tolist()
    [0, 0, 1, 1, -1]
    """

    _parameter_constraints: ClassVar[dict] = _constraints("mode", "radius", "metric", "n_jobs")

    def __init__(self, *, mode="distance", radius=1.0, metric=None, n_jobs=None):
        store_params(self, locals())

    def _make_neighbors(self):
        return MahalanobisNeighbors(radius=self.radius, metric=self.metric, n_jobs=self.n_jobs)

    def transform(self, X):
        """Sparse (n_queries, n_samples_fit) graph of the fitted rows within
        the radius of each row of X (each fitted row included in its own).

        Returns
        -------
        Xt : scipy.sparse.csr_matrix
        """
        check_is_fitted(self, "neighbors_")
        X = _validated(self, X, reset=False)
        return self.neighbors_.radius_neighbors_graph(X, mode=self.mode)

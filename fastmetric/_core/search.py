"""Neighbour search in a learned metric: the Python layer of the search kernel.

* :class:`Embedding` maps raw rows into the space where the metric is
  Euclidean (``z = L x``), from a fitted learner (its ``transform``, which
  also applies its normalisation), an array ``L``, or nothing (Euclidean).
* :class:`ExactIndex` holds mapped database rows packed once for the
  kernel (:mod:`fastmetric.kernels.neighbors`) and answers k-nearest and
  radius queries exactly, the same for any thread count.
* :class:`HNSWIndex` answers k-nearest queries approximately with hnswlib
  (an optional dependency, imported only when asked for).
* :func:`dask_kneighbors` runs either over dask arrays: query blocks against
  an in-memory database (blockwise), or against a database partitioned in
  row blocks, each block giving its own k nearest, merged exactly.
"""
import numbers

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from fastmetric._core.base import _embed_rows
from fastmetric._core.dask_support import check_dask_points, import_dask, is_dask_array
from fastmetric._core.threads import (
    effective_n_threads,
    multiply_adds,
    single_threaded_blas,
    threads_for_work,
)
from fastmetric._core.validation import check_points, check_squared_scale
from fastmetric.kernels.neighbors import BLOCK_ROWS, _kneighbors, _pack, _radius

ALGORITHMS = ("auto", "brute", "hnsw")


# ---------------------------------------------------------------------------
# The map into the learned space
# ---------------------------------------------------------------------------
def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator: treat as usable
        return True
    return True


def _needs_labels(learner):
    """Whether ``learner.fit`` requires y (scikit-learn's estimator tags)."""
    try:
        return bool(get_tags(learner).target_tags.required)
    except (AttributeError, TypeError, ValueError):  # not an estimator: no tags to read
        return False


class Embedding:
    """How raw rows become mapped rows: ``z = L x`` (or a learner's transform).

    Parameters
    ----------
    metric : None, array-like of shape (k, d), or a fastmetric learner
        ``None``: Euclidean (rows used as they are).  An array: the map L.
        A fitted learner (or any fitted transformer, e.g. a pipeline ending
        with one): its ``transform``.  An unfitted one is cloned and fitted
        on ``X, y`` by :meth:`fit`.
    """

    def __init__(self, metric=None):
        self.metric = metric

    def fit(self, X=None, y=None):
        """Resolve the metric (fitting a clone of an unfitted learner on X, y)."""
        metric = self.metric
        self.kind_ = "identity"
        self.L_ = None
        self.learner_ = None
        if metric is None:
            return self
        if hasattr(metric, "transform"):
            self.kind_ = "learner"
            if _is_fitted(metric):
                self.learner_ = metric
            else:
                if X is None:
                    raise ValueError(
                        f"metric={type(metric).__name__}(...) is not fitted and there is no data "
                        "to fit it on; fit it first or pass X (and y) to fit.")
                if y is None and _needs_labels(metric):
                    raise ValueError(
                        f"metric={type(metric).__name__}(...) is not fitted and learns from "
                        "labels: pass them to fit (fit(X, y)), or fit the learner first.")
                if is_dask_array(X):
                    self.learner_ = clone(metric).fit(X, y)
                else:
                    self.learner_ = clone(metric).fit(X, y) if y is not None else clone(metric).fit(X)
            return self
        L = np.asarray(metric)
        if L.dtype.kind not in "biuf":
            raise TypeError(
                "metric must be None, a (k, d) array L, or a fastmetric learner; got "
                f"{type(metric).__name__}" + (f" of dtype {L.dtype}" if hasattr(L, "dtype") else "")
                + ".")
        if L.ndim != 2 or L.shape[0] < 1 or L.shape[1] < 1:
            raise ValueError(f"metric as an array must be a (k, d) map L; got shape {L.shape}.")
        if not np.isfinite(L).all():
            raise ValueError("metric (the map L) contains NaN or infinity.")
        self.kind_ = "matrix"
        self.L_ = np.asarray(L, dtype=np.float64)
        return self

    @property
    def n_features_in(self):
        if self.kind_ == "matrix":
            return self.L_.shape[1]
        if self.kind_ == "learner":
            return getattr(self.learner_, "n_features_in_", None)
        return None

    def transform(self, X, name="X", n_jobs=None):
        """Mapped rows of X: C-contiguous float32 (for float32 input) or float64."""
        if self.kind_ == "learner":
            Z = self.learner_.transform(X)
            Z = np.asarray(Z)
            if Z.dtype not in (np.float32, np.float64):
                Z = Z.astype(np.float64)
            return np.ascontiguousarray(Z)
        X = check_points(X, name=name)
        if self.kind_ == "matrix":
            if X.shape[1] != self.L_.shape[1]:
                raise ValueError(f"{name} has {X.shape[1]} features but the map L has shape "
                                 f"{self.L_.shape} (it takes {self.L_.shape[1]}).")
            with single_threaded_blas():
                return np.ascontiguousarray(_embed_rows(X, self.L_, n_jobs=n_jobs))
        return X

    def transform_dask(self, X, name="X"):
        """Lazily mapped row blocks of a dask array."""
        X = check_dask_points(X, name=name)
        out_dim = (self.L_.shape[0] if self.kind_ == "matrix" else None)
        if self.kind_ == "learner":
            return self.learner_.transform(X)
        if out_dim is None:
            return X
        return X.map_blocks(_map_block, self, dtype=X.dtype, chunks=(X.chunks[0], (out_dim,)))


def _map_block(block, embedding):
    # One thread per block: dask runs blocks side by side on the cores.
    return embedding.transform(block, n_jobs=1)


def search_threads(n_jobs, n_queries, work=None):
    """Threads for a search of n_queries: at most one per block of queries.
    ``work``: the search's multiply-adds (queries x database rows x
    dimensions), which sets the default thread count under load."""
    return threads_for_work(effective_n_threads(n_jobs, work=work), n_queries, BLOCK_ROWS)


def check_n_neighbors(n_neighbors, available, exclude_self=False):
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, numbers.Integral):
        raise TypeError(f"n_neighbors must be an integer; got {n_neighbors!r}.")
    if n_neighbors < 1 or n_neighbors > available:
        extra = " (each point's own row is left out)" if exclude_self else ""
        if available < 1:
            raise ValueError(f"there is no point to return as a neighbour{extra}; "
                             f"n_neighbors={n_neighbors} asked.")
        raise ValueError(f"n_neighbors must be in [1, {available}]{extra}; got {n_neighbors}.")
    return int(n_neighbors)


def check_radius(radius):
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not radius >= 0 \
            or not np.isfinite(radius):
        raise ValueError(f"radius must be a finite number >= 0; got {radius!r}.")
    return float(radius)


# ---------------------------------------------------------------------------
# Exact search
# ---------------------------------------------------------------------------
# float64 rows all below this magnitude are searched at a power-of-two scale.
# The kernel sums the squared differences in float64: for rows of about
# 1e-154 and less these fall below the smallest normal double (to zero
# below about 1e-162), so distinct rows tied at distance 0 and the
# neighbours came out in index order.  Multiplying every row (and every
# query) by one power of two is exact and keeps every comparison, so rows
# above the cut would be searched the same way at either scale; the cut
# only decides when the copy is worth making.  float32 rows never underflow
# there (their squares are summed in float64).
TINY_ROWS = 2.0 ** -256


class ExactIndex:
    """Mapped database rows packed for the exact search kernel.

    Parameters
    ----------
    Z : ndarray of shape (n, d), float32 or float64
        Mapped database rows.
    n_jobs : int or None
        Threads for packing (and the default for queries).

    Attributes
    ----------
    scale_exp : int
        The rows (and the queries) are searched multiplied by
        ``2 ** scale_exp``: 0, or for float64 rows that are all below
        ``TINY_ROWS`` the power that brings their largest to [0.5, 1).
        Distances are returned in the rows' own units.
    """

    def __init__(self, Z, n_jobs=None):
        Z = np.ascontiguousarray(Z)
        top = float(np.abs(Z).max()) if Z.size else 0.0
        self.scale_exp = 0
        if Z.dtype == np.float64 and 0.0 < top < TINY_ROWS:
            self.scale_exp = -int(np.frexp(top)[1])
            Z, top = np.ldexp(Z, self.scale_exp), float(np.ldexp(top, self.scale_exp))
        # Distances far beyond the float range would compare as inf (no
        # neighbour found): refuse them.
        check_squared_scale(Z, "the mapped rows", top=top)
        n_threads = threads_for_work(effective_n_threads(n_jobs), Z.shape[0], 4096)
        self.db = _pack(Z, n_threads)
        self.n_jobs = n_jobs

    @property
    def n(self):
        return self.db.n

    @property
    def dtype(self):
        return self.db.dtype

    def _queries(self, Zq):
        Zq = np.ascontiguousarray(Zq, dtype=self.db.dtype)
        if self.scale_exp:
            Zq = np.ldexp(Zq, self.scale_exp)
            check_squared_scale(
                Zq, f"the mapped queries (multiplied by 2**{self.scale_exp} with the rows, "
                    f"which are all below {TINY_ROWS:.3g})")
        else:
            check_squared_scale(Zq, "the mapped queries")
        return Zq

    def _in_own_units(self, dist2, squared):
        """Squared distances of the search back in the rows' units (or, with
        ``squared=False``, distances: the root taken first, so that distances
        of tiny rows keep their digits)."""
        if squared:
            return np.ldexp(dist2, -2 * self.scale_exp) if self.scale_exp else dist2
        dist = np.sqrt(dist2)
        return np.ldexp(dist, -self.scale_exp) if self.scale_exp else dist

    def _search(self, kernel, Zq, bound, exclude_self, self_shift, n_jobs):
        """One kernel call: the queries in the database's dtype, the threads
        for their count, BLAS on one thread inside our parallel region."""
        Zq = self._queries(Zq)
        n_threads = search_threads(self.n_jobs if n_jobs is None else n_jobs, Zq.shape[0],
                                   work=multiply_adds((Zq.shape[0], Zq.shape[1], self.n)))
        with single_threaded_blas():
            return kernel(Zq, self.db, bound, exclude_self=exclude_self, self_shift=self_shift,
                          n_threads=n_threads)

    def kneighbors(self, Zq, k, exclude_self=False, self_shift=0, n_jobs=None, squared=True):
        """``(dist2, idx)`` of the k nearest: float64 squared distances (with
        ``squared=False`` distances), int64 rows."""
        dist2, idx = self._search(_kneighbors, Zq, k, exclude_self, self_shift, n_jobs)
        return self._in_own_units(dist2, squared), idx

    def radius(self, Zq, radius, exclude_self=False, self_shift=0, n_jobs=None, squared=True):
        """``(indptr, idx, dist2)``: CSR lists of the rows within ``radius``
        (with ``squared=False`` distances instead of ``dist2``)."""
        bound = float(np.ldexp(radius, self.scale_exp)) if self.scale_exp else radius
        indptr, idx, dist2 = self._search(_radius, Zq, bound, exclude_self, self_shift, n_jobs)
        return indptr, idx, self._in_own_units(dist2, squared)


# ---------------------------------------------------------------------------
# Approximate search (hnswlib)
# ---------------------------------------------------------------------------
def import_hnswlib():
    try:
        import hnswlib
    except ImportError as exc:
        raise ImportError(
            "algorithm='hnsw' needs hnswlib, an optional dependency: pip install "
            "'fastmetric[ann]' (or pip install hnswlib).") from exc
    return hnswlib


HNSW_DEFAULTS = {"M": 16, "ef_construction": 200, "ef": 100, "random_state": 0}


class HNSWIndex:
    """Approximate k nearest neighbours by a hierarchical navigable small-world
    graph (hnswlib), over the mapped rows (float32 inside hnswlib).

    Parameters
    ----------
    Z : ndarray of shape (n, d)
    params : dict or None
        ``M`` (graph degree), ``ef_construction``, ``ef`` (search breadth:
        at least the number of neighbours asked for is used), ``random_state``.
    """

    def __init__(self, Z, params=None, n_jobs=None):
        hnswlib = import_hnswlib()
        params = {**HNSW_DEFAULTS, **(params or {})}
        unknown = set(params) - set(HNSW_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown hnsw parameter(s) {sorted(unknown)}; known: "
                             f"{sorted(HNSW_DEFAULTS)}.")
        self.params = params
        self.n_jobs = n_jobs
        # hnswlib computes in float32: data beyond its range would be inf.
        check_squared_scale(np.asarray(Z), "the mapped rows", np.float32)
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        self.n, d = Z.shape
        self.dtype = np.dtype(np.float32)
        self.index = hnswlib.Index(space="l2", dim=d)
        self.index.init_index(max_elements=self.n, ef_construction=int(params["ef_construction"]),
                              M=int(params["M"]), random_seed=int(params["random_state"]))
        self.index.add_items(Z, np.arange(self.n), num_threads=effective_n_threads(n_jobs))

    def kneighbors(self, Zq, k, exclude_self=False, self_shift=0, n_jobs=None, squared=True):
        """``(dist2, idx)`` of the k nearest found (approximately): float64
        squared distances (with ``squared=False`` distances), int64 rows."""
        check_squared_scale(np.asarray(Zq), "the mapped queries", np.float32)
        Zq = np.ascontiguousarray(Zq, dtype=np.float32)
        kk = min(self.n, k + 1) if exclude_self else k
        self.index.set_ef(max(int(self.params["ef"]), kk))
        labels, dist = self.index.knn_query(
            Zq, k=kk, num_threads=effective_n_threads(self.n_jobs if n_jobs is None else n_jobs))
        labels = labels.astype(np.int64)
        dist = dist.astype(np.float64)
        if exclude_self:
            own = labels == (np.arange(Zq.shape[0]) + self_shift)[:, None]
            # Drop each query's own row (or the last when it was not found).
            own[~own.any(axis=1), -1] = True
            keep = ~own
            labels = labels[keep].reshape(Zq.shape[0], kk - 1)[:, :k]
            dist = dist[keep].reshape(Zq.shape[0], kk - 1)[:, :k]
        order = np.lexsort((labels, dist), axis=1) if dist.size else np.zeros_like(labels)
        rows = np.arange(labels.shape[0])[:, None]
        dist = dist[rows, order]
        return (dist if squared else np.sqrt(dist)), labels[rows, order]


def make_index(Z, algorithm="auto", params=None, n_jobs=None):
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}.")
    if algorithm == "hnsw":
        return HNSWIndex(Z, params, n_jobs=n_jobs)
    if params:
        raise ValueError(f"algorithm_params apply to algorithm='hnsw' only; got {params!r} with "
                         f"algorithm={algorithm!r}.")
    return ExactIndex(Z, n_jobs=n_jobs)


# ---------------------------------------------------------------------------
# Merging partial results exactly, and dask
# ---------------------------------------------------------------------------
def merge_topk(parts, k):
    """The k best of several (dist2, idx) candidate lists per query, by
    (distance, index): the same as one search over the union, because each
    distance is the same float64 sum whichever part computed it."""
    dist = np.concatenate([p[0] for p in parts], axis=1)
    idx = np.concatenate([p[1] for p in parts], axis=1)
    # Missing entries (-1, +inf) sort last.
    order = np.lexsort((np.where(idx < 0, np.iinfo(np.int64).max, idx), dist), axis=1)[:, :k]
    rows = np.arange(dist.shape[0])[:, None]
    return dist[rows, order], idx[rows, order]


def _block_topk(Zq, Zdb, offset, k, exclude_self, query_offset, algorithm, params):
    """Top k of query rows against one database block (global row numbers;
    -1 and +inf pad the rows when the block has fewer than k candidates)."""
    Zdb = np.ascontiguousarray(Zdb)
    nq, ndb = Zq.shape[0], Zdb.shape[0]
    self_shift = query_offset - offset
    # Does some query row have its own row in this block?
    exclude_self = bool(exclude_self) and query_offset < offset + ndb and offset < query_offset + nq
    kk = min(k, ndb)
    if algorithm == "hnsw":
        index = HNSWIndex(Zdb, params, n_jobs=1)
        kk = min(kk, ndb - 1) if exclude_self else kk
        if kk < 1:
            return np.full((nq, 0), np.inf), np.full((nq, 0), -1, dtype=np.int64)
        dist, idx = index.kneighbors(Zq, kk, exclude_self=exclude_self, self_shift=self_shift,
                                     n_jobs=1)
    else:
        db = _pack(Zdb, 1)
        with single_threaded_blas():
            dist, idx = _kneighbors(np.ascontiguousarray(Zq, dtype=Zdb.dtype), db, kk,
                                    exclude_self=exclude_self, self_shift=self_shift,
                                    strict=False, n_threads=1)
    return dist, np.where(idx >= 0, idx + offset, -1)


def _query_block_search(Zq, index, k, exclude_self, query_offset):
    return index.kneighbors(np.ascontiguousarray(Zq), k, exclude_self=exclude_self,
                            self_shift=query_offset, n_jobs=1, squared=False)


def _merge_block(k, *parts):
    dist2, idx = merge_topk([(parts[i], parts[i + 1]) for i in range(0, len(parts), 2)], k)
    return np.sqrt(dist2), idx


def dask_kneighbors(Zq, db, k, exclude_self=False, algorithm="auto", params=None):
    """k nearest over dask arrays, lazily: ``(dist, idx)`` dask arrays
    (distances, not squared).

    ``Zq`` (mapped queries) is a dask or numpy array; ``db`` is an index
    (:class:`ExactIndex` / :class:`HNSWIndex`: queries blockwise against it)
    or a dask array of mapped database rows (each row block searched for
    its own k nearest, then merged exactly per query block).
    """
    dask, da = import_dask()
    if is_dask_array(Zq):
        q_blocks = Zq.to_delayed().ravel()
        q_sizes = Zq.chunks[0]
    else:
        q_blocks = [Zq]
        q_sizes = (Zq.shape[0],)
    q_offsets = np.concatenate([[0], np.cumsum(q_sizes)])[:-1]
    dist_blocks, idx_blocks = [], []
    if not is_dask_array(db):
        shared = dask.delayed(db, pure=True)
        for block, offset, size in zip(q_blocks, q_offsets, q_sizes):
            res = dask.delayed(_query_block_search, nout=2, pure=True)(
                block, shared, k, exclude_self, int(offset))
            dist_blocks.append(da.from_delayed(res[0], (size, k), dtype=np.float64))
            idx_blocks.append(da.from_delayed(res[1], (size, k), dtype=np.int64))
    else:
        db_blocks = db.to_delayed().ravel()
        db_offsets = np.concatenate([[0], np.cumsum(db.chunks[0])])[:-1]
        for block, offset, size in zip(q_blocks, q_offsets, q_sizes):
            parts = []
            for dblock, doff in zip(db_blocks, db_offsets):
                res = dask.delayed(_block_topk, nout=2, pure=True)(
                    block, dblock, int(doff), k, exclude_self, int(offset), algorithm, params)
                parts.extend([res[0], res[1]])
            merged = dask.delayed(_merge_block, nout=2, pure=True)(k, *parts)
            dist_blocks.append(da.from_delayed(merged[0], (size, k), dtype=np.float64))
            idx_blocks.append(da.from_delayed(merged[1], (size, k), dtype=np.int64))
    return da.concatenate(dist_blocks, axis=0), da.concatenate(idx_blocks, axis=0)

"""How good is a metric for retrieval: scores from neighbour lists and labels.

A query's *relevant* database items are those with its label; ``R`` is
their number (leave-one-out: the query's own row not counted).  From the
labels of a query's neighbours in increasing distance order (``y_neighbors``,
an (n_queries, K) array, or one array per query when the lists have
different lengths, e.g. from a radius search):

* precision@k: relevant items among the first k, over k;
* recall@k: relevant items among the first k, over R (the information
  retrieval definition; deep metric learning papers often call "recall@k"
  the fraction of queries with *some* relevant item in the first k, which is
  ``mean(precision@k > 0)`` here);
* R-precision: relevant items among the first R, over R;
* MAP@R (Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV
  2020): ``(1/R) sum_{i <= R} P(i) rel(i)``, P(i) the precision at rank i
  and rel(i) whether rank i is relevant: the mean average precision of the
  first R ranks, which rewards putting the relevant items first;
* mean reciprocal rank: 1 / rank of the first relevant item (0 when none is
  listed; :func:`evaluate` ranks the whole database, whatever ``ks``);
* k-NN accuracy: whether the majority label of the first k neighbours is the
  query's (ties go to the smallest label, as scikit-learn's
  KNeighborsClassifier; an empty list is a miss).

Ranks beyond a shorter list count as misses.  Queries with ``R = 0`` (the
only member of their class) have no defined recall, R-precision or MAP@R;
like Musgrave et al.'s reference implementation, every score that is given
``n_relevant`` leaves them out (and is NaN when no query remains).

:func:`evaluate` computes all of them for a fitted learner on held-out data
(plus k-means NMI/AMI in the learned space) and returns a dict;
:func:`make_retrieval_scorer` gives scorers for ``GridSearchCV(scoring=...)``
and ``cross_val_score``.
"""
import numbers
import re

import numpy as np

from fastmetric._core.distances import mahalanobis_distances
from fastmetric._core.sampling import _check_labels
from fastmetric._core.search import Embedding, ExactIndex
from fastmetric._core.validation import extreme_exponent

__all__ = [
    "RetrievalScorer",
    "evaluate",
    "kmeans_scores",
    "knn_accuracy",
    "make_retrieval_scorer",
    "map_at_r",
    "map_at_r_scorer",
    "mean_reciprocal_rank",
    "neighbor_labels",
    "precision_at_1_scorer",
    "precision_at_k",
    "r_precision",
    "r_precision_scorer",
    "recall_at_k",
    "relevant_counts",
]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------
def _is_ragged(y_neighbors):
    return not (isinstance(y_neighbors, np.ndarray) and y_neighbors.dtype != object
                and y_neighbors.ndim == 2)


def _labels(y, name):
    """``y`` as a 1-D array (one label per point), or a ValueError naming it."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per point); got shape {y.shape}.")
    return y


def _relevance(y_query, y_neighbors, need=None, what="this score"):
    """(n_queries, K) booleans: is rank j of query i relevant (False past a
    shorter list).  ``need``: columns a rectangular input must have."""
    y_query = _labels(y_query, "y_query")
    if not _is_ragged(y_neighbors):
        if y_neighbors.shape[0] != y_query.shape[0]:
            raise ValueError(f"y_neighbors has {y_neighbors.shape[0]} rows but y_query has "
                             f"{y_query.shape[0]} labels.")
        if need is not None and y_neighbors.shape[1] < need:
            raise ValueError(f"{what} needs the first {need} neighbours of each query; "
                             f"y_neighbors has {y_neighbors.shape[1]} columns.")
        return y_neighbors == y_query[:, None]
    rows = [np.asarray(r).ravel() for r in y_neighbors]
    if len(rows) != y_query.shape[0]:
        raise ValueError(f"y_neighbors has {len(rows)} lists but y_query has "
                         f"{y_query.shape[0]} labels.")
    width = max([len(r) for r in rows] + [need or 0, 1])
    rel = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        rel[i, :len(r)] = r == y_query[i]
    return rel


def _check_k(k, name="k"):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer; got {k!r}.")
    return int(k)


def _check_ks(ks):
    """The cut-offs of :func:`evaluate` as a non-empty tuple of positive ints."""
    if isinstance(ks, (str, bytes)) or not np.iterable(ks):
        raise TypeError(f"ks must be a sequence of positive integers, e.g. (1, 5, 10); "
                        f"got {ks!r}.")
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks is empty: give at least one cut-off k for precision@k and "
                         "recall@k, e.g. ks=(1, 5, 10).")
    return tuple(_check_k(k, "each k of ks") for k in ks)


def _counts(n_relevant):
    """``n_relevant`` as an int64 array, or an error naming the first value
    that is not a count (negative, fractional, NaN or not a number)."""
    R = np.asarray(n_relevant)
    if R.dtype.kind in "iu":
        bad = R < 0
    elif R.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(R) | (R < 0) | (R != np.round(R))
    else:
        raise TypeError(f"n_relevant must hold integer counts (R of each query); got "
                        f"{n_relevant!r:.80} of dtype {R.dtype}.")
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0]) if R.ndim else ()
        where = f" at index {at[0] if len(at) == 1 else at}" if at else ""
        raise ValueError(f"n_relevant must hold integer counts >= 0; got {R[at].item()!r}{where}.")
    return R.astype(np.int64)


def _scored(n_relevant, n_queries):
    """Mask of the queries that count: those with R > 0 (all without R)."""
    if n_relevant is None:
        return np.ones(n_queries, dtype=bool)
    R = _counts(n_relevant)
    if R.shape != (n_queries,):
        raise ValueError(f"n_relevant must have one count per query ({n_queries}); got shape "
                         f"{R.shape}.")
    return R > 0


def _mean(values, mask):
    return float(values[mask].mean()) if mask.any() else float("nan")


def _class_counts(y, name):
    """Sorted classes, each label's class and the class sizes of ``y``; a
    missing label (NaN, None, ...) or an empty ``y`` is an error naming ``y``."""
    try:
        return _check_labels(y, min_samples=1)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def relevant_counts(y_query, y_db=None):
    """``R`` for each query: database items with its label.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,)
    y_db : array-like of shape (n_db,) or None
        ``None``: leave-one-out within the queries (the query itself is not
        counted).

    Returns
    -------
    R : ndarray of shape (n_queries,), int64

    Raises
    ------
    ValueError
        If a label is missing (NaN, None, NaT) or infinite, or ``y_db`` is
        empty.
    """
    y_query = _labels(y_query, "y_query")
    db = None if y_db is None else _class_counts(_labels(y_db, "y_db"), "y_db")
    if y_query.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse, counts = _class_counts(y_query, "y_query")
    if db is None:
        return counts[inverse].astype(np.int64) - 1
    classes, _, counts = db
    pos = np.searchsorted(classes, y_query)
    pos = np.clip(pos, 0, len(classes) - 1)
    return np.where(classes[pos] == y_query, counts[pos], 0).astype(np.int64)


def neighbor_labels(indices, y_db):
    """Labels of neighbours given by row numbers.

    Parameters
    ----------
    indices : ndarray of shape (n_queries, K), or array of 1-D arrays
        Rows of the database (from ``kneighbors`` or ``radius_neighbors``);
        -1 marks a missing entry.
    y_db : array-like of shape (n_db,)

    Returns
    -------
    y_neighbors : ndarray (n_queries, K), or a list of arrays when lists
        have different lengths (or entries are missing).

    Raises
    ------
    TypeError
        If the indices are not integers.
    ValueError
        If an index is outside ``[0, n_db)`` (other than -1).
    """
    y_db = _labels(y_db, "y_db")
    if isinstance(indices, np.ndarray) and indices.dtype != object and indices.ndim == 2:
        _check_rows(indices, y_db.shape[0], "")
        if (indices >= 0).all():
            return y_db[indices]
        return [y_db[row[row >= 0]] for row in indices]
    out = []
    for i, row in enumerate(indices):
        row = _check_rows(np.asarray(row).ravel(), y_db.shape[0], f" in the list of query {i}")
        out.append(y_db[row[row >= 0]])
    return out


def _check_rows(indices, n_db, where):
    """``indices`` if they are integer rows of a database of ``n_db`` (or
    -1, a missing entry), else an error naming the first bad one."""
    if indices.size == 0:
        return indices.astype(np.intp)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be integer row numbers of y_db; got dtype "
                        f"{indices.dtype}{where}.")
    bad = (indices < -1) | (indices >= n_db)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"indices must be rows of y_db, in [0, {n_db}) (or -1 for a missing entry); got "
            f"{int(indices[at])} at position {at[0] if len(at) == 1 else at}{where}.")
    return indices


# ---------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------
def precision_at_k(y_query, y_neighbors, k=1, n_relevant=None):
    """Mean over queries of (relevant among the first k) / k.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,)
    y_neighbors : ndarray (n_queries, K >= k), or one array per query
        Labels of each query's neighbours, nearest first.
    k : int, default=1
    n_relevant : array-like of shape (n_queries,) or None
        When given, queries with none relevant are left out.

    Returns
    -------
    score : float
    """
    k = _check_k(k)
    rel = _relevance(y_query, y_neighbors, need=k, what=f"precision@{k}")
    mask = _scored(n_relevant, rel.shape[0])
    return _mean(rel[:, :k].sum(axis=1) / k, mask)


def recall_at_k(y_query, y_neighbors, n_relevant, k=1):
    """Mean over queries with R > 0 of (relevant among the first k) / R."""
    k = _check_k(k)
    rel = _relevance(y_query, y_neighbors, need=k, what=f"recall@{k}")
    mask = _scored(n_relevant, rel.shape[0])
    R = _counts(n_relevant)
    hits = rel[:, :k].sum(axis=1)
    over = np.flatnonzero(hits > R)
    if over.size:
        i = over[0]
        raise ValueError(
            f"y_neighbors lists {hits[i]} relevant items in the first {k} of query {i}, more "
            f"than its n_relevant={R[i]}: the neighbour lists and "
            "n_relevant disagree (an item listed twice, or counts of another database?)."
        )
    R = np.maximum(R, 1)
    return _mean(hits / R, mask)


def _first_r(y_query, y_neighbors, n_relevant, what):
    """Relevance of the first R ranks of each query (False beyond R), R as
    an array (at least 1, for division), the ranks, and the scored mask."""
    R = _counts(n_relevant)
    need = int(R.max()) if R.size else None
    rel = _relevance(y_query, y_neighbors, need=need, what=what)
    mask = _scored(R, rel.shape[0])
    ranks = np.arange(1, rel.shape[1] + 1)
    return rel & (ranks[None, :] <= R[:, None]), np.maximum(R, 1), ranks, mask


def r_precision(y_query, y_neighbors, n_relevant):
    """Mean over queries with R > 0 of (relevant among the first R) / R.

    ``y_neighbors`` must list at least R neighbours of each query (a
    shorter list, as one array per query, counts its missing ranks as misses).
    """
    first, R, _, mask = _first_r(y_query, y_neighbors, n_relevant, "R-precision")
    return _mean(first.sum(axis=1) / R, mask)


def map_at_r(y_query, y_neighbors, n_relevant):
    """MAP@R (Musgrave, Belongie & Lim 2020) over queries with R > 0.

    For a query with R relevant database items and the first R neighbours,
    ``MAP@R = (1/R) sum_{i=1}^{R} P(i) rel(i)``.
    """
    first, R, ranks, mask = _first_r(y_query, y_neighbors, n_relevant, "MAP@R")
    precision_at_i = np.cumsum(first, axis=1) / ranks[None, :]
    return _mean((precision_at_i * first).sum(axis=1) / R, mask)


def mean_reciprocal_rank(y_query, y_neighbors, n_relevant=None):
    """Mean of 1 / (rank of the first relevant neighbour); 0 when none is listed."""
    rel = _relevance(y_query, y_neighbors, need=1, what="mean reciprocal rank")
    return _mean(_reciprocal_ranks(rel), _scored(n_relevant, rel.shape[0]))


def _reciprocal_ranks(rel):
    """1 / rank of each row's first True of ``rel``, 0 for a row without one."""
    return np.where(rel.any(axis=1), 1.0 / (np.argmax(rel, axis=1) + 1), 0.0)


def knn_accuracy(y_query, y_neighbors, k=None):
    """Fraction of queries whose k neighbours' majority label is their own.

    Ties go to the smallest label (scikit-learn's KNeighborsClassifier with
    uniform weights); a query with no neighbour is a miss.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,)
    y_neighbors : ndarray (n_queries, K) or one array per query
    k : int or None
        Neighbours voting (default: all listed).
    """
    y_query = _labels(y_query, "y_query")
    rows = ([np.asarray(r).ravel() for r in y_neighbors] if _is_ragged(y_neighbors)
            else list(y_neighbors))
    if len(rows) != y_query.shape[0]:
        raise ValueError(f"y_neighbors has {len(rows)} rows but y_query has "
                         f"{y_query.shape[0]} labels.")
    if k is not None:
        k = _check_k(k)
        if not _is_ragged(y_neighbors) and y_neighbors.shape[1] < k:
            raise ValueError(f"knn_accuracy with k={k} needs {k} neighbours per query; "
                             f"y_neighbors has {y_neighbors.shape[1]} columns.")
        rows = [r[:k] for r in rows]
    correct = np.zeros(len(rows), dtype=bool)
    for i, r in enumerate(rows):
        if len(r) == 0:
            continue
        labels, counts = np.unique(r, return_counts=True)
        correct[i] = labels[np.argmax(counts)] == y_query[i]
    return float(correct.mean()) if len(rows) else float("nan")


def kmeans_scores(Z, y, n_clusters=None, random_state=0):
    """k-means on (mapped) rows, scored against the labels.

    Parameters
    ----------
    Z : array-like of shape (n, k)
        Rows in the learned space (``learner.transform(X)``).
    y : array-like of shape (n,)
    n_clusters : int or None
        Between 1 and n.  Default: the number of classes in y.
    random_state : int, default=0

    Returns
    -------
    scores : dict
        ``{"nmi": ..., "ami": ...}`` (normalized / adjusted mutual information);
        both NaN for a single cluster (nothing to score).

    Raises
    ------
    ValueError
        If ``n_clusters`` is not an integer in [1, n], or Z and y disagree
        on the number of rows.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    y = _labels(y, "y")
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[0] != y.shape[0]:
        raise ValueError(f"Z must be a 2-D array with one row per label ({y.shape[0]}); got "
                         f"shape {Z.shape}.")
    if n_clusters is None:
        c = len(np.unique(y))
    elif (isinstance(n_clusters, (bool, np.bool_))
          or not isinstance(n_clusters, numbers.Integral)
          or not 1 <= n_clusters <= y.shape[0]):
        raise ValueError(f"n_clusters must be an integer in [1, {y.shape[0]}] (the number of "
                         f"rows); got {n_clusters!r}.")
    else:
        c = int(n_clusters)
    if c < 2:
        return {"nmi": float("nan"), "ami": float("nan")}
    # k-means' squared distances underflow on rows of about 1e-154 and less
    # (and overflow near 1e154): far from one unit the rows are clustered
    # multiplied by a power of two, which is exact and changes no step of
    # k-means (its seeding draws by ratios of squared distances, its
    # tolerance is relative to the data's variance), only the rounding away.
    exponent = extreme_exponent(Z)
    if exponent:
        Z = np.ldexp(Z, -exponent)
    pred = KMeans(n_clusters=c, n_init=10, random_state=random_state).fit_predict(Z)
    return {"nmi": float(normalized_mutual_info_score(y, pred)),
            "ami": float(adjusted_mutual_info_score(y, pred))}


# ---------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------
def _first_relevant_ranks(Zq, y_query, Zdb, y_db, queries, cells=1 << 23):
    """Rank (1-based) of the first database point of each query's class, over
    the whole ranking by (squared distance, index); ``Zdb is None``: leave
    one out among the queries.  For the queries the K-deep search missed
    (few: their K >= R nearest hold no point of their class): O(len(queries)
    n_db k), in blocks of queries of at most ``cells`` distances (64 MB)."""
    loo = Zdb is None
    db, y_db = (Zq, y_query) if loo else (Zdb, y_db)
    block = int(max(1, min(256, cells // max(db.shape[0], 1))))
    index = np.arange(db.shape[0])
    ranks = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), block):
        rows = np.asarray(queries[start:start + block])
        D = mahalanobis_distances(Zq[rows], db, squared=True)  # (the embedding's own metric)
        if loo:
            D[np.arange(rows.shape[0]), rows] = np.inf  # not itself
        for r, (i, d) in enumerate(zip(rows, D)):
            relevant = y_db == y_query[i]
            if loo:
                relevant[i] = False
            best = d[relevant].min()
            first = index[relevant & (d == best)].min()
            ranks[start + r] = 1 + np.count_nonzero(d < best) + np.count_nonzero(
                (d == best) & (index < first))
    return ranks


def _full_mrr(Zq, y_query, Zdb, y_db, labels, R):
    """MRR over the whole ranking: the K-deep search's ranks, and an exact
    rank for the queries with a relevant point that it did not reach (so
    that ``ks`` and ``knn_k``, which set K, do not change the score)."""
    rel = labels == y_query[:, None]
    recip = _reciprocal_ranks(rel)
    missed = np.flatnonzero(~rel.any(axis=1) & (R > 0))
    if missed.size:
        recip[missed] = 1.0 / _first_relevant_ranks(Zq, y_query, Zdb, y_db, missed)
    return _mean(recip, R > 0)


def _retrieval_scores(Zq, y_query, Zdb=None, y_db=None, ks=(1, 5, 10), knn_k=5, n_jobs=None):
    y_query = _labels(y_query, "y_query")
    if Zq.shape[0] != y_query.shape[0]:
        raise ValueError(f"X_query has {Zq.shape[0]} rows but y_query has {y_query.shape[0]} "
                         "labels.")
    loo = Zdb is None
    if not loo:
        y_db = _labels(y_db, "y_db")
        if Zdb.shape[0] != y_db.shape[0]:
            raise ValueError(f"X_db has {Zdb.shape[0]} rows but y_db has {y_db.shape[0]} labels.")
    R = relevant_counts(y_query, None if loo else y_db)
    available = Zq.shape[0] - 1 if loo else Zdb.shape[0]
    if available < 1:
        raise ValueError("evaluation needs at least 2 query points (leave-one-out) or 1 "
                         "database point.")
    K = int(min(available, max(max(ks), knn_k, int(R.max()) if R.size else 1)))
    index = ExactIndex(Zq if loo else Zdb, n_jobs=n_jobs)
    _, idx = index.kneighbors(Zq, K, exclude_self=loo)
    labels = (y_query if loo else y_db)[idx]
    out = {}
    for k in ks:
        kk = min(k, K)
        # Past the K rows there are, ranks count as misses: the hits of the
        # first K over k (recall needs no such care: nothing more is found).
        out[f"precision@{k}"] = precision_at_k(y_query, labels, kk, n_relevant=R) * (kk / k)
        out[f"recall@{k}"] = recall_at_k(y_query, labels, R, kk)
    Rc = np.minimum(R, K)  # R never exceeds the available rows
    out["r_precision"] = r_precision(y_query, labels, Rc)
    out["map@r"] = map_at_r(y_query, labels, Rc)
    out["mrr"] = _full_mrr(Zq, y_query, None if loo else Zdb, None if loo else y_db,
                           labels, R)
    # Named by the k asked for (the same keys on every fold); with fewer
    # rows than that, the vote of all there are.
    out[f"knn_accuracy@{knn_k}"] = knn_accuracy(y_query, labels, min(knn_k, K))
    return out


def evaluate(learner, X_query, y_query, X_db=None, y_db=None, *, ks=(1, 5, 10), knn_k=5,
             clustering=True, random_state=0, n_jobs=None):
    """Retrieval and clustering scores of a fitted learner on held-out data.

    Parameters
    ----------
    learner : fitted fastmetric learner (or fitted transformer), array L, or None
        The metric (None: Euclidean).
    X_query : array-like of shape (n_queries, n_features)
    y_query : array-like of shape (n_queries,)
    X_db, y_db : array-like or None
        The database searched.  ``None``: leave-one-out within the queries.
    ks : tuple of int, default=(1, 5, 10)
        Cut-offs of precision@k and recall@k (at least one).
    knn_k : int, default=5
        Neighbours voting in the k-NN accuracy.
    clustering : bool, default=True
        Also k-means NMI/AMI of the mapped queries (k = number of classes).
    random_state : int, default=0
        Of k-means.
    n_jobs : int or None

    Returns
    -------
    scores : dict of str to float
        ``precision@k`` and ``recall@k`` for each k, ``r_precision``,
        ``map@r``, ``mrr``, ``knn_accuracy@<knn_k>`` (with fewer database
        rows than ``knn_k``, the vote of all of them) and, with
        ``clustering``, ``nmi`` and ``ami``.
    """
    if X_db is None and y_db is not None:
        raise ValueError("y_db is given without X_db.")
    if X_db is not None and y_db is None:
        raise ValueError("X_db is given without y_db.")
    ks = _check_ks(ks)
    knn_k = _check_k(knn_k, "knn_k")
    emb = Embedding(learner).fit()
    Zq = emb.transform(X_query, name="X_query", n_jobs=n_jobs)
    Zdb = None if X_db is None else emb.transform(X_db, name="X_db", n_jobs=n_jobs)
    out = _retrieval_scores(Zq, y_query, Zdb, y_db, ks=ks, knn_k=knn_k, n_jobs=n_jobs)
    if clustering:
        out.update(kmeans_scores(Zq, y_query, random_state=random_state))
    return out


# ---------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------
# k as evaluate names it: no sign, no leading zero ('precision@05' has no key).
_SCORE_NAMES = re.compile(r"^(precision|recall|knn_accuracy)@([1-9]\d*)$|^(r_precision|map@r|mrr)$")


class RetrievalScorer:
    """A scorer ``scorer(estimator, X, y) -> float`` for model selection.

    It maps X with the fitted estimator (``transform``: a learner or a
    pipeline ending with one; a :class:`~fastmetric.neighbors.MahalanobisNeighbors`
    uses its metric) and scores leave-one-out retrieval within (X, y): each
    held-out point queries the other held-out points.  Higher is better.

    Parameters
    ----------
    score : str
        'map@r', 'r_precision', 'mrr', 'precision@K', 'recall@K' or
        'knn_accuracy@K'.
    """

    def __init__(self, score="map@r"):
        if not isinstance(score, str) or not _SCORE_NAMES.match(score):
            raise ValueError(f"unknown retrieval score {score!r}; use 'map@r', 'r_precision', "
                             "'mrr', 'precision@K', 'recall@K' or 'knn_accuracy@K'.")
        self.score = score

    def __call__(self, estimator, X, y):
        if hasattr(estimator, "transform"):
            Z = estimator.transform(X)
        elif hasattr(estimator, "_embedding"):
            Z = estimator._embedding.transform(X)
        else:
            raise TypeError(f"{type(estimator).__name__} has no transform: a retrieval scorer "
                            "needs a fitted learner or pipeline.")
        Z = np.ascontiguousarray(Z)
        if Z.dtype not in (np.float32, np.float64):
            Z = Z.astype(np.float64)
        m = _SCORE_NAMES.match(self.score)
        k = int(m.group(2)) if m.group(2) else 1
        scores = _retrieval_scores(Z, y, ks=(k,), knn_k=k)
        return scores[self.score]

    def __repr__(self):
        return f"RetrievalScorer({self.score!r})"


def make_retrieval_scorer(score="map@r"):
    """A :class:`RetrievalScorer` for ``GridSearchCV(scoring=...)`` or
    ``cross_val_score(scoring=...)``.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from fastmetric import NCA
    >>> from fastmetric.metrics import make_retrieval_scorer
    >>> search = GridSearchCV(NCA(max_iter=20), {"n_components": [2, 4]},
    ...                       scoring=make_retrieval_scorer("map@r"), cv=3)
    """
    return RetrievalScorer(score)


map_at_r_scorer = RetrievalScorer("map@r")
precision_at_1_scorer = RetrievalScorer("precision@1")
r_precision_scorer = RetrievalScorer("r_precision")

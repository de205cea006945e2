"""Class labels turned into constraints: pairs, quadruplets, chunks, triplets.

The _Supervised learners (and ClusterLDML, RCA, SCML) learn from labels by
first drawing the constraints their model is written in.  Each kind has one
function here, so that every learner draws it the same way:

* :func:`pairs_from_labels`: ``n_constraints`` similar and as many
  dissimilar pairs (default ``20 n_classes^2``, metric-learn's rule, or
  :func:`data_pair_count`'s, which grows with the data), drawn
  with replacement, or without (``distinct=True``: at most the distinct
  pairs of each kind exist); ITML, MMC, SDML;
* :func:`quadruplets_from_labels`: a similar pair beside a dissimilar one,
  both distinct (LSML);
* :func:`label_pairs` and :func:`split_pair_count`: the one draw under the
  two above, for learners with their own count rule (LDML's
  ``n_pairs``/``positive_fraction``, ClusterLDML's clusters);
* :func:`chunks_from_labels`: chunklets of one class (RCA);
* :func:`generate_knn_triplets`: genuine neighbours against impostors (SCML).

The draws are the counter-based kernels of :mod:`fastmetric.kernels`
(:func:`~fastmetric.kernels.sampling.sample_pairs`,
:func:`~fastmetric.kernels.chunks.sample_chunks`): a seed fixes them, the
thread count does not change them.
"""
import warnings

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params

from fastmetric._core.inputs import encode_classes, encode_pair_labels
from fastmetric._core.params import integers, shared
from fastmetric._core.sampling import sample_chunks, sample_pairs
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.validation import check_points
from fastmetric.kernels.scml import _knn_triplet_neighbors

__all__ = [
    "chunks_from_labels",
    "data_pair_count",
    "distinct_pair_counts",
    "generate_knn_triplets",
    "label_pairs",
    "neighbor_pairs",
    "pairs_from_labels",
    "quadruplets_from_labels",
    "split_pair_count",
]

# Multiply-adds per thread below which the neighbour search uses fewer
# threads (waking a thread costs more than it saves on small calls; the
# triplets do not depend on the thread count).
_KNN_PARALLEL_WORK = 1 << 22


# --------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------
def _draw_seed(rng):
    """One 31-bit seed for the pair sampler, drawn from a RandomState."""
    return int(rng.randint(0, np.iinfo(np.int32).max))


def _n_constraints(n_constraints, n_classes):
    """metric-learn's default ``20 n_classes^2``, or the given count (checked by
    the learner's parameter constraints)."""
    if n_constraints is None:
        return 20 * n_classes ** 2
    return int(n_constraints)


# Pairs per sample of :func:`data_pair_count`, and its ceiling.
PAIRS_PER_SAMPLE = 10
MAX_DEFAULT_PAIRS = 100_000


def data_pair_count(n_constraints, counts):
    """Pairs of each kind to draw: the given count, or a default that grows
    with the data.

    metric-learn's default, ``20 n_classes^2`` of each kind, does not grow
    with the number of samples: on two classes it is 80 similar and 80
    dissimilar pairs, whatever ``n``, and a learner fitted on so few pairs
    of a few hundred points in tens of dimensions (MMC on sonar, spambase)
    is far worse than the Euclidean distance.  The default here is
    ``max(20 n_classes^2, min(10 n, 100000))`` of each kind: about ten
    pairs per sample (each point enters about twenty pairs), never fewer
    than metric-learn's, with a ceiling that keeps the fit's memory and time
    bounded on large sets.  ``n_constraints=20 * n_classes ** 2`` restores
    metric-learn's count.

    Parameters
    ----------
    n_constraints : int or None
        The user's count (checked by the learner's parameter constraints);
        None for the default.
    counts : array-like of int
        Samples per class.

    Returns
    -------
    int
    """
    if n_constraints is not None:
        return int(n_constraints)
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    return max(20 * c.shape[0] ** 2, min(PAIRS_PER_SAMPLE * n, MAX_DEFAULT_PAIRS))


def distinct_pair_counts(counts):
    """Numbers of distinct (unordered) similar and dissimilar pairs.

    For class sizes ``n_c`` (summing to ``n``): ``sum_c n_c (n_c - 1) / 2``
    similar pairs and ``(n^2 - sum_c n_c^2) / 2`` dissimilar ones.
    """
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    return int(np.sum(c * (c - 1) // 2)), int((n * n - int(np.sum(c * c))) // 2)


def split_pair_count(n_pairs, positive_fraction):
    """``(n_similar, n_dissimilar)``: ``n_pairs`` split by ``positive_fraction``,
    at least one of each kind (LDML's and ClusterLDML's rule)."""
    n_similar = min(max(round(float(n_pairs * positive_fraction)), 1), n_pairs - 1)
    return n_similar, n_pairs - n_similar


def label_pairs(labels, n_similar, n_dissimilar, seed, *, distinct=False, balanced=False,
                anchor_label=None, n_jobs=None):
    """Draw similar and dissimilar index pairs from encoded class labels.

    The one pair draw of the learners: the parallel counter-based sampler
    :func:`fastmetric.kernels.sampling.sample_pairs` (see it for
    ``balanced`` and ``anchor_label``); ``distinct=True`` draws without
    repetition.

    Returns
    -------
    pairs : ndarray of shape (n_similar + n_dissimilar, 2), intp
        Similar pairs first.
    targets : ndarray of shape (n_similar + n_dissimilar,)
        1 for a similar pair, 0 for a dissimilar one.
    """
    return sample_pairs(labels, n_similar, n_dissimilar, unique=distinct, balanced=balanced,
                        anchor_label=anchor_label, random_state=seed, n_jobs=n_jobs)


def pairs_from_labels(y, n_constraints, rng, learner, *, distinct=False, n_jobs=None,
                      grow=False):
    """The pairs of a _Supervised pair learner (ITML, MMC, SDML).

    ``n_constraints`` similar and as many dissimilar pairs (None: ``20
    n_classes^2``, or with ``grow=True`` the count of
    :func:`data_pair_count`, which grows with the number of samples).
    With ``distinct=True`` each kind is clipped, with a warning, to the
    distinct pairs that exist.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels: 2 classes or more, one with 2 samples or more.
    n_constraints : int or None
    rng : numpy.random.RandomState
        One seed is drawn from it.
    learner : str
        Name for the messages.
    distinct : bool, default=False
    n_jobs : int, optional
        Threads of the sampler; the pairs do not depend on it.
    grow : bool, default=False
        The default count (``n_constraints=None``) of
        :func:`data_pair_count` instead of metric-learn's.

    Returns
    -------
    a, b : ndarray of shape (n_pairs,), intp
        C-contiguous row indices of the two points of each pair.
    similar : ndarray of shape (n_pairs,), bool
    """
    classes, labels, counts = encode_pair_labels(y, learner)
    n = (data_pair_count(n_constraints, counts) if grow
         else _n_constraints(n_constraints, len(classes)))
    n_similar = n_dissimilar = n
    if distinct:
        available = distinct_pair_counts(counts)
        n_similar, n_dissimilar = min(n, available[0]), min(n, available[1])
        for kind, got in (("similar", n_similar), ("dissimilar", n_dissimilar)):
            if got < n:
                warnings.warn(
                    f"only {got} distinct {kind} pairs exist; n_constraints={n} "
                    "requested: using all of them.",
                    UserWarning,
                    stacklevel=3,
                )
    pairs, t = label_pairs(labels, n_similar, n_dissimilar, _draw_seed(rng), distinct=distinct,
                           n_jobs=n_jobs)
    return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]), t.astype(bool)



def estimator_pairs(estimator, y, n_constraints, *, distinct=False, grow=False):
    """:func:`pairs_from_labels` for a fitted ``_Supervised`` learner: its
    ``random_state`` (one seed drawn), its class name in the messages, its
    ``n_jobs``."""
    return pairs_from_labels(y, n_constraints, check_random_state(estimator.random_state),
                             type(estimator).__name__, distinct=distinct,
                             n_jobs=estimator.n_jobs, grow=grow)


def quadruplets_from_labels(y, n_constraints, rng, learner, *, n_jobs=None):
    """Quadruplets ``(a, b, c, d)``: a similar pair ``(a, b)`` and a dissimilar
    pair ``(c, d)``, both drawn without repetition (LSML_Supervised).

    ``n_constraints`` quadruplets (None: ``20 n_classes^2``), clipped with a
    warning to the smaller number of distinct similar or dissimilar pairs.
    Parameters as :func:`pairs_from_labels`.

    Returns
    -------
    quadruplets : ndarray of shape (n_quadruplets, 4), intp
    """
    classes, labels, counts = encode_pair_labels(y, learner)
    wanted = _n_constraints(n_constraints, len(classes))
    n_similar, n_dissimilar = distinct_pair_counts(counts)
    n_q = min(wanted, n_similar, n_dissimilar)
    if n_q < wanted:
        warnings.warn(
            f"only {n_q} quadruplets can be formed from distinct pairs ({n_similar} "
            f"positive and {n_dissimilar} negative pairs exist); n_constraints={wanted} "
            "were requested.",
            UserWarning,
            stacklevel=3,
        )
    pairs, _ = label_pairs(labels, n_q, n_q, _draw_seed(rng), distinct=True, n_jobs=n_jobs)
    return np.ascontiguousarray(np.hstack((pairs[:n_q], pairs[n_q:])), dtype=np.intp)


# --------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------
# metric-learn's number of chunks (RCA_Supervised's num_chunks).
DEFAULT_CHUNKS = 100


def chunks_from_labels(y, n_chunks, chunk_size, random_state=None, n_jobs=None):
    """Chunk id of each sample (-1: in no chunk): ``n_chunks`` chunklets of
    ``chunk_size`` samples of one class each (RCA_Supervised).

    ``n_chunks=None`` is metric-learn's 100 chunks, or as many as the
    classes can supply when fewer (class ``c`` supplies ``n_c //
    chunk_size``): a set of fewer than 200 points still gets a metric
    (metric-learn's default raises an error there).  A given ``n_chunks``
    the classes cannot supply is a ValueError saying how many they can.

    Drawn by the counter-based kernel
    :func:`fastmetric.kernels.chunks.sample_chunks`: they depend only on the
    seed.

    Returns
    -------
    chunks : ndarray of shape (n_samples,), int64
    """
    if n_chunks is None:
        _, counts = np.unique(np.asarray(y), return_counts=True)
        available = int(np.sum(counts // int(chunk_size)))
        n_chunks = max(1, min(DEFAULT_CHUNKS, available))
    chunks = sample_chunks(y, n_chunks, chunk_size, random_state=random_state, n_jobs=n_jobs)
    return chunks.astype(np.int64)


# --------------------------------------------------------------------------
# Triplets
# --------------------------------------------------------------------------
def _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=True):
    """Per-class numbers of genuine and impostor neighbours, clipped to what exists."""
    kg = np.minimum(k_genuine, counts - 1)
    ki = np.minimum(k_impostor, n - counts)
    if warn:
        # One warning per kind, naming the first classes: one per class would
        # be a storm on data with many small classes.
        def shown(cs):
            names = ", ".join(f"{classes[c]!r} ({counts[c]} samples)" for c in cs[:5])
            return names + (" ..." if len(cs) > 5 else "")

        for few, problem, fallback in (
            (np.flatnonzero(kg < k_genuine),
             f"too few samples for k_genuine={k_genuine} genuine neighbours (k_genuine + 1 "
             "samples needed)", "(class size - 1)"),
            (np.flatnonzero(ki < k_impostor),
             f"too few samples outside them for k_impostor={k_impostor} impostors",
             "(n_samples - class size)"),
        ):
            if few.size:
                warnings.warn(
                    f"SCML: {few.size} class(es) have {problem}: {shown(few)}; their points "
                    f"get {fallback} instead.",
                    UserWarning,
                    stacklevel=3,
                )
    return kg, ki


@validate_params(
    {
        "k_genuine": [integers(1)],
        "k_impostor": [integers(1)],
        "n_jobs": shared("n_jobs")["n_jobs"],
        "warn": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def generate_knn_triplets(X, y, k_genuine=3, k_impostor=10, n_jobs=None, warn=True):
    """Triplets from class labels: genuine neighbours against impostors.

    For each point ``a`` (anchor), its ``k_genuine`` nearest points of the
    same class ``p`` and its ``k_impostor`` nearest points of the other
    classes ``q`` give the ``k_genuine * k_impostor`` triplets ``(a, p, q)``
    (Euclidean distances).  A class with ``m <= k_genuine`` points gives its
    points ``m - 1`` genuine neighbours, and ``k_impostor`` is clipped to
    the number of points outside the class, each with a warning (as in
    metric-learn).  The triplets are listed class by class (classes in
    sorted order), anchor by anchor (in index order), then genuine
    neighbour (nearest first), then impostor (nearest first).  Distance
    ties are broken by the smaller index.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    k_genuine, k_impostor : int
    n_jobs : int, optional
        OpenMP threads of the neighbour search; the result does not depend
        on it.
    warn : bool, default=True
        Warn when a class has too few points.

    Returns
    -------
    triplets : ndarray of shape (n_triplets, 3), intp
        Row indices into X.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.constraints import generate_knn_triplets
    >>> X = np.array([[0.0], [1.0], [3.0], [10.0], [12.0]])
    >>> generate_knn_triplets(X, [0, 0, 0, 1, 1], k_genuine=1, k_impostor=1).tolist()
    [[0, 1, 3], [1, 0, 3], [2, 1, 3], [3, 4, 2], [4, 3, 2]]
    """
    X = check_points(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have shape (n_samples,) = ({X.shape[0]},); got shape {y.shape}."
        )
    k_genuine, k_impostor = int(k_genuine), int(k_impostor)
    classes, y_enc, counts = encode_classes(
        y, "SCML", "to make triplets (impostors are points of another class)")
    n = X.shape[0]
    if n >= np.iinfo(np.intc).max:
        raise ValueError(f"X has {n} rows; at most {np.iinfo(np.intc).max - 1} supported.")
    kg, ki = _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=warn)
    if not np.any(kg * ki > 0):
        raise ValueError(
            "SCML: no triplet can be made: every class has a single sample, so no point "
            "has a genuine neighbour."
        )
    n_threads = threads_for_work(effective_n_threads(n_jobs), n * n * X.shape[1],
                                 _KNN_PARALLEL_WORK)
    # Distances do not change under translation; centred points keep the
    # GEMM filter of the kernel tight.
    Xc = np.ascontiguousarray(X - X.mean(axis=0, dtype=np.float64), dtype=X.dtype)
    with single_threaded_blas():
        gen, imp = _knn_triplet_neighbors(
            Xc, np.ascontiguousarray(y_enc, dtype=np.intc),
            np.ascontiguousarray(kg[y_enc], dtype=np.intc),
            np.ascontiguousarray(ki[y_enc], dtype=np.intc),
            int(kg.max()), int(ki.max()), n_threads,
        )
    parts = []
    for c in range(classes.shape[0]):
        if kg[c] == 0 or ki[c] == 0:
            continue
        rows = np.flatnonzero(y_enc == c)
        G = gen[rows, : kg[c]].astype(np.intp)
        Q = imp[rows, : ki[c]].astype(np.intp)
        m = rows.shape[0]
        a = np.repeat(rows, kg[c] * ki[c])
        p = np.repeat(G.ravel(), ki[c])
        q = np.broadcast_to(Q[:, None, :], (m, kg[c], ki[c])).ravel()
        parts.append(np.column_stack((a, p, q)))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.intp)


def neighbor_pairs(X, y, k_genuine=3, k_impostor=10, n_jobs=None):
    """Pairs from class labels, local: each point with its nearest neighbours.

    Each point ``a`` is paired with its ``k_genuine`` nearest points of its
    own class (similar pairs) and its ``k_impostor`` nearest points of the
    other classes (dissimilar pairs), in the Euclidean distance of X: the
    genuine neighbours and impostors of :func:`generate_knn_triplets`
    (same counts, clipping and tie rule; no warning), each pair once.
    Random pairs of a class join its far ends too, and a metric that
    separates classes on average may pull a class's distant groups
    together across other classes' points; local pairs only ask what a
    nearest-neighbour rule needs.

    Parameters
    ----------
    X, y, k_genuine, k_impostor, n_jobs
        As in :func:`generate_knn_triplets`.

    Returns
    -------
    pairs : ndarray of shape (n_pairs, 2), intp
        Row indices into X: the similar pairs (sorted), then the
        dissimilar ones (sorted).
    targets : ndarray of shape (n_pairs,), float64
        1 for a similar pair, 0 for a dissimilar one.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric._core.constraints import neighbor_pairs
    >>> X = np.array([[0.0], [1.0], [3.0], [10.0], [12.0]])
    >>> pairs, targets = neighbor_pairs(X, [0, 0, 0, 1, 1], k_genuine=1, k_impostor=1)
    >>> pairs.tolist()
    [[0, 1], [1, 0], [2, 1], [3, 4], [4, 3], [0, 3], [1, 3], [2, 3], [3, 2], [4, 2]]
    >>> targets.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    triplets = generate_knn_triplets(X, y, k_genuine, k_impostor, n_jobs=n_jobs, warn=False)
    similar = np.unique(triplets[:, [0, 1]], axis=0)
    dissimilar = np.unique(triplets[:, [0, 2]], axis=0)
    pairs = np.ascontiguousarray(np.concatenate([similar, dissimilar]), dtype=np.intp)
    targets = np.concatenate([np.ones(similar.shape[0]), np.zeros(dissimilar.shape[0])])
    return pairs, targets

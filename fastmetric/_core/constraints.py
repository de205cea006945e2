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

metric-learn's public :class:`Constraints` (labels of which some are
unknown, drawn into pairs, chunks or triplets by the functions above) and
:func:`wrap_pairs` live here too; :mod:`fastmetric.constraints` is this
module, for code that imports ``metric_learn.constraints``.

The draws are the counter-based kernels of :mod:`fastmetric.kernels`
(:func:`~fastmetric.kernels.sampling.sample_pairs`,
:func:`~fastmetric.kernels.chunks.sample_chunks`): a seed fixes them, the
thread count does not change them.
"""
import numbers
import warnings

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    validate_parameter_constraints,
    validate_params,
)

from fastmetric._core.inputs import encode_classes, encode_pair_labels
from fastmetric._core.params import integers, renamed, renamed_argument, shared
from fastmetric._core.sampling import sample_chunks, sample_pairs
from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.validation import caller_stacklevel, check_index_pairs, check_points
from fastmetric.kernels.scml import _knn_triplet_neighbors

__all__ = [
    "Constraints",
    "chunks_from_labels",
    "clip_to_distinct",
    "data_pair_count",
    "distinct_pair_counts",
    "generate_knn_triplets",
    "label_pairs",
    "neighbor_pairs",
    "pairs_from_labels",
    "quadruplets_from_labels",
    "split_pair_count",
    "wrap_pairs",
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


def clip_to_distinct(counts, n_similar, n_dissimilar):
    """``(n_similar, n_dissimilar)`` clipped to the distinct pairs that exist
    (:func:`distinct_pair_counts`), with a UserWarning (at the user's line)
    for each kind clipped."""
    available = distinct_pair_counts(counts)
    clipped = (min(n_similar, available[0]), min(n_dissimilar, available[1]))
    for kind, wanted, got in zip(("similar", "dissimilar"), (n_similar, n_dissimilar), clipped):
        if got < wanted:
            warnings.warn(
                f"only {got} distinct {kind} pairs exist; n_constraints={wanted} "
                "requested: using all of them.",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
    return clipped


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
        n_similar, n_dissimilar = clip_to_distinct(counts, n, n)
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
def _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=True, learner="SCML"):
    """Per-class numbers of genuine and impostor neighbours, clipped to what exists
    (the warnings name ``learner``)."""
    kg = np.minimum(k_genuine, counts - 1)
    ki = np.minimum(k_impostor, n - counts)
    if warn:
        # One warning per kind, naming the first classes: one per class would
        # be a storm on data with many small classes.
        def shown(cs):
            # (repr of the value, not np.int64(1))
            names = ", ".join(
                f"{(classes[c].item() if hasattr(classes[c], 'item') else classes[c])!r} "
                f"({counts[c]} samples)" for c in cs[:5])
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
                    f"{learner}: {few.size} class(es) have {problem}: {shown(few)}; their "
                    f"points get {fallback} instead.",
                    UserWarning,
                    stacklevel=caller_stacklevel(),
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
    return _knn_triplets(X, y, k_genuine, k_impostor, n_jobs, warn, "SCML")


def _knn_triplets(X, y, k_genuine, k_impostor, n_jobs, warn, learner):
    """:func:`generate_knn_triplets` without its parameter checks; the
    messages name ``learner``."""
    X = check_points(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"y must have shape (n_samples,) = ({X.shape[0]},); got shape {y.shape}."
        )
    k_genuine, k_impostor = int(k_genuine), int(k_impostor)
    classes, y_enc, counts = encode_classes(
        y, learner, "to make triplets (impostors are points of another class)")
    n = X.shape[0]
    if n >= np.iinfo(np.intc).max:
        raise ValueError(f"X has {n} rows; at most {np.iinfo(np.intc).max - 1} supported.")
    kg, ki = _neighbour_counts(counts, k_genuine, k_impostor, n, classes, warn=warn,
                               learner=learner)
    if not np.any(kg * ki > 0):
        raise ValueError(
            f"{learner}: no triplet can be made: every class has a single sample, so no point "
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


# --------------------------------------------------------------------------
# metric-learn's public Constraints class and wrap_pairs
# --------------------------------------------------------------------------
def _check_partial_labels(partial_labels):
    """Labels ``(n_samples,)`` as an int array; a negative label is unknown."""
    arr = np.asarray(partial_labels)
    if arr.ndim != 1:
        got = ("a sparse matrix" if hasattr(partial_labels, "toarray")
               else f"{arr.ndim} dimension(s) with shape {arr.shape}")
        raise ValueError(
            f"partial_labels must be a dense 1-D array of shape (n_samples,); got {got}."
        )
    kind = arr.dtype.kind
    if kind == "O" and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                           for v in arr):
        arr, kind = arr.astype(np.int64), "i"
    if kind not in "iuf":
        raise TypeError(
            f"partial_labels must hold integer class labels (negative: unknown); got dtype "
            f"{arr.dtype}. Encode other labels first, e.g. with "
            "sklearn.preprocessing.LabelEncoder."
        )
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise ValueError(
                f"partial_labels must hold integer class labels (negative: unknown); got "
                f"{arr[bad[0]].item()!r} at index {int(bad[0])}. Mark an unknown label with -1."
            )
    if arr.size and (arr.max() >= 2**63 or arr.min() < -(2**63)):
        raise ValueError("partial_labels holds a label outside the int64 range.")
    return arr.astype(np.int64)


_DEPRECATED_COUNT = renamed([integers(1)])


class Constraints:
    """Constraints drawn from partially labelled data (metric-learn's class).

    The weakly supervised learners (ITML, MMC, SDML, LSML, SCML, RCA) learn
    from pairs, triplets or chunks; this class draws them from class labels,
    some of which may be unknown, with the same samplers as the
    ``_Supervised`` learners (:mod:`fastmetric._core.constraints`).

    Parameters
    ----------
    partial_labels : array-like of int, shape (n_samples,)
        Class label of each sample; a negative label (metric-learn uses -1)
        marks a sample whose label is unknown: it enters no constraint.
        Integer-valued floats are accepted; other values are an error.

    Attributes
    ----------
    partial_labels : ndarray of int64, shape (n_samples,)
        The labels as integers; negative for unknown.

    See Also
    --------
    wrap_pairs : Points and +1/-1 targets from the index pairs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric import Constraints
    >>> from fastmetric.constraints import wrap_pairs
    >>> X = np.array([[0.0], [0.1], [0.3], [5.0], [5.2], [9.0]])
    >>> y = np.array([0, 0, 0, 1, 1, -1])          # the last label is unknown
    >>> cons = Constraints(y)
    >>> a, b, c, d = cons.positive_negative_pairs(3, random_state=0)
    >>> bool(np.all(y[a] == y[b])), bool(np.all(y[c] != y[d])), bool(np.all(a != b))
    (True, True, True)
    >>> pairs, pair_labels = wrap_pairs(X, (a, b, c, d))
    >>> pairs.shape, pair_labels.tolist()
    ((6, 2, 1), [1, 1, 1, -1, -1, -1])
    >>> cons.chunks(n_chunks=2, chunk_size=2, random_state=0).shape
    (6,)
    >>> cons.generate_knntriplets(X, k_genuine=1, k_impostor=1).tolist()
    [[0, 1, 3], [1, 0, 3], [2, 1, 3], [3, 4, 2], [4, 3, 2]]
    """

    def __init__(self, partial_labels):
        self.partial_labels = _check_partial_labels(partial_labels)

    def _labelled(self):
        """Row indices of the labelled samples, and their labels."""
        known = np.flatnonzero(self.partial_labels >= 0)
        return known, self.partial_labels[known]

    def positive_negative_pairs(self, n_constraints=None, same_length=False, random_state=None,
                                num_constraints="deprecated"):
        """Draw similar (positive) and dissimilar (negative) index pairs.

        ``n_constraints`` distinct similar pairs (two different labelled
        samples of one class) and ``n_constraints`` distinct dissimilar
        pairs (two labelled samples of different classes), each a uniform
        random draw without repetition among the pairs of its kind.  Where
        fewer distinct pairs of a kind exist, all of them are returned with a
        UserWarning.  On fully labelled data these are the pairs that
        ITML_Supervised draws with the same ``n_constraints`` and
        ``random_state``.

        Parameters
        ----------
        n_constraints : int
            Pairs of each kind, at least 1.  Required, as in metric-learn
            (the default None stands for "not given", so that the old name
            ``num_constraints`` can be used alone).
        same_length : bool, default=False
            If True, the longer of the two lists is cut to the length of the
            other (when fewer pairs of one kind exist).
        random_state : int, RandomState instance or None, default=None
            The same value gives the same pairs.
        num_constraints : int, default='deprecated'
            metric-learn's former name of ``n_constraints``: its value is
            used, with a FutureWarning.

        Returns
        -------
        a, b : ndarray of intp, shape (n_positive,)
            Row indices of the similar pairs ``(a[i], b[i])``, ``a[i] < b[i]``.
        c, d : ndarray of intp, shape (n_negative,)
            Row indices of the dissimilar pairs ``(c[i], d[i])``, ``c[i] < d[i]``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastmetric import Constraints
        >>> y = [0, 0, 1, 1, 1, -1]
        >>> a, b, c, d = Constraints(y).positive_negative_pairs(3, random_state=1)
        >>> similar = set(zip(a.tolist(), b.tolist()))    # 3 of the 4 that exist
        >>> len(similar), similar <= {(0, 1), (2, 3), (2, 4), (3, 4)}
        (3, True)
        >>> sorted(set(zip(c.tolist(), d.tolist())))  # 3 of the 6
        [...]
        >>> bool(np.all(np.array(y)[c] != np.array(y)[d]))
        True
        """
        validate_parameter_constraints(
            {"n_constraints": [None, integers(1)], "same_length": ["boolean"],
             "random_state": ["random_state"], "num_constraints": _DEPRECATED_COUNT},
            {"n_constraints": n_constraints, "same_length": same_length,
             "random_state": random_state, "num_constraints": num_constraints},
            "Constraints.positive_negative_pairs",
        )
        n = renamed_argument("num_constraints", num_constraints, "n_constraints", n_constraints)
        if n is None:
            raise TypeError("Constraints.positive_negative_pairs() needs n_constraints, the "
                            "number of pairs of each kind.")
        known, labels = self._labelled()
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        n_similar, n_dissimilar = clip_to_distinct(counts, n, n)
        seed = _draw_seed(check_random_state(random_state))
        if n_similar + n_dissimilar:
            pairs, _ = label_pairs(codes.reshape(-1), n_similar, n_dissimilar, seed,
                                   distinct=True)
            pairs = known[pairs]
        else:
            pairs = np.empty((0, 2), dtype=np.intp)
        similar, dissimilar = pairs[:n_similar], pairs[n_similar:]
        if same_length:
            m = min(n_similar, n_dissimilar)
            similar, dissimilar = similar[:m], dissimilar[:m]
        return tuple(np.ascontiguousarray(col, dtype=np.intp)
                     for col in (similar[:, 0], similar[:, 1], dissimilar[:, 0],
                                 dissimilar[:, 1]))

    def chunks(self, n_chunks=100, chunk_size=2, random_state=None, num_chunks="deprecated"):
        """Draw disjoint chunks of labelled samples of one class (RCA's chunklets).

        Parameters
        ----------
        n_chunks : int, default=100
            Number of chunks, at least 1.
        chunk_size : int, default=2
            Samples per chunk, at least 1.
        random_state : int, RandomState instance or None, default=None
            The same value gives the same chunks.
        num_chunks : int, default='deprecated'
            metric-learn's former name of ``n_chunks``: its value is used,
            with a FutureWarning.

        Returns
        -------
        chunks : ndarray of int64, shape (n_samples,)
            Chunk id (``0`` to ``n_chunks - 1``) of each sample, ``-1`` for a
            sample in no chunk (every sample of unknown label).  Each chunk
            holds ``chunk_size`` samples of one class.

        Raises
        ------
        ValueError
            When the classes cannot supply ``n_chunks`` chunks (class ``c``
            supplies ``n_c // chunk_size`` of them); the message says how
            many they can.

        Examples
        --------
        >>> from fastmetric import Constraints
        >>> chunks = Constraints([0, 0, 0, 1, 1, -1]).chunks(2, 2, random_state=0)
        >>> sorted(chunks.tolist())
        [-1, -1, 0, 0, 1, 1]
        >>> int(chunks[5])
        -1
        """
        validate_parameter_constraints(
            {"n_chunks": [integers(1)], "chunk_size": [integers(1)],
             "random_state": ["random_state"], "num_chunks": _DEPRECATED_COUNT},
            {"n_chunks": n_chunks, "chunk_size": chunk_size, "random_state": random_state,
             "num_chunks": num_chunks},
            "Constraints.chunks",
        )
        n_chunks = renamed_argument("num_chunks", num_chunks, "n_chunks", n_chunks)
        known, labels = self._labelled()
        if not known.size:
            raise ValueError(
                f"cannot draw n_chunks={n_chunks} chunks: partial_labels holds no labelled "
                "sample (every label is negative, i.e. unknown)."
            )
        chunks = np.full(self.partial_labels.shape[0], -1, dtype=np.int64)
        chunks[known] = chunks_from_labels(labels, int(n_chunks), int(chunk_size),
                                           random_state=random_state)
        return chunks

    def generate_knntriplets(self, X, k_genuine, k_impostor):
        """Triplets of nearest same-class neighbours and nearest impostors.

        For each labelled sample ``a``, its ``k_genuine`` nearest labelled
        samples of its class ``p`` and its ``k_impostor`` nearest labelled
        samples of the other classes ``q`` (Euclidean distances in ``X``)
        give every triplet ``(a, p, q)``.  Samples of unknown label are
        ignored.  A class with too few samples for ``k_genuine`` genuine
        neighbours (or too few samples outside it for ``k_impostor``
        impostors) gets as many as exist, with a UserWarning.  These are
        the triplets SCML_Supervised draws, in its order.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The points, one row per label of ``partial_labels``.
        k_genuine : int
            Genuine neighbours per sample, at least 1.
        k_impostor : int
            Impostors per sample, at least 1.

        Returns
        -------
        triplets : ndarray of intp, shape (n_triplets, 3)
            Row indices into ``X`` (into the rows as given, unlabelled ones
            included).

        Examples
        --------
        >>> import numpy as np
        >>> from fastmetric import Constraints
        >>> X = np.array([[9.0], [0.0], [1.0], [10.0], [11.0]])
        >>> Constraints([-1, 0, 0, 1, 1]).generate_knntriplets(X, 1, 1).tolist()
        [[1, 2, 3], [2, 1, 3], [3, 4, 2], [4, 3, 2]]
        """
        validate_parameter_constraints(
            {"k_genuine": [integers(1)], "k_impostor": [integers(1)]},
            {"k_genuine": k_genuine, "k_impostor": k_impostor},
            "Constraints.generate_knntriplets",
        )
        X = check_points(X)
        if X.shape[0] != self.partial_labels.shape[0]:
            raise ValueError(
                f"X has {X.shape[0]} rows but partial_labels has "
                f"{self.partial_labels.shape[0]} labels: one row per label is needed."
            )
        known, labels = self._labelled()
        n_classes = np.unique(labels).shape[0]
        if n_classes < 2:
            raise ValueError(
                "Constraints.generate_knntriplets needs labelled samples of at least 2 "
                f"classes (impostors are samples of another class); partial_labels has "
                f"{known.shape[0]} labelled sample(s) in {n_classes} class(es)."
            )
        triplets = _knn_triplets(X[known], labels, int(k_genuine), int(k_impostor), None,
                                 True, "Constraints.generate_knntriplets")
        return np.ascontiguousarray(known[triplets], dtype=np.intp)


def wrap_pairs(X, constraints):
    """Points and targets of the pairs ``(a, b, c, d)`` of
    :meth:`Constraints.positive_negative_pairs` (metric-learn's function).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The points the indices refer to.
    constraints : tuple of 4 array-likes of int
        ``(a, b, c, d)``: similar pairs ``(a[i], b[i])`` and dissimilar pairs
        ``(c[i], d[i])`` of row indices into ``X``.

    Returns
    -------
    pairs : ndarray of shape (n_positive + n_negative, 2, n_features)
        The points of the similar pairs, then of the dissimilar ones (X's
        dtype).
    y : ndarray of int, shape (n_positive + n_negative,)
        +1 for a similar pair, -1 for a dissimilar one: the input of a pair
        learner's ``fit(pairs, y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.constraints import wrap_pairs
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    >>> pairs, y = wrap_pairs(X, ([0], [1], [0, 1], [2, 2]))
    >>> pairs.shape, y.tolist()
    ((3, 2, 2), [1, -1, -1])
    >>> pairs[1].tolist()
    [[0.0, 0.0], [5.0, 5.0]]
    """
    if hasattr(X, "toarray") or hasattr(X, "dask"):
        raise TypeError(f"X must be a dense in-memory array; got {type(X).__name__}.")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features); got {X.ndim} "
            f"dimension(s) with shape {X.shape}."
        )
    try:
        constraints = tuple(constraints)
    except TypeError:
        constraints = None
    if constraints is None or len(constraints) != 4:
        raise ValueError(
            "constraints must be the 4 index arrays (a, b, c, d) of "
            "Constraints.positive_negative_pairs."
        )
    cols = []
    for name, col in zip("abcd", constraints):
        col = np.asarray(col)
        if col.ndim != 1:
            raise ValueError(
                f"constraints: {name} must be a 1-D array of row indices; got shape "
                f"{col.shape}."
            )
        # An empty list is float to numpy: no pair, whatever its dtype.
        cols.append(col.astype(np.intp) if col.size == 0 else col)
    for first, second in ((0, 1), (2, 3)):
        if cols[first].shape != cols[second].shape:
            raise ValueError(
                f"constraints: {'abcd'[first]} and {'abcd'[second]} must have the same "
                f"length (one pair each); got {cols[first].shape[0]} and "
                f"{cols[second].shape[0]}."
            )
    n_positive = cols[0].shape[0]
    index = np.concatenate([np.column_stack(cols[:2]), np.column_stack(cols[2:])])
    a, b = check_index_pairs(index, X.shape[0], name="constraints", allow_empty=True)
    y = np.ones(a.shape[0], dtype=int)
    y[n_positive:] = -1
    return X[np.column_stack((a, b))], y

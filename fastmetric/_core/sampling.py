"""Pair and chunk sampling from class labels: :func:`sample_pairs`,
:class:`LabelPairStream` and :func:`sample_chunks`, with their checks.

The draws are made by the kernels of :mod:`fastmetric.kernels.sampling`
(pairs) and :mod:`fastmetric.kernels.chunks` (chunklets), whose module
comments give the sampling schemes and their cost; every random number comes
from the counter-based generator of ``fm_common.h``, so the results depend
on the seed only, never on the number of threads.  This module validates the
labels and counts, turns ``random_state`` into a seed, picks the label
weights, the streams and the thread counts, and handles the ``unique``
requests (enumeration, rejection, quotas).  The public functions are
re-exported by :mod:`fastmetric.pairwise`.
"""
import numbers

import numpy as np
from sklearn.utils import check_random_state

from fastmetric._core.threads import effective_n_threads, threads_for_work
from fastmetric.kernels.chunks import draw_chunks
from fastmetric.kernels.sampling import (
    MIN_PAIRS_PER_THREAD,
    draw_label_pairs,
    group_by_label,
    partial_shuffle,
    stream_key,
)

__all__ = ["LabelPairStream", "sample_chunks", "sample_pairs"]

# Stream ids of the generator, one per role, so that positive and negative
# pairs (and the auxiliary shuffles) never share random numbers.
_STREAM_POSITIVE = 1
_STREAM_NEGATIVE = 2
_STREAM_QUOTA_POSITIVE = 3
_STREAM_QUOTA_NEGATIVE = 4
_STREAM_ORDER_POSITIVE = 5
_STREAM_ORDER_NEGATIVE = 6
# Per-label streams of balanced unique sampling: _STREAM_PER_LABEL + 4 c + role.
_STREAM_PER_LABEL = 1 << 20
# Stream id, under the key of a role, of the shuffle that picks a random
# subset of the enumerated pairs when rejection would be too slow.
_STREAM_SUBSET = 1 << 40


# Samples per thread below which starting threads costs more than it saves,
# in sample_chunks (a module variable so that tests can lower it to exercise
# the threads).
_MIN_MEMBERS_PER_THREAD = 65536


def _check_count(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer; got {value!r}.")
    value = int(value)
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}.")
    return value


def _seed_from(random_state):
    """A 64-bit seed for the counter-based generator.

    int: that integer modulo 2**64; None: drawn from numpy's global
    RandomState; RandomState / Generator: one 64-bit draw from it.
    """
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(f"random_state must be None, an int, a RandomState or a Generator; "
                        f"got {random_state!r}.")
    if isinstance(random_state, numbers.Integral):
        return int(random_state) % 2**64
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**64, dtype=np.uint64))
    rs = check_random_state(random_state)
    return int(rs.randint(0, 2**64, dtype=np.uint64))


def _check_labels(labels, min_samples=2):
    """1-D labels -> (classes, inverse as intp, counts as intp).

    Missing or infinite labels (NaN, inf, None, NaT) are rejected;
    ``min_samples`` is 2 for pairs, 1 for chunks.
    """
    if hasattr(labels, "toarray"):
        raise TypeError("labels must be a dense 1-D array, not a sparse matrix.")
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D array of class labels or cluster ids; got "
            f"{arr.ndim} dimension(s) with shape {arr.shape}."
        )
    n = arr.shape[0]
    if n == 0:
        raise ValueError("labels is empty: at least one labelled sample is required.")
    if n < min_samples:
        raise ValueError(f"labels must hold at least 2 samples to form a pair; got {n}.")
    kind = arr.dtype.kind
    if kind in "fc":
        missing = ~np.isfinite(arr)
    elif kind in "mM":
        missing = np.isnat(arr)
    elif kind == "O":
        # NaN is the one value not equal to itself; None is missing too.
        missing = np.fromiter((x is None or x != x for x in arr),  # noqa: PLR0124 (the NaN test)
                              dtype=bool, count=n)
    else:
        missing = None
    if missing is not None and missing.any():
        raise ValueError(
            f"labels contains a missing or infinite value (NaN/inf/None/NaT) at index "
            f"{int(np.flatnonzero(missing)[0])}; every sample needs a label."
        )
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        # Small integer range: O(n) relabelling with bincount instead of a sort.
        if hi - lo <= 4 * n + 1024 and -2**62 < lo and hi < 2**62:
            shifted = arr.astype(np.int64) - lo
            bc = np.bincount(shifted, minlength=hi - lo + 1)
            present = bc > 0
            classes = (np.flatnonzero(present) + lo).astype(arr.dtype)
            remap = np.cumsum(present, dtype=np.intp) - 1
            inv = remap[shifted]
            counts = bc[present].astype(np.intp)
            return classes, inv, counts
    try:
        classes, inv = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise TypeError(
            f"labels must be mutually comparable values (numbers or strings); "
            f"np.unique failed on them: {exc}"
        ) from None
    inv = np.ascontiguousarray(inv.reshape(-1), dtype=np.intp)
    counts = np.bincount(inv, minlength=len(classes)).astype(np.intp)
    return classes, inv, counts


def _anchor_index(classes, anchor_label):
    """Index of ``anchor_label`` in ``classes`` (None when it is None).

    A label that is not among ``classes`` is a ValueError.
    """
    if anchor_label is None:
        return None
    try:
        eq = np.asarray(classes == anchor_label)
    except Exception:  # noqa: BLE001 (labels' own ==, any error: compare one by one below)
        eq = None
    if eq is None or eq.shape != classes.shape or eq.dtype != bool:
        eq = np.fromiter((bool(c == anchor_label) for c in classes), dtype=bool,
                         count=len(classes))
    hits = np.flatnonzero(eq)
    if not len(hits):
        raise ValueError(
            f"anchor_label={anchor_label!r} is not one of the labels "
            f"(there are {len(classes)} distinct labels)."
        )
    return int(hits[0])


class _Grouping:
    """Sample indices grouped by label (counting sort) and label sizes."""

    def __init__(self, inv, counts, classes):
        self.n = inv.shape[0]
        self.n_labels = counts.shape[0]
        self.inv = inv
        self.counts = counts
        self.classes = classes
        self.offsets = np.zeros(self.n_labels + 1, dtype=np.intp)
        self.offsets[1:] = counts
        self.order = np.empty(self.n, dtype=np.intp)
        group_by_label(inv, self.offsets, self.order)

    def members(self, c):
        return self.order[self.offsets[c]:self.offsets[c + 1]]


def _cumulative(weights):
    cum = np.zeros(len(weights) + 1, dtype=np.uint64)
    np.cumsum(np.asarray(weights, dtype=np.uint64), out=cum[1:])
    return cum


def _single_label_weights(n_labels, c):
    w = np.zeros(n_labels, dtype=np.uint64)
    w[c] = 1
    return w


def _draw(grouping, cum, positive, key, counter_start, n_pairs, n_threads, out=None):
    """Run the kernel into ``out`` (or a new (n_pairs, 2) intp array)."""
    pairs = np.empty((n_pairs, 2), dtype=np.intp) if out is None else out
    if n_pairs == 0:
        return pairs
    # Small requests run on fewer threads (the pairs do not depend on it).
    nt = threads_for_work(n_threads, n_pairs, MIN_PAIRS_PER_THREAD)
    draw_label_pairs(grouping.order, grouping.offsets, cum, bool(positive), int(key) % 2**64,
                     int(counter_start) % 2**64, pairs, nt)
    return pairs


def _codes(pairs, n):
    """Unordered pair (a < b) -> integer code a n + b (int64, order-preserving)."""
    return pairs[:, 0].astype(np.int64) * n + pairs[:, 1]


def _decode(codes, n):
    pairs = np.empty((len(codes), 2), dtype=np.intp)
    pairs[:, 0] = codes // n
    pairs[:, 1] = codes % n
    return pairs


def _in_sorted(values, sorted_set):
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_set, values)
    pos[pos == len(sorted_set)] = 0
    return sorted_set[pos] == values


def _enumerate_positive(grouping, labels_idx):
    """Sorted codes of all pairs inside the given labels."""
    parts = []
    for c in labels_idx:
        mem = grouping.members(c)  # increasing, so mem[i] < mem[j] for i < j
        iu, ju = np.triu_indices(len(mem), 1)
        parts.append(mem[iu].astype(np.int64) * grouping.n + mem[ju])
    codes = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    codes.sort()
    return codes


def _enumerate_negative(grouping, c):
    """Sorted codes of all pairs with one end in label c (c = None: all
    different-label pairs, each once)."""
    order, off = grouping.order, grouping.offsets
    parts = []
    labels_idx = range(grouping.n_labels) if c is None else [c]
    for d in labels_idx:
        mem = order[off[d]:off[d + 1]]
        if c is None:
            # Pair each label with the labels after it: every pair once.
            others = order[off[d + 1]:]
        else:
            others = np.concatenate([order[:off[d]], order[off[d + 1]:]])
        a = np.repeat(mem, len(others))
        b = np.tile(others, len(mem))
        parts.append(np.minimum(a, b).astype(np.int64) * grouping.n + np.maximum(a, b))
    codes = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    codes.sort()
    return codes


def _unique_codes(grouping, cum, positive, key, n_wanted, n_eligible, enumerate_fn,
                  excluded, n_threads):
    """``n_wanted`` distinct pair codes drawn uniformly without replacement.

    The kernel's draws with weights ``cum`` must be uniform over the
    ``n_eligible`` eligible pairs; ``excluded`` (sorted codes, all eligible)
    may not be returned.  Rejection: scan the candidates of counters 0, 1,
    2, ... and keep the first occurrences not excluded, in counter order
    (the result does not depend on how the counters are batched, hence not
    on the number of threads).  Used only when at least half of the eligible
    pairs stay available until the end, so that each candidate is accepted
    with probability >= 1/2; otherwise the eligible pairs are enumerated
    (there are at most 2 (n_wanted + excluded) of them) and a random subset
    is taken.
    """
    n = grouping.n
    n_excl = len(excluded)
    if n_wanted == 0:
        return np.empty(0, dtype=np.int64)
    if 2 * (n_wanted + n_excl) > n_eligible:
        codes = enumerate_fn()
        if n_excl:
            codes = codes[~_in_sorted(codes, excluded)]
        codes = np.ascontiguousarray(codes)
        partial_shuffle(codes, n_wanted, stream_key(key, _STREAM_SUBSET))
        return codes[:n_wanted].copy()

    seen = np.asarray(excluded, dtype=np.int64)
    taken = []
    need = n_wanted
    counter = 0
    for _ in range(10_000):  # acceptance >= 1/2: a few rounds in practice
        accept = (n_eligible - len(seen)) / n_eligible
        batch = int(need / accept * 1.1) + 64
        codes = _codes(_draw(grouping, cum, positive, key, counter, batch, n_threads), n)
        counter += batch
        _, first = np.unique(codes, return_index=True)
        first.sort()
        cand = codes[first]
        cand = cand[~_in_sorted(cand, seen)][:need]
        taken.append(cand)
        need -= len(cand)
        if need == 0:
            return np.concatenate(taken)
        seen = np.union1d(seen, cand)
    raise RuntimeError("fastmetric: unique pair sampling did not converge; please report this.")


def _quotas(capacity, n_wanted, key):
    """Split n_wanted as evenly as possible over the labels: each gets
    n_wanted // K, and n_wanted % K of the labels whose capacity allows it,
    chosen at random, get one more.  Returns quotas or None if infeasible."""
    k = len(capacity)
    base, extra = divmod(n_wanted, k)
    quotas = np.full(k, base, dtype=np.int64)
    if np.any(capacity < base):
        return None
    roomy = np.flatnonzero(capacity > base).astype(np.int64)
    if extra > len(roomy):
        return None
    roomy = np.ascontiguousarray(roomy)
    partial_shuffle(roomy, extra, key)
    quotas[roomy[:extra]] += 1
    return quotas


def _shuffled(codes, key):
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    partial_shuffle(codes, len(codes), key)
    return codes


def _label_repr(grouping, c):
    return repr(grouping.classes[c].item() if hasattr(grouping.classes[c], "item")
                else grouping.classes[c])


def _positive_weights(grouping, anchor, balanced, n_wanted):
    """Integer weights of the labels when drawing a positive pair.

    Proportional to the ordered pairs inside each label (uniform over all
    positive pairs), 1 per label with 2 members or more (balanced), or all
    on ``anchor``.
    """
    counts = grouping.counts.astype(np.uint64)
    if anchor is not None:
        if counts[anchor] < 2:
            raise ValueError(
                f"anchor_label={_label_repr(grouping, anchor)} has a single member: no "
                f"positive pair exists inside it, but n_positive={n_wanted} were requested."
            )
        return _single_label_weights(grouping.n_labels, anchor)
    if balanced:
        weights = (counts >= 2).astype(np.uint64)
    else:
        weights = counts * (counts - np.uint64(1))  # n_c (n_c - 1) ordered pairs (n_c >= 1)
    if not np.any(weights):
        raise ValueError(
            f"no positive pair exists: every label has a single member, but "
            f"n_positive={n_wanted} were requested."
        )
    return weights


def _negative_weights(grouping, anchor, balanced, n_wanted):
    """Integer weights of the labels when drawing the first end of a negative pair."""
    if grouping.n_labels < 2:
        raise ValueError(
            f"no negative pair exists: all labels are equal "
            f"({_label_repr(grouping, 0)}), but n_negative={n_wanted} were requested."
        )
    if anchor is not None:
        return _single_label_weights(grouping.n_labels, anchor)
    if balanced:
        return np.ones(grouping.n_labels, dtype=np.uint64)
    counts = grouping.counts.astype(np.uint64)
    return counts * (np.uint64(grouping.n) - counts)  # n_c (n - n_c) ordered pairs


def _positives(grouping, n_wanted, balanced, unique, anchor, seed, n_threads, out):
    n_labels = grouping.n_labels
    key = stream_key(seed, _STREAM_POSITIVE)
    cum = _cumulative(_positive_weights(grouping, anchor, balanced, n_wanted))
    if not unique:
        return _draw(grouping, cum, True, key, 0, n_wanted, n_threads, out)

    cap = [int(c) * (int(c) - 1) // 2 for c in grouping.counts]
    if anchor is not None or not balanced:
        labels_idx = [anchor] if anchor is not None else list(range(n_labels))
        where = (f"inside anchor_label={_label_repr(grouping, anchor)}"
                 if anchor is not None else "in labels")
        return _unique_pooled(grouping, cum, True, key, n_wanted,
                              sum(cap[c] for c in labels_idx), where,
                              lambda: _enumerate_positive(grouping, labels_idx), n_threads)

    # Balanced and unique: equal quotas over the labels with >= 2 members,
    # each filled with distinct pairs drawn uniformly inside its label.
    eligible = np.flatnonzero(grouping.counts >= 2)
    capacity = np.array([cap[c] for c in eligible], dtype=np.int64)
    quotas = _quotas(capacity, n_wanted, stream_key(seed, _STREAM_QUOTA_POSITIVE))
    if quotas is None:
        k = len(eligible)
        low = int(capacity.min())
        # Feasible iff every label can take `low` pairs and the remainder fits
        # in the labels with more room.
        n_max = k * low + int(np.count_nonzero(capacity > low))
        raise ValueError(
            f"balanced=True with unique=True gives each of the {k} labels with at least "
            f"2 members an equal share ({n_wanted // k} or {n_wanted // k + 1}) of "
            f"n_positive={n_wanted}, but the smallest of them has only {low} distinct "
            f"pairs; request at most {n_max} positive pairs or use balanced=False."
        )
    parts = []
    for c, q in zip(eligible, quotas):
        c = int(c)
        key_c = stream_key(seed, _STREAM_PER_LABEL + 4 * c + _STREAM_POSITIVE)
        parts.append(_unique_codes(
            grouping, _cumulative(_single_label_weights(n_labels, c)), True, key_c, int(q),
            cap[c], lambda c=c: _enumerate_positive(grouping, [c]),
            np.empty(0, dtype=np.int64), n_threads))
    codes = _shuffled(np.concatenate(parts), stream_key(seed, _STREAM_ORDER_POSITIVE))
    return _decode(codes, grouping.n)


def _unique_pooled(grouping, cum, positive, key, n_wanted, n_eligible, where, enumerate_all,
                   n_threads):
    """``n_wanted`` distinct pairs drawn from one pool of ``n_eligible`` (no quotas).

    The pool is every positive (or negative) pair the weights ``cum`` allow;
    ``where`` says which, for the error when the pool is too small.
    ``enumerate_all`` lists the pool, for when most of it is wanted.
    """
    kind = "positive" if positive else "negative"
    if n_wanted > n_eligible:
        raise ValueError(
            f"unique=True: n_{kind}={n_wanted} exceeds the {n_eligible} distinct "
            f"{kind} pairs that exist {where}."
        )
    codes = _unique_codes(grouping, cum, positive, key, n_wanted, n_eligible, enumerate_all,
                          np.empty(0, dtype=np.int64), n_threads)
    return _decode(codes, grouping.n)


def _negatives(grouping, n_wanted, balanced, unique, anchor, seed, n_threads, out):
    n = grouping.n
    n_labels = grouping.n_labels
    key = stream_key(seed, _STREAM_NEGATIVE)
    cum = _cumulative(_negative_weights(grouping, anchor, balanced, n_wanted))
    if not unique:
        return _draw(grouping, cum, False, key, 0, n_wanted, n_threads, out)

    cross = [int(c) * (n - int(c)) for c in grouping.counts]  # pairs with one end in c
    if anchor is not None or not balanced:
        if anchor is not None:
            n_eligible = cross[anchor]
            where = f"between anchor_label={_label_repr(grouping, anchor)} and the other labels"
        else:
            n_eligible = sum(cross) // 2
            where = "between different labels"
        return _unique_pooled(grouping, cum, False, key, n_wanted, n_eligible, where,
                              lambda: _enumerate_negative(grouping, anchor), n_threads)

    # Balanced and unique: label c gets an equal quota of distinct pairs with
    # one end in c, drawn uniformly; a pair {a in c, b in d} must not be taken
    # twice, so the labels are filled in order and each one excludes the pairs
    # already taken by earlier labels.  Feasibility is checked up front with
    # the worst case: label d can take at most min(q_d, n_c n_d) of c's pairs.
    capacity = np.array(cross, dtype=np.int64)
    quotas = _quotas(capacity, n_wanted, stream_key(seed, _STREAM_QUOTA_NEGATIVE))
    q_max = -(-n_wanted // n_labels)
    feasible = quotas is not None
    if feasible:
        # worst_c = sum_{d != c} min(q_max, n_c n_d), for all c at once: with
        # the sizes sorted, n_c n_d <= q_max exactly for n_d <= q_max // n_c.
        sizes = grouping.counts.astype(np.int64)
        srt = np.sort(sizes)
        prefix = np.concatenate([[0], np.cumsum(srt)])
        j = np.searchsorted(srt, q_max // sizes, side="right")
        worst = sizes * prefix[j] + q_max * (n_labels - j) - np.minimum(q_max, sizes * sizes)
        feasible = bool(np.all(q_max + worst <= capacity))
    if not feasible:
        raise ValueError(
            f"balanced=True with unique=True gives each of the {n_labels} labels an equal "
            f"share ({n_wanted // n_labels} or {q_max}) of n_negative={n_wanted} distinct "
            f"negative pairs, which cannot be guaranteed here: a label has too few points "
            f"outside it (the smallest label has {int(capacity.min())} pairs with the rest, "
            f"shared with the other labels' quotas); request fewer negative pairs or use "
            f"balanced=False."
        )
    inv = grouping.inv
    pending = [[] for _ in range(n_labels)]  # codes taken earlier touching label c
    parts = []
    for c in range(n_labels):
        excluded = (np.unique(np.concatenate(pending[c])) if pending[c]
                    else np.empty(0, dtype=np.int64))
        pending[c] = None
        key_c = stream_key(seed, _STREAM_PER_LABEL + 4 * c + _STREAM_NEGATIVE)
        codes = _unique_codes(
            grouping, _cumulative(_single_label_weights(n_labels, c)), False, key_c,
            int(quotas[c]), cross[c], lambda c=c: _enumerate_negative(grouping, c),
            excluded, n_threads)
        parts.append(codes)
        # Hand each new pair to the label of its other end (if still to come).
        a, b = codes // n, codes % n
        other = np.where(inv[a] == c, inv[b], inv[a])
        later = other > c
        codes_l, other_l = codes[later], other[later]
        srt = np.argsort(other_l, kind="stable")
        codes_l, other_l = codes_l[srt], other_l[srt]
        labels_d, starts = np.unique(other_l, return_index=True)
        for d, block in zip(labels_d.tolist(), np.split(codes_l, starts[1:])):
            pending[d].append(block)
    codes = _shuffled(np.concatenate(parts), stream_key(seed, _STREAM_ORDER_NEGATIVE))
    return _decode(codes, n)


# ---------------------------------------------------------------------------
# Public function
# ---------------------------------------------------------------------------

def sample_pairs(labels, n_positive, n_negative, *, balanced=False, unique=False,
                 anchor_label=None, random_state=None, n_jobs=None):
    """Draw random positive (same label) and negative (different label) pairs.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class labels or cluster ids: any values ``np.unique`` can sort
        (integers, strings, ...).  NaN / None labels are rejected.  At least
        2 samples.
    n_positive : int
        Number of positive pairs: two distinct samples with the same label.
    n_negative : int
        Number of negative pairs: two samples with different labels.
    balanced : bool, default=False
        False: each positive pair is uniform among all unordered same-label
        pairs (large classes give more pairs, in proportion to
        n_c (n_c - 1) / 2), each negative pair uniform among all unordered
        different-label pairs.  True: the label of a positive pair is uniform
        among the labels with at least 2 members, then the pair is uniform
        inside it; a negative pair has one end in a label drawn uniformly
        among all labels and the other end uniform among the points outside
        that label.
    unique : bool, default=False
        If True no pair (a, b) is returned twice among the positives or
        among the negatives; the pairs are then a uniform random subset
        (without replacement) of the eligible pairs.  With ``balanced=True``
        the requested number is split into equal per-label quotas (the
        remainder going to randomly chosen labels), each filled without
        replacement; a ValueError is raised if a label cannot meet its
        quota.
    anchor_label : label value or None, default=None
        If given (a value present in ``labels``), positive pairs are uniform
        among the pairs inside that label and negative pairs uniform among
        the pairs with one end in it and the other outside (one cluster
        against the rest).  ``balanced`` then has no effect.
    random_state : int, RandomState, Generator or None, default=None
        Seed of the counter-based generator: an int is used as is (modulo
        2**64); a RandomState or Generator gives one 64-bit draw; None draws
        the seed from numpy's global RandomState.
    n_jobs : int or None, default=None
        Number of OpenMP threads (None: as many as OpenMP and threadpoolctl
        allow; -1: all CPUs).  The result does not depend on it.

    Returns
    -------
    pairs : ndarray of shape (n_positive + n_negative, 2), dtype np.intp
        Sample indices, ``pairs[i, 0] < pairs[i, 1]``; the positive pairs
        first, then the negative ones.
    y : ndarray of shape (n_positive + n_negative,), dtype np.int8
        1 for a positive pair, 0 for a negative pair.

    Raises
    ------
    ValueError
        If a requested kind of pair does not exist (no label with two
        members, a single label, ``anchor_label`` absent), if ``unique=True``
        asks for more pairs than exist, or on invalid input.
    TypeError
        If ``n_positive`` / ``n_negative`` are not integers.

    Notes
    -----
    Each draw is O(log C) for C labels: the indices are grouped by label
    once (counting sort, O(n)), a label is drawn by binary search in a
    cumulative table of integer weights, then a pair inside it (or between
    it and the rest) from one more draw.  The draws of pair p come from
    counters 2 p and 2 p + 1 of a counter-based generator, so the output
    does not depend on the number of threads.  With ``unique=True`` the
    candidates are scanned in counter order, keeping first occurrences;
    when more than half of the eligible pairs are requested they are
    enumerated and a random subset is taken instead.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import sample_pairs
    >>> labels = np.array(["a", "a", "b", "b", "b", "c"])
    >>> pairs, y = sample_pairs(labels, 3, 2, random_state=0)
    >>> pairs.shape, pairs.dtype == np.intp, y.tolist()
    ((5, 2), True, [1, 1, 1, 0, 0])
    >>> same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    >>> same.tolist()
    [True, True, True, False, False]
    >>> bool(np.all(pairs[:, 0] < pairs[:, 1]))
    True
    >>> pairs, y = sample_pairs(labels, 4, 0, unique=True, random_state=0)
    >>> sorted(map(tuple, pairs.tolist()))
    [(0, 1), (2, 3), (2, 4), (3, 4)]
    """
    n_positive = _check_count(n_positive, "n_positive")
    n_negative = _check_count(n_negative, "n_negative")
    classes, inv, counts = _check_labels(labels)
    n_threads = effective_n_threads(n_jobs)
    seed = _seed_from(random_state)

    anchor = _anchor_index(classes, anchor_label)

    grouping = _Grouping(inv, counts, classes)
    balanced = bool(balanced)
    unique = bool(unique)
    pairs = np.empty((n_positive + n_negative, 2), dtype=np.intp)
    if n_positive:
        # The kernel writes straight into the (C-contiguous) row block.
        block = pairs[:n_positive]
        res = _positives(grouping, n_positive, balanced, unique, anchor, seed, n_threads,
                         block)
        if res is not block:
            block[...] = res
    if n_negative:
        block = pairs[n_positive:]
        res = _negatives(grouping, n_negative, balanced, unique, anchor, seed, n_threads,
                         block)
        if res is not block:
            block[...] = res
    y = np.zeros(n_positive + n_negative, dtype=np.int8)
    y[:n_positive] = 1
    return pairs, y


class LabelPairStream:
    """Pairs from labels drawn slice by slice, without holding them all.

    The positive (negative) pairs of :func:`sample_pairs` with
    ``unique=False`` are the draws ``0, 1, 2, ...`` of one counter-based
    stream each; this object keeps the label grouping and the label weights,
    and returns any slice of those streams.  So a stochastic solver can take
    minibatch ``i`` as the draws ``[i B, (i + 1) B)`` of an epoch of any
    size, in memory proportional to ``B``, and the slices put together are
    exactly ``sample_pairs(labels, n_positive, n_negative, balanced=balanced,
    random_state=seed)``.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class labels or cluster ids.
    balanced : bool, default=False
        As in :func:`sample_pairs`.
    n_jobs : int, optional
        Threads of the sampling kernel (the pairs do not depend on it).
    anchor_label : optional
        As in :func:`sample_pairs`: pairs inside this label, and between it
        and the others.

    Raises
    ------
    ValueError
        When no positive pair (every label has one member) or no negative
        pair (a single label) exists.
    """

    def __init__(self, labels, balanced=False, n_jobs=None, anchor_label=None):
        classes, inv, counts = _check_labels(labels)
        self.grouping = _Grouping(inv, counts, classes)
        self.balanced = bool(balanced)
        self.n_threads = effective_n_threads(n_jobs)
        anchor = _anchor_index(classes, anchor_label)
        self._cum_positive = _cumulative(
            _positive_weights(self.grouping, anchor, self.balanced, 1))
        self._cum_negative = _cumulative(
            _negative_weights(self.grouping, anchor, self.balanced, 1))

    def draw(self, seed, positive_start, n_positive, negative_start, n_negative):
        """Draws ``[start, start + n)`` of the positive and negative streams.

        Parameters
        ----------
        seed : int
            The seed of the streams (as ``random_state`` of sample_pairs).
        positive_start, n_positive, negative_start, n_negative : int
            First draw and number of draws of each stream.

        Returns
        -------
        pairs : ndarray of shape (n_positive + n_negative, 2), dtype intp
            Positives first, then negatives, each with ``a < b``.
        y : ndarray of shape (n_positive + n_negative,), dtype int8
            1 for the positives, 0 for the negatives.
        """
        n_positive = _check_count(n_positive, "n_positive")
        n_negative = _check_count(n_negative, "n_negative")
        seed = int(seed) % 2**64
        pairs = np.empty((n_positive + n_negative, 2), dtype=np.intp)
        if n_positive:
            _draw(self.grouping, self._cum_positive, True, stream_key(seed, _STREAM_POSITIVE),
                  _check_count(positive_start, "positive_start"), n_positive, self.n_threads,
                  pairs[:n_positive])
        if n_negative:
            _draw(self.grouping, self._cum_negative, False, stream_key(seed, _STREAM_NEGATIVE),
                  _check_count(negative_start, "negative_start"), n_negative, self.n_threads,
                  pairs[n_positive:])
        y = np.zeros(n_positive + n_negative, dtype=np.int8)
        y[:n_positive] = 1
        return pairs, y


def _positive_int(value, name, low=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {low}; got {value!r}.")
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value}.")
    return value


def sample_chunks(labels, n_chunks=100, chunk_size=2, *, random_state=None, n_jobs=None):
    """Draw disjoint chunks of same-class points (RCA's chunklets).

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Class labels (any values ``np.unique`` can sort; NaN/None rejected).
    n_chunks : int, default=100
        Number of chunks.
    chunk_size : int, default=2
        Points per chunk (at least 1).
    random_state : int, RandomState, Generator or None, default=None
        Seed of the counter-based generator: an int is used as is (modulo
        2**64); a RandomState or Generator gives one 64-bit draw; None draws
        from numpy's global RandomState.
    n_jobs : int or None, default=None
        OpenMP threads (None: what OpenMP allows, -1: all CPUs).  The result
        does not depend on it.

    Returns
    -------
    chunks : ndarray of shape (n_samples,), intp
        ``chunks[i] = j`` when sample i belongs to chunk j (``0 <= j <
        n_chunks``), ``-1`` when it belongs to none.  Each chunk holds
        exactly ``chunk_size`` samples, all of one class; chunks are disjoint.

    Raises
    ------
    ValueError
        When the classes cannot supply ``n_chunks`` disjoint chunks: class c
        gives at most ``n_c // chunk_size`` of them; the message states the
        maximum.

    Notes
    -----
    Chunk j takes its class uniformly among the classes that can still
    supply a whole chunk; then each class draws the members of its chunks
    without replacement.  Every draw comes from a counter-based generator
    keyed by the seed (one stream for the class choices, one per class for
    the members), so the output depends only on the seed and the labels.
    O(n + n_chunks) time.

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import sample_chunks
    >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    >>> chunks = sample_chunks(labels, n_chunks=3, chunk_size=2, random_state=0)
    >>> chunks.shape, int((chunks >= 0).sum())
    ((8,), 6)
    >>> all(len(set(labels[chunks == j])) == 1 for j in range(3))
    True
    >>> sample_chunks(labels, n_chunks=4, chunk_size=2)
    Traceback (most recent call last):
    ...
    ValueError: cannot draw n_chunks=4 disjoint chunks of chunk_size=2 ...
    """
    n_chunks = _positive_int(n_chunks, "n_chunks", 0)
    chunk_size = _positive_int(chunk_size, "chunk_size", 1)
    classes, codes, counts = _check_labels(labels, min_samples=1)
    n = codes.shape[0]
    n_threads = effective_n_threads(n_jobs)
    seed = _seed_from(random_state)

    capacity = np.ascontiguousarray(counts // chunk_size, dtype=np.intp)
    max_chunks = int(capacity.sum())
    if n_chunks > max_chunks:
        top = np.argsort(-counts, kind="stable")[:3]
        shown = ", ".join(
            f"{(classes[c].item() if hasattr(classes[c], 'item') else classes[c])!r}: "
            f"{int(counts[c])}" for c in top)
        raise ValueError(
            f"cannot draw n_chunks={n_chunks} disjoint chunks of chunk_size={chunk_size} "
            f"same-class points: class c supplies at most n_c // {chunk_size} chunks, "
            f"{max_chunks} in all for these {len(classes)} class(es) (largest class "
            f"sizes {shown}). Request at most {max_chunks} chunks, or smaller chunks."
        )

    if n_chunks == 0:
        return np.full(n, -1, dtype=np.intp)
    n_threads = max(1, min(n_threads, n // int(_MIN_MEMBERS_PER_THREAD)))
    return draw_chunks(codes, counts, n_chunks, chunk_size, seed, n_threads)

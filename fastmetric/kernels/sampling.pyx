# Random positive / negative pair sampling from class labels or cluster ids.
#
# Every random number comes from the counter-based generator of common.pxd:
# the draws of pair p are fm_random_u64(key, 2 p) and fm_random_u64(key,
# 2 p + 1), a pure function of (seed, stream, p).  Pairs are therefore
# independent of each other and of the way the pairs are split among
# threads, and the output is identical for any number of threads.
#
# Sampling scheme (one pair, O(log C) for C labels):
#
# 1. The sample indices are grouped by label once with a counting sort:
#    label c occupies order[offsets[c]:offsets[c + 1]] (n_c members).
# 2. A label c is drawn with probability w_c / W from a cumulative table of
#    integer weights (binary search for cum[c] <= u < cum[c + 1], u uniform
#    in [0, W)).
# 3. An ordered pair (first end in c, second end in the partner set) is drawn
#    uniformly with one more draw r uniform in [0, n_c m_c): first end
#    = member r // m_c of c, second end = partner r % m_c.  For a positive
#    pair the partners are the m_c = n_c - 1 other members of c; for a
#    negative one, the m_c = n - n_c points outside c (label c's block of
#    ``order`` is skipped).
#
# With w_c = n_c m_c every ordered eligible pair has probability 1 / W, so
# every unordered positive pair has probability 2 / W and every unordered
# negative pair (reachable from both of its labels) has probability 2 / W:
# both are uniform.  With w_c = 1 for the eligible labels (balanced) the
# label is uniform and the pair is uniform inside it; with a single nonzero
# weight (anchor) the pairs are uniform among those touching that label.

from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t, uint64_t

from fastmetric.kernels.common cimport fm_random_u64, fm_stream_key, fm_u64_below

# Pairs per OpenMP work item: large enough to amortise scheduling, small
# enough to balance 1e4..1e7 pairs over a few threads.
cdef enum:
    CHUNK = 4096
# A thread is only worth starting for about 1 ms of work (~30 ns a pair):
# below that, waking it (or waiting for it on a busy machine) costs more.
MIN_PAIRS_PER_THREAD = 32768

# ---------------------------------------------------------------------------
# nogil kernels
# ---------------------------------------------------------------------------

cdef void sample_label_pairs(
    const intp_t[::1] order,
    const intp_t[::1] offsets,
    const uint64_t[::1] cum_weights,
    bint positive,
    uint64_t key,
    uint64_t counter_start,
    intp_t[:, ::1] pairs,
    int n_threads,
) noexcept nogil:
    """Fill ``pairs`` (n_pairs, 2) with random label-based pairs (a < b).

    Pair p (row p) uses the counters 2 (counter_start + p) and
    2 (counter_start + p) + 1 of the stream ``key``: row p of the output
    is the same whatever the number of threads and whatever the other rows.

    order : indices grouped by label; label c is order[offsets[c]:offsets[c+1]].
    offsets : (n_labels + 1,), offsets[0] = 0, offsets[n_labels] = n.
    cum_weights : (n_labels + 1,) cumulative integer label weights,
        cum_weights[0] = 0; label c is drawn with probability
        (cum_weights[c + 1] - cum_weights[c]) / cum_weights[n_labels].
        A label of nonzero weight must have an eligible pair (n_c >= 2 for
        positive pairs, n_c < n for negative ones).
    positive : True: both ends in the drawn label; False: first end in the
        drawn label, second end uniform outside it.

    n_threads : number of OpenMP threads.  Call with the GIL released for
        the threads to run.

    Rows are set to (-1, -1) when the weights are inconsistent (total weight
    0 or a weighted label without a pair); the Python caller checks this
    cannot happen.
    """
    cdef intp_t n_pairs = pairs.shape[0]
    cdef intp_t n_labels = offsets.shape[0] - 1
    cdef intp_t n, n_chunks, chunk, start, end, p, lo, width, half, off_c, size_c, a, b, tmp
    cdef uint64_t total, u, r, m, i, k, ctr
    if n_pairs <= 0:
        return
    if n_labels <= 0 or cum_weights[n_labels] == 0:
        for p in range(n_pairs):
            pairs[p, 0] = -1
            pairs[p, 1] = -1
        return
    n = offsets[n_labels]
    total = cum_weights[n_labels]
    n_chunks = (n_pairs + CHUNK - 1) // CHUNK
    with parallel(num_threads=n_threads):
        for chunk in prange(n_chunks, schedule='dynamic'):
            start = chunk * CHUNK
            end = start + CHUNK
            if end > n_pairs:
                end = n_pairs
            for p in range(start, end):
                ctr = 2 * (counter_start + <uint64_t> p)
                # Label: the largest c with cum[c] <= u (zero-weight labels are
                # never chosen), by a branch-free binary search: the answer
                # stays in [lo, lo + width) and the width halves each step;
                # the conditional move avoids unpredictable branches.
                u = fm_u64_below(fm_random_u64(key, ctr), total)
                lo = 0
                width = n_labels
                while width > 1:
                    half = width >> 1
                    lo = lo + half if cum_weights[lo + half] <= u else lo
                    width = width - half
                off_c = offsets[lo]
                size_c = offsets[lo + 1] - off_c
                if positive:
                    m = <uint64_t> (size_c - 1) if size_c > 1 else 0
                else:
                    m = <uint64_t> (n - size_c)
                if m == 0:
                    pairs[p, 0] = -1
                    pairs[p, 1] = -1
                    continue
                # Ordered pair index r uniform in [0, n_c m_c).
                r = fm_u64_below(fm_random_u64(key, ctr + 1), <uint64_t> size_c * m)
                i = r // m
                k = r - i * m
                a = order[off_c + <intp_t> i]
                if positive:
                    # k-th member of c other than member i.
                    if k >= i:
                        k = k + 1
                    b = order[off_c + <intp_t> k]
                else:
                    # k-th point outside c: skip c's block of ``order``.
                    if k >= <uint64_t> off_c:
                        k = k + <uint64_t> size_c
                    b = order[<intp_t> k]
                if a > b:
                    tmp = a
                    a = b
                    b = tmp
                pairs[p, 0] = a
                pairs[p, 1] = b


cdef void _group_by_label(
    const intp_t[::1] inv, intp_t[::1] offsets, intp_t[::1] order
) noexcept nogil:
    """Counting sort: indices grouped by label, increasing inside a label.

    offsets must hold the label counts shifted by one (offsets[c + 1] = n_c,
    offsets[0] = 0) and becomes their cumulative sum; O(n + C).
    """
    cdef intp_t n = inv.shape[0]
    cdef intp_t n_labels = offsets.shape[0] - 1
    cdef intp_t c, j
    for c in range(n_labels):
        offsets[c + 1] += offsets[c]
    # offsets[c] is used as the write cursor of label c, then restored.
    for j in range(n):
        c = inv[j]
        order[offsets[c]] = j
        offsets[c] += 1
    for c in range(n_labels, 0, -1):
        offsets[c] = offsets[c - 1]
    offsets[0] = 0


cdef void _partial_shuffle(int64_t[::1] values, intp_t k, uint64_t key) noexcept nogil:
    """Fisher-Yates on the first k positions: values[:k] becomes a uniform
    random k-subset of values, in random order (draw j uses counter j)."""
    cdef intp_t n = values.shape[0]
    cdef intp_t j, t
    cdef int64_t tmp
    if k > n - 1:
        k = n - 1
    for j in range(k):
        t = j + <intp_t> fm_u64_below(fm_random_u64(key, <uint64_t> j), <uint64_t> (n - j))
        tmp = values[j]
        values[j] = values[t]
        values[t] = tmp


# ---------------------------------------------------------------------------
# Typed entry points (arguments validated by fastmetric._core.sampling)
# ---------------------------------------------------------------------------

def stream_key(seed, stream):
    """Key of the generator's stream ``stream`` under ``seed`` (fm_stream_key;
    both arguments taken modulo 2**64).  O(1)."""
    return int(fm_stream_key(<uint64_t> (int(seed) % 2**64), <uint64_t> (int(stream) % 2**64)))


def group_by_label(const intp_t[::1] inv, intp_t[::1] offsets, intp_t[::1] order):
    """Counting sort of the sample indices by label code ``inv`` into
    ``order``; ``offsets`` holds the label counts shifted by one on entry and
    their cumulative sum on return (see _group_by_label).  O(n + C)."""
    with nogil:
        _group_by_label(inv, offsets, order)


def partial_shuffle(int64_t[::1] values, intp_t k, uint64_t key):
    """values[:k] <- a uniform random k-subset of values, in random order
    (Fisher-Yates on the first k positions, draw j from counter j of the
    stream ``key``).  O(k)."""
    with nogil:
        _partial_shuffle(values, k, key)


def draw_label_pairs(const intp_t[::1] order, const intp_t[::1] offsets,
                     const uint64_t[::1] cum, bint positive, uint64_t key,
                     uint64_t counter_start, intp_t[:, ::1] out, int n_threads):
    """Fill ``out`` (n_pairs x 2) with pairs drawn by sample_label_pairs from
    the labels grouped by :func:`group_by_label` (``order``, ``offsets``) and
    the cumulative label weights ``cum``: positive (same label) or negative
    pairs, pair p from counters ``counter_start + p`` of the stream ``key``.
    O(n_pairs log C), the same for any number of threads."""
    with nogil:
        sample_label_pairs(order, offsets, cum, positive, key, counter_start, out, n_threads)

# Random chunklets from class labels, for RCA.
#
# A chunklet (chunk) is a small set of points known to share a class.  We
# draw ``n_chunks`` disjoint chunks of ``chunk_size`` points each:
#
# 1. Class of each chunk (sequential, O(n_chunks)): chunk j takes a class
#    uniformly among the classes that can still supply a whole chunk
#    (``counts[c] // chunk_size`` chunks at most), with the draw
#    fm_random_u64(key_assign, j).  A class that is used up leaves the
#    active list (swap-remove), so the loop always terminates: the caller
#    checks n_chunks <= sum_c counts[c] // chunk_size beforehand.
# 2. Members (parallel over classes): class c, which received q_c chunks,
#    takes a uniform random (ordered) subset of q_c * chunk_size of its
#    members by a partial Fisher-Yates shuffle whose draw i is
#    fm_random_u64(key_c, i), key_c a stream of its own.  The t-th chunk of
#    class c (in chunk order) gets members t * chunk_size ... (t + 1) *
#    chunk_size - 1 of that subset.
#
# Every draw is a pure function of (seed, stream, counter): the output
# depends on the seed and the labels only, never on the number of threads.

import numpy as np

from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from fastmetric.kernels.common cimport fm_random_u64, fm_stream_key, fm_u64_below

# Stream ids of the generator: one for the class of each chunk, one per
# class (STREAM_CLASS + class index) for its members.
cdef enum:
    STREAM_ASSIGN = 11
    STREAM_CLASS = 1 << 24


# ---------------------------------------------------------------------------
# nogil kernels
# ---------------------------------------------------------------------------

cdef void _assign_classes(
    Py_ssize_t[::1] capacity,
    Py_ssize_t[::1] active,
    Py_ssize_t[::1] chunk_class,
    Py_ssize_t[::1] quota,
    uint64_t key,
) noexcept nogil:
    """Class of each chunk (uniform among the classes with room left).

    capacity : (n_classes,) chunks each class can still give (modified).
    active : (n_classes,) scratch.
    chunk_class : (n_chunks,) output.
    quota : (n_classes,) output, zero on entry: chunks per class.
    """
    cdef Py_ssize_t n_classes = capacity.shape[0]
    cdef Py_ssize_t n_chunks = chunk_class.shape[0]
    cdef Py_ssize_t n_active = 0
    cdef Py_ssize_t c, j, pick
    for c in range(n_classes):
        if capacity[c] > 0:
            active[n_active] = c
            n_active += 1
    for j in range(n_chunks):
        if n_active == 0:  # cannot happen after the caller's check
            chunk_class[j] = -1
            continue
        pick = <Py_ssize_t> fm_u64_below(fm_random_u64(key, <uint64_t> j),
                                         <uint64_t> n_active)
        c = active[pick]
        chunk_class[j] = c
        quota[c] += 1
        capacity[c] -= 1
        if capacity[c] == 0:
            n_active -= 1
            active[pick] = active[n_active]


cdef void _shuffle_members(
    Py_ssize_t[::1] order,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] n_take,
    uint64_t seed,
    int n_threads,
) noexcept nogil:
    """Partial Fisher-Yates inside each class block of ``order``.

    Class c occupies order[offsets[c]:offsets[c + 1]]; its first n_take[c]
    positions become a uniform random ordered subset of the block, drawn
    from the stream (seed, STREAM_CLASS + c).  Blocks are disjoint, so the
    classes run in parallel with identical results for any thread count.
    """
    cdef Py_ssize_t n_classes = offsets.shape[0] - 1
    cdef Py_ssize_t c, i, t, start, size, tmp
    cdef uint64_t key
    for c in prange(n_classes, nogil=True, schedule='dynamic', num_threads=n_threads):
        start = offsets[c]
        size = offsets[c + 1] - start
        key = fm_stream_key(seed, <uint64_t> (STREAM_CLASS + c))
        i = 0
        while i < n_take[c] and i < size - 1:
            t = i + <Py_ssize_t> fm_u64_below(fm_random_u64(key, <uint64_t> i),
                                              <uint64_t> (size - i))
            tmp = order[start + i]
            order[start + i] = order[start + t]
            order[start + t] = tmp
            i = i + 1


cdef void _group_by_class(
    const Py_ssize_t[::1] codes,
    const Py_ssize_t[::1] offsets,
    Py_ssize_t[::1] fill,
    Py_ssize_t[::1] order,
) noexcept nogil:
    """Counting sort: order[offsets[c]:offsets[c + 1]] = samples of class c,
    ascending.  fill : (n_classes,) scratch."""
    cdef Py_ssize_t i, c
    for c in range(fill.shape[0]):
        fill[c] = offsets[c]
    for i in range(codes.shape[0]):
        c = codes[i]
        order[fill[c]] = i
        fill[c] += 1


cdef void _label_chunks(
    const Py_ssize_t[::1] order,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] chunk_class,
    Py_ssize_t chunk_size,
    Py_ssize_t[::1] next_slot,
    Py_ssize_t[::1] chunks,
) noexcept nogil:
    """chunks[member] = j for the members of chunk j (others untouched)."""
    cdef Py_ssize_t j, c, m, pos
    for j in range(chunk_class.shape[0]):
        c = chunk_class[j]
        if c < 0:
            continue
        pos = offsets[c] + next_slot[c]
        for m in range(chunk_size):
            chunks[order[pos + m]] = j
        next_slot[c] += chunk_size


# ---------------------------------------------------------------------------
# Typed entry point (arguments validated by fastmetric._core.sampling)
# ---------------------------------------------------------------------------

def draw_chunks(const Py_ssize_t[::1] codes, const Py_ssize_t[::1] counts,
                Py_ssize_t n_chunks, Py_ssize_t chunk_size, uint64_t seed, int n_threads):
    """Chunk of each sample (-1: none) for ``n_chunks`` disjoint chunks of
    ``chunk_size`` same-class samples, by the two steps of the module
    comment: the class of each chunk, then each class's members (classes in
    parallel on ``n_threads`` threads).  ``codes`` are the samples' class
    indices, ``counts`` the class sizes; the caller checks that
    ``n_chunks <= sum_c counts[c] // chunk_size`` and ``n_chunks > 0``.
    O(n + n_chunks); the result depends on the seed and the labels only.
    """
    cdef Py_ssize_t n = codes.shape[0], n_classes = counts.shape[0]
    chunks = np.full(n, -1, dtype=np.intp)
    counts_arr = np.asarray(counts)
    capacity = np.ascontiguousarray(counts_arr // chunk_size, dtype=np.intp)
    offsets = np.zeros(n_classes + 1, dtype=np.intp)
    np.cumsum(counts_arr, out=offsets[1:])
    order = np.empty(n, dtype=np.intp)
    active = np.empty(n_classes, dtype=np.intp)
    chunk_class = np.empty(n_chunks, dtype=np.intp)
    quota = np.zeros(n_classes, dtype=np.intp)
    n_take = np.empty(n_classes, dtype=np.intp)
    next_slot = np.zeros(n_classes, dtype=np.intp)

    cdef uint64_t seed_c = <uint64_t> seed
    cdef uint64_t key_assign = fm_stream_key(seed_c, <uint64_t> STREAM_ASSIGN)
    cdef Py_ssize_t[::1] capacity_v = capacity
    cdef Py_ssize_t[::1] active_v = active
    cdef Py_ssize_t[::1] chunk_class_v = chunk_class
    cdef Py_ssize_t[::1] quota_v = quota
    cdef Py_ssize_t[::1] order_v = order
    cdef Py_ssize_t[::1] offsets_v = offsets
    cdef Py_ssize_t[::1] n_take_v = n_take
    cdef Py_ssize_t[::1] next_slot_v = next_slot
    cdef Py_ssize_t[::1] chunks_v = chunks
    cdef Py_ssize_t size_c = chunk_size
    cdef int nt = max(1, n_threads)
    cdef const Py_ssize_t[::1] codes_v = codes

    with nogil:
        # Indices grouped by class (ascending index inside a class).
        _group_by_class(codes_v, offsets_v, next_slot_v, order_v)
        _assign_classes(capacity_v, active_v, chunk_class_v, quota_v, key_assign)
    n_take[:] = quota * chunk_size
    next_slot[:] = 0
    with nogil:
        _shuffle_members(order_v, offsets_v, n_take_v, seed_c, nt)
        _label_chunks(order_v, offsets_v, chunk_class_v, size_c, next_slot_v, chunks_v)
    return chunks

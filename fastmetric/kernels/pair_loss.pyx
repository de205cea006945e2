"""The LDML log-loss over pairs and its gradient.

For a pair p = (a, b) with target t_p in [0, 1] and weight w_p, the model is
``p = sigmoid(z_p)`` with ``z_p = beta - D_p`` and ``D_p = ||L (x_a - x_b)||^2``.
Writing the log-loss with logits, ``-t log s(z) - (1 - t) log(1 - s(z))
= softplus(z) - t z``, evaluated on the branch of softplus where exp cannot
overflow, so any distance gives a finite loss.  The objective is the
weighted mean ``f = sum_p w_p (softplus(z_p) - t_p z_p) / W``, W = sum_p w_p.

Gradient.  ``df/dz_p = w_p (sigmoid(z_p) - t_p) / W =: g_p / W``, so
``df/dbeta = sum_p g_p / W`` and, since ``dD_p/dL = 2 L d_p d_p^T`` with
``d_p = x_a - x_b``::

    df/dL = -(2 / W) L sum_p g_p d_p d_p^T = -(2 / W) L X^T Lap X,

with Lap the Laplacian of the graph whose edges are the pairs, weighted by
g_p.  Summing outer products pair by pair would cost O(P k d).  Instead,
with ``U = X L^T`` (the mapped points) and Lap symmetric,
``L X^T Lap X = (Lap U)^T X``, and row u of ``H = Lap U`` is
``sum_{p incident to u} g_p (U_u - U_other)``: the same difference of mapped
rows that gives D_p.  So one pass over the points, each visiting its incident
pairs through a CSR index built once, computes D_p, g_p and H (reading one
mapped row at random per incident pair, never a row of X), and
``df/dL = -(2 / W) H^T X`` is a GEMM, done chunk by chunk of points right
after their rows of H are computed (H is never stored).  In all
O(n k d + P k) per evaluation, race-free (each point owns its row of H).
Each pair is seen from both ends; its loss and bias-gradient terms are
counted from its first end only.

Where the time goes (n = 200,000, d = k = 64, P = 10^6, float64; measured
by benchmarks/ldml_breakdown.py): the two products (mapping and gradient),
done by the AVX-512 kernels of smallgemm.pxd where the CPU has them, and
the two million random reads of a mapped row (512 bytes each), which take
as much memory traffic as the machine delivers.  The mapped rows are
aligned to cache lines and kept on huge pages (see fastmetric._core.workspace).

Only the points that occur in some pair take part: with few pairs (a
minibatch) the points are relabelled compactly, so the cost and memory do
not grow with the size of X.

Sums are taken over chunks whose boundaries depend on the chunk size only,
then merged in chunk order: the result is bitwise the same for any number
of threads.
"""
import numpy as np

from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from fastmetric.kernels.common cimport (
    floating, fm_axpy_rows, fm_logit_batch, fm_prefetch_block, FM_PREFETCH_AHEAD, parts_prefix_sum,
    diff_sq_norm,
)
from fastmetric.kernels.distances cimport (
    transform_rows, transform_selected_rows,
)
from fastmetric.kernels.smallgemm cimport gemm_atb
from libc.stdint cimport int64_t

from fastmetric.kernels.team cimport fm_team_job, team_run
from fastmetric.kernels.team import team_keep

cdef enum:
    # Entries of one point whose loss terms are computed in one vectorised call.
    BATCH = 32

DEF_POINT_CHUNK = 256

# The numpy dtype of PairValues (see pair_loss.pxd), and ENTRY_SHIFT for
# Python code reading the keys.
PAIR_VALUES = np.dtype([("target", np.float64), ("weight", np.float64)])
KEY_SHIFT = ENTRY_SHIFT
# At most this many partial k x d products are kept for the final reduction.
DEF_MAX_PARTIALS = 128


cdef void build_endpoint_index(
    const Py_ssize_t[::1] ua,
    const Py_ssize_t[::1] ub,
    const double[::1] targets,
    const double[::1] weights,
    bint has_weights,
    Py_ssize_t[::1] offsets,
    Py_ssize_t[::1] keys,
    PairValues[::1] values,
    Py_ssize_t[:, ::1] cursor,
    int n_threads,
) noexcept nogil:
    """CSR index of the pairs incident to each point (a counting sort).

    Fills ``offsets`` (n_points + 1) and ``keys`` (2 n_pairs) as described in
    pair_loss.pxd.  With ``values`` empty, the targets must be 0 or 1 and
    go into the keys (``has_weights`` must be false); otherwise ``values``
    (2 n_pairs) gets each entry's target and weight (1 without weights).  A
    pair of a point with itself appears twice in that point's list.

    ``cursor`` (n_parts x n_points, zero-filled by the caller) splits the
    pairs into n_parts contiguous ranges counted and filled in parallel.
    Part t's entries of a point are placed after those of parts < t, so the
    entries stay in pair order and the index is the same for any number of
    parts or threads.
    """
    cdef Py_ssize_t n_pairs = ua.shape[0]
    cdef Py_ssize_t n_parts = cursor.shape[0]
    cdef Py_ssize_t part_size = (n_pairs + n_parts - 1) // n_parts
    cdef Py_ssize_t t, p, e, f, bit
    cdef bint packed = values.shape[0] == 0
    cdef double w = 1.0
    for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            cursor[t, ua[p]] += 1
            cursor[t, ub[p]] += 1
    parts_prefix_sum(cursor, &offsets[0])
    for t in prange(n_parts, schedule='dynamic', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            e = cursor[t, ua[p]]
            cursor[t, ua[p]] = e + 1
            f = cursor[t, ub[p]]
            cursor[t, ub[p]] = f + 1
            bit = 0
            if packed:
                bit = 2 if targets[p] != 0.0 else 0
            else:
                if has_weights:
                    w = weights[p]
                values[e].target = targets[p]
                values[e].weight = w
                values[f].target = targets[p]
                values[f].weight = w
            keys[e] = (ub[p] << ENTRY_SHIFT) | bit
            keys[f] = (ua[p] << ENTRY_SHIFT) | bit | 1


cdef struct _PointPass:
    # One pass over the endpoint index (see pair_loss.pxd): the index (values
    # NULL when the targets are packed in the keys), the bias of the logits,
    # whether the rows of H are wanted, the points per chunk, and where the
    # chunks' sums of the loss and of the bias gradient go (chunk c covers
    # points [c chunk_size, (c + 1) chunk_size)).
    Py_ssize_t n_points
    const Py_ssize_t *offsets
    const Py_ssize_t *keys
    const PairValues *values
    double bias
    bint compute_gradient
    Py_ssize_t chunk_size
    double *chunk_loss
    double *chunk_grad_bias


cdef inline _PointPass _point_pass(const Py_ssize_t[::1] offsets, const Py_ssize_t[::1] keys,
                                   const PairValues[::1] values, double bias,
                                   bint compute_gradient, Py_ssize_t chunk_size,
                                   double[::1] chunk_loss,
                                   double[::1] chunk_grad_bias) noexcept nogil:
    """The struct of a pass over these arrays (which must outlive it)."""
    cdef _PointPass pp
    pp.n_points = offsets.shape[0] - 1
    pp.offsets = &offsets[0]
    pp.keys = &keys[0] if keys.shape[0] > 0 else NULL
    pp.values = &values[0] if values.shape[0] > 0 else NULL
    pp.bias = bias
    pp.compute_gradient = compute_gradient
    pp.chunk_size = chunk_size
    pp.chunk_loss = &chunk_loss[0] if chunk_loss.shape[0] > 0 else NULL
    pp.chunk_grad_bias = &chunk_grad_bias[0] if chunk_grad_bias.shape[0] > 0 else NULL
    return pp


cdef inline void _point_chunk(
    const floating *U,
    Py_ssize_t k,
    const _PointPass *pp,
    floating *h_rows,
    Py_ssize_t start,
    Py_ssize_t stop,
    double *diff,
    double *acc,
    double *zbuf,
    double *loss_out,
    double *grad_bias_out,
) noexcept nogil:
    """Loss and bias-gradient sums of the chunk's points, and their rows of H.

    ``U`` is the n_points x k mapped rows (row-major).  Row u of H goes to
    ``h_rows[(u - start) * k:]``; the chunk's sums to ``loss_out[0]`` and
    ``grad_bias_out[0]``.

    A point's incident entries go in batches of up to BATCH: their
    differences and logits first, then the loss terms of the whole batch in
    one vectorised call (fm_logit_batch), then the accumulation of the
    batch into H[u] (fm_axpy_rows, which keeps H[u] in registers across the
    batch's rows).  ``diff`` holds BATCH x k doubles, ``zbuf`` 4 x BATCH.
    """
    cdef Py_ssize_t u, v, e, e0, e1, m, i, j
    cdef const Py_ssize_t *offsets = pp.offsets
    cdef const Py_ssize_t *keys = pp.keys
    cdef const PairValues *values = pp.values
    cdef Py_ssize_t e_stop = offsets[stop]
    cdef bint packed = values == NULL
    cdef double w = 1.0, r, loss = 0.0, gb = 0.0
    cdef double *tbuf = zbuf + BATCH
    cdef double *rbuf = zbuf + 2 * BATCH
    cdef double *lbuf = zbuf + 3 * BATCH
    for u in range(start, stop):
        memset(acc, 0, k * sizeof(double))
        e0 = offsets[u]
        e1 = offsets[u + 1]
        while e0 < e1:
            m = min(BATCH, e1 - e0)
            for i in range(m):
                e = e0 + i
                # Entries of consecutive points are contiguous: prefetch
                # along the chunk, not only along this point's few entries.
                if e + FM_PREFETCH_AHEAD < e_stop:
                    fm_prefetch_block(U + (keys[e + FM_PREFETCH_AHEAD] >> ENTRY_SHIFT) * k,
                                      k * sizeof(floating))
                v = keys[e] >> ENTRY_SHIFT
                zbuf[i] = pp.bias - diff_sq_norm(U + u * k, U + v * k, &diff[i * k], k)
                if packed:
                    tbuf[i] = <double> ((keys[e] >> 1) & 1)
                else:
                    tbuf[i] = values[e].target
            # softplus(z) - t z is the log-loss written with the logit z;
            # r = sigmoid(z) - t is its derivative in z.
            fm_logit_batch(zbuf, tbuf, rbuf, lbuf, m)
            for i in range(m):
                if not packed:
                    w = values[e0 + i].weight
                r = w * rbuf[i]
                # Each pair's loss and bias terms are counted once, from its
                # first end.
                if (keys[e0 + i] & 1) == 0:
                    loss += w * lbuf[i]
                    gb += r
                rbuf[i] = r
            if pp.compute_gradient:
                fm_axpy_rows(rbuf, diff, m, k, acc)
            e0 += m
        if pp.compute_gradient:
            for j in range(k):
                h_rows[(u - start) * k + j] = <floating> acc[j]
    loss_out[0] = loss
    grad_bias_out[0] = gb


cdef void ldml_point_pass(
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] keys,
    const PairValues[::1] values,
    double bias,
    floating[:, ::1] H,
    bint compute_gradient,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
    int n_threads,
) noexcept nogil:
    """Loss and bias-gradient sums per chunk of points, and H = Lap U."""
    cdef Py_ssize_t n_points = offsets.shape[0] - 1, k = U.shape[1]
    cdef Py_ssize_t n_chunks = (n_points + chunk_size - 1) // chunk_size
    cdef Py_ssize_t c, start, stop
    cdef double *diff
    cdef double *acc
    cdef double *zbuf
    cdef _PointPass pp = _point_pass(offsets, keys, values, bias, compute_gradient, chunk_size,
                                     chunk_loss, chunk_grad_bias)
    with parallel(num_threads=n_threads):
        diff = <double *> malloc(BATCH * k * sizeof(double))
        acc = <double *> malloc(k * sizeof(double))
        zbuf = <double *> malloc(4 * BATCH * sizeof(double))
        for c in prange(n_chunks, schedule='dynamic'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_points)
            _point_chunk(&U[0, 0], k, &pp, &H[start, 0] if compute_gradient else NULL, start,
                         stop, diff, acc, zbuf, &pp.chunk_loss[c], &pp.chunk_grad_bias[c])
        free(diff)
        free(acc)
        free(zbuf)


cdef struct _FusedPass:
    # The fused pass's inputs and outputs as raw pointers (X's dtype behind
    # the void pointers), so that one block can run in a team's callback.
    const void *X              # rows of X, d columns
    Py_ssize_t d
    const Py_ssize_t *point_rows
    bint identity_rows
    const void *U              # n_points x k mapped rows
    Py_ssize_t k
    _PointPass pp
    Py_ssize_t block           # points per block (a multiple of pp.chunk_size)
    void *partials             # n_blocks x k x d


cdef void _fused_block(
    const _FusedPass *fp,
    Py_ssize_t r,
    floating *partial,
    double *block_loss,
    double *block_grad_bias,
    floating *h_rows,
    floating *x_rows,
    double *diff,
    double *acc,
    double *zbuf,
) noexcept nogil:
    """Block r of the fused pass: its chunks' sums to ``block_loss`` and
    ``block_grad_bias`` (one per chunk of the block) and, with the gradient,
    ``partial`` = H_block^T X_block (k x d).  ``h_rows`` holds chunk_size x
    k entries, ``x_rows`` chunk_size x d (gathered rows; unused with
    identity rows).  The same arithmetic whoever runs it and wherever its
    results go."""
    cdef const floating *X = <const floating *> fp.X
    cdef const floating *U = <const floating *> fp.U
    cdef Py_ssize_t d = fp.d, k = fp.k, chunk_size = fp.pp.chunk_size
    cdef Py_ssize_t start = r * fp.block, stop, size, i, j, c = 0
    cdef Py_ssize_t block_stop = min(start + fp.block, fp.pp.n_points)
    cdef const floating *rows
    cdef bint first = True
    while start < block_stop:
        stop = min(start + chunk_size, fp.pp.n_points)
        _point_chunk(U, k, &fp.pp, h_rows, start, stop, diff, acc, zbuf, &block_loss[c],
                     &block_grad_bias[c])
        if fp.pp.compute_gradient:
            size = stop - start
            if fp.identity_rows:
                rows = X + start * d
            else:
                for i in range(size):
                    for j in range(d):
                        x_rows[i * d + j] = X[fp.point_rows[start + i] * d + j]
                rows = x_rows
            # partial (+)= H_chunk^T X_chunk
            gemm_atb(not first, h_rows, k, rows, d, size, k, d, partial, d)
            first = False
        start = stop
        c += 1


cdef void _fused_point_pass(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] point_rows,
    bint identity_rows,
    const floating[:, ::1] U,
    const _PointPass *pp,
    floating[:, :, ::1] partials,
    Py_ssize_t block,
    int n_threads,
) noexcept nogil:
    """The point pass and the gradient's GEMM, block by block.

    Block r of ``block`` points (a multiple of ``chunk_size``) is owned by
    one thread, which computes the rows of H = Lap U of each of its chunks
    into a small buffer and at once adds ``H_chunk^T X_chunk`` to
    ``partials[r]`` (k x d): H never goes to memory, and the chunk's rows of
    X are read once, by the thread that needs them.  The chunks, their sums
    and the blocks depend on the sizes only, not on the thread count.
    """
    cdef Py_ssize_t k = U.shape[1], d = X.shape[1]
    cdef Py_ssize_t chunk_size = pp.chunk_size, n_blocks = partials.shape[0], r
    cdef _FusedPass fp = _fused_pass(X, point_rows, identity_rows, U, pp, partials, block)
    cdef double *diff
    cdef double *acc
    cdef double *zbuf
    cdef floating *h_rows
    cdef floating *x_rows
    with parallel(num_threads=n_threads):
        diff = <double *> malloc(BATCH * k * sizeof(double))
        acc = <double *> malloc(k * sizeof(double))
        zbuf = <double *> malloc(4 * BATCH * sizeof(double))
        h_rows = <floating *> malloc(chunk_size * k * sizeof(floating))
        x_rows = NULL
        if not identity_rows:
            x_rows = <floating *> malloc(chunk_size * d * sizeof(floating))
        for r in prange(n_blocks, schedule='dynamic'):
            _fused_block(&fp, r, &partials[r, 0, 0], pp.chunk_loss + r * (block // chunk_size),
                         pp.chunk_grad_bias + r * (block // chunk_size), h_rows, x_rows, diff,
                         acc, zbuf)
        free(diff)
        free(acc)
        free(zbuf)
        free(h_rows)
        free(x_rows)


cdef inline _FusedPass _fused_pass(const floating[:, ::1] X, const Py_ssize_t[::1] point_rows,
                                   bint identity_rows, const floating[:, ::1] U,
                                   const _PointPass *pp, floating[:, :, ::1] partials,
                                   Py_ssize_t block) noexcept nogil:
    cdef _FusedPass fp
    fp.X = &X[0, 0]
    fp.d = X.shape[1]
    fp.point_rows = &point_rows[0] if point_rows.shape[0] > 0 else NULL
    fp.identity_rows = identity_rows
    fp.U = &U[0, 0]
    fp.k = U.shape[1]
    fp.pp = pp[0]
    fp.block = block
    fp.partials = &partials[0, 0, 0]
    return fp


# ---------------------------------------------------------------------------
# The fused pass on fm_team.h's team (busy machines; see fm_team.h)
# ---------------------------------------------------------------------------
# A block's scratch: its chunks' two sums and the work buffers (float64),
# then its partial product and the chunk buffers (X's dtype).
cdef inline size_t _team_scratch_doubles(const _FusedPass *fp) noexcept nogil:
    # (_team_block_compute lays them out in this order; the floating part
    # starts right after.)
    return (2 * (fp.block // fp.pp.chunk_size) + BATCH * fp.k + fp.k + 4 * BATCH)


cdef inline void _team_block_compute(const _FusedPass *fp, int64_t r, void *scratch,
                                     floating *tag) noexcept nogil:
    cdef Py_ssize_t cpb = fp.block // fp.pp.chunk_size, k = fp.k
    cdef double *block_loss = <double *> scratch
    cdef double *block_gb = block_loss + cpb
    cdef double *diff = block_gb + cpb
    cdef double *acc = diff + BATCH * k
    cdef double *zbuf = acc + k
    cdef floating *partial = <floating *> (<double *> scratch + _team_scratch_doubles(fp))
    cdef floating *h_rows = partial + k * fp.d
    cdef floating *x_rows = h_rows + fp.pp.chunk_size * k
    _fused_block(fp, r, partial, block_loss, block_gb, h_rows, x_rows, diff, acc, zbuf)


cdef inline void _team_block_publish(const _FusedPass *fp, int64_t r, const void *scratch,
                                     floating *tag) noexcept nogil:
    cdef Py_ssize_t cpb = fp.block // fp.pp.chunk_size, k = fp.k, first = r * cpb
    cdef Py_ssize_t n_chunks = (fp.pp.n_points + fp.pp.chunk_size - 1) // fp.pp.chunk_size
    cdef Py_ssize_t nc = min(cpb, n_chunks - first)
    cdef const double *block_loss = <const double *> scratch
    cdef const double *block_gb = block_loss + cpb
    cdef const floating *partial = <const floating *> (<const double *> scratch
                                                       + _team_scratch_doubles(fp))
    memcpy(fp.pp.chunk_loss + first, block_loss, nc * sizeof(double))
    memcpy(fp.pp.chunk_grad_bias + first, block_gb, nc * sizeof(double))
    if fp.pp.compute_gradient:
        memcpy(<floating *> fp.partials + r * k * fp.d, partial, k * fp.d * sizeof(floating))


cdef void _team_compute_f64(const void *ctx, int64_t r, void *scratch) noexcept nogil:
    _team_block_compute(<const _FusedPass *> ctx, r, scratch, <double *> NULL)


cdef void _team_compute_f32(const void *ctx, int64_t r, void *scratch) noexcept nogil:
    _team_block_compute(<const _FusedPass *> ctx, r, scratch, <float *> NULL)


cdef void _team_publish_f64(const void *ctx, int64_t r, const void *scratch) noexcept nogil:
    _team_block_publish(<const _FusedPass *> ctx, r, scratch, <double *> NULL)


cdef void _team_publish_f32(const void *ctx, int64_t r, const void *scratch) noexcept nogil:
    _team_block_publish(<const _FusedPass *> ctx, r, scratch, <float *> NULL)


cdef class PairIndex:
    """The problem data of LDML evaluations on a fixed set of pairs.

    Holds the endpoint index of the pairs (``offsets``, ``keys``, ``values``:
    see pair_loss.pxd, filled by :func:`build_index`), the rows of X its
    points stand for (``point_rows``; with ``identity_rows`` point u is row
    u and ``point_rows`` is empty), the total pair weight W that the loss is
    divided by, and ``point_chunk``, the points per work unit (the chunks
    fix the order of every sum, whatever the thread count).
    """
    cdef readonly object offsets, keys, values, point_rows
    cdef readonly bint identity_rows
    cdef readonly Py_ssize_t n_points, point_chunk
    cdef readonly double total_weight
    cdef const Py_ssize_t[::1] _offsets
    cdef const Py_ssize_t[::1] _keys
    cdef const PairValues[::1] _values
    cdef const Py_ssize_t[::1] _point_rows

    def __init__(self, offsets, keys, values, point_rows, bint identity_rows,
                 double total_weight, Py_ssize_t point_chunk):
        self.offsets, self.keys, self.values = offsets, keys, values
        self.point_rows = point_rows
        self._offsets, self._keys, self._values = offsets, keys, values
        self._point_rows = point_rows
        self.identity_rows = identity_rows
        self.n_points = offsets.shape[0] - 1
        self.total_weight = total_weight
        self.point_chunk = point_chunk

    def work_shapes(self, Py_ssize_t k, Py_ssize_t d):
        """Shapes of the work arrays of an evaluation with a k x d map (see
        :class:`LossWork`): U, partials, and the two per-chunk sums."""
        cdef Py_ssize_t block = _partial_block(self.n_points, self.point_chunk)
        cdef Py_ssize_t n_blocks = (self.n_points + block - 1) // block
        cdef Py_ssize_t n_chunks = (self.n_points + self.point_chunk - 1) // self.point_chunk
        return (self.n_points, k), (n_blocks, k, d), (n_chunks,), (n_chunks,)


cdef class LossWork:
    """The work arrays of LDML evaluations, kept between evaluations so that
    they are not allocated (and page-faulted) again: the mapped rows ``U``
    (n_points x k), the gradient's block products ``partials`` (n_blocks x
    k x d), both in X's dtype, and the per-chunk sums ``chunk_loss`` and
    ``chunk_grad_bias`` (float64), shaped by :meth:`PairIndex.work_shapes`.
    ``key`` names the (dtype, k) they were made for."""
    cdef readonly object key, U, partials, chunk_loss, chunk_grad_bias

    def __init__(self, key, U, partials, chunk_loss, chunk_grad_bias):
        self.key = key
        self.U, self.partials = U, partials
        self.chunk_loss, self.chunk_grad_bias = chunk_loss, chunk_grad_bias


def ldml_evaluate(const floating[:, ::1] X, const floating[:, ::1] L, PairIndex index,
                  LossWork work, double bias, bint compute_gradient, bint check_finite,
                  int n_threads, int team_threads=0):
    """One evaluation of the LDML loss and its gradients (see the module
    docstring): U = X L^T for the index's points, one fused pass over the
    points (logits, loss terms and, with ``compute_gradient``, the block
    products H^T X of the gradient), then the merge of the block products in
    block order.  O(n k d + P (k + d)) work, on ``n_threads`` threads (BLAS
    must be single-threaded around the call), the same result for any
    number of them.

    With ``check_finite`` (identity rows only), X's values are checked while
    they are mapped; returns None when one is NaN or infinite.  Otherwise
    returns ``(loss, grad_L or None, grad_bias)``.

    ``team_threads > 1`` runs the fused pass on fm_team.h's team of that
    many threads (for a machine that other processes keep busy: its caller
    does not wait for a helper that is off its core) and the other steps on
    ``n_threads``; the result is the same.
    """
    cdef Py_ssize_t k = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t point_chunk = index.point_chunk
    cdef const Py_ssize_t[::1] offsets = index._offsets
    cdef const Py_ssize_t[::1] keys = index._keys
    cdef const PairValues[::1] values = index._values
    cdef const Py_ssize_t[::1] point_rows = index._point_rows
    cdef bint identity_rows = index.identity_rows
    cdef floating[:, ::1] U = work.U
    cdef floating[:, :, ::1] partials = work.partials
    cdef double[::1] chunk_loss = work.chunk_loss
    cdef double[::1] chunk_gb = work.chunk_grad_bias
    cdef Py_ssize_t n_chunks = chunk_loss.shape[0]
    cdef Py_ssize_t c, r, i, j, block, n_blocks = partials.shape[0]
    cdef double loss = 0.0, grad_bias = 0.0, scale
    cdef double total_weight = index.total_weight
    cdef bint finite = True
    cdef _PointPass pp

    block = _partial_block(index.n_points, point_chunk)
    with nogil:
        if identity_rows:
            finite = transform_rows(X, L, U, point_chunk, n_threads, check_finite)
        else:
            transform_selected_rows(X, point_rows, L, U, point_chunk, n_threads)
    if not finite:
        return None
    cdef _FusedPass fp
    cdef fm_team_job job
    cdef int64_t generation = 0
    with nogil:
        pp = _point_pass(offsets, keys, values, bias, compute_gradient, point_chunk,
                         chunk_loss, chunk_gb)
        if team_threads > 1:
            fp = _fused_pass(X, point_rows, identity_rows, U, &pp, partials, block)
            job.compute = _team_compute_f32 if floating is float else _team_compute_f64
            job.publish = _team_publish_f32 if floating is float else _team_publish_f64
            job.ctx = &fp
            job.ctx_bytes = sizeof(_FusedPass)
            job.n_chunks = n_blocks
            job.scratch_bytes = (_team_scratch_doubles(&fp) * sizeof(double)
                                 + (k * d + point_chunk * (k + d)) * sizeof(floating))
            generation = team_run(&job, team_threads)
        else:
            _fused_point_pass(X, point_rows, identity_rows, U, &pp, partials, block, n_threads)
    if generation < 0:
        raise MemoryError("could not allocate the team's buffers or helpers")
    if generation > 0:
        # A helper that was off its core may still read the job's inputs.
        team_keep(generation, X, index, work)
    with nogil:
        for c in range(n_chunks):
            loss += chunk_loss[c]
            grad_bias += chunk_gb[c]
    loss /= total_weight
    grad_bias /= total_weight
    if not compute_gradient:
        return loss, None, grad_bias

    grad_arr = np.empty((k, d), dtype=np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] grad = grad_arr
    scale = -2.0 / total_weight
    cdef double *row_sum
    with nogil:
        # Merge the partial products in block order, in float64: each entry
        # is summed over r = 0, 1, ... whatever the thread that owns its row;
        # rows are read contiguously, one partial after the other.
        with parallel(num_threads=n_threads):
            row_sum = <double *> malloc(d * sizeof(double))
            for i in prange(k, schedule='dynamic', chunksize=1):
                for j in range(d):
                    row_sum[j] = partials[0, i, j]
                for r in range(1, n_blocks):
                    for j in range(d):
                        row_sum[j] += partials[r, i, j]
                for j in range(d):
                    grad[i, j] = <floating> (scale * row_sum[j])
            free(row_sum)
    return loss, grad_arr, grad_bias


def _partial_block(Py_ssize_t n_points, Py_ssize_t point_chunk):
    """Points per partial product of the gradient: a whole number of chunks,
    at most DEF_MAX_PARTIALS blocks."""
    cdef Py_ssize_t per_block = (n_points + DEF_MAX_PARTIALS - 1) // DEF_MAX_PARTIALS
    return max(1, (per_block + point_chunk - 1) // point_chunk) * point_chunk


cdef bint _all_binary(const double[::1] targets) noexcept nogil:
    """Whether every target is exactly 0 or 1."""
    cdef Py_ssize_t p
    cdef bint binary = True
    for p in range(targets.shape[0]):
        binary &= (targets[p] == 0.0) | (targets[p] == 1.0)
    return binary


def all_binary_targets(const double[::1] targets):
    """Whether every target is exactly 0 or 1: then, for unweighted pairs,
    the targets fit in the index's keys and the index has no values array."""
    cdef bint binary
    with nogil:
        binary = _all_binary(targets)
    return binary


def build_index(const Py_ssize_t[::1] ua, const Py_ssize_t[::1] ub,
                const double[::1] targets, const double[::1] weights, bint has_weights,
                Py_ssize_t[::1] offsets, Py_ssize_t[::1] keys, PairValues[::1] values,
                Py_ssize_t[:, ::1] cursor):
    """Fill the endpoint index of the pairs (ua[p], ub[p]) into the caller's
    arrays (see build_endpoint_index and pair_loss.pxd): ``offsets`` (n_points
    + 1), ``keys`` (2 n_pairs), ``values`` (2 n_pairs, or empty when the
    targets are 0/1 and the pairs unweighted) and the zero-filled ``cursor``
    (n_parts x n_points), whose n_parts parts are counted and filled in
    parallel.  O(n_parts n_points + n_pairs) work; the index does not depend
    on n_parts."""
    with nogil:
        build_endpoint_index(ua, ub, targets, weights, has_weights, offsets, keys, values,
                             cursor, <int> cursor.shape[0])

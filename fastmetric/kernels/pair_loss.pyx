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
from libc.string cimport memset

from fastmetric.kernels.common cimport (
    floating, fm_axpy_rows, fm_logit_batch, fm_prefetch_block, FM_PREFETCH_AHEAD, parts_prefix_sum,
    diff_sq_norm,
)
from fastmetric.kernels.distances cimport (
    transform_rows, transform_rows_checked, transform_selected_rows,
)
from fastmetric.kernels.smallgemm cimport gemm_atb

from fastmetric._core.threads import effective_n_threads, single_threaded_blas, threads_for_work
from fastmetric._core.workspace import empty_aligned
from fastmetric._core.validation import (
    check_chunk_size,
    check_components,
    check_index_pairs,
    check_pair_vector,
    check_points,
    check_scalar_finite,
    raise_nonfinite,
)

cdef enum:
    # Entries of one point whose loss terms are computed in one vectorised call.
    BATCH = 32

DEF_POINT_CHUNK = 256

# The numpy dtype of PairValues (see _pair_loss.pxd), and ENTRY_SHIFT for
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
    _pair_loss.pxd.  With ``values`` empty, the targets must be 0 or 1 and
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
    for t in prange(n_parts, schedule='static', num_threads=n_threads):
        for p in range(t * part_size, min((t + 1) * part_size, n_pairs)):
            cursor[t, ua[p]] += 1
            cursor[t, ub[p]] += 1
    parts_prefix_sum(cursor, &offsets[0])
    for t in prange(n_parts, schedule='static', num_threads=n_threads):
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


cdef inline void _point_chunk(
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] keys,
    const PairValues[::1] values,
    double bias,
    floating *h_rows,
    bint compute_gradient,
    Py_ssize_t start,
    Py_ssize_t stop,
    double *diff,
    double *acc,
    double *zbuf,
    double *loss_out,
    double *grad_bias_out,
) noexcept nogil:
    """Loss and bias-gradient sums of the chunk's points, and their rows of H.

    Row u of H goes to ``h_rows[(u - start) * k:]``.

    A point's incident entries go in batches of up to BATCH: their
    differences and logits first, then the loss terms of the whole batch in
    one vectorised call (fm_logit_batch), then the accumulation of the
    batch into H[u] (fm_axpy_rows, which keeps H[u] in registers across the
    batch's rows).  ``diff`` holds BATCH x k doubles, ``zbuf`` 4 x BATCH.
    """
    cdef Py_ssize_t u, v, e, e0, e1, m, i, j, k = U.shape[1]
    cdef Py_ssize_t e_stop = offsets[stop]
    cdef bint packed = values.shape[0] == 0
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
                    fm_prefetch_block(&U[keys[e + FM_PREFETCH_AHEAD] >> ENTRY_SHIFT, 0],
                                      k * sizeof(floating))
                v = keys[e] >> ENTRY_SHIFT
                zbuf[i] = bias - diff_sq_norm(&U[u, 0], &U[v, 0], &diff[i * k], k)
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
            if compute_gradient:
                fm_axpy_rows(rbuf, diff, m, k, acc)
            e0 += m
        if compute_gradient:
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
    with parallel(num_threads=n_threads):
        diff = <double *> malloc(BATCH * k * sizeof(double))
        acc = <double *> malloc(k * sizeof(double))
        zbuf = <double *> malloc(4 * BATCH * sizeof(double))
        for c in prange(n_chunks, schedule='static'):
            start = c * chunk_size
            stop = min(start + chunk_size, n_points)
            _point_chunk(U, offsets, keys, values, bias, &H[start, 0] if compute_gradient else NULL,
                         compute_gradient, start, stop, diff, acc, zbuf,
                         &chunk_loss[c], &chunk_grad_bias[c])
        free(diff)
        free(acc)
        free(zbuf)


cdef void _fused_point_pass(
    const floating[:, ::1] X,
    const Py_ssize_t[::1] point_rows,
    bint identity_rows,
    const floating[:, ::1] U,
    const Py_ssize_t[::1] offsets,
    const Py_ssize_t[::1] keys,
    const PairValues[::1] values,
    double bias,
    bint compute_gradient,
    floating[:, :, ::1] partials,
    Py_ssize_t block,
    double[::1] chunk_loss,
    double[::1] chunk_grad_bias,
    Py_ssize_t chunk_size,
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
    cdef Py_ssize_t n_points = offsets.shape[0] - 1, k = U.shape[1], d = X.shape[1]
    cdef Py_ssize_t n_blocks = partials.shape[0]
    cdef Py_ssize_t r, start, stop, block_stop, size, i, j
    cdef double *diff
    cdef double *acc
    cdef double *zbuf
    cdef floating *h_rows
    cdef floating *x_rows
    cdef const floating *rows
    cdef bint first
    with parallel(num_threads=n_threads):
        diff = <double *> malloc(BATCH * k * sizeof(double))
        acc = <double *> malloc(k * sizeof(double))
        zbuf = <double *> malloc(4 * BATCH * sizeof(double))
        h_rows = <floating *> malloc(chunk_size * k * sizeof(floating))
        x_rows = NULL
        if not identity_rows:
            x_rows = <floating *> malloc(chunk_size * d * sizeof(floating))
        for r in prange(n_blocks, schedule='static'):
            first = True
            start = r * block
            block_stop = min(start + block, n_points)
            while start < block_stop:
                stop = min(start + chunk_size, n_points)
                _point_chunk(U, offsets, keys, values, bias, h_rows, compute_gradient,
                             start, stop, diff, acc, zbuf,
                             &chunk_loss[start // chunk_size],
                             &chunk_grad_bias[start // chunk_size])
                if compute_gradient:
                    size = stop - start
                    if identity_rows:
                        rows = &X[start, 0]
                    else:
                        for i in range(size):
                            for j in range(d):
                                x_rows[i * d + j] = X[point_rows[start + i], j]
                        rows = x_rows
                    # partials[r] (+)= H_chunk^T X_chunk
                    gemm_atb(not first, h_rows, k, rows, d, size, k, d,
                             &partials[r, 0, 0], d)
                    first = False
                start = stop
        free(diff)
        free(acc)
        free(zbuf)
        free(h_rows)
        free(x_rows)


def _evaluate(const floating[:, ::1] X,
              const Py_ssize_t[::1] point_rows, bint identity_rows,
              const Py_ssize_t[::1] offsets, const Py_ssize_t[::1] keys,
              const PairValues[::1] values,
              const floating[:, ::1] L, double bias, double total_weight,
              bint compute_gradient, bint check_finite, Py_ssize_t point_chunk,
              int n_threads, floating[:, ::1] U, floating[:, :, ::1] partials,
              double[::1] chunk_loss, double[::1] chunk_gb):
    """One evaluation; the work arrays U (n_points x k), partials
    (n_blocks x k x d) and the two per-chunk sums come from the caller, so
    that repeated evaluations do not allocate (and page-fault) them again.

    With ``check_finite`` (identity rows only), X's values are checked
    while they are mapped; returns None when one is NaN or infinite.
    """
    cdef Py_ssize_t n_points = offsets.shape[0] - 1
    cdef Py_ssize_t k = L.shape[0], d = L.shape[1]
    cdef Py_ssize_t n_chunks = chunk_loss.shape[0]
    cdef Py_ssize_t c, r, i, j, block, n_blocks = partials.shape[0]
    cdef double loss = 0.0, grad_bias = 0.0, scale, s
    cdef bint finite = True

    block = _partial_block(n_points, point_chunk)
    with nogil:
        if identity_rows:
            if check_finite:
                finite = transform_rows_checked(X, L, U, point_chunk, n_threads)
            else:
                transform_rows(X, L, U, point_chunk, n_threads)
        else:
            transform_selected_rows(X, point_rows, L, U, point_chunk, n_threads)
    if not finite:
        return None
    with nogil:
        _fused_point_pass(X, point_rows, identity_rows, U, offsets, keys, values, bias,
                          compute_gradient, partials, block, chunk_loss, chunk_gb,
                          point_chunk, n_threads)
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
            for i in prange(k, schedule='static'):
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


def _build_index(const Py_ssize_t[::1] ua, const Py_ssize_t[::1] ub,
                 const double[::1] targets, const double[::1] weights, bint has_weights,
                 Py_ssize_t n_points, int n_threads):
    """The pair index (see _pair_loss.pxd): offsets, keys and values (empty
    when the targets are 0/1 and the pairs unweighted)."""
    # One part per thread, each with at least 2^16 pairs (the cursor array
    # costs n_points entries per part).
    cdef int n_parts = max(1, min(n_threads, 8, ua.shape[0] // 65536))
    cdef bint packed
    with nogil:
        packed = not has_weights and _all_binary(targets)
    offsets = np.empty(n_points + 1, dtype=np.intp)
    # Filled at random positions by every thread: huge pages spare the
    # threads most of their page faults (see fastmetric._core.workspace).
    keys = empty_aligned(2 * ua.shape[0], np.intp)
    values = empty_aligned(0 if packed else 2 * ua.shape[0], PAIR_VALUES)
    cursor = np.zeros((n_parts, n_points), dtype=np.intp)
    cdef Py_ssize_t[::1] o = offsets
    cdef Py_ssize_t[::1] kv = keys
    cdef PairValues[::1] vv = values
    cdef Py_ssize_t[:, ::1] cur = cursor
    with nogil:
        build_endpoint_index(ua, ub, targets, weights, has_weights, o, kv, vv, cur, n_parts)
    return offsets, keys, values


class PairLossProblem:
    """The LDML objective on a fixed set of pairs, prepared for many evaluations.

    The per-point index of incident pairs (and, when few points take part,
    the compact relabelling of the points) is built once here; each call of
    :meth:`loss_grad` then costs O(n k d + P (k + d)).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Validated data; it is referenced, not copied.
    a, b : ndarray of shape (n_pairs,), intp
        Validated row indices of the pairs' ends.
    targets : ndarray of shape (n_pairs,), float64
        Targets in [0, 1] (1: similar).
    sample_weight : ndarray of shape (n_pairs,), float64, default=None
        Non-negative pair weights with a positive sum; ``None`` weighs every
        pair 1.
    chunk_size : int, default=None
        Points per work unit (default 256).
    n_threads : int, default=1
        Threads used to build the index (the index does not depend on it).

    Notes
    -----
    The work arrays of :meth:`loss_grad` are kept between calls, so one
    problem must not be evaluated from two Python threads at once.
    """

    def __init__(self, X, a, b, targets, sample_weight=None, chunk_size=None, n_threads=1):
        self.X = X
        self.n_pairs = a.shape[0]
        self.targets = np.ascontiguousarray(targets, dtype=np.float64)
        if sample_weight is None:
            self.weights = np.empty(0, dtype=np.float64)
            self.has_weights = False
            self.total_weight = float(self.n_pairs)
        else:
            self.weights = np.ascontiguousarray(sample_weight, dtype=np.float64)
            self.has_weights = True
            self.total_weight = float(self.weights.sum())
        if not self.total_weight > 0:
            raise ValueError(
                f"The pair weights sum to {self.total_weight}; at least one pair "
                "needs a positive weight."
            )
        n = X.shape[0]
        # Few pairs relative to the rows (a minibatch): work on the rows that
        # occur only, relabelled 0..U-1, so the cost does not grow with n.
        if 4 * self.n_pairs < n:
            rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
            self.point_rows = rows.astype(np.intp)
            self.identity_rows = False
            self.ua = np.ascontiguousarray(inverse[: self.n_pairs], dtype=np.intp)
            self.ub = np.ascontiguousarray(inverse[self.n_pairs:], dtype=np.intp)
        else:
            self.point_rows = np.empty(0, dtype=np.intp)
            self.identity_rows = True
            self.ua = np.ascontiguousarray(a, dtype=np.intp)
            self.ub = np.ascontiguousarray(b, dtype=np.intp)
        self.n_points = n if self.identity_rows else self.point_rows.shape[0]
        self.point_chunk = chunk_size or DEF_POINT_CHUNK
        self.offsets, self.keys, self.values = _build_index(
            self.ua, self.ub, self.targets, self.weights, self.has_weights,
            self.n_points, int(n_threads)
        )
        # Work arrays of loss_grad, kept between calls (see _evaluate).
        self._work = None

    def loss_grad(self, L, bias, n_threads=1, compute_gradient=True, check_finite=False):
        """Loss, gradient in L and gradient in the bias.

        Parameters
        ----------
        L : ndarray of shape (n_components, n_features), C-contiguous, X's dtype
        bias : float
        n_threads : int, default=1
        compute_gradient : bool, default=True
            When False, the gradient in L is not computed (returned as None).
        check_finite : bool, default=False
            Check X for NaN and infinity while mapping it (for an X that was
            not checked before); a bad value raises ValueError.

        Returns
        -------
        loss : float
        grad_L : ndarray of shape (n_components, n_features) or None
        grad_bias : float
        """
        # Below a few thousand pairs per thread, the team's start-up costs
        # more than it saves.
        n_threads = threads_for_work(n_threads, self.n_pairs + self.n_points, 4096)
        k, d = L.shape
        key = (L.dtype.str, k)
        if self._work is None or self._work[0] != key:
            block = _partial_block(self.n_points, self.point_chunk)
            n_blocks = (self.n_points + block - 1) // block
            n_chunks = (self.n_points + self.point_chunk - 1) // self.point_chunk
            # U is read at random by rows: aligned rows on huge pages (see
            # _workspace); the partials are written by all threads.
            self._work = (key, (
                empty_aligned((self.n_points, k), L.dtype),
                empty_aligned((n_blocks, k, d), L.dtype),
                np.empty(n_chunks, dtype=np.float64),
                np.empty(n_chunks, dtype=np.float64),
            ))
        if check_finite and not self.identity_rows:
            # Only some rows are mapped: check all of X here.
            check_points(self.X, "X")
        with single_threaded_blas():
            result = _evaluate(
                self.X, self.point_rows, self.identity_rows, self.offsets,
                self.keys, self.values, L, float(bias), self.total_weight,
                compute_gradient, check_finite and self.identity_rows,
                self.point_chunk, n_threads, *self._work[1],
            )
        if result is None:
            raise_nonfinite(self.X, "X")
        return result


def ldml_loss(X, pairs, y, components, bias, *, sample_weight=None,
              return_gradient=True, chunk_size=None, n_jobs=None):
    """LDML's weighted mean log-loss over pairs, and its gradient.

    For each pair ``(a, b)`` the model gives the probability of similarity
    ``p = sigmoid(bias - ||L (x_a - x_b)||^2)``; the loss is

    ``sum_p w_p [-y_p log p_p - (1 - y_p) log(1 - p_p)] / sum_p w_p``.

    It is computed stably for any distance (no overflow, no log(0)).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float32 stays float32 (accumulations are in float64).
    pairs : array-like of int, shape (n_pairs, 2)
        Row indices into X.
    y : array-like of shape (n_pairs,)
        Targets in [0, 1]: 1 similar, 0 dissimilar, or soft values.
    components : array-like of shape (n_components, n_features)
        The linear map L (``n_components <= n_features`` or more).
    bias : float
        The threshold beta on the squared distance.
    sample_weight : array-like of shape (n_pairs,), default=None
        Non-negative pair weights (at least one positive).
    return_gradient : bool, default=True
        Also return the gradients.
    chunk_size : int, default=None
        Points per work unit (default 256).
    n_jobs : int, default=None
        Number of OpenMP threads: ``None`` as many as OpenMP and threadpoolctl
        allow, ``-1`` all CPUs, ``k > 0`` exactly k.  The result is the same
        for any number of threads.

    Returns
    -------
    loss : float
    grad_components : ndarray of shape (n_components, n_features)
        Only when ``return_gradient``; in X's dtype.
    grad_bias : float
        Only when ``return_gradient``.

    Notes
    -----
    The gradient in L, ``-(2/W) L sum_p g_p d_p d_p^T`` with
    ``g_p = w_p (p_p - y_p)`` and ``d_p = x_a - x_b``, is formed as
    ``-(2/W) (Lap X L^T)^T X`` with Lap the g-weighted Laplacian of the pair
    graph: O(n k d + P k) work instead of O(P k d).

    Examples
    --------
    >>> import numpy as np
    >>> from fastmetric.pairwise import ldml_loss
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    >>> loss, grad_L, grad_bias = ldml_loss(X, [[0, 1], [0, 2]], [1, 0], np.eye(2), 4.0)
    >>> round(loss, 4)
    0.0243
    >>> grad_L.shape
    (2, 2)
    """
    # X's values are checked while the kernel maps them (check_finite below).
    X = check_points(X, "X", allow_nan=True)
    n_threads = effective_n_threads(n_jobs)
    a, b = check_index_pairs(pairs, X.shape[0], "pairs", n_threads=n_threads)
    targets = check_pair_vector(y, a.shape[0], "y", np.float64, lo=0.0, hi=1.0)
    weights = None
    if sample_weight is not None:
        weights = check_pair_vector(sample_weight, a.shape[0], "sample_weight",
                                    np.float64, nonneg=True)
        if not weights.sum() > 0:
            raise ValueError("sample_weight sums to 0; at least one pair needs a positive weight.")
    if components is None:
        raise ValueError("components (the linear map L) is required.")
    L = check_components(components, X.shape[1], X.dtype)
    bias = check_scalar_finite(bias, "bias")
    chunk_size = check_chunk_size(chunk_size)
    problem = PairLossProblem(X, a, b, targets, weights, chunk_size, n_threads)
    loss, grad, grad_bias = problem.loss_grad(L, bias, n_threads, return_gradient,
                                              check_finite=True)
    if return_gradient:
        return loss, grad, grad_bias
    return loss

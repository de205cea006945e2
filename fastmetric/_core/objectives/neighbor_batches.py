"""Minibatch objectives of NCA, LMNN and MLKR, for data too large for the full objectives.

The full objectives of NCA and LMNN couple every point with every other:
an evaluation costs O(n^2) however it is organised.  Here a minibatch is a
set ``B`` of ``b`` rows (consecutive slices of a per-epoch permutation) and
its *candidate set* ``C = B + S``: the batch itself followed by ``m`` rows
``S`` drawn uniformly from all rows with a counter-based generator
(``numpy.random.default_rng([seed, epoch, batch])``, so that the draw is a
function of its position in the fit, not of the threads).  Each batch point
``i`` is compared with the ``c = b + m`` candidates only, so an epoch
(``n / b`` minibatches) costs ``O(n c (k + d))``: linear in n.  Memory is
that of the batch: the rows of ``B`` and ``S`` are gathered (a copy of
``c`` rows, centred), never the whole data.

**NCA** (:class:`NCABatchObjective`).  Batch point i picks a stochastic
neighbour l among its candidates (itself and any drawn copy of itself
excluded) with probability ``p_il`` proportional to ``exp(-D_il)``,
``D_il = ||L (x_i - x_l)||^2``; the minibatch loss is ``-(1/b) sum_{i in
B} p_i`` with ``p_i = sum_{l: y_l = y_i} p_il``: NCA's objective with the
softmax taken over a random subset, per point.  Its gradient is NCA's,
``(2/b) L sum_il w_il (x_i - x_l)(x_i - x_l)^T`` with ``w_il = p_il
([y_l = y_i] - p_i)``.

**MLKR** (:class:`MLKRBatchObjective`).  The same softmax over the
candidates weights a kernel regression of the real targets: ``yhat_i =
sum_l p_il y_l`` and the minibatch loss ``(1/b) sum_{i in B} (yhat_i -
y_i)^2``, with ``W_il = 2 (yhat_i - y_i) p_il (yhat_i - y_l)`` in the
gradient.

**LMNN** (:class:`LMNNBatchObjective`).  The target neighbours ``T(i)`` are
found once, exactly, before the fit (:func:`block_target_neighbors`); the
impostors of a batch point are searched among its candidates.  With ``mu``
the push weight and ``s = (N - 1) / (c - 1)`` (``N`` rows in the data; each
point has ``c - 1`` candidates other than itself) the minibatch loss is

    (1/b) sum_{i in B} [ (1 - mu) sum_{j in T(i)} D_ij
                         + mu s sum_{j in T(i)} sum_{l in C: y_l != y_i} [1 + D_ij - D_il]_+ ],

whose expectation over the uniform draws is LMNN's objective divided by N:
the sampled impostors stand for all of them.  The (sub)gradient is
``(2/b) L H`` with ``H`` the weighted scatter of the target pairs (weight
``1 - mu + mu s #{active l}``) and of the candidate pairs (weight ``-mu s
#{active j}``).

**Pair scatters.**  For a block of batch rows with candidate-pair weights
``W`` (rows: the block, columns: C), row sums r and column sums q,
``sum_il W_il (x_i - x_l)(x_i - x_l)^T = X_B^T diag(r) X_B + X_C^T diag(q)
X_C - G - G^T`` with ``G = X_B^T (W X_C)``: two GEMMs of ``b c d`` and ``b
c k`` multiply-adds (the distances) per batch, in X's dtype (float32 data
stay float32).

**Threads.**  The rows of a batch are split into fixed blocks of
:data:`BLOCK_ROWS`; each block gives a partial loss, scatter and column
sums, which are added in block order.  The blocks run on a pool of
``n_threads`` Python threads (numpy's GEMMs and ufuncs release the GIL;
BLAS is held to one thread by the caller), so the result is the same, bit
for bit, for any number of threads.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastmetric._core.dask_support import is_dask_array
from fastmetric._core.objectives.lmnn import _sorted_targets, sort_by_class

__all__ = ["BLOCK_ROWS", "LMNNBatchObjective", "MLKRBatchObjective", "NCABatchObjective",
           "block_target_neighbors", "draw_candidates", "row_mean"]

# Batch rows per work unit.  Fixed (not derived from the thread count), so
# that the partial sums, and their order, are the same for any thread count.
BLOCK_ROWS = 128

_POOLS = {}


def _pool(n_threads):
    """A pool of n_threads worker threads, kept for the next batches."""
    pool = _POOLS.get(n_threads)
    if pool is None:
        pool = _POOLS[n_threads] = ThreadPoolExecutor(max_workers=n_threads,
                                                      thread_name_prefix="fastmetric-batch")
    return pool


def _map_blocks(fn, n_rows, n_threads, first=0):
    """``[fn(start, stop)]`` over the fixed row blocks of rows ``first:n_rows``
    (``first`` a multiple of BLOCK_ROWS), in block order."""
    starts = range(first, n_rows, BLOCK_ROWS)
    if n_threads <= 1 or n_rows - first <= BLOCK_ROWS:
        return [fn(s, min(s + BLOCK_ROWS, n_rows)) for s in starts]
    return list(_pool(int(n_threads)).map(lambda s: fn(s, min(s + BLOCK_ROWS, n_rows)), starts))


def row_mean(X, chunk_rows=1 << 16):
    """Mean of the rows of X in float64, read in chunks (no copy of X)."""
    total = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, X.shape[0], chunk_rows):
        total += np.asarray(X[start:start + chunk_rows]).sum(axis=0, dtype=np.float64)
    return total / max(X.shape[0], 1)


def draw_candidates(n_rows, count, seed, epoch, batch):
    """``count`` rows drawn uniformly (with replacement) for one minibatch.

    A function of ``(seed, epoch, batch)`` only: the same draws on any run
    and for any thread count.  Sorted, so that gathering them from a memmap
    reads forward.
    """
    if count <= 0:
        return np.zeros(0, dtype=np.intp)
    rng = np.random.default_rng([int(seed), int(epoch), int(batch)])
    return np.sort(rng.integers(0, n_rows, size=int(count), dtype=np.intp))


class _Batch:
    """The gathered, centred rows of one minibatch and its candidates."""

    def __init__(self, objective, rows, drawn):
        X, mean = objective.X, objective.mean
        self.rows = rows
        self.index = np.concatenate([rows, drawn])  # C = B then S
        XC = np.asarray(X[self.index])
        self.XC = np.ascontiguousarray(XC - mean.astype(XC.dtype), dtype=objective.dtype)
        self.yC = objective.labels[self.index]
        self.b = rows.shape[0]


class _BatchObjective:
    """What the NCA and LMNN minibatch objectives share.

    Parameters
    ----------
    X : ndarray or memmap of shape (n_samples, n_features), float32 or float64
        Not copied; rows are gathered per minibatch.
    labels : ndarray of shape (n_samples,), intp
    mean : ndarray of shape (n_features,), optional
        Subtracted from the gathered rows (distances do not change; the
        GEMM expansion of the distances is more accurate on centred rows).
        Default: the mean of X (:func:`row_mean`).
    n_threads : int
    """

    # Class labels are integers; MLKR's real targets take the labels' place.
    _label_dtype = np.intp

    def __init__(self, X, labels, mean=None, n_threads=1):
        self.X = X
        self.dtype = np.dtype(X.dtype)
        self.labels = np.ascontiguousarray(labels, dtype=self._label_dtype)
        self.n_samples = X.shape[0]
        self.mean = row_mean(X) if mean is None else np.asarray(mean, dtype=np.float64)
        self.n_threads = int(n_threads)

    def batch(self, rows, drawn):
        """The data of the minibatch ``rows`` with the drawn candidates ``drawn``."""
        return _Batch(self, np.asarray(rows, dtype=np.intp), np.asarray(drawn, dtype=np.intp))

    def batches(self, specs):
        """The data of each ``(rows, drawn)`` of ``specs``, built when it is reached.

        (The Dask objective of :mod:`fastmetric._core.dask_minibatch` reads
        ``specs`` ahead instead, to gather the rows on the workers early.)
        """
        for rows, drawn in specs:
            yield self.batch(rows, drawn)

    def minibatches(self, specs, make_fun, following=None):
        """``(make_fun(self, data), b)`` of each minibatch of ``specs``: the
        minibatches of :func:`~fastmetric._core.solvers.run_epoch` (the Dask
        objective of :mod:`fastmetric._core.dask_minibatch` yields groups of
        them stepped on its workers instead, and reads the next epoch's
        specs, ``following()``, ahead; here each minibatch is built when it
        is reached, and ``following`` is not used)."""
        for data in self.batches(specs):
            yield make_fun(self, data), float(data.b)

    def _distances(self, batch, ZC, sqC, start, stop):
        """Squared distances of batch rows start:stop to the candidates; +inf on
        a point's own entries (itself in B, and drawn copies of it in S).

        In place on the GEMM's output: these (rows x c) passes, not the
        GEMMs, dominate the time of a minibatch.
        """
        D = ZC[start:stop] @ ZC.T
        D *= -2
        D += sqC[None, :]
        D += sqC[start:stop, None]
        np.maximum(D, 0, out=D)  # rounding of the expansion
        local = np.arange(stop - start)
        D[local, start + local] = np.inf
        # Drawn copies of a batch row: the drawn rows are sorted.
        drawn = batch.index[batch.b:]
        rows = batch.rows[start:stop]
        lo = np.searchsorted(drawn, rows, side="left")
        hi = np.searchsorted(drawn, rows, side="right")
        for i in np.flatnonzero(hi > lo):
            D[i, batch.b + lo[i]:batch.b + hi[i]] = np.inf
        return D

    def _softmax_terms(self, batch, ZC, sqC, start, stop):
        """``exp(m_i - D_il)`` of batch rows start:stop over the candidates
        (shifted by each row's smallest distance ``m_i``; 0 on a point's own
        entries), the row sums, and which rows have a candidate at all (a
        row without one gets zeros and a sum of 1)."""
        E = self._distances(batch, ZC, sqC, start, stop)
        m = E.min(axis=1)
        ok = np.isfinite(m)
        m[~ok] = 0.0
        np.subtract(m[:, None], E, out=E)
        np.exp(E, out=E)
        E[~ok] = 0.0
        total = E.sum(axis=1)
        total[~ok] = 1.0
        return E, total, ok

    def loss_grad(self, L, batch):
        """Minibatch loss (float) and its gradient in L ((k, d) float64)."""
        L = np.asarray(L, dtype=np.float64)
        loss, H = self.partial_sums(L, batch)
        return loss / batch.b, (2.0 / batch.b) * (L @ H)

    def partial_sums(self, L, batch, first=0, stop=None):
        """The summed loss and the scatter ``H`` ((d, d) float64) of batch rows
        ``first:stop`` (``first`` a multiple of BLOCK_ROWS; default all rows).

        The loss of the minibatch is the sum of these over a split of its
        rows, divided by b, and its gradient ``(2/b) L`` times the sum of the
        ``H``: the Dask fit evaluates a minibatch in such shares on
        several workers.
        """
        L = np.asarray(L, dtype=np.float64)
        Lw = np.ascontiguousarray(L, dtype=self.dtype)
        stop = batch.b if stop is None else stop
        ZC = batch.XC @ Lw.T
        sqC = np.einsum("ij,ij->i", ZC, ZC)
        parts = _map_blocks(lambda s, e: self._block(batch, ZC, sqC, s, e), stop,
                            self.n_threads, first)
        loss = 0.0
        H = np.zeros((L.shape[1], L.shape[1]), dtype=np.float64)
        col = np.zeros(batch.XC.shape[0], dtype=self.dtype)
        for block_loss, block_H, block_col in parts:  # block order: thread-independent
            loss += block_loss
            H += block_H
            col += block_col
        XC = batch.XC
        H += (XC.T @ (col[:, None] * XC)).astype(np.float64)
        return loss, H

    def _pair_scatter(self, batch, start, stop, W):
        """``X_B^T diag(r) X_B - G - G^T`` of one block and its column sums q."""
        XB = batch.XC[start:stop]
        W = np.asarray(W, dtype=self.dtype)
        r = W.sum(axis=1)
        G = (XB.T @ (W @ batch.XC)).astype(np.float64)
        H = (XB.T @ (r[:, None] * XB)).astype(np.float64) - G - G.T
        return H, W.sum(axis=0)


class NCABatchObjective(_BatchObjective):
    """NCA's softmax over each batch point's candidates (see the module docstring)."""

    def _block(self, batch, ZC, sqC, start, stop):
        E, total, _ = self._softmax_terms(batch, ZC, sqC, start, stop)
        same = batch.yC[start:stop, None] == batch.yC[None, :]
        W = np.multiply(E, same)
        p = W.sum(axis=1) / total
        # d(-p_i)/dD_il = p_il ([y_l = y_i] - p_i), p_il = E_il / total_i
        E *= (p / total)[:, None]
        W *= (1.0 / total)[:, None]
        W -= E
        H, col = self._pair_scatter(batch, start, stop, W)
        return -float(p.sum(dtype=np.float64)), H, col


class MLKRBatchObjective(_BatchObjective):
    """MLKR's kernel regression over each batch point's candidates.

    ``labels`` holds the real targets.  Batch point i is predicted by the
    kernel-weighted mean of its candidates' targets (itself and drawn copies
    of itself excluded), ``yhat_i = sum_l p_il y_l`` with ``p_il``
    proportional to ``exp(-D_il)``; the minibatch loss is ``(1/b) sum_{i in
    B} (yhat_i - y_i)^2``, MLKR's leave-one-out error per point with the
    regression taken over a random subset.  Its derivative in ``D_il`` is
    ``2 (yhat_i - y_i) p_il (yhat_i - y_l)``.  A point whose candidates all
    lie beyond the float range of the kernel keeps the smallest distance's
    weight 1 (the softmax is shifted by its minimum), so ``yhat_i`` is its
    nearest candidate's target, as in the full objective.
    """

    _label_dtype = np.float64

    def _block(self, batch, ZC, sqC, start, stop):
        E, total, ok = self._softmax_terms(batch, ZC, sqC, start, stop)
        total = total.astype(np.float64)
        yC = batch.yC
        y = yC[start:stop]
        yhat = (E @ yC.astype(E.dtype)).astype(np.float64) / total
        residual = np.where(ok, yhat - y, 0.0)
        # W_il = 2 r_i p_il (yhat_i - y_l), p_il = E_il / total_i
        W = np.subtract(yhat.astype(E.dtype)[:, None], yC.astype(E.dtype)[None, :])
        W *= E
        W *= (2.0 * residual / total).astype(E.dtype)[:, None]
        H, col = self._pair_scatter(batch, start, stop, W)
        return float(np.dot(residual, residual)), H, col


class LMNNBatchObjective(_BatchObjective):
    """LMNN's pull and push with impostors among each batch point's candidates.

    Parameters
    ----------
    X, labels, mean, n_threads :
        As in :class:`_BatchObjective`.
    targets : ndarray of shape (n_samples, K), int
        Target neighbours (row indices of X), -1 in unused slots.
    mu : float
        Weight of the push term.

    Attributes
    ----------
    n_active : int
        Active triplets (positive hinge terms) of the last evaluation.
    """

    def __init__(self, X, labels, targets, mu, mean=None, n_threads=1):
        super().__init__(X, labels, mean=mean, n_threads=n_threads)
        self.targets = np.asarray(targets)
        self.mu = float(mu)
        self.n_active = 0

    def batch(self, rows, drawn):
        data = super().batch(rows, drawn)
        T = self.targets[data.rows]
        data.valid = T >= 0
        # Unused slots point at the row itself (distance 0, weight 0).
        T = np.where(data.valid, T, data.rows[:, None])
        XT = np.asarray(self.X[T.ravel()])
        data.XT = np.ascontiguousarray(XT - self.mean.astype(XT.dtype),
                                       dtype=self.dtype).reshape(T.shape + (-1,))
        c = data.index.shape[0]
        data.scale = (self.n_samples - 1) / max(c - 1, 1)
        return data

    def partial_sums(self, L, batch, first=0, stop=None):
        self._active = []
        self._Lw = np.ascontiguousarray(L, dtype=self.dtype)
        sums = super().partial_sums(L, batch, first, stop)
        self.n_active = int(sum(self._active))
        return sums

    def _block(self, batch, ZC, sqC, start, stop):
        mu, s = self.mu, batch.scale
        XB = batch.XC[start:stop]
        dX = XB[:, None, :] - batch.XT[start:stop]           # (rows, K, d)
        dZ = dX @ self._Lw.T                                  # (rows, K, k)
        valid = batch.valid[start:stop]
        Dt = np.einsum("ijk,ijk->ij", dZ, dZ)
        D = self._distances(batch, ZC, sqC, start, stop)
        # Impostors are of another class: same-class candidates never count.
        np.putmask(D, batch.yC[start:stop, None] == batch.yC[None, :], np.inf)
        n_rows, K = Dt.shape
        n_active_l = np.zeros((n_rows, K), dtype=np.intp)   # active l per (i, j)
        n_active_j = np.zeros(D.shape, dtype=self.dtype)    # active j per (i, l)
        push = 0.0
        for j in range(K):  # K is small: (rows x c) passes, no (rows x K x c) array
            hinge = np.subtract((1.0 + Dt[:, j])[:, None].astype(self.dtype), D)
            hinge[~valid[:, j]] = 0
            np.maximum(hinge, 0, out=hinge)
            push += float(hinge.sum(dtype=np.float64))
            active = hinge > 0
            n_active_l[:, j] = active.sum(axis=1)
            n_active_j += active
        self._active.append(int(n_active_l.sum()))
        pull = np.where(valid, Dt, 0).sum(dtype=np.float64)
        loss = (1.0 - mu) * pull + mu * s * push
        # Target pairs: weight 1 - mu + mu s #{active l}; candidate pairs: -mu s #{active j}.
        wt = np.where(valid, (1.0 - mu) + mu * s * n_active_l, 0).astype(self.dtype)
        flat = dX.reshape(-1, dX.shape[2])
        H_t = (flat.T @ (wt.reshape(-1, 1) * flat)).astype(np.float64)
        n_active_j *= -mu * s
        H, col = self._pair_scatter(batch, start, stop, n_active_j)
        return float(loss), H + H_t, col


def block_target_neighbors(X, y_enc, n_classes, n_neighbors, L0, mean, *, block_size=None,
                           seed=0, n_threads=1):
    """LMNN's target neighbours, found once, exactly, block by block.

    Within each block of rows (all rows when ``block_size`` is None, else
    consecutive slices of ``block_size`` rows of a permutation drawn from
    ``seed``), each point gets its ``n_neighbors`` nearest points of its
    class in the metric of ``L0`` (the exact chunked k-NN kernel of
    :mod:`fastmetric.kernels.lmnn`; a class with m rows in the block gives
    its points ``min(n_neighbors, m - 1)``).  Only the rows of one class of
    one block are gathered at a time (of one block, on a dask array).
    Searching all rows costs ``O(n^2 d / n_classes)``; blocks of B rows cost
    ``O(n B d / n_classes)``, linear in n.

    Returns
    -------
    targets : ndarray of shape (n_samples, n_neighbors), int32
        Row indices of X; -1 in unused slots.
    n_small : int
        Points with fewer than ``n_neighbors`` targets.
    """
    n = X.shape[0]
    targets = np.full((n, n_neighbors), -1, dtype=np.intc)
    if block_size is None or block_size >= n:
        blocks = [np.arange(n)]
    else:
        perm = np.random.default_rng(int(seed)).permutation(n)
        blocks = [np.sort(perm[s:s + block_size]) for s in range(0, n, block_size)]
    n_small = 0
    Lw = np.ascontiguousarray(L0, dtype=X.dtype)
    on_dask = is_dask_array(X)
    for rows in blocks:
        y_block = y_enc[rows]
        order, class_ptr = sort_by_class(y_block, n_classes)
        # On a dask array the block's rows come in one gather (each gather
        # is a round trip through the scheduler, and a block is one per
        # class otherwise); from memory or a memmap one class at a time.
        X_block = np.asarray(X[rows]) if on_dask else None
        for c in range(n_classes):
            in_block = order[class_ptr[c]:class_ptr[c + 1]]
            members = rows[in_block]
            m = members.shape[0]
            if m < 2:
                n_small += m
                continue
            Xc = X_block[in_block] if on_dask else np.asarray(X[members])
            Xc = np.ascontiguousarray(Xc - mean.astype(Xc.dtype), dtype=X.dtype)
            n_t = np.full(m, min(n_neighbors, m - 1), dtype=np.intc)
            if m - 1 < n_neighbors:
                n_small += m
            t = _sorted_targets(Xc, np.array([0, m], dtype=np.intp), n_t, Lw, n_neighbors,
                                n_threads)
            # A class of m <= n_neighbors rows gives m - 1 columns; the
            # slots beyond stay -1.
            targets[members, :t.shape[1]] = np.where(t >= 0, members[np.maximum(t, 0)], -1)
    return targets, n_small
